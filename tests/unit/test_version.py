"""One source for the version: app/pyproject.toml's [project] version, read from the installed
package's metadata everywhere else; CHANGELOG.md has an entry for it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import sumflow
from sumflow.entrypoints.openapi import openapi_document

REPO = Path(__file__).resolve().parents[2]
PYPROJECT_VERSION = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())["project"]["version"]


def test_package_version_is_the_pyproject_version():
    assert sumflow.__version__ == PYPROJECT_VERSION
    assert openapi_document()["info"]["version"] == PYPROJECT_VERSION


def test_the_version_is_typed_nowhere_else():
    literal = re.compile(rf"(?<![\d.]){re.escape(PYPROJECT_VERSION)}(?![\d.])")
    suffixes = {".py", ".yml", ".yaml", ".j2", ".js", ".sh", ".toml", ".cfg"}
    typed = [
        str(path.relative_to(REPO))
        for top in ("app/src", "roles", "playbooks", "observability", "scripts", "load", "inventory")
        for path in (REPO / top).rglob("*")
        if path.is_file() and path.suffix in suffixes and literal.search(path.read_text(errors="replace"))
    ]
    assert typed == []


def test_changelog_has_an_entry_for_the_version():
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"(?m)^## \[{re.escape(PYPROJECT_VERSION)}\]", changelog)
