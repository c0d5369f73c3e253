"""Stream shards into training batches (WebDataset), identically sized on every rank.

The pattern (docs/distributed-pitfalls.md, WebDataset section): WebDataset's default
node splitter raises, and `split_by_node` with uneven shards gives ranks different sample
counts, which deadlocks DDP at the end of an epoch. So:
  - explicit node splitter: rank r resamples from shards r, r+W, ... (all shards when there
    are fewer shards than ranks: then the per-rank seed alone makes ranks differ);
  - resampled shards: each DataLoader worker draws shards with replacement, forever;
  - explicit seeds: every random choice (shard draw, shuffle buffer, window start) comes from
    a seed mixed from (seed, epoch, rank, worker), never from time or pid;
  - batching inside the pipeline (in the workers), and the first `num_batches` batches of
    the endless stream as the epoch, so every rank yields exactly `num_batches` batches.
Loader workers ignore the stop signals (musicgan/stop_signals.py): a SIGTERM to the whole
process group must reach the trainer only, which stops at an agreed step and then shuts
its workers down.
Each song contributes one random window of `seq_len` steps per draw, cropped from the
song's whole encoding (zero-padded when shorter; `lengths` says how many steps are real).
A bar-based representation (`window_align` set) gets starts on bar lines and full windows
only; a song it cannot encode (`SongSkipped`: wrong metre, wrong number of parts) or that
is shorter than one window is counted in `loader.num_filtered` and logged (INFO) once with
its reason. The window then goes through `representation.augment(window, window_rng)`.

Determinism: two loaders built with the same (urls, representation, seq_len, batch_size,
seed, epoch, rank, world_size, num_workers) yield identical batches; the trainer resumes
mid-epoch by rebuilding the loader and discarding the first k batches.

Corrupt data: an unreadable shard (truncated, garbage, missing), a sample that does not
decode or whose meta is bad (`musicgan.data.bounds`: NaN or absurd tempos, a zero
time-signature denominator, a span of too many beats), or a song too long for the
representation's grid, is skipped with a logged warning naming the shard and sample and the running count;
the stream just draws on, so every rank still yields num_batches. `loader.num_skipped`
(samples) and `loader.num_shard_errors` read counters shared with the worker processes
(multiprocessing.Value), so they work with num_workers > 0; note that a resampled bad
shard is counted again each time it is drawn. If no sample at all can be read for a long
stretch (every shard broken), the loader raises DataError instead of spinning forever.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import multiprocessing
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import webdataset as wds

from musicgan import stop_signals
from musicgan.data.bounds import GridTooLarge
from musicgan.data.paths import local_shards
from musicgan.data.representations import Representation
from musicgan.data.shards import SampleError, decode_sample
from musicgan.data.song import Song
from musicgan.errors import DataError, SongSkipped

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 256  # samples (raw bytes: ~10-50 KB each for chorale-sized songs)
SHUFFLE_INITIAL = 32
MAX_DRAWS_WITHOUT_SAMPLE = 200  # shard draws in a row that yield nothing -> give up


@dataclass
class Batch:
    x: torch.Tensor  # (B, T, F) float32 (int64 for token representations)
    lengths: torch.Tensor  # (B,) int64 valid steps per row; the rest is zero padding
    keys: list[str]  # the source of each row (for divergence logs)
    # Per-song integer labels (`Song.labels`: a rendered note's pitch, program), one (B,)
    # int64 tensor per name any row has; -1 where a row's song lacks that label.
    labels: dict[str, torch.Tensor] = field(default_factory=dict)


def window_start(num_steps: int, seq_len: int, align: int | None, rng: np.random.Generator) -> int | None:
    """A random window start: anywhere (windows without `window_align`, drawn exactly as
    before bar grids existed), or a bar line leaving a full window (None: too short)."""
    if not align:
        return int(rng.integers(0, max(num_steps - seq_len, 0) + 1))
    count = (num_steps - seq_len) // align + 1
    return int(rng.integers(0, count)) * align if count > 0 else None


def batches_per_epoch(num_songs: int, batch_size: int, world_size: int) -> int:
    """ceil(num_songs / (batch_size * world_size)), at least 1: every song once per epoch on average."""
    return max(1, math.ceil(num_songs / max(1, batch_size * world_size)))


def split_shards_by_node(urls: list[str], rank: int, world_size: int) -> list[str]:
    """The explicit node splitter: disjoint shard subsets when there are enough shards."""
    if world_size <= 1 or len(urls) < world_size:
        return list(urls)
    return list(urls[rank::world_size])


def _mixed_seed(*parts) -> int:
    text = "/".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


class SkipCounters:
    """Counts shared between the main process and DataLoader workers."""

    def __init__(self) -> None:
        self.samples = multiprocessing.Value("q", 0)
        self.shards = multiprocessing.Value("q", 0)
        self.filtered = multiprocessing.Value("q", 0)

    @staticmethod
    def bump(value) -> int:
        with value.get_lock():
            value.value += 1
            return value.value


class _WindowBatches(torch.utils.data.IterableDataset):
    """The per-worker pipeline: resampled shards -> samples -> shuffle -> windows -> batches."""

    def __init__(self, urls, representation, seq_len, batch_size, seed, epoch, rank, world_size, counters) -> None:
        super().__init__()
        self.urls = list(urls)
        self.representation = representation
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed, self.epoch, self.rank, self.world_size = int(seed), int(epoch), int(rank), int(world_size)
        self.counters = counters
        self._warned: set = set()
        self._draws_without_sample = 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        seed = _mixed_seed("musicgan-loader", self.seed, self.epoch, self.rank, self.world_size, worker)
        shard_rng = random.Random(seed)
        shuffle_rng = random.Random(seed + 1)
        window_rng = np.random.default_rng(seed)
        self._draws_without_sample = 0
        shards = self._resampled(split_shards_by_node(self.urls, self.rank, self.world_size), shard_rng)
        samples = wds.tarfile_to_samples(handler=self._shard_error)(shards)
        samples = wds.shuffle(SHUFFLE_BUFFER, SHUFFLE_INITIAL, rng=shuffle_rng)(samples)
        windows = self._windows(samples, window_rng)
        return wds.batched(self.batch_size, collation_fn=self._collate, partial=False)(windows)

    def _resampled(self, urls: list[str], rng: random.Random):
        """Shard URLs drawn with replacement, forever. If this rank's own shards yield nothing
        (all corrupt), fall back to every shard so the rank keeps its batch count; give up with
        a DataError only when no shard at all yields a sample."""
        while True:
            if self._draws_without_sample >= MAX_DRAWS_WITHOUT_SAMPLE:
                if len(urls) < len(self.urls):
                    log.warning(
                        "rank %d: no usable sample in its %d shard(s) after %d reads; drawing from all %d shards",
                        self.rank,
                        len(urls),
                        MAX_DRAWS_WITHOUT_SAMPLE,
                        len(self.urls),
                    )
                    urls, self._draws_without_sample = list(self.urls), 0
                    continue
                raise DataError(
                    f"no usable sample in {MAX_DRAWS_WITHOUT_SAMPLE} shard reads from {len(urls)} shard(s) "
                    f"(e.g. {urls[0]}): are all shards corrupt, or all songs empty, skipped or shorter "
                    f"than one window in this representation?"
                )
            self._draws_without_sample += 1
            yield {"url": urls[rng.randrange(len(urls))]}

    def _shard_error(self, exn: Exception) -> bool:
        """WebDataset handler for shard-level errors: warn, count, carry on with the next shard."""
        count = SkipCounters.bump(self.counters.shards)
        url = next((a for a in reversed(exn.args) if isinstance(a, str) and a and a != str(exn.args[0])), "?")
        if ("shard", url) not in self._warned:
            self._warned.add(("shard", url))
            log.warning(
                "skipping unreadable shard %s: %s: %s (%d shard errors so far)",
                url,
                type(exn).__name__,
                str(exn.args[0] if exn.args else exn)[:160],
                count,
            )
        return True

    def _windows(self, samples, rng: np.random.Generator):
        rep: Representation = self.representation
        for sample in samples:
            url, key = sample.get("__url__", "?"), sample.get("__key__", "?")
            try:
                song = decode_sample(sample)
                steps = rep.encode(song)  # (T, F) for the whole song
            except SongSkipped as exc:
                self._filtered(song.source or key, str(exc))
                continue
            except (SampleError, GridTooLarge) as exc:
                count = SkipCounters.bump(self.counters.samples)
                if (url, key) not in self._warned:
                    self._warned.add((url, key))
                    log.warning("skipping sample %s in shard %s: %s (%d samples skipped so far)", key, url, exc, count)
                continue
            if len(steps) == 0:
                continue  # e.g. a drums-only song for a pitched representation: nothing to learn
            start = self._window_start(len(steps), rng)
            if start is None:
                self._filtered(song.source or key, f"shorter than one {self.seq_len}-step window")
                continue
            self._draws_without_sample = 0
            window = rep.augment(steps[start : start + self.seq_len], rng)
            x = np.zeros((self.seq_len, rep.num_features), dtype=rep.dtype)
            x[: len(window)] = window
            yield x, len(window), song.source or key, song.labels

    def _window_start(self, num_steps: int, rng: np.random.Generator) -> int | None:
        return window_start(num_steps, self.seq_len, self.representation.window_align, rng)

    def _filtered(self, source: str, reason: str) -> None:
        count = SkipCounters.bump(self.counters.filtered)
        if ("filtered", source) not in self._warned:
            self._warned.add(("filtered", source))
            # INFO, not WARNING: a filter doing its job is not a data fault (skip_summary counts
            # a whole dataset at once)
            log.info(
                "representation %s skips song %s: %s (%d skipped so far)",
                self.representation.name,
                source,
                reason,
                count,
            )

    @staticmethod
    def _collate(rows):
        x = torch.from_numpy(np.stack([r[0] for r in rows]))
        lengths = torch.tensor([r[1] for r in rows], dtype=torch.int64)
        names = sorted({name for r in rows for name in r[3]})
        labels = {n: torch.tensor([r[3].get(n, -1) for r in rows], dtype=torch.int64) for n in names}
        return x, lengths, [r[2] for r in rows], labels


class ShardLoader:
    """Iterable of exactly `num_batches` Batches (see module docstring); reusable."""

    def __init__(
        self, urls, representation, *, seq_len, batch_size, num_batches, seed, epoch, rank, world_size, num_workers=0
    ) -> None:
        urls = local_shards(urls)
        if not urls:
            raise DataError("no shards to load")
        if seq_len < 1 or batch_size < 1 or num_batches < 1:
            raise DataError(
                f"seq_len, batch_size and num_batches must be >= 1 (got {seq_len}, {batch_size}, {num_batches})"
            )
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}")
        representation.check_window(int(seq_len))
        self.num_batches = int(num_batches)
        self.num_workers = int(num_workers)
        self.counters = SkipCounters()
        self.dataset = _WindowBatches(
            urls, representation, seq_len, batch_size, seed, epoch, rank, world_size, self.counters
        )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        # A plain DataLoader iterated here (not WebLoader.with_epoch, which starts its workers
        # lazily at the first batch), so the workers start inside blocked_while_forking.
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=False,
            worker_init_fn=stop_signals.ignore_in_worker if self.num_workers else None,
        )
        with stop_signals.blocked_while_forking():
            batches = iter(loader)
        # The stream is endless (resampled shards): the epoch is its first num_batches batches.
        # When the consumer stops early, dropping `batches` shuts the workers down.
        for x, lengths, keys, labels in itertools.islice(batches, self.num_batches):
            yield Batch(x=x, lengths=lengths, keys=list(keys), labels=labels)

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far because they did not decode (all workers together)."""
        return int(self.counters.samples.value)

    @property
    def num_filtered(self) -> int:
        """Song draws the representation skipped (SongSkipped, or shorter than one window)."""
        return int(self.counters.filtered.value)

    @property
    def num_shard_errors(self) -> int:
        """Shard reads that failed (truncated, garbage, missing), all workers together."""
        return int(self.counters.shards.value)


