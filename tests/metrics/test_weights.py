"""Weight-file lookup: explicit path, per-file variable, weights folder, cache; clear error otherwise."""

from __future__ import annotations

import pytest

from vqvdm_core.errors import MissingFileError
from vqvdm_core.io.weights import find_weights, weights_cache_dir

ARGS = dict(description="a test network", source_url="https://example.org/net.pt")


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VQVDM_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("VQVDM_TEST_NET", raising=False)
    return tmp_path


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w")
    return path


def test_search_order_is_explicit_then_variable_then_folder_then_extra_then_cache(places, monkeypatch):
    cached = touch(weights_cache_dir() / "net.pt")
    assert cached == places / "xdg" / "vqvdm" / "weights" / "net.pt"
    assert find_weights("net.pt", env_var="VQVDM_TEST_NET", **ARGS) == cached
    extra = touch(places / "hub" / "net.pt")
    assert find_weights("net.pt", extra_dirs=[places / "hub"], **ARGS) == extra
    folder = touch(places / "folder" / "net.pt")
    monkeypatch.setenv("VQVDM_WEIGHTS_DIR", str(places / "folder"))
    assert find_weights("net.pt", env_var="VQVDM_TEST_NET", extra_dirs=[places / "hub"], **ARGS) == folder
    own = touch(places / "elsewhere" / "renamed.pt")
    monkeypatch.setenv("VQVDM_TEST_NET", str(own))
    assert find_weights("net.pt", env_var="VQVDM_TEST_NET", **ARGS) == own
    explicit = touch(places / "explicit.pt")
    assert find_weights("net.pt", explicit=explicit, env_var="VQVDM_TEST_NET", **ARGS) == explicit


def test_missing_explicit_path_is_an_error_even_if_the_cache_has_the_file(places):
    touch(weights_cache_dir() / "net.pt")
    with pytest.raises(MissingFileError, match=r"explicit\.pt does not exist.*'net\.pt': a test network"):
        find_weights("net.pt", explicit=places / "explicit.pt", **ARGS)


def test_missing_file_error_lists_every_place_and_the_source(places, monkeypatch):
    monkeypatch.setenv("VQVDM_WEIGHTS_DIR", str(places / "folder"))
    with pytest.raises(MissingFileError) as info:
        find_weights("net.pt", env_var="VQVDM_TEST_NET", extra_dirs=[places / "hub"], **ARGS)
    text = str(info.value)
    assert "missing weight file 'net.pt': a test network" in text
    assert "$VQVDM_TEST_NET (not set)" in text
    assert str(places / "folder" / "net.pt") in text
    assert str(places / "hub" / "net.pt") in text
    assert str(weights_cache_dir() / "net.pt") in text
    assert "https://example.org/net.pt" in text
