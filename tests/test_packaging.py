"""Packaging: the version is written in Cargo.toml alone, and CI tests the installed wheel."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

import pytest

import rustoptim
from rustoptim import _core

ROOT = Path(__file__).resolve().parent.parent


def toml_table(path: Path, table: str) -> str:
    """The text of ``[table]`` in a TOML file (tomllib is not in Python 3.9/3.10)."""
    text = path.read_text()
    assert f"[{table}]" in text, f"no [{table}] in {path}"
    return text.split(f"[{table}]", 1)[1].split("\n[", 1)[0]


def test_version_is_cargo_tomls_everywhere():
    match = re.search(r'^version\s*=\s*"([^"]+)"', toml_table(ROOT / "Cargo.toml", "package"), re.MULTILINE)
    assert match, "no version in Cargo.toml's [package]"
    version = match.group(1)
    assert _core.__version__ == version
    assert rustoptim.__version__ == version
    assert importlib.metadata.version("rustoptim") == version


def test_pyproject_takes_its_version_from_cargo():
    project = toml_table(ROOT / "pyproject.toml", "project")
    assert re.search(r'^dynamic\s*=\s*\[\s*"version"\s*\]', project, re.MULTILINE)
    assert not re.search(r"^version\s*=", project, re.MULTILINE)


@pytest.mark.skipif(not os.environ.get("RUSTOPTIM_TEST_INSTALLED"),
                    reason="set by .ci/run, which runs the suite against the installed wheel")
def test_the_suite_imports_the_installed_wheel():
    venv = Path(os.environ["RUSTOPTIM_TEST_INSTALLED"]).resolve()
    package = Path(rustoptim.__file__).resolve()
    assert venv in package.parents and "site-packages" in package.parts, (
        f"rustoptim was imported from {package}, not from the wheel installed in {venv}"
    )
    assert Path(_core.__file__).resolve().parent == package.parent
    assert Path(sys.prefix).resolve() == venv
    source = (ROOT / "python").resolve()
    assert not [p for p in sys.path if Path(p or ".").resolve() == source], f"{source} is on sys.path"
