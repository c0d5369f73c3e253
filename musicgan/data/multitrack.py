"""`multitrack`: MuseGAN's multi-track binary piano roll on a bar-aligned grid.

Dong et al. 2018, "MuseGAN: Multi-track Sequential Generative Adversarial Networks for
Symbolic Music Generation and Accompaniment". One step = `steps_per_beat` of a quarter
note (12 in MuseGAN v3, 24 in the paper); each step holds, per track in a named order, one
row of `num_pitches` keys from `lowest` (MIDI 24-107 by default). Layout (T, tracks *
pitches), track-major; the values a model sees are -1 (off) and +1 (on) (G ends in tanh),
decode binarises at 0.

Note encoding as the paper: each pitched note ends one step early (so a rest separates
repeated notes of one pitch), notes shorter than 2 steps are dropped, drums are onsets only
(one step). Hence the exact inverse: decode lengthens every run by the step it lost, and
encode(decode(x)) == x for any binary x.

Tracks come from a grouping rule (musicgan.data.tracks): `parts` (4 chorale voices, named
by `part_names`) or `lpd5` (drums, piano, guitar, bass, strings); each decodes with its
program. Bars: only songs whose every metre is in `metres` (4/4 by default, as MuseGAN) are
encoded, the others are skipped with the metre as the reason; windows start on bar lines.
Augmentation: `transpose=(low, high)` shifts the pitched tracks of each window by a random
number of semitones in low..high (MuseGAN: -5..+6; notes pushed out of range are lost),
drums untouched.
"""

from __future__ import annotations

import numpy as np

from musicgan.data.bounds import check_grid
from musicgan.data.representation_base import Representation, finite
from musicgan.data.song import DEFAULT_BPM, DURATION, ONSET, PITCH, Song, Track
from musicgan.data.tracks import LPD5_TRACKS, group_tracks
from musicgan.errors import ConfigError, SongSkipped

CHORALE_PART_NAMES = ("Soprano", "Alto", "Tenor", "Bass")


def parse_metre(text: str) -> tuple[int, int]:
    """ "4/4" -> (4, 4); ConfigError for anything else."""
    try:
        numerator, denominator = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"a metre is written like 4/4, got {text!r}") from None
    if numerator < 1 or denominator not in (1, 2, 4, 8, 16, 32):
        raise ConfigError(f"metre {text!r} is not a time signature")
    return numerator, denominator


def check_transpose(transpose) -> tuple[int, int] | None:
    """None, or (low, high) semitones with low <= high (what augment draws from, inclusive)."""
    if transpose is None:
        return None
    low, high = (int(x) for x in transpose)
    if low > high or max(abs(low), abs(high)) > 24:
        raise ConfigError(f"transpose range must be (low, high) with low <= high within two octaves, got {transpose}")
    return low, high


def metre_filter(song: Song, metres: list[str], name: str) -> None:
    """SongSkipped naming the first metre of the song not in `metres`."""
    for numerator, denominator in song.metres():
        if f"{numerator}/{denominator}" not in metres:
            raise SongSkipped(f"metre {numerator}/{denominator} ({name} takes {', '.join(metres)} only)")


def bar_steps(metres: list[str], steps_per_beat: int) -> int:
    """Steps per bar; every allowed metre must give the same bar length."""
    lengths = {parse_metre(m)[0] * 4 * steps_per_beat / parse_metre(m)[1] for m in metres}
    if len(lengths) != 1 or not float(next(iter(lengths))).is_integer():
        raise ConfigError(f"metres {metres} need bars of one whole number of steps at {steps_per_beat} per beat")
    return int(lengths.pop())


def shift_rows(block: np.ndarray, shift: int, fill: float) -> np.ndarray:
    """(..., P) shifted by `shift` along the last axis, vacated entries set to `fill`."""
    out = np.full_like(block, fill)
    if shift >= 0:
        out[..., shift:] = block[..., : block.shape[-1] - shift]
    else:
        out[..., :shift] = block[..., -shift:]
    return out


