"""Pretrained pipeline folders: a trained system as safetensors weights, JSON configs and an index.

:meth:`LatentVideoDiffusion.save_pretrained <vqvdm_core.system.LatentVideoDiffusion.save_pretrained>`
writes one and :meth:`~vqvdm_core.system.LatentVideoDiffusion.from_pretrained` rebuilds the system
from it, with no run directory (``vqvdm export RUN OUT_DIR`` makes one from a run). Format version 1::

    model_index.json                 format, format_version, vqvdm_version; each component's kind,
                                     registered name, provider, config file and weights file; every
                                     other file of the folder with its sha256 and size
    system.json                      clip_shape, latent_scale, data (num_classes, class_names,
                                     fps_values, and condition_values when the data had other
                                     condition fields) and the default sample settings
    tokenizer/config.json            {"name": <registered name>, <every field of its Config>}
    tokenizer/weights.safetensors    its state dict (a component without state has no weights file)
    denoiser/config.json, denoiser/weights.safetensors
    schedule/config.json
    conditioners/<i>/config.json, conditioners/<i>/weights.safetensors
    guidance/config.json             (when the system has a guidance)
    sampler/config.json              (when the system has a default sampler)
    README.md, recipe.yaml, ...      extra files given to save_pretrained (listed and hashed too)

Loading reads JSON and safetensors only (nothing is unpickled), checks every listed file against its
sha256 before reading any of them, and finds each component class through the registry by its
registered name, so components of third-party plug-ins load wherever the plug-in is installed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from torch import Tensor, nn

from vqvdm_core.errors import ComponentError, MissingFileError, UserError, brief
from vqvdm_core.io.checksum import file_sha256
from vqvdm_core.io.paths import check_can_write
from vqvdm_core.registry import Entry, Registry

if TYPE_CHECKING:
    from vqvdm_core.system.diffusion import LatentVideoDiffusion

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "SYSTEM_FILE",
    "PretrainedFolderError",
    "PretrainedParts",
    "check_target",
    "component_slots",
    "is_pretrained_folder",
    "read_pretrained",
    "registered_entry",
    "save_pretrained",
    "verify_folder",
]

FORMAT = "vqvdm-pipeline"
FORMAT_VERSION = 1
"""The folder layout this version writes and reads; a folder of another version is refused."""
INDEX_FILE = "model_index.json"
SYSTEM_FILE = "system.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PretrainedFolderError(UserError):
    """A pipeline folder that cannot be loaded: missing, changed or corrupt files, another format."""


@dataclass
class PretrainedParts:
    """What a pipeline folder holds, built: the system's constructor arguments and its metadata."""

    components: dict[str, Any]
    """Keyword arguments of :class:`~vqvdm_core.system.LatentVideoDiffusion` (built components,
    ``clip_shape``, ``latent_scale``, ``sampler``, ``registry``)."""
    data_info: dict[str, Any] = field(default_factory=dict)
    sample_settings: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def is_pretrained_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a pipeline folder (or its index file)."""
    path = Path(path)
    if path.is_file():
        return path.name == INDEX_FILE
    return (path / INDEX_FILE).is_file()


def check_target(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an output folder that cannot take a pipeline, before any work; return it as a Path.

    A missing or empty folder is fine. A non-empty one is refused unless ``overwrite``, and even
    then only a pipeline folder (one with a ``model_index.json``) is replaced: a folder holding
    anything else is never deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; an exported pipeline is a folder: give a folder path")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise UserError(f"{path} exists and is not empty; refusing to write a pipeline into it. Give a new "
                            "or empty folder, or use --force (overwrite=True) to replace a pipeline exported there")
        if not is_pretrained_folder(path):
            raise UserError(f"{path} is not empty and is not an exported pipeline (no {INDEX_FILE}); --force "
                            "replaces only a pipeline folder. Give a new or empty folder")
    return check_can_write(path, what="the pipeline folder")


def save_pretrained(system: "LatentVideoDiffusion", path: str | os.PathLike[str], *, overwrite: bool = False,
                    extra_files: Mapping[str, str | bytes] | None = None,
                    registry: Registry | None = None) -> Path:
    """Write ``system`` as a pipeline folder at ``path`` (see the module doc); return ``path``.

    Each component is stored under the name it is registered by in ``registry`` (default: the
    system's). ``extra_files`` (relative path -> text or bytes, e.g. ``README.md``) are written and
    listed too. The folder is written beside ``path`` and moved into place when complete, so a
    failure leaves ``path`` as it was; :func:`check_target` decides whether ``path`` may be used.
    """
    registry = registry if registry is not None else system.registry
    target = check_target(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = _fresh_folder(target.parent, f".{target.name}.tmp-")
    try:
        files: dict[str, bytes] = {}
        components: dict[str, Any] = {}
        for slot, kind, obj in component_slots(system):
            entry = _component_files(slot, kind, obj, registry, files)
            if slot.startswith("conditioners/"):
                components.setdefault("conditioners", []).append(entry)
            else:
                components[slot] = entry
        components.setdefault("conditioners", [])
        for slot in ("guidance", "sampler"):
            components.setdefault(slot, None)
        files[SYSTEM_FILE] = _json_bytes({
            "clip_shape": list(system.clip_shape),
            "latent_scale": float(system.latent_scale),
            "data": dict(system.data_info),
            "sample": dict(system.sample_settings),
        })
        for name, content in (extra_files or {}).items():
            rel = _safe_relative(name, "an extra file")
            if rel in files or rel == INDEX_FILE:
                raise UserError(f"extra file '{name}' would replace the pipeline's own {rel}")
            files[rel] = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        from vqvdm_core import __version__

        listing = {}
        for rel in sorted(files):
            data = files[rel]
            destination = work / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
            listing[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        index = {"format": FORMAT, "format_version": FORMAT_VERSION, "vqvdm_version": __version__,
                 "system": SYSTEM_FILE, "components": components, "files": listing}
        (work / INDEX_FILE).write_bytes(_json_bytes(index))
        _move_into_place(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def component_slots(system: "LatentVideoDiffusion") -> Iterator[tuple[str, str, Any]]:
    """``(folder, kind, component)`` of every component of ``system`` a pipeline folder stores."""
    yield "tokenizer", "tokenizer", system.tokenizer
    yield "denoiser", "denoiser", system.denoiser
    yield "schedule", "schedule", system.schedule
    for i, cond in enumerate(system.conditioners):
        yield f"conditioners/{i}", "conditioner", cond
    if system.guidance is not None:
        yield "guidance", "guidance", system.guidance
    if system.sampler is not None:
        yield "sampler", "sampler", system.sampler


def _component_files(slot: str, kind: str, obj: Any, registry: Registry,
                     files: dict[str, bytes]) -> dict[str, Any]:
    """Add ``slot``'s config (and weights) to ``files``; return its index entry."""
    from safetensors.torch import save

    entry = registered_entry(kind, obj, registry, what=slot.replace("/", " "))
    config = obj.inference_config() if kind == "tokenizer" else obj.config
    state = _state_of(obj, config) if isinstance(obj, nn.Module) else {}
    config_file = f"{slot}/{CONFIG_FILE}"
    files[config_file] = _json_bytes({"name": entry.name, **config.model_dump(mode="json")})
    weights_file = None
    if state:
        weights_file = f"{slot}/{WEIGHTS_FILE}"
        plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
        # One metadata key: safetensors writes several in no fixed order, and the same weights
        # should give the same file (and sha256) every time.
        files[weights_file] = save(plain, metadata={"format": "vqvdm-weights"})
    provider = entry.distribution if not entry.version else f"{entry.distribution} {entry.version}"
    return {"kind": kind, "name": entry.name, "provider": provider, "config": config_file,
            "weights": weights_file}


def _state_of(module: nn.Module, config: Any) -> dict[str, Tensor]:
    """The module's state dict, restricted to what a module built from ``config`` holds (a
    tokenizer's inference config may leave training-only networks out)."""
    state = module.state_dict()
    if config is getattr(module, "config", None) or config == getattr(module, "config", None):
        return dict(state)
    keys = set(type(module)(config).state_dict())  # type: ignore[call-arg]
    missing = sorted(keys - set(state))
    if missing:
        raise ComponentError(f"{type(module).__name__}.inference_config() builds a module with weights the "
                             f"trained one lacks: {', '.join(missing[:5])}")
    return {k: v for k, v in state.items() if k in keys}


def registered_entry(kind: str, obj: Any, registry: Registry, *, what: str | None = None) -> Entry:
    """The registry entry whose class ``obj`` is an instance of (exactly); the first name when a
    class is registered under several. An unregistered class is refused: it could not be found
    again by :meth:`~vqvdm_core.system.LatentVideoDiffusion.from_pretrained`."""
    cls = type(obj)
    found = [e for e in registry.entries(kind) if e.obj is cls]
    if not found:
        target = f"{cls.__module__}:{cls.__qualname__}"
        for e in registry.entries(kind):
            if e.target == target and e.conflict is None and e.error is None:
                try:
                    if registry.load(kind, e.name) is cls:
                        found.append(e)
                except ComponentError:
                    pass
    if not found:  # registered from a module path other than its own (e.g. a package's __init__)
        found = [e for e in registry.try_load_all(kind) if e.obj is cls]
    if not found:
        raise ComponentError(
            f"cannot save the {what or kind}: its class {cls.__module__}.{cls.__qualname__} is not a registered "
            f"{kind}, so a loader could not find it. Register it (vqvdm_core.register('{kind}', NAME, cls)) or "
            "install the plug-in that provides it")
    return found[0]


def _move_into_place(work: Path, target: Path) -> None:
    """Replace ``target`` (missing, empty, or a pipeline folder) by the complete folder ``work``."""
    old: Path | None = None
    if target.exists():
        if any(target.iterdir()):
            old = _fresh_folder(target.parent, f".{target.name}.old-")
            os.replace(target, old / "pipeline")
        else:
            target.rmdir()
    try:
        os.replace(work, target)
    except BaseException:
        if old is not None:
            os.replace(old / "pipeline", target)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fresh_folder(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<prefix><random>`` with the usual permissions (``mkdtemp``'s are
    private, and the pipeline folder is made by renaming it)."""
    while True:
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def verify_folder(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """Check a pipeline folder's index and every file it lists; return ``(folder, index)``.

    Raises one :class:`PretrainedFolderError` naming every missing or changed file.
    """
    folder = Path(path)
    if folder.is_file() and folder.name == INDEX_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: no such folder (an exported pipeline is a folder holding {INDEX_FILE})")
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        raise PretrainedFolderError(f"{folder} is not an exported vqvdm pipeline: it has no {INDEX_FILE} "
                                    "(make one with `vqvdm export RUN OUT_DIR`)")
    index = _read_json(index_path)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise PretrainedFolderError(f"{index_path} is not the index of a vqvdm pipeline (its 'format' is not "
                                    f"'{FORMAT}')")
    version = index.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        from vqvdm_core import __version__

        writer = index.get("vqvdm_version", "an unknown version")
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise PretrainedFolderError(
            f"{index_path}: pipeline format version {version!r} (written by vqvdm {writer}) cannot be read by "
            f"vqvdm {__version__}, which reads format version {FORMAT_VERSION}"
            + ("; upgrade vqvdm to load it" if newer else ""))
    listed = index.get("files")
    if not isinstance(listed, dict):
        raise PretrainedFolderError(f"{index_path} lists no files ('files' must map paths to their sha256)")
    problems: list[str] = []
    for name, record in listed.items():
        rel = _safe_relative(name, f"{index_path} lists a file", error=PretrainedFolderError)
        sha = record.get("sha256") if isinstance(record, dict) else None
        if not isinstance(sha, str) or not _SHA256.match(sha):
            problems.append(f"{rel} has no valid sha256 in {INDEX_FILE}")
            continue
        file = folder / rel
        if not file.is_file():
            problems.append(f"{rel} is missing")
        elif file_sha256(file) != sha:
            problems.append(f"{rel} does not match its sha256 in {INDEX_FILE} (changed or corrupt)")
    if problems:
        raise PretrainedFolderError(f"the pipeline {folder} cannot be loaded: " + "; ".join(problems)
                                    + ". Export it again or download it again")
    return folder, index


def read_pretrained(path: str | os.PathLike[str], *, registry: Registry) -> PretrainedParts:
    """Verify a pipeline folder and build its components (see :func:`verify_folder`)."""
    folder, index = verify_folder(path)
    listed = set(index["files"])
    components = index.get("components")
    if not isinstance(components, dict):
        raise PretrainedFolderError(f"{folder / INDEX_FILE} has no 'components' mapping")

    def build(slot: str, kind: str, required: bool = True) -> Any:
        entry = components.get(slot)
        if entry is None and not required:
            return None
        return _build(folder, slot, kind, entry, listed, registry)

    conditioners = components.get("conditioners") or []
    if not isinstance(conditioners, list):
        raise PretrainedFolderError(f"{folder / INDEX_FILE}: 'components.conditioners' must be a list")
    built = {
        "tokenizer": build("tokenizer", "tokenizer"),
        "denoiser": build("denoiser", "denoiser"),
        "schedule": build("schedule", "schedule"),
        "conditioners": [_build(folder, f"conditioners.{i}", "conditioner", entry, listed, registry)
                         for i, entry in enumerate(conditioners)],
        "guidance": build("guidance", "guidance", required=False),
        "sampler": build("sampler", "sampler", required=False),
    }
    system_file = index.get("system", SYSTEM_FILE)
    if system_file not in listed:
        raise PretrainedFolderError(f"{folder / INDEX_FILE} names {system_file!r}, which it does not list with a sha256")
    info = _read_json(folder / system_file)
    where = folder / system_file
    if not isinstance(info, dict):
        raise PretrainedFolderError(f"{where} must hold a JSON object")
    shape = info.get("clip_shape")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise PretrainedFolderError(f"{where}: clip_shape must be [frames, height, width], got {shape!r}")
    scale = info.get("latent_scale")
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise PretrainedFolderError(f"{where}: latent_scale must be a positive number, got {scale!r}")
    data_info, sample = info.get("data", {}), info.get("sample", {})
    if not isinstance(data_info, dict) or not isinstance(sample, dict):
        raise PretrainedFolderError(f"{where}: 'data' and 'sample' must be JSON objects")
    built.update(clip_shape=tuple(shape), latent_scale=float(scale), registry=registry)
    return PretrainedParts(components=built, data_info=data_info, sample_settings=sample, index=index)


def _build(folder: Path, slot: str, kind: str, entry: Any, listed: set[str], registry: Registry) -> Any:
    """Build the component of one index entry from its config file, and load its weights."""
    index_path = folder / INDEX_FILE
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("config"), str):
        raise PretrainedFolderError(f"{index_path}: the {slot} entry needs a 'name' and a 'config' file")
    name = entry["name"]
    files = {"config": entry["config"], "weights": entry.get("weights")}
    for role, rel in files.items():
        if rel is not None and (not isinstance(rel, str) or rel not in listed):
            raise PretrainedFolderError(f"{index_path}: the {slot}'s {role} file {rel!r} is not listed with a sha256")
    try:
        cls = registry.load(kind, name)
    except ComponentError as exc:
        provider = entry.get("provider") or "an unknown distribution"
        origin = ("registered in-process when it was saved" if provider == "<register>"
                  else f"from {provider}")
        raise ComponentError(f"{folder}: the {slot} is the {kind} '{name}' ({origin}), which cannot be "
                             f"loaded here: {exc}. Install the plug-in that provides it (or register it)") from None
    config_path = folder / files["config"]
    node = _read_json(config_path)
    if not isinstance(node, dict) or node.get("name") != name:
        raise PretrainedFolderError(f"{config_path} must be a node naming the {kind} '{name}' "
                                    f"(as {INDEX_FILE} does), got name {node.get('name') if isinstance(node, dict) else None!r}")
    try:
        config = cls.Config.model_validate({k: v for k, v in node.items() if k != "name"})  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise PretrainedFolderError(f"{config_path} is not a valid config of the {kind} '{name}' (saved by another "
                                    f"version of its plug-in?): {brief(exc, lines=4)}") from None
    obj = cls(config)
    weights = files["weights"]
    has_state = isinstance(obj, nn.Module) and bool(obj.state_dict())
    if weights is None:
        if has_state:
            raise PretrainedFolderError(f"{index_path}: the {slot} ({kind} '{name}') has weights but no weights file")
        return obj
    if not isinstance(obj, nn.Module):
        raise PretrainedFolderError(f"{index_path}: the {slot} ({kind} '{name}') has no weights, yet a weights "
                                    f"file {weights} is given")
    weights_path = folder / weights
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        state = load_file(weights_path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise PretrainedFolderError(f"cannot read {weights_path}: {brief(exc)}") from None
    from vqvdm_core.io.weights import check_finite

    check_finite(state, weights_path, advice="the weights are unusable; export the pipeline again from a run "
                 "whose training did not diverge")
    try:
        obj.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PretrainedFolderError(f"{weights_path} does not hold the weights of the {kind} '{name}' built from "
                                    f"{config_path.name}: {brief(exc, lines=2)}") from None
    return obj


def _read_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-finite number {constant}")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    except FileNotFoundError:
        raise PretrainedFolderError(f"{path} is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PretrainedFolderError(f"{path} is not valid JSON: {brief(exc)}") from None


def _safe_relative(name: Any, what: str, *, error: type[UserError] = UserError) -> str:
    """``name`` as a normalised relative POSIX path inside the folder; anything else is refused."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise error(f"{what} with an invalid path {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", ".", "") for part in name.split("/")):
        raise error(f"{what} outside the folder or with an unnormalised path: {name!r}")
    return str(pure)
