"""Image recipes without Docker: mirror discovery, package list, recipe shas."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.images.debootstrap import DEFAULT_MIRROR, debian_mirror, host_mirror
from sandbox.images.recipes import (
    ContextFile,
    base_recipe_sha,
    context_sha,
    read_packages,
    stubs_context,
)


def test_mirror_from_deb822(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert host_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_from_one_line_format(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/x.gpg] http://one.example/debian bookworm main\n"
    )
    assert host_mirror(tmp_path) == "http://one.example/debian"


def test_no_mirror_configured(tmp_path: Path) -> None:
    assert host_mirror(tmp_path) is None


def test_env_overrides_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    assert debian_mirror() == "http://127.0.0.1:9/debian"
    monkeypatch.delenv("SANDBOX_DEBIAN_MIRROR")
    assert debian_mirror() in {host_mirror(), DEFAULT_MIRROR}


def test_package_list_has_what_agents_expect() -> None:
    packages = read_packages()
    for name in ("bash", "coreutils", "python3", "procps", "curl", "git", "cron"):
        assert name in packages
    assert not [p for p in packages if "#" in p or " " in p]


def test_base_sha_depends_on_packages_not_order() -> None:
    assert base_recipe_sha(["a", "b"]) == base_recipe_sha(["b", "a"])
    assert base_recipe_sha(["a", "b"]) != base_recipe_sha(["a", "b", "c"])


def test_context_sha_tracks_content_and_names(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("one")
    first = context_sha([ContextFile("f", src)], extra=["base=1"])
    assert first == context_sha([ContextFile("f", src)], extra=["base=1"])
    assert first != context_sha([ContextFile("g", src)], extra=["base=1"])
    assert first != context_sha([ContextFile("f", src)], extra=["base=2"])
    src.write_text("two")
    assert first != context_sha([ContextFile("f", src)], extra=["base=1"])


def test_stubs_context_is_laid_out_like_the_repo() -> None:
    names = [f.arcname for f in stubs_context()]
    assert all(n.startswith(("containers/stubs/", "sandbox/stubs/")) for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
