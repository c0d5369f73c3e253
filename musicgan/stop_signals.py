"""The signals that ask a run to stop cleanly, and how loader worker processes stay out of it.

SIGTERM and SIGINT usually reach a whole process group (`timeout`, `kill -TERM -PGID`, SLURM
time limits, `scancel`, Ctrl-C), so DataLoader workers get them too; torch's worker handler
then kills the worker and the main process dies with "DataLoader worker exited unexpectedly"
before it can checkpoint. Workers therefore ignore the stop signals: the main process alone
decides (at an agreed step, with a checkpoint) and then shuts its workers down itself. The
signals stay blocked in the parent while it forks the workers, so no signal can land in the
moment between the fork and the worker ignoring it; blocked signals are delivered to the
parent when the fork is done, not lost.
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
