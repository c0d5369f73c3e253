"""MuseGAN metrics (EB, UPC, QN, DP, TD, and RB) against values computed by hand, their NaN rules,
the reference-code chroma variant, phrases of named tracks and the song-level registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgan.data.song import Song, Track
from musicgan.metrics import METRICS, metric_names
from musicgan.metrics.musegan import (
    drum_pattern,
    drum_pattern_filters,
    empty_bars,
    note_lengths,
    phrase_metrics,
    qualified_notes,
    repeated_bars,
    song_bars,
    song_tracks,
    tonal_distance,
    used_pitch_classes,
    used_pitch_classes_compat,
)

S, P, LOW = 48, 24, 36  # 48 steps per bar (12 per beat), MIDI 36-59


def bars(num_bars=1, steps=S, pitches=P):
    return np.zeros((num_bars, steps, pitches), dtype=bool)


def play(roll, bar, midi, start, length, low=LOW):
    roll[bar, start : start + length, midi - low] = True
    return roll


def test_empty_bars_is_percent_per_bar_and_the_rest_is_nan_there():
    roll = play(bars(4), 1, 40, 0, 4)
    assert empty_bars(roll).tolist() == [100.0, 0.0, 100.0, 100.0]  # EB mean: 75 %
    for values in (
        used_pitch_classes(roll, LOW),
        used_pitch_classes_compat(roll),
        qualified_notes(roll),
        drum_pattern(roll),
    ):
        assert np.isnan(values[[0, 2, 3]]).all() and not np.isnan(values[1])


def test_used_pitch_classes_folds_octaves_by_midi_pitch():
    roll = bars(1)
    for midi in (36, 48, 43, 37):  # C2, C3, G2, C#2: classes C, G, C#
        play(roll, 0, midi, 0, 6)
    assert used_pitch_classes(roll, LOW).tolist() == [3.0]


def test_used_pitch_classes_compat_sums_blocks_of_consecutive_rows():
    # 24 rows -> 12 blocks of 2 adjacent rows: MIDI 36+37 share block 0 (C and C# count once),
    # 48 (row 12) is block 6: the reference counts 2 where the true answer is 3.
    roll = bars(1)
    for midi in (36, 37, 48):
        play(roll, 0, midi, 0, 6)
    assert used_pitch_classes_compat(roll).tolist() == [2.0]
    assert used_pitch_classes(roll, LOW).tolist() == [2.0]  # C, C#, C: 2 classes
    play(roll, 0, 38, 0, 6)  # D: its own true class, block 1
    assert used_pitch_classes(roll, LOW).tolist() == [3.0] and used_pitch_classes_compat(roll).tolist() == [3.0]
    with pytest.raises(ValueError, match="multiple of 12"):
        used_pitch_classes_compat(bars(1, pitches=13))


def test_qualified_notes_counts_runs_per_pitch_against_the_threshold():
    roll = bars(2)
    play(roll, 0, 40, 0, 1)
    play(roll, 0, 40, 2, 2)  # same pitch after a gap: a second note
    play(roll, 0, 41, 0, 3)
    play(roll, 0, 45, 10, 5)
    play(roll, 1, 40, 46, 2)  # ends at the bar line
    bar, length = note_lengths(roll)
    assert sorted(zip(bar.tolist(), length.tolist())) == [(0, 1), (0, 2), (0, 3), (0, 5), (1, 2)]
    assert qualified_notes(roll).tolist() == [50.0, 0.0]  # lengths 3 and 5 of 1, 2, 3, 5
    assert qualified_notes(roll, min_steps=2).tolist() == [75.0, 100.0]


def test_drum_pattern_weights_the_sixteenth_grid_and_its_neighbours():
    # 96 steps per bar: a 16th every 6 steps; the v1 filter is [1, .3, 0, 0, 0, .3] tiled.
    assert drum_pattern_filters(96)[0, :6].tolist() == [1.0, 0.3, 0.0, 0.0, 0.0, 0.3]
    roll = bars(1, steps=96, pitches=2)
    for step in (0, 6, 13):  # on, on, one step late
        roll[0, step, 0] = True
    # shift 0: (1 + 1 + 0.3) / 3; shift 1 (grid 1, 7, 13): (0.3 + 0.3 + 1) / 3
    assert drum_pattern(roll)[0] == pytest.approx(100 * 2.3 / 3)
    held = bars(1, steps=96, pitches=2)
    held[0, 0:3, 0] = True  # a held pixel run is one onset
    assert drum_pattern(held).tolist() == [100.0]
    with pytest.raises(ValueError, match="multiple of 16"):
        drum_pattern(bars(1, steps=36))


def test_tonal_distance_matches_the_hand_computed_centroids():
    # C alone: centroid (sin 0, cos 0, sin 0, cos 0, .5 sin 0, .5 cos 0) = (0, 1, 0, 1, 0, .5).
    # G (class 7): 7 * 7pi/6 = 8pi + pi/6; 7 * 3pi/2 = 10pi + pi/2; 7 * 2pi/3 = 4pi + 2pi/3
    # -> (1/2, sqrt3/2, 1, 0, sqrt3/4, -1/4).
    c_bar, g_bar = bars(1), bars(1)
    play(c_bar, 0, 48, 0, S)  # C3 for the whole bar: every beat has the same chroma
    play(g_bar, 0, 43, 0, S)  # G2
    expected = math.sqrt(0.25 + (math.sqrt(3) / 2 - 1) ** 2 + 1 + 1 + 3 / 16 + 9 / 16)
    assert tonal_distance(c_bar, g_bar, LOW, 4)[0] == pytest.approx(expected)
    assert tonal_distance(c_bar, c_bar, LOW, 4)[0] == pytest.approx(0.0)
    # Octaves and durations do not matter after L1 normalisation: C2 + C3 == C3.
    octaves = play(play(bars(1), 0, 36, 0, S), 0, 48, 0, 5)
    assert tonal_distance(octaves, c_bar, LOW, 4)[0] == pytest.approx(0.0)


def test_tonal_distance_averages_only_the_beats_where_both_tracks_sound():
    c_bar, g_first_beat = play(bars(1), 0, 48, 0, S), play(bars(1), 0, 43, 0, 12)
    full = tonal_distance(play(bars(1), 0, 48, 0, S), play(bars(1), 0, 43, 0, S), LOW, 4)[0]
    assert tonal_distance(c_bar, g_first_beat, LOW, 4)[0] == pytest.approx(full)
    assert tonal_distance(c_bar, play(bars(1), 0, 43, 12, 12), LOW, 4)[0] == pytest.approx(full)  # beat 2 only
    silent_overlap = tonal_distance(play(bars(1), 0, 48, 0, 12), play(bars(1), 0, 43, 12, 12), LOW, 4)
    assert np.isnan(silent_overlap[0])


def test_repeated_bars_marks_exact_copies_of_the_previous_bar_of_the_phrase():
    phrase = np.stack([play(bars(), 0, 40, 0, 12)[0]] * 3 + [play(bars(), 0, 40, 0, 11)[0], bars()[0]])
    values = repeated_bars(np.stack([phrase, phrase[::-1]]))  # (2 phrases, 5 bars)
    # Phrase 0: first bar NaN, two copies, one step shorter (not a copy), empty (NaN).
    assert np.isnan(values[[0, 4]]).all() and values[1:4].tolist() == [100.0, 100.0, 0.0]
    # Phrase 1 starts empty: its second bar follows an empty bar (not a copy).
    assert np.isnan(values[5]) and values[6:].tolist() == [0.0, 0.0, 100.0, 100.0]


def _phrases():
    """2 phrases x 3 tracks (bass, piano, drums) x 2 bars."""
    roll = np.zeros((2, 3, 2, S, P), dtype=bool)
    roll[:, 0, :, :, 48 - LOW] = True  # bass: C3 throughout
    roll[0, 1, 0, :, 43 - LOW] = True  # piano: G2 in phrase 0 bar 0 only
    roll[:, 2, :, ::3, 0] = True  # drums: every 16th
    return roll


def test_phrase_metrics_names_tracks_and_pairs_and_skips_drums_for_pitch_metrics():
    values = phrase_metrics(
        _phrases(), ["bass", "piano", "drums"], drum_tracks=["drums"], lowest_pitch=LOW, shuffle_seed=0
    )
    assert set(values) == {
        "EB/bass",
        "EB/piano",
        "EB/drums",
        "RB/bass",
        "RB/piano",
        "RB/drums",
        "UPC/bass",
        "UPC/piano",
        "UPC_compat/bass",
        "UPC_compat/piano",
        "QN/bass",
        "QN/piano",
        "DP/drums",
        "TD/bass-piano",
        "TD_shuffled/bass-piano",
    }
    assert values["EB/piano"].tolist() == [0.0, 100.0, 100.0, 100.0]  # bars in (phrase, bar) order
    assert values["DP/drums"].tolist() == [100.0] * 4
    assert values["RB/bass"][[1, 3]].tolist() == [100.0, 100.0] and np.isnan(values["RB/bass"][[0, 2]]).all()
    td = values["TD/bass-piano"]
    assert td[0] == pytest.approx(1.7372, abs=1e-4) and np.isnan(td[1:]).all()


def test_without_a_drum_track_there_is_no_drum_pattern():
    values = phrase_metrics(_phrases()[:, :2], ["bass", "piano"], lowest_pitch=LOW)
    assert not any(name.startswith("DP/") for name in values)


def _song(notes, **meta):
    onset, duration, pitch, program, drum = (np.array(c, dtype=np.float64) for c in zip(*notes))
    return Song.from_columns(onset, duration, pitch, program=program, is_drum=drum, **meta)


def test_song_bars_cut_on_the_beat_grid_and_keep_repeated_notes_apart():
    # 120 bpm: one beat = 0.5 s = 12 steps. Two C3 quarter notes back to back, then a
    # note in bar 2.
    song = _song([(0.0, 0.5, 48, 0, 0), (0.5, 0.5, 48, 0, 0), (2.25, 0.25, 50, 0, 0)])
    roll = song_bars(song, song.notes)
    assert roll.shape == (2, 48, 128)
    assert roll[0, :11, 48].all() and not roll[0, 11, 48] and roll[0, 12:24, 48].all()
    assert roll[1, 6:12, 50].all() and roll[1].sum() == 6


def test_song_tracks_without_identity_are_instruments_in_order_of_appearance():
    # Notes are sorted by (onset, pitch), so the drum note (pitch 36) comes first.
    song = _song([(0.0, 1.0, 60, 0, 0), (0.0, 1.0, 36, 0, 1), (0.5, 1.0, 40, 33, 0), (1.0, 1.0, 62, 0, 0)])
    tracks = song_tracks(song)
    assert [(len(notes), drum) for notes, drum, _ in tracks] == [(1, True), (2, False), (1, False)]
    assert [notes[:, 2].tolist() for notes, _, _ in tracks] == [[36], [60, 62], [40]]


def test_song_tracks_follow_the_songs_parts():
    # Two voices on the same program stay two tracks when the song knows its parts.
    song = Song.from_columns(
        [0.0, 0.0, 0.5], [0.5, 0.5, 0.5], [72, 48, 74], track=[0, 1, 0], tracks=[Track("Soprano"), Track("Bass")]
    )
    tracks = song_tracks(song)
    assert [(name, notes[:, 2].tolist()) for notes, _, name in tracks] == [("Soprano", [72, 74]), ("Bass", [48])]


def test_song_bars_start_at_the_downbeat_after_a_pickup():
    # A one-beat pickup (0.5 s at 120 bpm) before the first bar line: the pickup sits in the
    # last beat of bar 0, the downbeat note at the start of bar 1.
    song = _song([(0.0, 0.5, 60, 0, 0), (0.5, 0.5, 62, 0, 0)], time_signatures=[(0.0, 4, 4)], downbeat_s=0.5)
    roll = song_bars(song, song.notes)
    assert roll.shape == (2, 48, 128)
    assert roll[0, 36:48, 60].all() and roll[1, 0:12, 62].all() and roll.sum() == 24


def test_registered_song_metrics_pool_bars_and_tracks():
    assert metric_names("musegan") == [
        "musegan_empty_bars",
        "musegan_used_pitch_classes",
        "musegan_qualified_notes",
        "musegan_drum_pattern",
        "musegan_tonal_distance",
    ]
    assert not set(metric_names("all")) & set(metric_names("musegan"))  # asked for by name only
    # Piano (program 0): C3 for bar 1 only; bass (program 33): G2 for both bars; 4/4 at 120 bpm.
    song = _song([(0.0, 2.0, 48, 0, 0), (0.0, 4.0, 43, 33, 0)], time_signatures=[(0.0, 4, 4)])
    value = {name: METRICS[name](song) for name in metric_names("musegan")}
    assert value["musegan_empty_bars"] == 25.0  # piano's second bar
    assert value["musegan_used_pitch_classes"] == 1.0
    assert value["musegan_qualified_notes"] == 100.0
    assert math.isnan(value["musegan_drum_pattern"])  # no drums
    assert value["musegan_tonal_distance"] == pytest.approx(1.7372, abs=1e-4)  # C vs G, bar 1 only
    drums = _song([(0.125 * i, 0.05, 36, 0, 1) for i in range(16)])  # sixteenths at 120 bpm
    assert METRICS["musegan_drum_pattern"](drums) == 100.0
    assert math.isnan(METRICS["musegan_tonal_distance"](drums))
