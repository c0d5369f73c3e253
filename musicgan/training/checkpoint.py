"""Plain torch checkpoints, written atomically, the last K kept, the newest valid one found.

A run directory belongs to one run: its checkpoints/history.json lists the checkpoints it
wrote, oldest first. Pruning and resuming read that history, never step numbers alone, so
files of another run (or of an attempt that crashed) are never mistaken for the newest or
pruned in place of the run's own. A fresh run refuses a directory that already holds
checkpoints (`claim_run_dir`) unless told to archive them.

A checkpoint is one `.pt` whose top-level dict holds every network's state dict under
`networks` (format 2; `network_state` still reads format 1, which kept `generator` and
`discriminator` at the top level) plus everything a resume needs: optimizer states,
step, epoch, position inside the epoch, held networks, representation state and config.
`generator` and `discriminator` stay as top-level aliases (empty dict when the family has
no such network), so `torch.load(path, weights_only=True)["generator"]` keeps working; an
alias shares its tensors with `networks`, so torch.save stores them once.
Only tensors, numbers, strings, lists and dicts: it loads with `weights_only=True`.
RNG states are not needed: the loop reseeds torch from (seed, rank, step) at every step.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import time
from pathlib import Path

import torch

from musicgan.errors import UserError, first_line

log = logging.getLogger("musicgan")

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
HISTORY = "history.json"  # in checkpoints/: the names this run wrote, oldest first
ARCHIVE_DIR = "archive"  # in the run directory: what --overwrite moved aside, one folder per overwrite
_NAME = re.compile(r"^step-(\d{8})\.pt$")
FORMAT_VERSION = 2
ALIASES = ("generator", "discriminator")  # top-level keys the README promises


class CheckpointWriteError(UserError):
    """The checkpoint could not be written (e.g. disk full); the previous one is intact."""


class CheckpointMismatchError(UserError):
    """A checkpoint's weights do not fit the network built from the config (another size)."""


class RunDirInUseError(UserError):
    """A fresh run was pointed at a run directory that holds another run's checkpoints."""


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


def read_history(run_dir: str | Path) -> list[str] | None:
    """Checkpoint names the run wrote, oldest first; None for a directory without a (readable)
    history, e.g. one written before histories existed or restored by Tune."""
    path = checkpoint_dir(run_dir) / HISTORY
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(names, list):
        return None
    return [n for n in names if isinstance(n, str) and _NAME.match(n)]  # never a path from outside


def own_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's own checkpoint files that exist, oldest written first (its history; without
    one, every checkpoint file in step order)."""
    names = read_history(run_dir)
    if names is None:
        return list_checkpoints(run_dir)
    directory = checkpoint_dir(run_dir)
    return [directory / name for name in names if (directory / name).is_file()]


def _past_of(run_dir: str | Path, step: int) -> list[Path]:
    """The checkpoints a save at `step` continues: the run's history; without one (a directory
    from before histories, or a checkpoint Tune restored), the files of lower steps only, so a
    foreign file of a higher step is never taken for this run's and never pruned."""
    if read_history(run_dir) is not None:
        return own_checkpoints(run_dir)
    return [p for p in list_checkpoints(run_dir) if int(_NAME.match(p.name).group(1)) < step]


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
    except BaseException as exc:
        full = isinstance(exc, RuntimeError) and _nearly_full(path.parent)  # before the unlink frees space
        tmp.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
        raise


def _nearly_full(directory: Path) -> bool:
    """torch.save reports a full disk as a RuntimeError about stream positions; a failed write
    with under 1 MiB left where it was writing is taken for that."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 2**20


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)


def save_checkpoint(run_dir: str | Path, state: dict, step: int, keep: int) -> Path:
    """Write `state` as step-XXXXXXXX.pt, point `latest` at it, keep the run's newest `keep`."""
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(step)
    previous = _past_of(run_dir, step)
    try:
        _atomic_write(path, lambda handle: torch.save(state, handle))
        _atomic_write(directory / LATEST, lambda handle: handle.write(path.name.encode() + b"\n"))
        history = [p.name for p in previous if p.name != path.name] + [path.name]
        _atomic_write(directory / HISTORY, lambda handle: handle.write(json.dumps(history[-keep:]).encode()))
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        kept = next((p.name for p in reversed(previous) if p.name != path.name), "none")
        raise CheckpointWriteError(
            f"could not write checkpoint {path} ({_reason(exc)}); previous checkpoint {kept} is intact"
        ) from None
    for old in history[:-keep]:
        (directory / old).unlink(missing_ok=True)
    return path


