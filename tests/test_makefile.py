"""`make prereqs` (run first by `make install`) names the missing Debian package.

Each case runs the real Makefile with PYTHON pointing at a Python that lacks one piece: a
name that does not exist, and a real interpreter whose `ensurepip` cannot be imported (what
Debian's python3.11 is without python3.11-venv).

    .venv/bin/python -m pytest -q tests/test_makefile.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _prereqs(python: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "prereqs", f"PYTHON={python}"],
                          capture_output=True, text=True, timeout=60, env=env)


def test_prereqs_pass_on_this_machine():
    out = _prereqs(sys.executable)
    assert out.returncode == 0, out.stderr


def test_a_missing_python_is_named():
    out = _prereqs("python3.11-not-here")
    assert out.returncode != 0
    assert "python3.11-not-here is missing: apt-get install python3.11" in out.stderr


def test_a_python_without_venv_names_python3_11_venv(tmp_path):
    # A real interpreter that cannot import ensurepip: Debian's python3.11 without the venv package.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text("raise ImportError('no ensurepip: python3.11-venv is not installed')\n")
    wrapper = tmp_path / "python-no-venv"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shadow} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    out = _prereqs(str(wrapper), env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode != 0
    assert "-m venv is missing: apt-get install python3.11-venv" in out.stderr


def test_torch_index_is_an_option():
    """`make install TORCH_INDEX=...` passes the index to the torch install only."""
    dry = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), ".venv/.installed",
                          "TORCH_INDEX=https://download.pytorch.org/whl/cpu"],
                         capture_output=True, text=True, timeout=60)
    torch_lines = [line for line in dry.stdout.splitlines() if "torch==" in line and "pip" in line]
    assert torch_lines and all("--index-url https://download.pytorch.org/whl/cpu" in line for line in torch_lines)
    others = [line for line in dry.stdout.splitlines() if "pip" in line and "install" in line and "torch==" not in line]
    assert others and not any("--index-url" in line for line in others)
    plain = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), ".venv/.installed"],
                           capture_output=True, text=True, timeout=60)
    assert "--index-url" not in plain.stdout
