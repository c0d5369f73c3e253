"""Timing helpers shared by the benchmarks: synchronised wall-clock timing, medians after
warm-up, and interleaved repetitions so that two things compared in one ratio see the same
machine load (this machine is shared; drift between two separate timing blocks would
otherwise land in the ratio)."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued device work, so the clock measures it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved_times(fns: dict[str, Callable[[], object]], *, device: torch.device, warmup: int,
                      repeats: int, cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall seconds per call of each function; repetition k runs every function once (in
    turn), so slow phases of a shared machine hit all of them alike. The first `warmup`
    rounds are run and dropped (allocator, caches, lazy initialisation).

    `cpu_times`, when given, receives this process's CPU seconds per call (all its threads):
    on a machine shared with other jobs it moves far less than wall time, so it is kept as a
    cross-check of wall-time ratios (it also counts OpenMP threads spinning at barriers)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_index in range(warmup + repeats):
        for name, fn in fns.items():
            cpu_start = time.process_time()
            seconds = time_call(fn, device)
            cpu_seconds = time.process_time() - cpu_start
            if round_index >= warmup:
                times[name].append(seconds)
                if cpu_times is not None:
                    cpu_times.setdefault(name, []).append(cpu_seconds)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summary(values: list[float]) -> dict:
    """Median, min, max and count of a list of seconds (what the JSON details keep)."""
    return {"median_s": median(values), "min_s": float(min(values)), "max_s": float(max(values)),
            "repeats": len(values)}


@contextmanager
def torch_threads(count: int | None):
    """Run the body with `count` intra-op threads (None: leave as is)."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def machine_load() -> float | None:
    """1-minute load average (other processes compete for the cores), None where unknown."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None
