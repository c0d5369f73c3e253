"""The few collectives the trainer uses, each one identical on every rank, each failure
turned into a message that names the operation, the step and this rank."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist

from musicgan.errors import UserError, first_line


class CollectiveError(UserError):
    """A collective failed or timed out: a peer died, stalled or diverged."""


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _fail(op: str, what: str, exc: Exception) -> CollectiveError:
    rank = dist.get_rank() if dist.is_initialized() else 0
    return CollectiveError(
        f"collective {op}({what}) failed on rank {rank} of {dist.get_world_size()}: "
        f"a peer rank died, stalled past dist.timeout_s or took another branch ({first_line(exc)})"
    )


# How a process-group failure reads inside another call (DDP's gradient all-reduce runs in
# `backward()`): gloo and NCCL timeouts and lost connections.
PEER_FAILURE_SIGNS = ("timed out", "connection closed", "connection reset", "nccl", "gloo")


@contextmanager
def peer_failures_named(op: str, what: str) -> Iterator[None]:
    """Inside the block, a peer's failure (several ranks, a timeout or lost connection)
    raises as a CollectiveError naming `op(what)`; any other error passes unchanged."""
    try:
        yield
    except RuntimeError as exc:
        if _active() and any(sign in str(exc).lower() for sign in PEER_FAILURE_SIGNS):
            raise _fail(op, what, exc) from exc
        raise


def all_reduce_mean(values: torch.Tensor, what: str = "values") -> torch.Tensor:
    """Mean over ranks of a small float tensor (CPU or the backend's device)."""
    if not _active():
        return values
    out = values.clone()
    try:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    except (RuntimeError, ValueError) as exc:
        raise _fail("all_reduce", what, exc) from exc
    return out / dist.get_world_size()


def all_reduce_max(values: torch.Tensor, what: str = "flags") -> torch.Tensor:
    if not _active():
        return values
    out = values.clone()
    try:
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    except (RuntimeError, ValueError) as exc:
        raise _fail("all_reduce", what, exc) from exc
    return out


def broadcast_object(obj: Any, what: str = "object", src: int = 0) -> Any:
    if not _active():
        return obj
    box = [obj]
    try:
        dist.broadcast_object_list(box, src=src)
    except (RuntimeError, ValueError) as exc:
        raise _fail("broadcast", what, exc) from exc
    return box[0]


def barrier(what: str = "barrier") -> None:
    if not _active():
        return
    try:
        # monitored_barrier (gloo) names the rank that did not arrive; NCCL has only barrier.
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(wait_all_ranks=True)
        else:
            dist.barrier()
    except (RuntimeError, ValueError) as exc:
        raise _fail("barrier", what, exc) from exc


def all_gather_object(obj: Any, what: str = "objects") -> list[Any]:
    """Every rank's `obj`, in rank order (only on rare paths: divergence reports)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(out, obj)
    except (RuntimeError, ValueError) as exc:
        raise _fail("all_gather", what, exc) from exc
    return out