def make_loader(
    urls, representation, *, seq_len, batch_size, num_batches, seed, epoch, rank, world_size, num_workers=0
) -> ShardLoader:
    """Yields exactly num_batches Batches; deterministic in its arguments (see module docstring)."""
    return ShardLoader(
        urls,
        representation,
        seq_len=seq_len,
        batch_size=batch_size,
        num_batches=num_batches,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
    )


def iter_songs(urls) -> Iterator[Song]:
    """Every song of the given shards once, in shard order (corrupt samples/shards skipped with a warning)."""

    def handler(exn: Exception) -> bool:
        log.warning("skipping unreadable shard data: %s", " ".join(str(a) for a in exn.args)[:240])
        return True

    samples = wds.tarfile_to_samples(handler=handler)({"url": u} for u in local_shards(urls))
    skipped = 0
    for sample in samples:
        try:
            song = decode_sample(sample)
        except SampleError as exc:
            skipped += 1
            log.warning(
                "skipping sample %s in shard %s: %s (%d samples skipped so far)",
                sample.get("__key__"),
                sample.get("__url__"),
                exc,
                skipped,
            )
            continue
        yield song


def iter_encoded(urls, representation: Representation) -> Iterator[tuple[Song, np.ndarray]]:
    """(song, its whole encoding (T, F)) for every song of `iter_songs(urls)`; a song too long
    for the representation's grid (`GridTooLarge`) is skipped with a warning, one the
    representation does not take (`SongSkipped`: metre, parts) with an INFO line, as in training."""
    for song in iter_songs(urls):
        try:
            yield song, representation.encode(song)
        except SongSkipped as exc:
            log.info("representation %s skips song %s: %s", representation.name, song.source, exc)
        except GridTooLarge as exc:
            log.warning("skipping %s: %s", song.source, exc)


def encoded_windows(
    urls, representation: Representation, length: int, starts: Callable[[int], Iterable[int]]
) -> Iterator[np.ndarray]:
    """The windows `steps[s : s + length]` of every song of `iter_encoded(urls, representation)`,
    at the starts `starts(num_steps)` picks for that song: the caller's rule (every whole
    window, a seeded sample of them, one where the loader's window would start)."""
    for _, steps in iter_encoded(urls, representation):
        for start in starts(len(steps)):
            yield steps[start : start + length]
