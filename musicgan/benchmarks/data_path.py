"""Data path throughput: shard streaming (decode + crop + encode + batch) in samples/s, and
`prepare` in files/s, each at 1 and 2 worker processes."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from musicgan.benchmarks.timing import median


def stream_samples_per_s(
    urls: list[str],
    representation,
    *,
    seq_len: int,
    batch_size: int,
    num_workers: int,
    num_batches: int,
    repeats: int,
    warmup_batches: int = 2,
) -> dict:
    """Samples/s the real loader (`make_loader`) delivers, after its first `warmup_batches`
    (worker start-up and shuffle-buffer fill are per epoch, not per sample). One fresh
    loader (a new epoch seed) per repetition; the median is the figure."""
    from musicgan.data.loader import make_loader

    rates = []
    for repeat in range(repeats):
        loader = make_loader(
            urls,
            representation,
            seq_len=seq_len,
            batch_size=batch_size,
            num_batches=num_batches + warmup_batches,
            seed=1234,
            epoch=repeat,
            rank=0,
            world_size=1,
            num_workers=num_workers,
        )
        start = None
        samples = 0
        for index, batch in enumerate(loader):
            if index == warmup_batches - 1 or (warmup_batches == 0 and start is None):
                start = time.perf_counter()
                continue
            if start is not None:
                samples += batch.x.shape[0]
        elapsed = time.perf_counter() - start
        rates.append(samples / elapsed)
    return {
        "samples_per_s": median(rates),
        "all_samples_per_s": rates,
        "num_workers": num_workers,
        "batches": num_batches,
        "batch_size": batch_size,
        "seq_len": seq_len,
    }


def prepare_files_per_s(spec: str, *, workers: int, limit: int | None, repeats: int = 1) -> dict:
    """Files (songs read, converted and written to shards) per second of `prepare_dataset`."""
    from musicgan.data.prepare import prepare_dataset

    rates = []
    files = 0
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="musicgan-bench-prepare-"))
        try:
            start = time.perf_counter()
            manifest = prepare_dataset(spec, out, workers=workers, shard_size=64, progress=False, limit=limit)
            elapsed = time.perf_counter() - start
        finally:
            shutil.rmtree(out, ignore_errors=True)
        files = len(manifest["included"]) + len(manifest["skipped"])
        rates.append(files / elapsed)
    return {"files_per_s": median(rates), "files": files, "workers": workers, "all_files_per_s": rates}
