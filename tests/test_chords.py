"""Chord labels (numpy) per bar and per beat, MidiNet's 13-dim vector, and agreement with
music21's own chord analysis on real chorales."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan.data import chords
from musicgan.data.corpora import list_items, load_item, music21_beat_chords
from musicgan.data.song import Song

C_MAJOR, A_MINOR = 0, 12 + 9


def test_triads_and_empty_segments_get_their_labels():
    histograms = np.zeros((5, 12))
    histograms[0, [0, 4, 7]] = 1.0  # C E G
    histograms[1, [9, 0, 4]] = [2.0, 1.0, 1.0]  # A C E
    histograms[2, [0, 7]] = 1.0  # bare fifth: the chord it is the root of
    histograms[3, [7, 11, 2, 5]] = [1.0, 1.0, 1.0, 0.2]  # G7 with a short seventh: G major
    labels = chords.chord_labels(histograms)
    assert labels.tolist() == [C_MAJOR, A_MINOR, C_MAJOR, 7, chords.NO_CHORD]
    assert [chords.chord_name(x) for x in labels] == ["C", "Am", "C", "G", "N"]


def test_histograms_weigh_by_duration_inside_each_bar_of_the_grid():
    # 4/4 at 60 bpm with a one-beat pickup (downbeat 1 s): bar 0 is beats -3..1
    song = Song.from_columns(
        [0.0, 1.0, 1.0, 3.0],
        [1.0, 4.0, 2.0, 2.0],
        [67, 60, 64, 69],
        tempos=[(0.0, 60.0)],
        time_signatures=[(0.0, 4, 4)],
        downbeat_s=1.0,
    )
    bars = chords.pitch_class_histograms(song, "bar")
    assert bars.shape == (2, 12)
    np.testing.assert_allclose(bars[0, [7]], [1.0])  # the pickup G
    np.testing.assert_allclose(bars[1, [0, 4, 9]], [4.0, 2.0, 2.0])
    beats = chords.pitch_class_histograms(song, "beat")
    assert beats.shape == (8, 12) and beats[3, 7] == 1.0 and beats[4, 0] == 1.0
    assert chords.song_chords(song, "bar").tolist() == [7, A_MINOR]  # G (bare), then A C E
    assert chords.song_chords(song, "bar", num_segments=3).tolist() == [7, A_MINOR, chords.NO_CHORD]
    with pytest.raises(ValueError, match="per 'bar' or per 'beat'"):
        chords.pitch_class_histograms(song, "measure")


def test_midinet_vector_is_a_one_hot_root_and_a_minor_flag():
    vectors = chords.midinet_vectors([C_MAJOR, A_MINOR, chords.NO_CHORD])
    assert vectors.shape == (3, 13) and vectors.dtype == np.float32
    assert np.flatnonzero(vectors[0]).tolist() == [0]
    assert np.flatnonzero(vectors[1]).tolist() == [9, 12]
    assert not vectors[2].any()
    every = np.arange(chords.NUM_CHORDS)
    np.testing.assert_array_equal(chords.labels_from_midinet(chords.midinet_vectors(every)), every)


def test_transposition_rotates_roots_and_keeps_quality():
    labels = [C_MAJOR, A_MINOR, 11, chords.NO_CHORD]
    assert chords.transpose_chords(labels, 3).tolist() == [3, 12 + 0, 2, chords.NO_CHORD]
    assert chords.transpose_chords(labels, -12).tolist() == labels


def test_agreement_with_music21_chordify_on_chorales():
    """Beats where music21's chordify sees a major or minor triad: our label has its root
    and quality this often (the figure is printed and quoted in BENCHMARKS.md)."""
    hit = total = 0
    for item in list_items("music21:bach")[:5]:
        song = load_item(item, "music21:bach")
        labels = chords.song_chords(song, "beat")
        origin = song.bar_origin_beats()
        for beat, (root, quality) in music21_beat_chords(item).items():
            index = int(round(beat - origin))
            if 0 <= index < len(labels):
                total += 1
                hit += int(
                    chords.chord_root(labels[index]) == root
                    and bool(chords.is_minor(labels[index])) == (quality == "minor")
                )
    print(f"chord agreement with music21 chordify: {hit}/{total} beats = {hit / total:.1%}")
    assert total > 150 and hit / total > 0.85
