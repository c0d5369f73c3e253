"""Monophonic melody representations on the bar grid: `melody_chord` (MidiNet) and
`melody_grid` (SeqGAN). The melody is the `melody` track grouping (musicgan.data.tracks:
the top part, e.g. a chorale's soprano, else the skyline); step 0 is a bar line.

melody_chord (Yang et al. 2017, "MidiNet"): per step (16ths by default) a 128-pitch binary
row holding the melody's pitch (all zero for a rest) followed by the bar's 13-dim chord
(musicgan.data.chords.midinet_vectors: one-hot root + minor flag) repeated on every step of
the bar. Chords are labelled from all pitched parts (the harmony), per bar. One empty bar
(no melody, no chord) is prepended to every song, so the first bar's "previous bar" is
zeros; windows are 2 bars (previous, current), starting on bar lines. As the reference,
velocity and note boundaries are dropped: decode merges consecutive steps of one pitch into
one note, so repeated notes of one pitch come back as one long note. Decode writes the
melody as track 0 and the chords as block triads (root below middle C) as track 1.

melody_grid (Yu et al. 2017, "SeqGAN: Sequence Generative Adversarial Nets with Policy
Gradient"): one int64 token per fixed step: 0 = rest (also the loader's padding), 1..88 =
MIDI 21..108 sounding, and with `hold=True` token 89 = the previous note continues (then a
pitch token marks an onset, so repeated notes survive). Melody notes outside 21..108 become
rests. Windows are drawn anywhere (no bar alignment): SeqGAN reads plain sequences.

Augmentation for both: `transpose=(low, high)` moves the melody (and the chord roots) of a
window by a random number of semitones in low..high (MidiNet used all 12 keys: (-6, 5));
notes leaving the range become rests.
"""

from __future__ import annotations

import numpy as np

from musicgan.data.bounds import check_grid
from musicgan.data.chords import MIDINET_CHORD_DIM, NO_CHORD, labels_from_midinet, midinet_vectors, song_chords
from musicgan.data.multitrack import bar_steps, check_transpose, metre_filter, shift_rows
from musicgan.data.representation_base import Representation, finite
from musicgan.data.song import DEFAULT_BPM, DURATION, ONSET, PITCH, Song, Track
from musicgan.data.tracks import group_tracks
from musicgan.errors import ConfigError

REST = -1  # "no pitch" in a step's pitch array
CHORD_OCTAVE = 48  # decoded chord roots sit in MIDI 48-59, below a typical melody


