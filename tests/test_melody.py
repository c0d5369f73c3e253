"""`melody_chord` (MidiNet) and `melody_grid` (SeqGAN): encodings of real chorale sopranos,
exact inverses on the encoding, stated errors against the score, transposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chorales import chorale

from musicgan.data import chords
from musicgan.data.loader import make_loader
from musicgan.data.representations import build_representation, representation_from_state
from musicgan.data.shards import split_urls
from musicgan.data.song import Song

STEMS = ("bwv10.7", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6", "bwv108.6")


def soprano_notes(song: Song) -> set:
    """(pitch, onset beat from the first bar line, length in beats) of the top part."""
    top = song.notes[song.track_ids == 0]
    begin = song.seconds_to_beats(top[:, 0]) - song.bar_origin_beats()
    end = song.seconds_to_beats(top[:, 0] + top[:, 1]) - song.bar_origin_beats()
    return {(int(p), round(float(b), 6), round(float(e - b), 6)) for p, b, e in zip(top[:, 2], begin, end)}


def notes_without_repeats(song: Song) -> int:
    """Top-part notes not touching a note of the same pitch (what a binary roll keeps apart)."""
    top = song.notes[song.track_ids == 0]
    touching = (top[1:, 2] == top[:-1, 2]) & np.isclose(top[1:, 0], top[:-1, 0] + top[:-1, 1])
    merged = np.zeros(len(top), dtype=bool)
    merged[1:] |= touching
    merged[:-1] |= touching
    return int((~merged).sum())


def decoded_notes(song: Song, track: int, offset_beats: float = 0.0) -> set:
    line = song.notes[song.track_ids == track]
    begin = song.seconds_to_beats(line[:, 0]) - offset_beats
    end = song.seconds_to_beats(line[:, 0] + line[:, 1]) - offset_beats
    return {(int(p), round(float(b), 6), round(float(e - b), 6)) for p, b, e in zip(line[:, 2], begin, end)}


# -- melody_chord ---------------------------------------------------------------------------------
def test_melody_chord_prepends_an_empty_bar_and_repeats_each_bars_chord():
    song = chorale("bwv101.7")  # one-beat pickup
    rep = build_representation("melody_chord")
    assert (rep.window_align, rep.min_window, rep.num_features) == (16, 32, 141)
    x = rep.encode(song)
    assert x.dtype == np.float32 and len(x) % 16 == 0 and set(np.unique(x)) == {0.0, 1.0}
    assert not x[:16].any()  # the prepended bar: previous bar of bar 1 is zeros
    first = int(np.flatnonzero(x[:, :128].any(axis=1))[0])
    assert first == 16 + 12  # the pickup: last beat of the song's first (partial) bar
    assert (x[:, :128].sum(axis=1) <= 1).all()  # monophonic
    bars = x[16:, 128:].reshape(-1, 16, 13)
    assert (bars == bars[:, :1]).all()  # one chord per bar, on every step
    expected = chords.song_chords(song, "bar", len(bars))
    np.testing.assert_array_equal(chords.labels_from_midinet(bars[:, 0]), expected)
    assert (expected != chords.NO_CHORD).sum() > len(bars) - 2


def test_melody_chord_round_trip_on_chorales_states_its_error():
    rep = build_representation("melody_chord")
    kept = total = separate = 0
    for stem in STEMS:
        song = chorale(stem)
        x = rep.encode(song)
        back = rep.decode(x)
        again = rep.encode(back)
        np.testing.assert_array_equal(again[16 : 16 + len(x), :128], x[:, :128])  # melody rows exact
        decoded_chords = chords.song_chords(back.replace(notes=back.notes[back.track_ids == 1]), "bar", len(x) // 16)
        np.testing.assert_array_equal(decoded_chords, chords.labels_from_midinet(x[::16, 128:]))
        # against the score: the empty bar costs one bar of offset; repeated notes merge
        kept += len(soprano_notes(song) & decoded_notes(back, 0, offset_beats=4.0))
        total += len(soprano_notes(song))
        separate += notes_without_repeats(song)
    print(
        f"melody_chord round trip: {kept}/{total} soprano notes exact ({kept / total:.1%}); the others are "
        "repeated notes of one pitch, merged as in MidiNet"
    )
    assert kept == separate  # exactly the notes that do not touch a repeat of their pitch


def test_melody_chord_transposition_moves_melody_and_chord_root_together():
    rep = build_representation("melody_chord", transpose=(-6, 5))
    x = rep.encode(chorale("bwv10.7"))[16:48]
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(40):
        out = rep.augment(x, rng)
        shift = int(
            out[:, :128].argmax(axis=1)[x[:, :128].any(axis=1)][0]
            - x[:, :128].argmax(axis=1)[x[:, :128].any(axis=1)][0]
        )
        np.testing.assert_array_equal(out[:, :128], np.roll(x[:, :128], shift, axis=1))  # no note leaves 0..127
        np.testing.assert_array_equal(
            chords.labels_from_midinet(out[:, 128:]),
            chords.transpose_chords(chords.labels_from_midinet(x[:, 128:]), shift),
        )
        seen.add(shift)
    assert seen == set(range(-6, 6))


# -- melody_grid ----------------------------------------------------------------------------------
@pytest.mark.parametrize("hold", [False, True])
def test_melody_grid_round_trip_on_chorales_states_its_error(hold):
    rep = build_representation("melody_grid", hold=hold)
    kept = total = separate = 0
    for stem in STEMS:
        song = chorale(stem)
        ids = rep.encode(song)
        assert ids.dtype == np.int64 and ids.shape[1] == 1 and 0 <= ids.min() and ids.max() < rep.vocab_size
        back = rep.decode(ids)
        np.testing.assert_array_equal(rep.encode(back)[: len(ids)], ids)  # exact on the token sequence
        kept += len(soprano_notes(song) & decoded_notes(back, 0, offset_beats=0.0))
        total += len(soprano_notes(song))
        separate += notes_without_repeats(song)
    print(f"melody_grid hold={hold} round trip: {kept}/{total} soprano notes exact ({kept / total:.1%})")
    assert kept == (total if hold else separate)  # without hold, repeated notes of one pitch merge


def test_melody_grid_tokens_and_hold_rules():
    rep = build_representation("melody_grid", hold=True, steps_per_beat=1)
    assert rep.vocab_size == 90 and rep.hold_token == 89
    song = Song.from_columns([0.0, 2.0, 3.0, 4.0], [2.0, 1.0, 1.0, 1.0], [60, 60, 62, 120], tempos=[(0.0, 60.0)])
    assert rep.encode(song)[:, 0].tolist() == [40, 89, 40, 42, 0]  # pitch 120 is outside 21..108: a rest
    ids = np.array([[89], [40], [89], [0], [89], [42]])  # a hold after a rest (or first) is a rest
    back = rep.decode(ids)
    assert rep.encode(back)[:, 0].tolist() == [0, 40, 89, 0, 0, 42]
    plain = build_representation("melody_grid", steps_per_beat=1)
    assert plain.vocab_size == 89 and plain.decode(np.array([[40], [40], [0], [40]])).num_notes == 2
    assert plain.decode(np.array([[np.nan], [1e9], [-5]], dtype=np.float64)).num_notes == 1  # clipped


def test_melody_grid_transposition_moves_pitches_only():
    rep = build_representation("melody_grid", hold=True, transpose=(-5, 6))
    window = np.array([[0], [1], [89], [50], [88]])
    rng = np.random.default_rng(2)
    for _ in range(30):
        out = rep.augment(window, rng)
        assert out[0, 0] == 0 and out[2, 0] == 89
        shift = int(out[3, 0]) - 50
        assert -5 <= shift <= 6
        assert out[1, 0] == (1 + shift if shift >= 0 else 0) and out[4, 0] == (88 + shift if shift <= 0 else 0)


def test_melody_loaders_give_bar_aligned_pairs_and_token_sequences(bach_shards):
    urls = split_urls(bach_shards, "train")
    args = dict(batch_size=4, num_batches=2, seed=1, epoch=0, rank=0, world_size=1)
    pairs = list(make_loader(urls, build_representation("melody_chord"), seq_len=32, **args))
    assert all(b.x.shape == (4, 32, 141) and (b.lengths == 32).all() for b in pairs)
    bars = pairs[0].x[:, :, 128:].reshape(4, 2, 16, 13)
    assert torch.equal(bars, bars[:, :, :1].expand_as(bars))  # windows start on bar lines
    tokens = list(make_loader(urls, build_representation("melody_grid"), seq_len=32, **args))
    assert all(b.x.dtype == torch.int64 and b.x.shape == (4, 32, 1) for b in tokens)
    rep = build_representation("melody_grid", hold=True, transpose=(-5, 6))
    assert representation_from_state(rep.state_dict()).options == rep.options
