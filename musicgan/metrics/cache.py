"""Reference statistics cached by content hash, so re-evaluating against a split is instant.

The key is a SHA-256 over the bytes of every input file (shards of the split, or the MIDI
files of a folder) plus the split, the song limit, the feature version and the metric
names: change any shard, feature definition or metric and the key changes. Entries live in
`$MUSICGAN_CACHE` or `~/.cache/musicgan`, under `reference-stats/<key>.npz` (plain
arrays, loadable with allow_pickle=False) with a `<key>.json` beside it (counts, song
names, a few example songs for the report's piano rolls).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from musicgan.data.song import Song
from musicgan.metrics.distributions import FEATURE_VERSION, FEATURES, SetStatistics
from musicgan.metrics.registry import metric_names

SUBDIR = "reference-stats"
HASH_CHUNK = 1 << 20


def cache_dir() -> Path:
    """`$MUSICGAN_CACHE` when set, else `~/.cache/musicgan`."""
    return Path(os.environ.get("MUSICGAN_CACHE") or Path.home() / ".cache" / "musicgan")


def content_hash(paths: Iterable[str | Path], **params) -> str:
    """SHA-256 (hex) over each file's name and bytes, the params, feature version and
    registered metric names."""
    digest = hashlib.sha256()
    header = {"feature_version": FEATURE_VERSION, "metrics": sorted(metric_names("all")), "params": params}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for path in paths:
        path = Path(path)
        digest.update(os.fsencode(path.name) + b"\0")  # any name a file system allows (bytes)
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _paths(key: str, root: Path | None) -> tuple[Path, Path]:
    base = (root or cache_dir()) / SUBDIR
    return base / f"{key}.npz", base / f"{key}.json"


def save_statistics(key: str, stats: SetStatistics, examples: list[Song] = (), root: Path | None = None) -> Path:
    """Write an entry atomically (temp files + rename); returns the .npz path."""
    npz_path, json_path = _paths(key, root)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"feature__{k}": v for k, v in stats.features.items()}
    arrays.update({f"metric__{k}": v for k, v in stats.metrics.items()})
    arrays.update({f"example__{i}": s.notes for i, s in enumerate(examples)})
    meta = {
        "num_songs": stats.num_songs,
        "num_empty": stats.num_empty,
        "names": stats.names,
        "examples": [s.meta() for s in examples],
        "feature_version": FEATURE_VERSION,
    }
    with tempfile.NamedTemporaryFile(dir=npz_path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.replace(tmp.name, npz_path)
    with tempfile.NamedTemporaryFile("w", dir=json_path.parent, suffix=".json", delete=False) as tmp:
        json.dump(meta, tmp)
    os.replace(tmp.name, json_path)
    return npz_path


def load_statistics(key: str, root: Path | None = None) -> tuple[SetStatistics, list[Song]] | None:
    """(statistics, example songs) of a cached entry, or None when absent or unreadable."""
    npz_path, json_path = _paths(key, root)
    if not (npz_path.is_file() and json_path.is_file()):
        return None
    try:
        meta = json.loads(json_path.read_text())
        with np.load(npz_path, allow_pickle=False) as data:
            features = {k: data[f"feature__{k}"] for k in FEATURES}
            metrics = {k[len("metric__") :]: data[k] for k in data.files if k.startswith("metric__")}
            examples = [Song.from_arrays(data[f"example__{i}"], m) for i, m in enumerate(meta["examples"])]
    except (OSError, ValueError, KeyError):
        return None  # a damaged entry is recomputed, never trusted
    if set(metrics) != set(metric_names("all")):
        return None
    stats = SetStatistics(features, metrics, meta["num_songs"], meta["num_empty"], meta["names"])
    return stats, examples


def cached_statistics(
    key: str, compute: Callable[[], tuple[SetStatistics, list[Song]]], root: Path | None = None
) -> tuple[SetStatistics, list[Song], bool]:
    """(statistics, examples, cache_hit): load the entry or compute and store it."""
    hit = load_statistics(key, root)
    if hit is not None:
        return hit[0], hit[1], True
    stats, examples = compute()
    try:
        save_statistics(key, stats, examples, root)
    except OSError:
        pass  # a read-only cache only costs speed
    return stats, examples, False


def load_json(name: str, root: Path | None = None) -> dict | None:
    """A small cached JSON result (e.g. calibration numbers), or None."""
    path = (root or cache_dir()) / SUBDIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_json(name: str, data: dict, root: Path | None = None) -> None:
    base = (root or cache_dir()) / SUBDIR
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=base, suffix=".json", delete=False) as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, base / f"{name}.json")
    except OSError:
        pass  # a read-only cache only costs speed