def runs(on: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, column) of every run of True along axis 0 of a (T, K) bool array."""
    padded = np.zeros((on.shape[0] + 2, on.shape[1]), dtype=np.int8)
    padded[1:-1] = on
    change = np.diff(padded, axis=0)
    on_t, on_k = np.nonzero(change == 1)
    off_t, off_k = np.nonzero(change == -1)
    first, last = np.lexsort((on_t, on_k)), np.lexsort((off_t, off_k))
    return on_t[first], off_t[last], on_k[first]


class MultitrackRepresentation(Representation):
    """See the module docstring. Options are JSON, so the state dict carries the track order."""

    name = "multitrack"

    def __init__(
        self,
        grouping: str = "parts",
        steps_per_beat: int = 12,
        lowest: int = 24,
        num_pitches: int = 84,
        metres=("4/4",),
        part_names=CHORALE_PART_NAMES,
        part_programs=None,
        transpose=None,
        decode_bpm: float = DEFAULT_BPM,
        decode_velocity: int = 100,
    ) -> None:
        if grouping not in ("parts", "lpd5"):
            raise ConfigError(f"multitrack grouping must be 'parts' or 'lpd5', got {grouping!r}")
        if int(steps_per_beat) < 1 or int(num_pitches) < 1 or not 0 <= int(lowest) <= 128 - int(num_pitches):
            raise ConfigError(
                f"multitrack needs steps_per_beat >= 1 and MIDI {lowest}..{int(lowest) + int(num_pitches) - 1}"
                " inside 0..127"
            )
        names = list(part_names) if grouping == "parts" else [t[0] for t in LPD5_TRACKS]
        programs = list(part_programs or [0] * len(names)) if grouping == "parts" else [t[1] for t in LPD5_TRACKS]
        if len(programs) != len(names):
            raise ConfigError(f"part_programs has {len(programs)} entries for {len(names)} parts")
        super().__init__(
            grouping=grouping,
            steps_per_beat=int(steps_per_beat),
            lowest=int(lowest),
            num_pitches=int(num_pitches),
            metres=[str(m) for m in metres],
            part_names=names,
            part_programs=[int(p) for p in programs],
            transpose=check_transpose(transpose),
            decode_bpm=float(decode_bpm),
            decode_velocity=int(decode_velocity),
        )
        self.tracks = [
            Track(name, program, grouping == "lpd5" and i == 0)
            for i, (name, program) in enumerate(zip(names, programs))
        ]
        self.num_features = len(self.tracks) * self.options["num_pitches"]
        self.window_align = bar_steps(self.options["metres"], self.options["steps_per_beat"])
        self.min_window = self.window_align

    @property
    def track_names(self) -> list[str]:
        """The named track order of the feature blocks (what the model's track axis means)."""
        return [t.name for t in self.tracks]

    # -- encode --------------------------------------------------------------------------------
    def encode(self, song: Song) -> np.ndarray:
        o = self.options
        metre_filter(song, o["metres"], self.name)
        groups = group_tracks(song, o["grouping"], num_parts=len(self.tracks))
        end = int(song.grid_steps(song.end_time, o["steps_per_beat"])) if song.num_notes else 0
        num_steps = check_grid(-(-end // self.window_align) * self.window_align, self.num_features, "multitrack roll")
        roll = np.zeros((num_steps, len(self.tracks), o["num_pitches"]), dtype=bool)
        for index, (group, track) in enumerate(zip(groups, self.tracks)):
            self._fill(roll[:, index], song, group.notes, track.is_drum)
        values = np.where(roll, 1.0, -1.0).astype(np.float32)
        return values.reshape(num_steps, self.num_features)

    def _fill(self, roll: np.ndarray, song: Song, notes: np.ndarray, is_drum: bool) -> None:
        """Set the (T, P) roll of one track from its notes (the paper's note encoding)."""
        keys = notes[:, PITCH].astype(np.int64) - self.options["lowest"]
        start = song.grid_steps(notes[:, ONSET], self.options["steps_per_beat"])
        stop = song.grid_steps(notes[:, ONSET] + notes[:, DURATION], self.options["steps_per_beat"])
        keep = (keys >= 0) & (keys < self.options["num_pitches"]) & (start < len(roll))
        if not is_drum:
            keep &= stop - start >= 2  # notes shorter than 2 steps are dropped
        for s, e, k in zip(start[keep], stop[keep], keys[keep]):
            roll[s : s + 1 if is_drum else e - 1, k] = True  # one step early: a gap before the next

    # -- decode --------------------------------------------------------------------------------
    def decode(self, steps: np.ndarray) -> Song:
        o = self.options
        on = finite(steps).reshape(-1, len(self.tracks), o["num_pitches"]) > 0.0
        notes = np.concatenate([self._track_notes(on[:, index], index) for index in range(len(self.tracks))])
        return Song(notes, tempos=[(0.0, o["decode_bpm"])], time_signatures=[(0.0, 4, 4)], tracks=list(self.tracks))

    def _track_notes(self, on: np.ndarray, index: int) -> np.ndarray:
        """(n, 7) notes of one track's (T, P) binary roll."""
        o, track = self.options, self.tracks[index]
        if track.is_drum:  # every on-step is one onset lasting one step
            start, key = np.nonzero(on)
            stop = start + 1
        else:  # a run of on-steps is one note, given back the step the encoding took
            start, stop, key = runs(on)
            stop = stop + 1
        seconds_per_step = 60.0 / o["decode_bpm"] / o["steps_per_beat"]
        constant = [np.full(len(key), float(v)) for v in (o["decode_velocity"], track.program, track.is_drum, index)]
        return np.stack(
            [start * seconds_per_step, (stop - start) * seconds_per_step, key + o["lowest"], *constant], axis=1
        )

    # -- augmentation -----------------------------------------------------------------------------
    def augment(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.options["transpose"] is None:
            return window
        low, high = self.options["transpose"]
        shift = int(rng.integers(low, high + 1))
        blocks = window.reshape(len(window), len(self.tracks), self.options["num_pitches"]).copy()
        pitched = [i for i, t in enumerate(self.tracks) if not t.is_drum]
        blocks[:, pitched] = shift_rows(blocks[:, pitched], shift, -1.0)
        return blocks.reshape(window.shape)
