"""Real inputs for the benchmarks: a folder of MIDI files written through musicgan's own
MIDI writer (random melodies with chords, chorale-sized or longer), and its shards.

Generated rather than downloaded so `musicgan bench` runs offline on any machine; the
prepare benchmark also reads a slice of music21's bundled Bach chorales when music21 is
installed (it is a core dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicgan.data.midi import write_midi
from musicgan.data.song import Song

GRID_S = 0.125  # onsets on an eighth-note grid at 120 bpm: exact in MIDI ticks


def make_song(seed: int, num_onsets: int) -> Song:
    """A random pitched song: a melody on a 1/8 s grid, 30 % of onsets with a chord."""
    rng = np.random.default_rng(seed)
    onset, duration, pitch, velocity = [], [], [], []
    t = 0.0
    for _ in range(num_onsets):
        root = int(rng.integers(48, 80))
        chord = [root] + ([root + 4, root + 7][: int(rng.integers(1, 3))] if rng.random() < 0.3 else [])
        step = int(rng.integers(1, 4))
        length = GRID_S * int(rng.integers(1, step + 1))  # ends by the next onset: no overlaps
        for p in chord:
            onset.append(t)
            duration.append(length)
            pitch.append(p)
            velocity.append(int(rng.integers(40, 120)))
        t += GRID_S * step
    return Song.from_columns(onset, duration, pitch, velocity, tempos=[(0.0, 120.0)], time_signatures=[(0.0, 4, 4)])


def write_midi_folder(root: Path, num_songs: int, num_onsets: int = 240, seed: int = 0) -> Path:
    """`num_songs` MIDI files of `num_onsets` onsets each (about 300 notes, ~1 min of music)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(num_songs):
        write_midi(make_song(seed + index, num_onsets), root / f"song{index:04d}.mid")
    return root


def prepare_shards(midi_dir: Path, out: Path, *, workers: int = 1, shard_size: int = 16) -> dict:
    """Shards of a MIDI folder with every song in the train split (the loader benchmark's input)."""
    from musicgan.data.prepare import prepare_dataset

    return prepare_dataset(
        str(midi_dir), out, workers=workers, shard_size=shard_size, ratios=(1.0, 0.0, 0.0), progress=False
    )
