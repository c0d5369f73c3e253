"""Plain torch checkpoints, written atomically, the last K kept, the newest valid one found.

A checkpoint is one `.pt` whose top-level dict holds every network's state dict under
`networks` (format 2; `network_states` still reads format 1, which kept `generator` and
`discriminator` at the top level) plus everything a resume needs: optimizer states,
step, epoch, position inside the epoch, held networks, representation state and config.
`generator` and `discriminator` stay as top-level aliases (empty dict when the family has
no such network), so `torch.load(path, weights_only=True)["generator"]` keeps working; an
alias shares its tensors with `networks`, so torch.save stores them once.
Only tensors, numbers, strings, lists and dicts: it loads with `weights_only=True`.
RNG states are not needed: the loop reseeds torch from (seed, rank, step) at every step.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from musicgan.errors import UserError

log = logging.getLogger("musicgan")

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
_NAME = re.compile(r"^step-(\d{8})\.pt$")
FORMAT_VERSION = 2
ALIASES = ("generator", "discriminator")  # top-level keys the README promises


class CheckpointWriteError(UserError):
    """The checkpoint could not be written (e.g. disk full); the previous one is intact."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Write via a temp file in the same directory, fsync, rename: all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(run_dir: str | Path, state: dict, step: int, keep: int) -> Path:
    """Write `state` as step-XXXXXXXX.pt, point `latest` at it, prune to the newest `keep`."""
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(step)
    previous = list_checkpoints(run_dir)
    try:
        _atomic_write(path, lambda handle: torch.save(state, handle))
        _atomic_write(directory / LATEST, lambda handle: handle.write(path.name.encode() + b"\n"))
    except OSError as exc:
        kept = previous[-1].name if previous else "none"
        raise CheckpointWriteError(
            f"could not write checkpoint {path} ({exc.strerror or exc}); previous checkpoint {kept} is intact"
        ) from None
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint on the CPU with `weights_only=True` (no pickle code execution)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def pack_networks(states: dict[str, dict]) -> dict:
    """The format-2 network entries of a checkpoint: `networks` plus the top-level aliases."""
    return {"networks": dict(states), **{name: states.get(name, {}) for name in ALIASES},
            "format_version": FORMAT_VERSION}


def network_state(state: dict, name: str) -> dict:
    """Network `name`'s state dict from a format-2 or format-1 checkpoint."""
    if name in state.get("networks", {}):
        return state["networks"][name]
    if state.get("format_version", 1) == 1 and name in ALIASES and name in state:
        return state[name]
    raise UserError(f"the checkpoint has no network {name!r} (it holds "
                    f"{', '.join(sorted(set(state.get('networks', {})) | {a for a in ALIASES if state.get(a)}))})")


def _is_complete(state: object) -> bool:
    return isinstance(state, dict) and "generator" in state and "step" in state


def find_latest_valid(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; unreadable or truncated ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file means "try the previous one"
            log.warning("skipping unreadable checkpoint %s: %s", path, str(exc).splitlines()[0] if str(exc) else exc)
            continue
        if not _is_complete(state):
            log.warning("skipping incomplete checkpoint %s", path)
            continue
        return path, state
    return None


def resolve_checkpoint(run_dir: str | Path, checkpoint: str | Path | None = None) -> Path:
    """The file `musicgan sample` / `evaluate` read: an explicit one, else the newest valid."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"checkpoint not found: {path}")
        return path
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    found = find_latest_valid(run_dir)
    if found is None:
        raise UserError(f"no readable checkpoint in {checkpoint_dir(run_dir)}")
    return found[0]
