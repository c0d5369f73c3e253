"""Hostile input for tracks and bars, from files built byte by byte: 40 tracks, no time
signature, a pickup longer than a bar. Each gets a one-line reason or correct handling."""

from __future__ import annotations

import numpy as np
import pytest
from midi_factory import note, program_change, smf, time_signature_event, track

from musicgan.data import chords
from musicgan.data.bounds import GridTooLarge
from musicgan.data.chords import song_chords
from musicgan.data.loader import iter_encoded, iter_songs
from musicgan.data.midi import read_midi_bytes
from musicgan.data.prepare import prepare_dataset
from musicgan.data.representation_base import skip_summary
from musicgan.data.representations import build_representation
from musicgan.data.shards import split_urls
from musicgan.data.song import Song
from musicgan.data.tracks import group_tracks
from musicgan.errors import SongSkipped

Q = 480  # ticks per quarter; the files run at the default 120 bpm


def forty_tracks() -> bytes:
    """40 tracks, one instrument each: programs 0, 3, 6, ... 117 on channels 0-15 (not 9)."""
    tracks = []
    for i in range(40):
        channel = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15)[i % 15]
        tracks.append(track(program_change(0, 3 * i, channel) + note(0, Q, 40 + i, channel=channel)))
    return smf(tracks)


def test_forty_tracks_are_kept_and_grouped_or_skipped_with_a_reason(tmp_path):
    song = read_midi_bytes(forty_tracks())
    assert len(song.tracks) == 40 and [t.program for t in song.tracks] == [3 * i for i in range(40)]
    assert sorted(set(song.track_ids.tolist())) == list(range(40))
    with pytest.raises(SongSkipped, match="^40 parts, not 4$"):
        build_representation("multitrack").encode(song)
    groups = group_tracks(song, "lpd5")
    programs = 3 * np.arange(40)
    expected = [
        0,
        (programs <= 7).sum(),
        ((programs >= 24) & (programs <= 31)).sum(),
        ((programs >= 32) & (programs <= 39)).sum(),
    ]
    dropped = (((programs >= 96) & (programs <= 103)) | (programs >= 112)).sum()
    expected.append(40 - sum(expected) - dropped)
    assert [len(g.notes) for g in groups] == expected
    x = build_representation("multitrack", grouping="lpd5").encode(song).reshape(-1, 5, 84) > 0
    assert x[:, 1:].any(axis=(0, 2)).all()  # every family with notes shows up in its track
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "forty.mid").write_bytes(forty_tracks())
    manifest = prepare_dataset(str(tmp_path / "in"), tmp_path / "out", workers=1, ratios=(1, 0, 0), progress=False)
    assert manifest["skipped"] == [] and manifest["included"][0]["notes"] == 40


def test_no_time_signature_means_4_4_from_the_first_tick():
    song = read_midi_bytes(smf([track(note(0, Q, 60) + note(0, 2 * Q, 64) + note(0, 5 * Q, 67))]))
    assert song.time_signatures == [] and song.downbeat_s == 0.0
    assert song.metre() == (4, 4) and song.bar_origin_beats() == 0.0
    x = build_representation("multitrack", grouping="lpd5", steps_per_beat=4).encode(song).reshape(-1, 5, 84) > 0
    assert len(x) == 2 * 16 and x[0, 1, 60 - 24] and x[4, 1, 64 - 24]  # bars from tick 0: C, E, G (beats 0-8)
    assert song_chords(song, "bar").tolist() == [0, 7]  # C E G in bar 1, the held G alone in bar 2


def test_a_pickup_longer_than_a_bar_puts_the_first_time_signature_on_a_bar_line():
    # notes from tick 0, the 4/4 time signature only at beat 6: a 6-beat (1.5-bar) pickup
    events = note(0, Q, 62) + note(0, Q, 64) + note(0, 4 * Q, 65) + time_signature_event(0) + note(0, 4 * Q, 60)
    song = read_midi_bytes(smf([track(events)]))
    assert song.downbeat_s == pytest.approx(3.0) and song.time_signatures[0][1:] == (4, 4)
    assert song.bar_origin_beats() == pytest.approx(-2.0)  # the bar line two beats before t = 0
    rep = build_representation("multitrack", grouping="lpd5", steps_per_beat=4)
    x = rep.encode(song).reshape(-1, 5, 84) > 0
    assert np.flatnonzero(x[:, 1].any(axis=1))[0] == 2 * 4  # the pickup's first note, beat 2 of bar 0
    assert x[2 * 16, 1, 60 - 24] and not x[2 * 16 - 1, 1, 60 - 24]  # the downbeat note starts bar 2
    assert len(x) == 3 * 16


def test_a_song_spanning_too_many_beats_is_refused_before_any_grid_is_allocated():
    # two notes 60,000 beats apart: inside the song span limit, far beyond a roll's cell limit
    song = Song.from_columns([0.0, 30_000.0], [0.5, 0.5], [60, 64])
    with pytest.raises(GridTooLarge, match="multitrack roll"):
        build_representation("multitrack", grouping="lpd5").encode(song)
    with pytest.raises(GridTooLarge, match="melody_chord rows"):
        build_representation("melody_chord").encode(song)
    assert len(build_representation("melody_grid", steps_per_beat=1).encode(song)) == 60_001  # 1 column: fits
    held = Song.from_columns([0.0, 0.0], [30_000.0, 1.0], [60, 67])  # one note held over 15,000 bars
    bars = chords.pitch_class_histograms(held, "bar")
    assert bars.shape == (15_000, 12) and bars[0, 7] == 2.0 and (bars[:, 0] == 4.0).all()


def test_iter_encoded_leaves_out_songs_the_representation_skips(bach_shards):
    urls = split_urls(bach_shards, "train")
    rep = build_representation("multitrack", steps_per_beat=4, lowest=36, num_pitches=48)
    encoded = [song.source for song, _ in iter_encoded(urls, rep)]
    songs = list(iter_songs(urls))
    assert 0 < len(encoded) < len(songs)
    assert len(encoded) == skip_summary(rep, songs)[""]
