"""`multitrack` (MuseGAN) and the bar grid: bar-aligned full windows, metre filter, the
paper's note encoding, exact inverse, transposition that leaves drums alone."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from chorales import chorale

from musicgan.data.loader import iter_songs, make_loader
from musicgan.data.representation_base import skip_summary
from musicgan.data.representations import build_representation, representation_from_state
from musicgan.data.shards import split_urls
from musicgan.data.song import ONSET, Song
from musicgan.errors import ConfigError, SongSkipped

BAR = 48  # 4/4 at 12 steps per beat


def test_a_pickup_lands_before_the_first_bar_line():
    song = chorale("bwv101.7")  # 4/4, one-beat pickup: measure 1 starts at 0.5 s (120 bpm)
    assert song.downbeat_s == 0.5 and song.bar_origin_beats() == -3.0
    x = build_representation("multitrack").encode(song)
    on = (x > 0).reshape(len(x), 4, 84)
    first_step = int(np.flatnonzero(on.any(axis=(1, 2)))[0])
    assert first_step == 3 * 12  # the pickup fills the last beat of bar 0
    assert len(x) % BAR == 0
    # every bar line after the pickup starts a note in the bass (the chorale's harmonic rhythm)
    bass_onsets = song.grid_steps(song.notes[song.track_ids == 3, ONSET], 12)
    assert {b * BAR for b in range(1, 4)} <= set(bass_onsets.tolist())


def test_round_trip_on_real_chorales_states_its_error():
    rep = build_representation("multitrack")
    kept = total = 0
    for stem in ("bwv10.7", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6"):
        song = chorale(stem)
        x = rep.encode(song)
        back = rep.decode(x)
        np.testing.assert_array_equal(rep.encode(back), x)  # exact inverse on the encoding
        # against the score: every note on the grid comes back with its pitch, part and onset
        # beat; the step the encoding takes off is given back, so lengths are exact too
        origin = song.bar_origin_beats()
        original = {
            (int(t), int(p), round(float(b - origin), 6), round(float(e - b), 6))
            for t, p, b, e in zip(
                song.track_ids, song.pitches, song.seconds_to_beats(song.onsets), song.seconds_to_beats(song.offsets)
            )
        }
        decoded = {
            (int(t), int(p), round(float(b), 6), round(float(e - b), 6))
            for t, p, b, e in zip(
                back.track_ids, back.pitches, back.seconds_to_beats(back.onsets), back.seconds_to_beats(back.offsets)
            )
        }
        kept += len(original & decoded)
        total += len(original)
        assert [t.name for t in back.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    print(f"multitrack round trip: {kept}/{total} chorale notes exact (pitch, part, onset, length)")
    assert kept == total  # chorale notes sit on the 12-per-beat grid and last >= 2 steps


def test_note_encoding_follows_the_paper_and_inverts_exactly():
    rep = build_representation("multitrack", grouping="lpd5", steps_per_beat=4, lowest=36, num_pitches=48)
    # at 120 bpm one step = 0.125 s: a 4-step note, the same pitch again, a 1-step note, a drum
    song = Song.from_columns(
        [0.0, 0.5, 1.0, 0.0], [0.5, 0.5, 0.125, 0.5], [60, 60, 64, 38], program=[0, 0, 0, 0], is_drum=[0, 0, 0, 1]
    )
    x = rep.encode(song).reshape(-1, 5, 48) > 0
    assert x.shape == (16, 5, 48)
    assert np.flatnonzero(x[:, 1, 60 - 36]).tolist() == [0, 1, 2, 4, 5, 6]  # ends one step early
    assert not x[:, 1, 64 - 36].any()  # shorter than 2 steps: dropped
    assert np.flatnonzero(x[:, 0, 38 - 36]).tolist() == [0]  # drums: the onset only
    rng = np.random.default_rng(0)
    random_roll = np.where(rng.random((32, 5 * 48)) < 0.2, 1.0, -1.0).astype(np.float32)
    np.testing.assert_array_equal(rep.encode(rep.decode(random_roll))[:32], random_roll)
    decoded = rep.decode(random_roll)
    assert [t.program for t in decoded.tracks] == [0, 0, 25, 33, 48] and decoded.tracks[0].is_drum


def test_metre_and_parts_filters_give_reasons():
    rep = build_representation("multitrack")
    with pytest.raises(SongSkipped, match=r"metre 3/4 \(multitrack takes 4/4 only\)"):
        rep.encode(chorale("bwv11.6"))
    with pytest.raises(SongSkipped, match="5 parts, not 4"):
        rep.encode(chorale("bwv1.6"))


def test_loader_draws_bar_aligned_full_windows_and_reports_what_it_skips(bach_shards, caplog):
    urls = split_urls(bach_shards, "train")
    rep = build_representation("multitrack", steps_per_beat=4, lowest=36, num_pitches=48)
    bar = rep.window_align
    assert bar == 16
    encodings = {}
    for song in iter_songs(urls):
        try:
            encodings[song.source] = rep.encode(song)
        except SongSkipped:
            pass
    with caplog.at_level(logging.INFO, logger="musicgan.data.loader"):
        loader = make_loader(
            urls, rep, seq_len=4 * bar, batch_size=4, num_batches=6, seed=3, epoch=0, rank=0, world_size=1
        )
        batches = list(loader)
    starts = []
    for batch in batches:
        assert (batch.lengths == 4 * bar).all()  # full windows only
        for row, key in zip(batch.x.numpy(), batch.keys):
            full = encodings[key]
            found = [s for s in range(len(full) - 4 * bar + 1) if np.array_equal(full[s : s + 4 * bar], row)]
            assert any(s % bar == 0 for s in found)
            starts += found
    assert any(s > 0 for s in starts)
    assert loader.num_filtered > 0
    assert "skips song music21:bach/" in caplog.text and ("metre 3/4" in caplog.text or "parts, not 4" in caplog.text)


def test_skip_summary_counts_what_the_filters_drop(bach_shards):
    songs = list(iter_songs(split_urls(bach_shards, "train")))
    summary = skip_summary(build_representation("multitrack"), songs)
    assert sum(summary.values()) == len(songs) and summary[""] > len(songs) / 2
    assert summary["5 parts, not 4"] >= 1  # bwv1.6 (a horn part) is in the fixture's train split
    assert any(reason.startswith("metre 3/4") for reason in summary)
    assert skip_summary(build_representation("events"), songs) == {"": len(songs)}


def test_ranks_get_equal_batch_counts_of_different_windows_despite_the_filters(bach_shards):
    urls = split_urls(bach_shards, "train")
    rep = build_representation("multitrack", steps_per_beat=4, lowest=36, num_pitches=48)
    ranks = [
        list(make_loader(urls, rep, seq_len=64, batch_size=3, num_batches=4, seed=2, epoch=0, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert [len(batches) for batches in ranks] == [4, 4]  # no rank runs short: DDP would hang
    assert not all(torch.equal(a.x, b.x) for a, b in zip(*ranks))


def test_windows_must_be_whole_bars(bach_shards):
    rep = build_representation("multitrack")
    args = dict(batch_size=1, num_batches=1, seed=0, epoch=0, rank=0, world_size=1)
    urls = split_urls(bach_shards, "train")
    with pytest.raises(ConfigError, match="not a multiple"):
        make_loader(urls, rep, seq_len=50, **args)
    with pytest.raises(ConfigError, match="at least 48"):
        make_loader(urls, rep, seq_len=24, **args)


def test_transposition_shifts_pitched_tracks_and_leaves_drums():
    rep = build_representation(
        "multitrack", grouping="lpd5", steps_per_beat=4, lowest=36, num_pitches=48, transpose=(-5, 6)
    )
    window = -np.ones((16, 5 * 48), dtype=np.float32)
    blocks = window.reshape(16, 5, 48)
    blocks[0, 0, 2] = blocks[0, 1, 24] = blocks[3, 4, 30] = 1.0
    shifts = set()
    rng = np.random.default_rng(11)
    for _ in range(60):
        out = rep.augment(window, rng).reshape(16, 5, 48)
        assert out[0, 0, 2] == 1.0 and (out[:, 0] > 0).sum() == 1  # drums untouched
        (piano,) = np.flatnonzero(out[0, 1] > 0)
        shift = int(piano) - 24
        assert out[3, 4, 30 + shift] == 1.0 and (out > 0).sum() == 3
        shifts.add(shift)
    assert shifts == set(range(-5, 7))  # the whole configured range, nothing outside it
    assert rep.augment(window, rng) is not window


def test_augmented_batches_are_reproducible_and_differ_from_plain_ones(bach_shards):
    urls = split_urls(bach_shards, "train")
    args = dict(seq_len=32, batch_size=3, num_batches=3, seed=5, epoch=1, rank=0, world_size=1)
    options = dict(steps_per_beat=4, lowest=30, num_pitches=60)
    plain = build_representation("multitrack", **options)
    augmented = build_representation("multitrack", transpose=(-5, 6), **options)
    first = [b.x for b in make_loader(urls, augmented, **args)]
    again = [b.x for b in make_loader(urls, augmented, **args)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, [b.x for b in make_loader(urls, plain, **args)]))


def test_state_dict_keeps_the_named_track_order():
    rep = build_representation("multitrack", grouping="lpd5", transpose=(-5, 6))
    again = representation_from_state(rep.state_dict())
    assert again.track_names == rep.track_names == ["Drums", "Piano", "Guitar", "Bass", "Strings"]
    assert again.options == rep.options and again.num_features == 5 * 84
    with pytest.raises(ConfigError, match="grouping"):
        build_representation("multitrack", grouping="melody")
    with pytest.raises(ConfigError, match="transpose"):
        build_representation("multitrack", transpose=(6, -5))
