"""Representations: exact round trips, documented normalisation, robust decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from midi_factory import make_song

from musicgan.data.representations import (
    build_representation,
    estimate_key,
    representation_from_state,
    transposition_to_c,
)
from musicgan.data.song import Song
from musicgan.errors import ConfigError

EVENT_OPTIONS = [
    {},
    {"tones_per_step": 3},
    {"tones_per_step": 2, "pitch_unit": "hz"},
    {"pitch_unit": "hz", "normalize": False},
    {"time_unit": "ticks"},
    {"time_unit": "ticks", "normalize": False, "tones_per_step": 3},
    {"normalize": False},
]


def _pitched(song: Song) -> np.ndarray:
    return song.notes[:, :4]  # onset, duration, pitch, velocity (program/drum are not encoded)


@pytest.mark.parametrize(
    "options", EVENT_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_events_round_trip_exactly(options):
    song = make_song(seed=11, num_onsets=80, chord_prob=0.5)
    rep = build_representation("events", **options)
    steps = rep.encode(song)
    assert steps.dtype == np.float32 and steps.shape[1] == rep.num_features == 1 + 3 * rep.tones_per_step
    back = rep.decode(steps)
    np.testing.assert_allclose(_pitched(back), _pitched(song), atol=1e-4, rtol=1e-6)
    np.testing.assert_allclose(rep.encode(back), steps, atol=1e-5)


def test_events_reference_layout_and_normalisation():
    # a C major triad at 0.5 s (0.25 s long) then a single note: dt, length, pitch, velocity
    song = Song.from_columns([0.5, 0.5, 0.5, 1.0], [0.25, 0.25, 0.25, 0.5], [60, 64, 67, 72], [127, 127, 127, 64])
    raw = build_representation("events", normalize=False).encode(song)
    np.testing.assert_allclose(raw, [[0.5, 0.25, 60, 127], [0, 0.25, 64, 127], [0, 0.25, 67, 127], [0.5, 0.5, 72, 64]])
    norm = build_representation("events").encode(song)
    np.testing.assert_allclose(norm[0], [np.log1p(2.0), np.log1p(1.0), (60 - 64) / 64, 1.0], rtol=1e-6)
    hz = build_representation("events", normalize=False, pitch_unit="hz").encode(song)
    np.testing.assert_allclose(hz[:, 2], 440 * 2 ** ((np.array([60, 64, 67, 72]) - 69) / 12), rtol=1e-6)


def test_k_tones_per_step_packs_chords_and_spills_extra_tones():
    song = Song.from_columns([0, 0, 0, 0, 0, 1.0], [0.5] * 6, [60, 64, 67, 70, 74, 62], [100] * 6)
    rep = build_representation("events", tones_per_step=3, normalize=False)
    steps = rep.encode(song)
    assert steps.shape == (3, 10)
    np.testing.assert_allclose(steps[0], [0, 0.5, 60, 100, 0.5, 64, 100, 0.5, 67, 100])
    np.testing.assert_allclose(steps[1], [0, 0.5, 70, 100, 0.5, 74, 100, 0, 0, 0])  # spill, dt=0, unused slot zero
    np.testing.assert_allclose(steps[2], [1.0, 0.5, 62, 100, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(_pitched(rep.decode(steps)), _pitched(song))


def test_ticks_mode_counts_384_per_quarter_with_the_tempo_honoured():
    song = Song.from_columns([0.0, 0.5], [0.5, 1.0], [60, 62], [90, 90], tempos=[(0.0, 60.0)])  # 1 s per beat
    rep = build_representation("events", time_unit="ticks", normalize=False, decode_bpm=60.0)
    np.testing.assert_allclose(rep.encode(song), [[0, 192, 60, 90], [192, 384, 62, 90]])
    np.testing.assert_allclose(_pitched(rep.decode(rep.encode(song))), _pitched(song), atol=1e-9)


@pytest.mark.parametrize(
    "name,options",
    [
        ("events", {}),
        ("events", {"tones_per_step": 3, "pitch_unit": "hz"}),
        ("events", {"time_unit": "ticks"}),
        ("pianoroll", {}),
        ("tokens", {}),
    ],
)
def test_decode_survives_arbitrary_generator_output(name, options):
    rep = build_representation(name, **options)
    if rep.needs_fit:
        rep.fit([make_song(seed=1)])
    rng = np.random.default_rng(0)
    junk = rng.normal(0, 30, size=(50, rep.num_features))
    junk[3] = np.nan
    junk[4] = np.inf
    junk[5] = -np.inf
    song = rep.decode(junk.astype(np.float32))
    assert np.isfinite(song.notes).all()
    if song.num_notes:
        assert song.pitches.min() >= 0 and song.pitches.max() <= 127
        assert (song.durations > 0).all() and (song.velocities >= 1).all() and (song.onsets >= 0).all()
    # zero padding rows decode to nothing
    assert rep.decode(np.zeros((20, rep.num_features), dtype=rep.dtype)).num_notes == 0


def test_pianoroll_cells_and_exact_inverse_on_rolls():
    song = Song.from_columns([0.0, 0.5, 0.5], [0.5, 0.25, 1.0], [60, 64, 108], [90, 90, 90])  # 120 bpm
    rep = build_representation("pianoroll", frames_per_beat=4)  # a frame is 0.125 s
    roll = rep.encode(song)
    assert roll.shape == (12, 88) and roll.dtype == np.float32
    assert set(np.unique(roll)) == {0.0, 1.0}
    assert roll[0:4, 60 - 21].all() and not roll[4:, 60 - 21].any()
    assert roll[4:6, 64 - 21].all() and roll[:, 64 - 21].sum() == 2
    assert roll[4:12, 87].all()
    np.testing.assert_allclose(_pitched(rep.decode(roll)), np.c_[song.notes[:, :3], np.full(3, 100)])
    rng = np.random.default_rng(1)
    random_roll = (rng.random((64, 88)) < 0.1).astype(np.float32)
    np.testing.assert_array_equal(rep.encode(rep.decode(random_roll)), random_roll)


def test_pianoroll_drops_notes_outside_88_keys_and_keeps_short_notes():
    song = Song.from_columns([0.0, 0.0, 0.0], [0.01, 1.0, 1.0], [60, 10, 120], [90, 90, 90])
    roll = build_representation("pianoroll", frames_per_beat=1).encode(song)
    assert roll.sum() == 1 and roll[0, 60 - 21] == 1  # the 10 ms note still gets its frame


def test_key_estimation_and_transposition_to_c():
    d_major = Song.from_columns(
        np.arange(15) * 0.5, [0.5] * 15, [62, 64, 66, 67, 69, 71, 73, 74] + [62, 66, 69] * 2 + [62], [90] * 15
    )
    assert estimate_key(d_major) == (2, "major")
    assert transposition_to_c(d_major) == -2
    a_minor = Song.from_columns(
        np.arange(11) * 0.5, [0.5] * 11, [57, 59, 60, 62, 64, 65, 67, 69, 57, 60, 64], [90] * 11
    )
    assert estimate_key(a_minor) == (9, "minor")
    assert transposition_to_c(a_minor) == 3
    plain = build_representation("pianoroll", frames_per_beat=2)
    shifted = d_major.replace(notes=d_major.notes + np.array([0, 0, -2, 0, 0, 0, 0]))
    np.testing.assert_array_equal(
        build_representation("pianoroll", frames_per_beat=2, transpose="c").encode(d_major), plain.encode(shifted)
    )


def test_tokens_vocabulary_round_trip_and_state():
    train = [make_song(seed=s, chord_prob=0.5) for s in range(4)]
    rep = build_representation("tokens")
    rep.fit(train)
    assert rep.vocab[:2] == ["<pad>", "<unk>"] and rep.dtype == np.int64 and rep.num_features == 1
    ids = rep.encode(train[0])
    assert ids.dtype == np.int64 and ids.shape[1] == 1 and ids.min() >= 2
    np.testing.assert_array_equal(rep.encode(rep.decode(ids)), ids)
    # the pitches per onset survive; timing becomes the fixed step grid
    decoded = rep.decode(ids)
    assert decoded.num_notes == train[0].num_notes
    assert sorted(decoded.pitches.tolist()) == sorted(train[0].pitches.tolist())
    unseen = Song.from_columns([0.0], [1.0], [5], [90])
    assert rep.encode(unseen).ravel().tolist() == [rep.UNK]
    state = json.loads(json.dumps(rep.state_dict()))
    again = representation_from_state(state)
    np.testing.assert_array_equal(again.encode(train[2]), rep.encode(train[2]))


def test_tokens_need_fit_and_vocab_is_deterministic():
    rep = build_representation("tokens")
    with pytest.raises(RuntimeError, match="fit"):
        rep.encode(make_song())
    a, b = build_representation("tokens", max_vocab=10), build_representation("tokens", max_vocab=10)
    songs = [make_song(seed=s) for s in range(3)]
    a.fit(songs)
    b.fit(list(reversed(songs)))
    assert a.vocab == b.vocab and len(a.vocab) == 10


def test_state_dict_round_trip_for_every_representation():
    for name, options in [
        ("events", {"tones_per_step": 3, "pitch_unit": "hz"}),
        ("pianoroll", {"frames_per_beat": 2, "transpose": "c"}),
    ]:
        rep = build_representation(name, **options)
        again = representation_from_state(json.loads(json.dumps(rep.state_dict())))
        assert again.options == rep.options and again.num_features == rep.num_features
        song = make_song(seed=5)
        np.testing.assert_array_equal(again.encode(song), rep.encode(song))


def test_registry_errors_are_config_errors():
    with pytest.raises(ConfigError, match="unknown representation"):
        build_representation("wavenet")
    with pytest.raises(ConfigError, match="tones_per_step"):
        build_representation("events", tones_per_step=0)
    with pytest.raises(ConfigError, match="bad option"):
        build_representation("pianoroll", frames=3)
    with pytest.raises(ConfigError):
        representation_from_state({"name": "tokens", "options": {}}).load_state_dict({"name": "events"})
