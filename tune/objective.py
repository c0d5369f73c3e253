"""The sweep's objective: the metrics package's realism score of a checkpoint's samples
against real excerpts of the valid split.

Comparable across trials: every trial generates `num_songs` excerpts of ONE length fixed
for the whole sweep (the base preset's curriculum.max_len unless told otherwise), whatever
curriculum it samples, and every trial compares them with the same reference excerpts.
The reference (windows of that length cut from the valid songs, decoded back through the
representation so both sides went through the same encoding) is computed once per sweep by
the driver, cached on disk by content hash (musicgan.metrics.cache), and shipped to the
trials through Ray's object store.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from musicgan.config import Config
from musicgan.data.song import Song
from musicgan.errors import DataError

OBJECTIVE = "realism"  # the metric name Tune optimises (mode "max")


def reference_windows(cfg: Config, data: str, length: int, max_songs: int, seed: int = 0) -> list[Song]:
    """Up to `max_songs` real excerpts of `length` representation steps from the valid split
    (the train split when a tiny dataset has no valid songs), spread over all valid songs:
    a small valid split of long songs still gives enough excerpts for distance statistics."""
    from musicgan.data.loader import encoded_windows
    from musicgan.data.shards import load_manifest, split_urls
    from musicgan.training.families import get_family

    try:
        urls, split = split_urls(data, "valid"), "valid"
    except DataError:
        urls, split = split_urls(data, "train"), "train"
    num_songs = max(1, int(load_manifest(data)["splits"][split]["songs"]))
    per_song = max(1, math.ceil(max_songs / num_songs))
    rep = get_family(cfg).build_representation()
    rng = np.random.default_rng(seed)

    def chosen_starts(num_steps: int) -> list[int]:
        if num_steps == 0:
            return []
        starts = np.arange(0, max(1, num_steps - length + 1), length)  # non-overlapping
        return sorted(rng.choice(starts, min(per_song, len(starts)), replace=False))

    windows: list[Song] = []
    for steps in encoded_windows(urls, rep, length, chosen_starts):  # steps: (length, F)
        windows.append(rep.decode(steps))
        if len(windows) >= max_songs:
            break
    return windows[:max_songs]


def reference_statistics(cfg: Config, data: str, length: int, max_songs: int):
    """SetStatistics of the reference excerpts, from the on-disk cache when unchanged."""
    from musicgan.data.shards import split_urls
    from musicgan.metrics import cache
    from musicgan.metrics.distributions import compute_statistics

    try:
        urls = split_urls(data, "valid")
    except DataError:
        urls = split_urls(data, "train")
    d = cfg.data
    key = cache.content_hash(
        urls,
        purpose="tune-reference-windows",
        length=length,
        max_songs=max_songs,
        model=cfg.model.name,
        representation=[d.representation, d.tones_per_step, d.pitch_unit, d.time_unit, d.frames_per_beat, d.transpose],
    )

    def compute():
        songs = reference_windows(cfg, data, length, max_songs)
        if len(songs) < 2:
            raise DataError(f"{data}: fewer than 2 real excerpts of length {length} for the objective")
        return compute_statistics(songs, workers=1), songs[:4]

    stats, _, _ = cache.cached_statistics(key, compute)
    return stats


def evaluate_checkpoint(
    run_dir: str | Path, checkpoint: str | Path, reference, num_songs: int, length: int, seed: int = 0
) -> dict[str, float]:
    """{"realism": score in [0, 1] (NaN when undefined), "eval/empty_songs": count} for the
    generator stored in `checkpoint`, sampled with a fixed seed (torch's global RNG state is
    restored afterwards, so training is not disturbed)."""
    import torch

    from musicgan.metrics.distributions import compute_statistics, realism_score
    from musicgan.metrics.reference import fixed_length_exclusions
    from musicgan.training.sampling import decode_all, load_run

    _, family, representation, networks, _ = load_run(run_dir, checkpoint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        steps = family.generate(networks, num_songs, length)  # (num_songs, length, F)
    generated = compute_statistics(decode_all(representation, steps), workers=1)
    # Fixed-length note excerpts: note_count measures the excerpting, not the music (as in
    # `musicgan evaluate` under a reference window).
    score = realism_score(reference, generated, seed=seed, workers=1, exclude=fixed_length_exclusions(reference))
    return {OBJECTIVE: float(score), "eval/empty_songs": float(generated.num_empty)}
