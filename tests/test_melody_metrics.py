"""Melody metrics of the registry (chord-tone ratio, range, distinct pitches per bar, note
lengths, scale consistency) on melodies decoded by the real melody_chord representation."""

from __future__ import annotations

import itertools
import math

import numpy as np

from musicgan.data.chords import midinet_vectors
from musicgan.data.loader import iter_songs
from musicgan.data.melody import MelodyChordRepresentation
from musicgan.data.shards import split_urls
from musicgan.metrics.registry import METRICS, metric_names

C_MAJOR, A_MINOR = 0, 12 + 9


def _song(bars: list[tuple[int, list[int]]]):
    """A decoded melody_chord song: per bar (chord label, 16 pitches per 16th step, -1 rest)."""
    rep = MelodyChordRepresentation()
    steps = np.zeros((16 * len(bars), rep.num_features), dtype=np.float32)
    for b, (label, pitches) in enumerate(bars):
        rows = slice(16 * b, 16 * b + 16)
        steps[rows, 128:] = midinet_vectors([label])
        for t, p in enumerate(pitches):
            if p >= 0:
                steps[16 * b + t, p] = 1.0
    return rep.decode(steps)


def _quarters(*pitches: int) -> list[int]:
    return [p for p in pitches for _ in range(4)]


def test_melody_metrics_of_a_known_melody():
    # bar 1 over C major: quarters C E G D (3 of 4 chord tones); bar 2 over A minor: a half
    # note A, quarters B and C.
    song = _song([(C_MAJOR, _quarters(72, 76, 79, 74)), (A_MINOR, [81] * 8 + [83] * 4 + [84] * 4)])
    values = {name: METRICS[name](song) for name in metric_names("melody")}
    assert values["chord_tone_ratio"] == (3 + 2) / 7  # bar 2: A and C are A-minor tones, B is not
    assert values["melody_pitch_range"] == 84 - 72
    assert values["distinct_pitches_per_bar"] == (4 + 3) / 2
    assert values["melody_note_length"] == (4 * 1.0 + 2.0 + 1.0 + 1.0) / 7
    expected_entropy = -(6 / 7 * math.log2(6 / 7) + 1 / 7 * math.log2(1 / 7))
    assert math.isclose(values["melody_note_length_entropy"], expected_entropy, rel_tol=1e-12)
    assert values["melody_scale_consistency"] == 1.0  # C D E G A B C: all in C major


def test_melody_metrics_are_nan_without_a_melody():
    song = _song([(C_MAJOR, [-1] * 16)])
    for name in (
        "chord_tone_ratio",
        "melody_pitch_range",
        "distinct_pitches_per_bar",
        "melody_note_length",
        "melody_note_length_entropy",
        "melody_scale_consistency",
    ):
        assert math.isnan(METRICS[name](song)), name


def test_chord_tone_ratio_reads_the_soprano_of_a_chorale(bach_shards):
    """On real chorales the melody is the soprano and the chords come from all parts: most
    soprano onsets are chord tones, far more than a random pitch class would give (3/12)."""
    songs = list(itertools.islice(iter_songs(split_urls(bach_shards, "test")), 4))
    ratios = [METRICS["chord_tone_ratio"](s) for s in songs]
    assert all(0.5 < r <= 1.0 for r in ratios), ratios


def test_jazzgan_melody_metrics_of_a_known_melody():
    # C E G D over C major, then A A A (one note) B, a 16th C, a 16th rest... over A minor
    song = _song([(C_MAJOR, _quarters(72, 76, 79, 74)), (A_MINOR, [81] * 8 + [83] * 4 + [72, -1, 84, 84])])
    values = {
        name: METRICS[name].fn(song)
        for name in (
            "melody_distinct_pitches",
            "melody_distinct_pitch_classes",
            "melody_repetitions_3",
            "qualified_note_rate",
            "non_chord_tone_ratio",
            "chord_tone_ratio",
        )
    }
    assert values["melody_distinct_pitches"] == 7  # 72 76 79 74 81 83 84
    assert values["melody_distinct_pitch_classes"] == 6  # C twice (72, 84)
    assert values["melody_repetitions_3"] == 0
    assert values["qualified_note_rate"] == 1.0  # the shortest note is a 16th
    assert math.isclose(values["chord_tone_ratio"] + values["non_chord_tone_ratio"], 1.0)
    assert math.isclose(values["non_chord_tone_ratio"], 2 / 8)  # D (bar 1) and B (bar 2)
    repeated = _song([(C_MAJOR, _quarters(72, 74, 76, 60)), (C_MAJOR, _quarters(72, 74, 76, 62))])
    assert METRICS["melody_repetitions_3"].fn(repeated) == 1  # C D E twice


def test_qualified_notes_need_a_32nd_note():
    from musicgan.data.melody_events import MelodyChordEventsRepresentation

    rep = MelodyChordEventsRepresentation(rhythm_encoding="duration")  # 48 steps per bar: 1 step = 1/12 beat
    rows = np.zeros((16, rep.num_features), dtype=np.float32)
    rows[:3, :2] = [(3 + 24, 1), (3 + 26, 2), (3 + 28, 45)]  # 1/12 beat, 1/6 beat, the rest of the bar
    assert METRICS["qualified_note_rate"].fn(rep.decode(rows)) == 2 / 3
