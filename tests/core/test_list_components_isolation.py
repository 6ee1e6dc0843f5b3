"""`vqvdm list-components` when a plug-in module kills the process importing it (``os._exit``, a
signal) or raises ``KeyboardInterrupt`` at import: that module is `broken` with the cause, and the
status of every other component is still determined, with and without ``--verbose``.

The command runs in a subprocess, so a module that calls ``os._exit`` cannot end pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_plugins.distributions import entry_points_from

from vqvdm_core import registry as registry_module
from vqvdm_core.registry import GROUPS, Entry, Registry

HERE = Path(__file__).parent
SCHEDULES = GROUPS["schedule"]
FINE = "fake_plugins.components:TinySchedule"

# Module names starting with "aa" sort before every other target, so the checking child meets them
# first: before the fix, everything after them was left `unchecked`.
BAD_MODULES = {
    "aa_exits_hard": "import os\nos._exit(0)\n",
    "aa_interrupts": "raise KeyboardInterrupt('pressed while importing')\n",
    "aa_killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
}
CLASS = "\n\nclass Plugin:\n    '''Never reached.'''\n"

POSIX_ONLY = pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32",
                                reason="SIGKILL is POSIX only")


def install(make_distribution, *modules: str, dist: str = "acme-bad") -> Path:
    """A distribution declaring schedule ``fine`` and one schedule per module in ``modules`` (named
    after it), the modules written next to its ``.dist-info``."""
    eps = {"fine": FINE}
    eps.update({module: f"{module}:Plugin" for module in modules})
    site = make_distribution(dist, "0.1", {SCHEDULES: eps})
    for module in modules:
        (site / f"{module}.py").write_text(BAD_MODULES[module] + CLASS)
    return site


def run_listing(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VQVDM_DEBUG", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(HERE)])
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "vqvdm_core", "list-components", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def rows_of(proc: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.stdout.strip(), f"no output; stderr: {proc.stderr}"
    return {(row["kind"], row["name"]): row for row in json.loads(proc.stdout)}


def assert_cause(row: dict, module: str) -> None:
    assert row["status"] == "broken", row
    error = row["error"]
    if module == "aa_exits_hard":
        assert "exited (code 0) while importing it" in error and "os._exit" in error, error
    elif module == "aa_killed":
        assert "SIGKILL" in error and "while importing it" in error, error
    else:
        assert "KeyboardInterrupt" in error and "pressed while importing" in error, error


@pytest.mark.parametrize("module", ["aa_exits_hard", pytest.param("aa_killed", marks=POSIX_ONLY)])
def test_a_plugin_that_kills_the_checking_child_is_broken_and_every_other_component_is_checked(
        make_distribution, module):
    site = install(make_distribution, module)
    rows = rows_of(run_listing(site, "--json"))
    assert_cause(rows[("schedule", module)], module)
    assert rows[("schedule", "fine")]["status"] == "available"
    assert rows[("schedule", "ddpm")]["status"] == "available"
    built_in = {key: row["status"] for key, row in rows.items() if row["distribution"] == "vqvdm"}
    assert len(built_in) > 10 and set(built_in.values()) == {"available"}, built_in
    assert not [row for row in rows.values() if row["status"] == "unchecked"]


def test_several_bad_plugins_are_each_broken_with_their_cause_and_the_others_stay_as_before(
        make_distribution):
    modules = ["aa_exits_hard", "aa_interrupts"] + (["aa_killed"] if sys.platform != "win32" else [])
    site = install(make_distribution, *modules)
    make_distribution("acme-old", "0.1", {SCHEDULES: {  # the failures that were already `broken`
        "raises": "fake_plugins.broken:NeverDefined",
        "exits": "fake_plugins.exits:Exits",
    }})
    rows = rows_of(run_listing(site, "--kind", "schedule", "--json"))
    for module in modules:
        assert_cause(rows[("schedule", module)], module)
    raises, exits = rows[("schedule", "raises")], rows[("schedule", "exits")]
    assert raises["status"] == "broken" and "libfoo" in raises["error"]
    assert exits["status"] == "broken" and "sys.exit(3)" in exits["error"]
    assert rows[("schedule", "fine")]["status"] == rows[("schedule", "ddpm")]["status"] == "available"


@pytest.mark.parametrize("module", ["aa_exits_hard", "aa_interrupts"])
def test_verbose_imports_here_only_what_imported_in_the_child(make_distribution, module):
    site = install(make_distribution, module)
    rows = rows_of(run_listing(site, "--kind", "schedule", "--verbose", "--json"))
    assert_cause(rows[("schedule", module)], module)
    assert rows[("schedule", "fine")]["status"] == "loaded" and rows[("schedule", "fine")]["config"]
    assert rows[("schedule", "ddpm")]["status"] == "loaded" and rows[("schedule", "ddpm")]["config"]


def test_verbose_table_completes_with_both_bad_plugins(make_distribution):
    site = install(make_distribution, "aa_exits_hard", "aa_interrupts")
    proc = run_listing(site, "--kind", "schedule", "-v")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.replace("│", " ").split())
    assert "interrupted" not in proc.stderr
    assert "KeyboardInterrupt" in text and "os._exit" in text
    assert "loaded" in text and "ddpm" in text and "unchecked" not in text


def test_check_imports_starts_one_child_normally_and_one_more_per_module_that_kills_it(
        make_distribution, monkeypatch):
    site = install(make_distribution, "aa_exits_hard", "aa_interrupts")
    (site / "aa_noisy.py").write_text("print('no newline', end='')\nclass Plugin:\n    '''Fine.'''\n")
    monkeypatch.syspath_prepend(str(site))
    children = []
    real_run = subprocess.run

    def counting_run(*args, **kwargs):
        children.append(kwargs.get("input"))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(registry_module.subprocess, "run", counting_run)
    reg = Registry(entry_points=entry_points_from(site))
    entries = {e.name: e for e in reg.entries("schedule")}

    noisy = Entry("schedule", "noisy", "aa_noisy:Plugin", "acme-bad")  # prints without a newline
    results = reg.check_imports([entries["fine"], entries["aa_interrupts"], noisy])
    assert len(children) == 1
    assert results[FINE] is None and results["aa_noisy:Plugin"] is None
    assert "KeyboardInterrupt" in results["aa_interrupts:Plugin"]

    children.clear()
    results = reg.check_imports(list(entries.values()))
    assert len(children) == 2  # the first child died in aa_exits_hard; a second checked the rest
    assert "os._exit" in results["aa_exits_hard:Plugin"]
    assert "KeyboardInterrupt" in results["aa_interrupts:Plugin"]
    assert results[FINE] is None
    assert set(results) == {e.target for e in entries.values()}
