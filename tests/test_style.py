"""The Python code is formatted by ruff and passes its lint rules (pyproject.toml [tool.ruff]).

Fix a failure with `.venv/bin/ruff format . && .venv/bin/ruff check --fix .` (long lines by hand).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    """ruff from the venv (the dev extra), else from PATH; a missing ruff fails, never skips."""
    beside_python = Path(sys.executable).parent / "ruff"
    found = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    assert found, "ruff is not installed: `pip install -e '.[dev]'` (launch/setup does it)"
    return found


@pytest.mark.parametrize("args", [["format", "--check", "--diff"], ["check", "--no-fix"]], ids=["format", "lint"])
def test_ruff_clean(args: list[str]):
    result = subprocess.run([_ruff(), *args, "."], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"ruff {' '.join(args)}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
