"""Per-song metrics of the registry: exact hand-computed values on tiny songs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgan.data.song import Song
from musicgan.metrics import METRICS, compute_metrics, crnngan_summary, metric_names, summarize
from musicgan.metrics.registry import DEFAULT_ONSET_TOLERANCE, repetition_count

QUARTER = 0.5  # seconds per quarter note at the default 120 bpm


def melody(pitches, beats_each=1.0, velocity=None, start=0.0, **meta) -> Song:
    """Monophonic line, one note every `beats_each` quarter notes."""
    n = len(pitches)
    onsets = start + np.arange(n) * beats_each * QUARTER
    return Song.from_columns(onsets, [beats_each * QUARTER] * n, pitches, velocity, **meta)


def four_triads() -> Song:
    onsets = np.repeat(np.arange(4) * QUARTER, 3)
    return Song.from_columns(onsets, [QUARTER] * 12, [60, 64, 67] * 4)


def value(name: str, song: Song, **params) -> float:
    return METRICS[name](song, **params)


D_MAJOR = [62, 64, 66, 67, 69, 71, 73]  # D E F# G A B C#


def test_d_major_scale_correct_and_compat():
    song = melody(D_MAJOR)
    assert value("scale_consistency", song) == 1.0
    # The reference computes pitch % 12 - root: C# (1) - D (2) = -1 is "not in D major".
    assert value("scale_consistency_compat", song) == pytest.approx(6 / 7)
    assert round(value("scale_consistency_compat", song), 3) == 0.857


def test_scale_consistency_partial_fit():
    # C D E F G A B C#: 8 notes, the best scale (C major) holds 7 of them.
    assert value("scale_consistency", melody([60, 62, 64, 65, 67, 69, 71, 61])) == pytest.approx(7 / 8)


def test_spans_and_counts():
    song = melody([60, 72, 64, 67], velocity=[30, 100, 64, 64])
    assert value("tone_span", song) == 12
    assert value("pitch_range", song) == 12
    assert value("unique_tones", song) == 4
    assert value("n_pitches_used", song) == 4
    assert value("n_pitch_classes_used", song) == 3
    assert value("intensity_span", song) == 70
    assert value("pitch_entropy", song) == pytest.approx(2.0)  # 4 equally likely pitches
    assert value("pitch_class_entropy", song) == pytest.approx(1.5)  # C C E G -> 1/2 1/4 1/4


def test_drums_are_ignored_by_pitch_metrics():
    song = melody([60, 64])
    with_drum = Song(np.vstack([song.notes, [[0.0, 0.1, 35, 127, 0, 1, -1]]]))
    for name in ("tone_span", "unique_tones", "intensity_span", "pitch_entropy", "scale_consistency"):
        assert value(name, with_drum) == value(name, song), name


def test_all_triad_polyphony_correct_and_compat():
    song = four_triads()
    assert value("polyphony", song) == 1.0
    # Reference's double counting: 4 triads -> 11 polyphonic / 15 counted events.
    assert value("polyphony_compat", song) == pytest.approx(11 / 15)
    assert round(value("polyphony_compat", song), 3) == 0.733
    assert value("polyphony", melody([60, 62, 64])) == 0.0
    assert value("polyphony_compat", melody([60, 62, 64])) == 0.0


def test_polyphony_mixed_groups():
    # onset groups: {60,64} {62} {60,64,67} {65}  -> 2 of 4 polyphonic
    onsets = [0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.5]
    song = Song.from_columns(onsets, [0.5] * 7, [60, 64, 62, 60, 64, 67, 65])
    assert value("polyphony", song) == 0.5


def test_polyphony_onset_tolerance():
    jittered = Song.from_columns([0.0, 0.0003, 0.0006], [0.5] * 3, [60, 64, 67])
    assert DEFAULT_ONSET_TOLERANCE == pytest.approx(0.5 * 0.5 / 384)
    assert value("polyphony", jittered) == 1.0  # gaps of 0.3 ms < 0.65 ms: one chord
    assert value("polyphony", jittered, onset_tolerance=0.0) == 0.0
    assert compute_metrics([jittered], onset_tolerance=0.0)["polyphony"][0] == 0.0


def test_repetitions_correct_and_compat():
    song = four_triads()  # pitch sequence C E G C E G C E G C E G
    assert value("repetitions_3", song) == 12
    assert value("repetitions_3_compat", song) == 9  # last window skipped
    # 60 62 64 60 62 64 60 62: windows A B C A B C, three non-overlapping repeats
    eight = melody([60, 62, 64, 60, 62, 64, 60, 62])
    assert value("repetitions_3", eight) == 3
    assert value("repetitions_3_compat", eight) == 2
    six = melody([60, 62, 64, 60, 62, 64])
    assert value("repetitions_3", six) == 1
    assert value("repetitions_3_compat", six) == 0  # the reference needs >= 8 notes
    # overlapping windows do not count: five equal notes give windows 0..2, all overlapping
    assert repetition_count(np.array([60] * 5), 3) == 0
    assert repetition_count(np.array([60] * 6), 3) == 1


def test_muspy_grid_metrics():
    # C4 for beats 0-2, E4 for beats 1-2: 24 steps, 12 with two pitches.
    song = Song.from_columns([0.0, QUARTER], [2 * QUARTER, QUARTER], [60, 64])
    assert value("polyphony_rate", song) == 0.5
    assert value("polyphony_muspy", song) == 1.5
    assert value("polyphony_muspy", four_triads()) == 3.0
    assert value("polyphony_rate", four_triads()) == 1.0


def test_empty_beat_rate():
    # note in beat 0, silence in beat 1, note in beat 2: one of three beats empty
    song = Song.from_columns([0.0, 2 * QUARTER], [QUARTER, QUARTER], [60, 62])
    assert value("empty_beat_rate", song) == pytest.approx(1 / 3)
    # four quarter notes end exactly on beat 4: no phantom fifth beat
    assert value("empty_beat_rate", melody([60, 62, 64, 65])) == 0.0


def test_groove_consistency():
    two_bars = melody([60] * 8, time_signatures=[(0.0, 4, 4)])
    assert value("groove_consistency", two_bars) == 1.0  # MusPy gives 0.875 here
    # second bar lacks its last beat's onset: Hamming 1 of 48 steps (12 per beat)
    gap = Song.from_columns(
        np.array([0, 1, 2, 3, 4, 5, 6]) * QUARTER, [QUARTER] * 7, [60] * 7, time_signatures=[(0.0, 4, 4)]
    )
    assert value("groove_consistency", gap) == pytest.approx(1 - 1 / 48)
    # 3/4: bars of 36 steps; identical waltz bars
    waltz = melody([48, 60, 60] * 3, time_signatures=[(0.0, 3, 4)])
    assert value("groove_consistency", waltz) == 1.0
    assert math.isnan(value("groove_consistency", melody([60, 62])))  # one bar: undefined


def test_empty_song_is_nan_or_zero():
    empty = Song(np.zeros((0, 6)))
    counts = {
        "unique_tones",
        "repetitions_3",
        "n_pitches_used",
        "n_pitch_classes_used",
        "melody_distinct_pitches",
        "melody_distinct_pitch_classes",
        "melody_repetitions_3",
    }
    for name, metric in METRICS.items():
        result = metric(empty)
        if name in counts:
            assert result == 0.0, name
        else:
            assert math.isnan(result), name


def test_registry_groups_and_batch_api():
    crnngan = metric_names("crnngan")
    for name in (
        "scale_consistency",
        "tone_span",
        "unique_tones",
        "intensity_span",
        "polyphony",
        "repetitions_3",
        "scale_consistency_compat",
        "polyphony_compat",
        "repetitions_3_compat",
    ):
        assert name in crnngan
    muspy = metric_names("muspy")
    for name in (
        "pitch_range",
        "n_pitches_used",
        "n_pitch_classes_used",
        "pitch_entropy",
        "pitch_class_entropy",
        "polyphony_muspy",
        "polyphony_rate",
        "empty_beat_rate",
        "groove_consistency",
    ):
        assert name in muspy
    with pytest.raises(ValueError):
        metric_names("nope")

    songs = [melody(D_MAJOR), four_triads(), Song(np.zeros((0, 6)))]
    values = compute_metrics(songs)
    assert set(values) == set(crnngan)
    assert values["tone_span"].shape == (3,)
    stats = summarize(values)
    assert stats["tone_span"] == {"mean": 9.0, "std": 2.0, "n": 2}  # (11 + 7) / 2, NaN skipped
    assert stats["unique_tones"]["n"] == 3

    summary = crnngan_summary(songs)
    assert set(summary) == set(crnngan)
    assert summary["polyphony"] == pytest.approx(0.5)
    assert summary["scale_consistency_compat"] == pytest.approx((6 / 7 + 1.0) / 2)
    assert all(isinstance(v, float) for v in summary.values())