def melody_steps(song: Song, steps_per_beat: int, num_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pitch per step or REST, onset flag per step) of the song's melody on the bar grid;
    a later note overwrites the tail of an earlier one that rounding made overlap."""
    (melody,) = group_tracks(song, "melody")
    notes = melody.notes
    start = song.grid_steps(notes[:, ONSET], steps_per_beat)
    stop = np.maximum(song.grid_steps(notes[:, ONSET] + notes[:, DURATION], steps_per_beat), start + 1)
    if num_steps is None:
        num_steps = int(stop.max()) if len(notes) else 0
    pitch = np.full(check_grid(num_steps, 1, "melody grid"), REST, dtype=np.int64)
    onset = np.zeros(num_steps, dtype=bool)
    for s, e, p in zip(start, stop, notes[:, PITCH].astype(np.int64)):
        pitch[s:e] = p
        onset[s:e] = False
        if s < num_steps:
            onset[s] = True
    return pitch, onset


def pitch_runs(pitch: np.ndarray, onset: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """(start, stop, pitch) of each note in a per-step pitch array: a run of one pitch, cut
    where `onset` marks a new note (None: runs only)."""
    notes, start = [], None
    for t in range(len(pitch) + 1):
        current = pitch[t] if t < len(pitch) else REST
        begins = t < len(pitch) and onset is not None and onset[t]
        if start is not None and (current != pitch[start] or begins):
            notes.append((start, t, int(pitch[start])))
            start = None
        if start is None and current != REST:
            start = t
    return notes


def _notes_song(runs, seconds_per_step: float, velocity: int, track: int, **meta) -> list[np.ndarray]:
    runs = np.asarray(runs, dtype=np.float64).reshape(-1, 3)
    n = len(runs)
    return [
        runs[:, 0] * seconds_per_step,
        (runs[:, 1] - runs[:, 0]) * seconds_per_step,
        runs[:, 2],
        np.full(n, float(velocity)),
        np.zeros(n),
        np.zeros(n),
        np.full(n, float(track)),
    ]


class MelodyChordRepresentation(Representation):
    """MidiNet's melody rows + bar chord (module docstring); values 0/1."""

    name = "melody_chord"
    NUM_PITCHES = 128

    def __init__(
        self,
        steps_per_beat: int = 4,
        metres=("4/4",),
        transpose=None,
        threshold: float = 0.5,
        decode_bpm: float = DEFAULT_BPM,
        decode_velocity: int = 100,
    ) -> None:
        if int(steps_per_beat) < 1:
            raise ConfigError(f"steps_per_beat must be >= 1, got {steps_per_beat}")
        super().__init__(
            steps_per_beat=int(steps_per_beat),
            metres=[str(m) for m in metres],
            transpose=check_transpose(transpose),
            threshold=float(threshold),
            decode_bpm=float(decode_bpm),
            decode_velocity=int(decode_velocity),
        )
        self.num_features = self.NUM_PITCHES + MIDINET_CHORD_DIM
        self.window_align = bar_steps(self.options["metres"], self.options["steps_per_beat"])
        self.min_window = 2 * self.window_align  # previous bar + current bar

    def encode(self, song: Song) -> np.ndarray:
        metre_filter(song, self.options["metres"], self.name)
        bar = self.window_align
        pitch, _ = melody_steps(song, self.options["steps_per_beat"])
        num_bars = -(-len(pitch) // bar)
        num_steps = check_grid((num_bars + 1) * bar, self.num_features, "melody_chord rows")  # + the empty first bar
        out = np.zeros((num_steps, self.num_features), dtype=np.float32)
        sounding = np.flatnonzero(pitch != REST)
        out[bar + sounding, pitch[sounding]] = 1.0
        chords = midinet_vectors(song_chords(song, "bar", num_bars))  # (num_bars, 13)
        out[bar:, self.NUM_PITCHES :] = np.repeat(chords, bar, axis=0)
        return out

    def decode(self, steps: np.ndarray) -> Song:
        o = self.options
        x = finite(steps).reshape(-1, self.num_features)
        rows = x[:, : self.NUM_PITCHES]
        pitch = np.where(rows.max(axis=1) > o["threshold"], rows.argmax(axis=1), REST)
        seconds = 60.0 / o["decode_bpm"] / o["steps_per_beat"]
        melody = _notes_song(pitch_runs(pitch), seconds, o["decode_velocity"], 0)
        chords = _notes_song(self._chord_notes(x), seconds, max(o["decode_velocity"] - 30, 1), 1)
        columns = [np.concatenate(pair) for pair in zip(melody, chords)]
        return Song.from_columns(
            *columns,
            tempos=[(0.0, o["decode_bpm"])],
            time_signatures=[(0.0, 4, 4)],
            tracks=[Track("Melody", 0, False), Track("Chords", 0, False)],
        )

    def _chord_notes(self, x: np.ndarray) -> list[tuple[int, int, int]]:
        """Block triads, one per bar: the label of each bar's first step."""
        bar = self.window_align
        notes = []
        for first in range(0, len(x), bar):
            (label,) = labels_from_midinet(x[first, self.NUM_PITCHES :])
            if label != NO_CHORD:
                third = 3 if label >= 12 else 4
                root = CHORD_OCTAVE + label % 12
                notes += [(first, min(first + bar, len(x)), root + i) for i in (0, third, 7)]
        return notes

    def augment(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.options["transpose"] is None:
            return window
        low, high = self.options["transpose"]
        shift = int(rng.integers(low, high + 1))
        out = window.copy()
        out[:, : self.NUM_PITCHES] = shift_rows(window[:, : self.NUM_PITCHES], shift, 0.0)
        roots = slice(self.NUM_PITCHES, self.NUM_PITCHES + 12)
        out[:, roots] = np.roll(window[:, roots], shift, axis=1)
        return out


class MelodyGridRepresentation(Representation):
    """SeqGAN's one token per fixed step (module docstring); (T, 1) int64."""

    name = "melody_grid"
    LOWEST, NUM_PITCHES = 21, 88
    REST_TOKEN = 0

    def __init__(
        self,
        steps_per_beat: int = 4,
        hold: bool = False,
        transpose=None,
        decode_bpm: float = DEFAULT_BPM,
        decode_velocity: int = 100,
    ) -> None:
        if int(steps_per_beat) < 1:
            raise ConfigError(f"steps_per_beat must be >= 1, got {steps_per_beat}")
        super().__init__(
            steps_per_beat=int(steps_per_beat),
            hold=bool(hold),
            transpose=check_transpose(transpose),
            decode_bpm=float(decode_bpm),
            decode_velocity=int(decode_velocity),
        )
        self.num_features = 1
        self.dtype = np.int64
        self.hold_token = self.NUM_PITCHES + 1 if hold else None

    @property
    def vocab_size(self) -> int:
        """Rest + 88 pitches (+ hold)."""
        return self.NUM_PITCHES + 1 + int(self.options["hold"])

    def encode(self, song: Song) -> np.ndarray:
        pitch, onset = melody_steps(song, self.options["steps_per_beat"])
        key = pitch - self.LOWEST
        tokens = np.where((key >= 0) & (key < self.NUM_PITCHES), key + 1, self.REST_TOKEN)
        if self.options["hold"]:
            tokens = np.where((tokens != self.REST_TOKEN) & ~onset, self.hold_token, tokens)
        return tokens.astype(np.int64).reshape(-1, 1)

    def decode(self, steps: np.ndarray) -> Song:
        o = self.options
        ids = np.clip(np.round(finite(steps).reshape(-1)), 0, self.vocab_size - 1).astype(np.int64)
        pitch, onset = self._pitches(ids)
        runs = pitch_runs(pitch, onset if o["hold"] else None)
        seconds = 60.0 / o["decode_bpm"] / o["steps_per_beat"]
        return Song.from_columns(
            *_notes_song(runs, seconds, o["decode_velocity"], 0),
            tempos=[(0.0, o["decode_bpm"])],
            tracks=[Track("Melody", 0, False)],
        )

    def _pitches(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-step pitch (REST) and onset flags; a hold continues the previous note, or is a rest."""
        pitch = np.where(ids == self.REST_TOKEN, REST, ids - 1 + self.LOWEST)
        onset = ids != self.REST_TOKEN
        if self.hold_token is not None:
            for t in np.flatnonzero(ids == self.hold_token):
                pitch[t] = pitch[t - 1] if t > 0 else REST
                onset[t] = False
        return pitch, onset

    def augment(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.options["transpose"] is None:
            return window
        low, high = self.options["transpose"]
        shift = int(rng.integers(low, high + 1))
        is_pitch = (window > self.REST_TOKEN) & (window <= self.NUM_PITCHES)
        moved = window + shift
        inside = (moved >= 1) & (moved <= self.NUM_PITCHES)
        return np.where(is_pitch, np.where(inside, moved, self.REST_TOKEN), window)
