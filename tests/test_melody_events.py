"""`melody_chord_events` (JazzGAN's four rhythm encodings): exact round trips on real chorale
sopranos with the error stated, the token rules, chords per position, transposition, and
bar-aligned loader windows."""

from __future__ import annotations

import numpy as np
import pytest
from chorales import chorale
from test_melody import STEMS, decoded_notes, soprano_notes

from musicgan.data import chords
from musicgan.data.loader import make_loader
from musicgan.data.melody_events import RHYTHM_ENCODINGS, chord_vectors, labels_from_chord_vectors
from musicgan.data.representations import build_representation, representation_from_state
from musicgan.data.shards import split_urls
from musicgan.errors import ConfigError


@pytest.mark.parametrize("encoding", RHYTHM_ENCODINGS)
def test_round_trip_on_chorales_is_exact_and_states_its_error(encoding):
    rep = build_representation("melody_chord_events", rhythm_encoding=encoding)
    kept = total = 0
    worst = 0.0
    for stem in STEMS:
        song = chorale(stem)
        x = rep.encode(song)
        back = rep.decode(x)
        again = rep.encode(back)
        np.testing.assert_array_equal(again[:, : rep.num_token_fields], x[:, : rep.num_token_fields])
        np.testing.assert_array_equal(rep.chord_labels(again), rep.chord_labels(x))
        beats = chords.song_chords(song, "beat", len(x) // rep.window_align * 4)
        np.testing.assert_array_equal(rep.chord_labels(x), beats)  # the per-beat labels, unchanged
        original, decoded = soprano_notes(song), decoded_notes(back, 0)
        kept += len(original & decoded)
        total += len(original)
        worst = max(worst, max(abs(a[1] - b[1]) + abs(a[2] - b[2]) for a, b in zip(sorted(original), sorted(decoded))))
    print(
        f"melody_chord_events/{encoding}: {kept}/{total} soprano notes exact; worst onset + length error {worst} beats"
    )
    assert kept == total and worst == 0.0  # chorale rhythms lie on the 48-per-bar grid


def test_timestep_tokens_mark_onsets_sustains_and_rests():
    rep = build_representation("melody_chord_events", rhythm_encoding="timestep")
    x = rep.encode(chorale("bwv101.7"))  # one-beat pickup: the first bar's first 3 beats are rests
    assert (rep.window_align, rep.num_features, rep.vocab_sizes) == (48, 25, (50,))
    assert (x[:36, 0] == 0).all() and x[36, 0] >= 2  # rest, then the pickup note's onset
    assert x[37, 0] == 1  # sustain
    assert set(np.unique(x[:, 1:])) <= {0.0, 1.0}


@pytest.mark.parametrize("encoding", ["duration", "end_position", "interval"])
def test_note_events_fill_each_bar_then_leave_empty_slots(encoding):
    rep = build_representation("melody_chord_events", rhythm_encoding=encoding)
    x = rep.encode(chorale("bwv10.7"))
    bars = x[:, :2].reshape(-1, 16, 2)
    filled = bars[:, :, 0] > 0
    assert (filled[:, :-1] >= filled[:, 1:]).all()  # events first, then empty slots
    assert ((bars[:, :, 1] > 0) == filled).all()
    if encoding == "end_position":
        ends = np.where(filled, bars[:, :, 1], 0).max(axis=1)
        assert (ends == 48).all()  # every bar's events end on the bar line
    else:
        assert (np.where(filled, bars[:, :, 1], 0).sum(axis=1) == 48).all()  # lengths sum to a bar


def test_decode_repairs_rows_a_generator_may_emit():
    rep = build_representation("melody_chord_events", rhythm_encoding="duration")
    x = np.zeros((16, 26), dtype=np.float32)
    x[0, :2] = (2, 12)  # a tie with nothing before: a rest
    x[1, :2] = (3 + 12, 40)  # runs past the bar line: cut at step 48
    x[2, :2] = (3 + 14, 8)  # no room left: dropped
    x[3, :2] = (np.nan, 1e9)
    song = rep.decode(x)
    melody = song.notes[song.track_ids == 0]
    assert len(melody) == 1 and melody[0, 2] == 48 + 12
    np.testing.assert_allclose(melody[0, 1], 36 / 12 * 60 / rep.options["decode_bpm"])


def test_chord_vectors_hold_the_triad_and_its_root():
    labels = np.array([0, 12 + 9, chords.NO_CHORD])  # C, Am, none
    v = chord_vectors(labels)
    assert v.shape == (3, 24)
    assert set(np.flatnonzero(v[0, :12])) == {0, 4, 7} and np.flatnonzero(v[0, 12:]).tolist() == [0]
    assert set(np.flatnonzero(v[1, :12])) == {9, 0, 4} and np.flatnonzero(v[1, 12:]).tolist() == [9]
    assert not v[2].any()
    np.testing.assert_array_equal(labels_from_chord_vectors(v), labels)
    np.testing.assert_array_equal(labels_from_chord_vectors(chord_vectors(np.arange(25))), np.arange(25))


@pytest.mark.parametrize("encoding", ["timestep", "end_position", "interval"])
def test_transposition_moves_chords_and_absolute_pitches(encoding):
    rep = build_representation("melody_chord_events", rhythm_encoding=encoding, transpose=(-5, 6))
    x = rep.encode(chorale("bwv10.7"))[: 2 * rep.window_align]
    rng = np.random.default_rng(3)
    for _ in range(10):
        out = rep.augment(x, rng)
        shift = int((rep.chord_labels(out)[0] - rep.chord_labels(x)[0]) % 12)
        np.testing.assert_array_equal(rep.chord_labels(out), chords.transpose_chords(rep.chord_labels(x), shift))
        notes = np.flatnonzero(x[:, 0] >= (2 if encoding == "timestep" else 3))
        moved = out[notes, 0] - x[notes, 0]
        if encoding == "interval":
            assert not moved.any()  # intervals do not change under transposition
        else:
            assert len(set(moved.tolist())) == 1 and int(moved[0]) % 12 == shift


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="rhythm_encoding"):
        build_representation("melody_chord_events", rhythm_encoding="bars")
    with pytest.raises(ConfigError, match="48 steps per bar"):
        build_representation("melody_chord_events", steps_per_beat=4)
    with pytest.raises(ConfigError, match="anchor_pitch"):
        build_representation("melody_chord_events", anchor_pitch=20)


def test_loader_gives_bar_aligned_windows(bach_shards):
    urls = split_urls(bach_shards, "train")
    args = dict(batch_size=4, num_batches=2, seed=1, epoch=0, rank=0, world_size=1)
    rep = build_representation("melody_chord_events", rhythm_encoding="end_position", transpose=(-5, 6))
    batches = list(make_loader(urls, rep, seq_len=32, **args))
    assert all(b.x.shape == (4, 32, 26) for b in batches)
    first = batches[0].x.numpy().reshape(4, 2, 16, 26)
    assert (first[:, :, 0, 0] > 0).all()  # every window starts with a bar's first event
    assert representation_from_state(rep.state_dict()).options == rep.options
