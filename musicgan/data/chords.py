"""Chord labels per bar or per beat, in numpy (music21 stays in corpora.py).

A segment's label comes from its duration-weighted pitch-class histogram (how long each of
the 12 pitch classes sounds inside the segment, over all pitched notes) scored against 24
triad templates: 0-11 = C..B major, 12-23 = C..B minor, NO_CHORD (24) for an empty
segment. The score is the histogram's weight on the three chord tones minus its weight on
the other nine, with a small bonus for the root so that a bare fifth or octave picks the
chord it is the root of; ties go to the lower label (major before minor, C first).
MidiNet's condition (Yang et al. 2017, "MidiNet: A Convolutional Generative Adversarial
Network for Symbolic-domain Music Generation") is the 13-dim vector of `midinet_vectors`:
one-hot root (12) + a flag (0 major, 1 minor); all zero for no chord.

Agreement with music21's own analysis (chordify, root and quality per beat) on the Bach
chorales is measured by tests/test_chords.py and stated in BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np

from musicgan.data.bounds import check_grid
from musicgan.data.song import DURATION, IS_DRUM, ONSET, PITCH, Song
from musicgan.errors import UserError

NUM_CHORDS = 25  # 24 triads + no chord
NO_CHORD = 24
MIDINET_CHORD_DIM = 13
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ROOT_BONUS = 0.1  # weight of the root's own share in the score: breaks fifth/octave ties
# (24, 12): chord tones +1, the other nine pitch classes -1; a second row set adds the root bonus.
_TONES = np.stack(
    [
        np.isin(np.arange(12), [(root + 0) % 12, (root + third) % 12, (root + 7) % 12])
        for third in (4, 3)
        for root in range(12)
    ]
).astype(np.float64)
_ROOTS = np.stack([np.arange(12) == root for _ in (4, 3) for root in range(12)]).astype(np.float64)
TRIAD_TEMPLATES = 2.0 * _TONES - 1.0 + ROOT_BONUS * _ROOTS


def segment_beats(song: Song, per: str = "bar") -> float:
    """Quarter notes per segment: a bar of the first metre, or one quarter-note beat."""
    if per == "bar":
        return song.bar_beats()
    if per == "beat":
        return 1.0
    raise ValueError(f"chord segments are per 'bar' or per 'beat', got {per!r}")


def pitch_class_histograms(song: Song, per: str = "bar", num_segments: int | None = None) -> np.ndarray:
    """(num_segments, 12) beats each pitch class sounds in each segment of the bar grid
    (segment 0 starts at `song.bar_origin_beats()`); drums are left out."""
    length = segment_beats(song, per)
    notes = song.notes[song.notes[:, IS_DRUM] < 0.5]
    start = song.seconds_to_beats(notes[:, ONSET]) - song.bar_origin_beats()
    stop = song.seconds_to_beats(notes[:, ONSET] + notes[:, DURATION]) - song.bar_origin_beats()
    if num_segments is None:
        num_segments = int(np.ceil(stop.max() / length - 1e-9)) if len(notes) else 0
    histograms = np.zeros((check_grid(num_segments, 12, "chord segments"), 12))
    note, segment = _note_segments(start, stop, length, num_segments)
    overlap = np.minimum(stop[note], (segment + 1) * length) - np.maximum(start[note], segment * length)
    np.add.at(histograms, (segment, notes[note, PITCH].astype(np.int64) % 12), np.clip(overlap, 0.0, None))
    return histograms


def _note_segments(start: np.ndarray, stop: np.ndarray, length: float, num_segments: int):
    """(note index, segment index) of every segment each note overlaps (a note usually
    touches one or two, so this stays near the number of notes)."""
    first = np.clip(np.floor(start / length), 0, num_segments).astype(np.int64)
    last = np.clip(np.ceil(stop / length) - 1, -1, num_segments - 1).astype(np.int64)
    counts = np.maximum(last - first + 1, 0)
    total = check_grid(int(counts.sum()), 1, "chord note-segment pairs")
    note = np.repeat(np.arange(len(start)), counts)
    offsets = np.cumsum(counts) - counts
    return note, first[note] + np.arange(total) - offsets[note]


def chord_labels(histograms: np.ndarray) -> np.ndarray:
    """(n,) labels 0..24 for (n, 12) pitch-class histograms (module docstring)."""
    histograms = np.asarray(histograms, dtype=np.float64).reshape(-1, 12)
    total = histograms.sum(axis=1, keepdims=True)
    scores = (histograms / np.where(total > 0, total, 1.0)) @ TRIAD_TEMPLATES.T
    labels = np.argmax(scores, axis=1)
    return np.where(total[:, 0] > 0, labels, NO_CHORD).astype(np.int64)


def song_chords(song: Song, per: str = "bar", num_segments: int | None = None) -> np.ndarray:
    """(num_segments,) chord label of each bar (or beat) of the song's bar grid."""
    return chord_labels(pitch_class_histograms(song, per, num_segments))


def chord_root(labels) -> np.ndarray:
    """Root pitch class 0-11 of each label (-1 for no chord)."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.where(labels == NO_CHORD, -1, labels % 12)


def is_minor(labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    return (labels >= 12) & (labels < NO_CHORD)


def transpose_chords(labels, semitones: int) -> np.ndarray:
    """Labels with their roots moved by `semitones` (quality and no-chord kept)."""
    labels = np.asarray(labels, dtype=np.int64)
    moved = (labels // 12) * 12 + (labels % 12 + int(semitones)) % 12
    return np.where(labels == NO_CHORD, NO_CHORD, moved)


def chord_name(label: int) -> str:
    """ "C", "F#m", or "N" (no chord)."""
    if label == NO_CHORD:
        return "N"
    return PITCH_CLASS_NAMES[label % 12] + ("m" if label >= 12 else "")


ENHARMONIC = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}


def parse_chord(name: str) -> int:
    """Inverse of chord_name: "C", "F#m", "Bbm", "Db" (flat or sharp spelling), "N"."""
    if name == "N":
        return NO_CHORD
    minor = name.endswith("m")
    root = name[:-1] if minor else name
    root = ENHARMONIC.get(root, root)
    if root not in PITCH_CLASS_NAMES:
        raise UserError(f"unknown chord {name!r}: a root C, C#/Db, D, ..., B, then m for minor (Am, F#m), or N")
    return PITCH_CLASS_NAMES.index(root) + (12 if minor else 0)


def midinet_vectors(labels) -> np.ndarray:
    """(n, 13) float32: one-hot root (12) + minor flag; zeros for no chord."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    vectors = np.zeros((len(labels), MIDINET_CHORD_DIM), dtype=np.float32)
    chord = labels != NO_CHORD
    vectors[np.flatnonzero(chord), labels[chord] % 12] = 1.0
    vectors[:, 12] = is_minor(labels)
    return vectors


def labels_from_midinet(vectors: np.ndarray) -> np.ndarray:
    """Inverse of midinet_vectors for any (n, 13) array: argmax root, flag > 0.5, all-low -> no chord."""
    vectors = np.nan_to_num(np.asarray(vectors, dtype=np.float64).reshape(-1, MIDINET_CHORD_DIM))
    root = np.argmax(vectors[:, :12], axis=1)
    labels = root + 12 * (vectors[:, 12] > 0.5)
    return np.where(vectors[:, :12].max(axis=1) > 0.5, labels, NO_CHORD).astype(np.int64)
