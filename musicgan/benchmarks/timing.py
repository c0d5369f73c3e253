"""Timing helpers shared by the benchmarks: synchronised wall-clock timing, medians, thread
settings. The benchmarks alternate the things one ratio compares (A, B, A, B, ...) so both
see the same machine load: this machine is shared, and drift between two separate timing
blocks would otherwise land in the ratio."""

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


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summary(values: list[float]) -> dict:
    """Median, min, max and count of a list of seconds (what the JSON details keep)."""
    return {
        "median_s": median(values),
        "min_s": float(min(values)),
        "max_s": float(max(values)),
        "repeats": len(values),
    }


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
