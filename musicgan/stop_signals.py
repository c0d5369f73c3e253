"""The signals that ask a run to stop cleanly, and how loader worker processes stay out of it.

SIGTERM and SIGINT usually reach a whole process group (`timeout`, `kill -TERM -PGID`, SLURM
time limits, `scancel`, Ctrl-C), so DataLoader workers get them too; torch's worker handler
then kills the worker and the main process dies with "DataLoader worker exited unexpectedly"
before it can checkpoint. Workers therefore ignore the stop signals: the main process alone
decides (at an agreed step, with a checkpoint) and then shuts its workers down itself. The
signals stay blocked in the parent while it forks the workers, so no signal can land in the
moment between the fork and the worker ignoring it; blocked signals are delivered to the
parent when the fork is done, not lost.

The training process itself catches them (`catch_stop_signals`) into a `StopFlag` that the
loop reads into its per-step all-reduce, so every rank stops at the same step.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR2")


def _signals() -> list[signal.Signals]:
    return [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]


def ignore_in_worker(_worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: this worker process ignores the stop signals."""
    for sig in _signals():
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def blocked_while_forking():
    """Hold the stop signals back in this thread while it starts worker processes (they
    inherit the blocked mask until `ignore_in_worker` runs); delivered right after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StopFlag:
    """Set by a stop signal; the loop reads `reason` into the per-step all-reduce."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum, _frame) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"


@contextmanager
def catch_stop_signals(flag: StopFlag):
    """`flag` handles the stop signals inside the block; the previous handlers come back after."""
    previous = {}
    for sig in _signals():
        try:
            previous[sig] = signal.signal(sig, flag)
        except ValueError:  # not the main thread (e.g. inside some Ray actors)
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
