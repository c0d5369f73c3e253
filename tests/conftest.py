"""Shared pytest fixtures. Session-scoped shard sets are prepared once and reused by the
data, trainer and metrics tests; treat them as read-only (copy before corrupting)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/midi_factory.py and other helpers

from midi_factory import make_song, write_song  # noqa: E402

BACH_SUBSET = 40  # chorales in the bach_shards fixture
MIDI_FOLDER_SONGS = 24


@pytest.fixture(scope="session")
def bach_shards(tmp_path_factory) -> Path:
    """Shards of the first 40 music21 Bach chorales (sorted by source): ratios 0.8/0.1/0.1,
    10 songs a shard, every split non-empty. Returns the shard directory."""
    from musicgan.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("bach_shards")
    manifest = prepare_dataset("music21:bach", out, workers=2, shard_size=10, ratios=(0.8, 0.1, 0.1),
                               progress=False, limit=BACH_SUBSET)
    assert all(manifest["splits"][s]["songs"] > 0 for s in ("train", "valid", "test")), manifest["splits"]
    return out


@pytest.fixture(scope="session")
def midi_folder(tmp_path_factory) -> Path:
    """A folder of 24 generated MIDI songs (nested, mixed extension case), all valid."""
    root = tmp_path_factory.mktemp("midi_folder")
    for i in range(MIDI_FOLDER_SONGS):
        sub = ("", "set1/", "set2/deep/")[i % 3]
        ext = (".mid", ".MID", ".midi")[i % 3]
        write_song(root / f"{sub}song{i:02d}{ext}", make_song(seed=i, num_onsets=30 + 5 * i))
    return root


@pytest.fixture(scope="session")
def midi_folder_shards(midi_folder, tmp_path_factory) -> Path:
    """Shards of the `midi_folder` songs: ratios 0.6/0.2/0.2, 6 songs a shard, every split
    non-empty. Returns the shard directory."""
    from musicgan.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("midi_folder_shards")
    manifest = prepare_dataset(str(midi_folder), out, workers=1, shard_size=6, ratios=(0.6, 0.2, 0.2),
                               progress=False)
    assert all(manifest["splits"][s]["songs"] > 0 for s in ("train", "valid", "test")), manifest["splits"]
    return out