def save_or_error(run_dir: str | Path, build_state, step: int, keep: int) -> tuple[Path | None, str | None]:
    """Rank 0's write as (path, None) or (None, one-line error), never raising: the caller
    broadcasts the outcome, so a failure of any kind ends every rank at once instead of
    leaving the others blocked in the next collective until the timeout."""
    try:
        return save_checkpoint(run_dir, build_state(), step, keep), None
    except CheckpointWriteError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure must reach the other ranks as one line
        where = checkpoint_dir(run_dir) / checkpoint_name(step)
        return None, f"could not write checkpoint {where}: {type(exc).__name__}: {first_line(exc)}"


def claim_run_dir(run_dir: str | Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Called by a run before it writes anything. A fresh run refuses a directory holding
    checkpoints (they would be resumed, sampled or kept in place of its own), unless
    `overwrite`: then everything there moves to archive/<time>/, which it returns."""
    existing = list_checkpoints(run_dir)
    if resume or not existing:
        return None
    if not overwrite:
        raise RunDirInUseError(
            f"run directory {run_dir} holds another run's checkpoints (newest {existing[-1].name}): "
            f"add --resume to continue that run, choose a new --run-dir, or add --overwrite to archive them"
        )
    return archive_run_dir(run_dir)


def archive_run_dir(run_dir: str | Path) -> Path:
    """Move every entry of `run_dir` (earlier archives excepted) into archive/<UTC time>/:
    renames within one file system, so nothing is copied and nothing is deleted."""
    run_dir = Path(run_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = run_dir / ARCHIVE_DIR / stamp
    suffix = 1
    while target.exists():  # two overwrites within one second
        target, suffix = run_dir / ARCHIVE_DIR / f"{stamp}-{suffix}", suffix + 1
    target.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name != ARCHIVE_DIR:
            os.replace(entry, target / entry.name)
    log.warning("archived the previous contents of %s to %s", run_dir, target)
    return target


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint on the CPU with `weights_only=True` (no pickle code execution)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_network(net: torch.nn.Module, weights: dict, *, name: str, source: str | Path, hint: str = "") -> None:
    """`net.load_state_dict(weights)`, refusing in one line that names the first tensor whose
    shape differs, or the missing and unexpected ones (torch lists every tensor on many lines)."""
    expected = net.state_dict()
    for key, tensor in weights.items():
        # Entries that are not tensors (a module's `get_extra_state`, e.g. MuseGAN's track
        # order) have no shape; the module's own set_extra_state checks them.
        if key in expected and torch.is_tensor(tensor) and tuple(expected[key].shape) != tuple(tensor.shape):
            raise CheckpointMismatchError(
                f"checkpoint {source} is for another model size: {name} {key} is {list(tensor.shape)} there, "
                f"{list(expected[key].shape)} here{hint}"
            )
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"checkpoint {source} does not fit this {name}: {len(missing)} tensors missing "
            f"({', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected "
            f"({', '.join(unexpected[:3]) or '-'}){hint}"
        )
    net.load_state_dict(weights)


def model_differences(saved_config: dict, current: dict) -> str:
    """ ", written with model.g_hidden=16 (this run: 32)" for every `model.*` value that differs."""
    saved, now = saved_config.get("model", {}), current.get("model", {})
    diffs = [f"model.{k}={saved[k]!r} (this run: {now[k]!r})" for k in sorted(saved) if k in now and saved[k] != now[k]]
    return f"; the checkpoint was written with {', '.join(diffs)}" if diffs else ""


def pack_networks(states: dict[str, dict]) -> dict:
    """The format-2 network entries of a checkpoint: `networks` plus the top-level aliases."""
    return {
        "networks": dict(states),
        **{name: states.get(name, {}) for name in ALIASES},
        "format_version": FORMAT_VERSION,
    }


def network_state(state: dict, name: str) -> dict:
    """Network `name`'s state dict from a format-2 or format-1 checkpoint."""
    if name in state.get("networks", {}):
        return state["networks"][name]
    if state.get("format_version", 1) == 1 and name in ALIASES and name in state:
        return state[name]
    raise UserError(
        f"the checkpoint has no network {name!r} (it holds "
        f"{', '.join(sorted(set(state.get('networks', {})) | {a for a in ALIASES if state.get(a)}))})"
    )


def _is_complete(state: object) -> bool:
    return isinstance(state, dict) and "generator" in state and "step" in state


def find_latest_valid(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; unreadable or truncated ones are skipped with a warning."""
    for path in reversed(own_checkpoints(run_dir)):
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
