"""The Representation contract every encode/decode pair follows (registry: representations.py).

Kept apart from the registry so representation modules (multitrack, melody, audio) can
subclass it while representations.py imports them to register them, without an import cycle.

Contract with the loader (musicgan.data.loader):
  encode(song) -> (T, F) for the whole song, or raise SongSkipped(reason) for a song this
      representation cannot take (wrong metre, wrong number of parts): the loader counts
      and logs it and draws the next song.
  window_align: None -> window starts anywhere in 0..T-seq_len, zero padding when T is
      shorter (the C-RNN-GAN and piano-roll behaviour); an int a -> the encoding's step 0 is
      a bar line and a bar lasts a steps: the loader draws starts that are multiples of a,
      takes only full windows (songs shorter than one are skipped), and requires seq_len to
      be a multiple of a and at least `min_window`.
  augment(window, rng) -> window, after cropping, with the loader's seeded window rng (so
      resume stays exact). The default returns the window untouched and draws nothing, so
      representations without augmentation see exactly the random stream they saw before.
`skip_summary(representation, songs)` counts, per reason, what a representation's filters
drop from a dataset (e.g. for a family to log before training).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from musicgan.data.song import Song
from musicgan.errors import ConfigError, SongSkipped


class Representation:
    """Base class. Subclasses set `name`, `num_features`, `dtype` and the two codecs."""

    name = "base"
    num_features = 0
    dtype = np.float32
    needs_fit = False  # True when fit(train_songs) must run before encode (the token vocabulary)
    window_align: int | None = None  # steps per bar for bar-aligned windows (module docstring)
    min_window = 1  # shortest seq_len the representation accepts

    def __init__(self, **options) -> None:
        self.options = dict(options)

    def encode(self, song: Song) -> np.ndarray:  # (T, F)
        raise NotImplementedError

    def decode(self, steps: np.ndarray) -> Song:
        raise NotImplementedError

    def augment(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A randomly altered copy of one cropped (seq_len, F) window; identity by default."""
        return window

    def fit(self, songs) -> None:
        """Learn data-dependent state (a vocabulary) from training songs; no-op by default."""

    def state_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ConfigError(f"representation state is for {state.get('name')!r}, not {self.name!r}")

    def check_window(self, seq_len: int) -> None:
        """ConfigError unless seq_len fits the window contract (module docstring)."""
        if seq_len < self.min_window:
            raise ConfigError(f"{self.name} needs windows of at least {self.min_window} steps, got seq_len {seq_len}")
        if self.window_align and seq_len % self.window_align:
            raise ConfigError(
                f"{self.name} windows are whole bars of {self.window_align} steps: seq_len {seq_len} is not a multiple"
            )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


def finite(steps: np.ndarray) -> np.ndarray:
    """float64 copy with NaN and infinities replaced by 0 (what every decode starts with)."""
    steps = np.asarray(steps, dtype=np.float64)
    return np.nan_to_num(steps, nan=0.0, posinf=0.0, neginf=0.0)


def skip_summary(representation: Representation, songs) -> Counter:
    """{reason: songs} of what `representation` skips among `songs`, with "" counting the songs
    it encodes: what a metre or part filter drops from a dataset, before training on it."""
    summary = Counter()
    for song in songs:
        try:
            representation.encode(song)
            summary[""] += 1
        except SongSkipped as exc:
            summary[str(exc)] += 1
    return summary
