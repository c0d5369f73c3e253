"""Track identity (schema 2): the `track` note column, meta `tracks`, schema-1 shards, and
the grouping rules (parts, lpd5, melody) multi-track representations ask for."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from chorales import chorale
from midi_factory import make_song, write_song

from musicgan.data.loader import iter_songs
from musicgan.data.midi import read_midi
from musicgan.data.prepare import FORMAT, prepare_dataset
from musicgan.data.shards import SampleError, decode_sample, encode_sample, split_urls
from musicgan.data.song import NO_TRACK, NUM_NOTE_COLUMNS, PITCH, TRACK, Song, Track
from musicgan.data.tracks import LPD5_TRACKS, group_tracks, lpd5_family, skyline
from musicgan.errors import ConfigError, SongSkipped

RATIOS = (0.6, 0.2, 0.2)


def test_chorale_parts_become_named_tracks_in_score_order():
    song = chorale("bwv10.7")
    assert song.notes.shape[1] == NUM_NOTE_COLUMNS == 7
    assert [t.name for t in song.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    means = [song.notes[song.track_ids == i, PITCH].mean() for i in range(4)]
    assert means == sorted(means, reverse=True)  # S above A above T above B
    assert set(song.track_ids.tolist()) == {0, 1, 2, 3}


def test_midi_instruments_become_tracks_in_file_order(tmp_path):
    a = make_song(seed=1, num_onsets=12, program=40)
    b = make_song(seed=2, num_onsets=12, program=33)
    notes = np.concatenate([a.notes, b.notes])
    notes[:, TRACK] = [0] * a.num_notes + [1] * b.num_notes
    song = a.replace(notes=notes, tracks=[Track("Violin", 40, False), Track("Bass", 33, False)])
    back = read_midi(write_song(tmp_path / "two.mid", song))
    assert back.tracks == [Track("Violin", 40, False), Track("Bass", 33, False)]
    for i, program in enumerate((40, 33)):
        assert (back.notes[back.track_ids == i, 4] == program).all()
    assert back.downbeat_s == 0.0


def test_schema_1_samples_load_with_unknown_tracks():
    song = make_song(seed=5, num_onsets=10)
    buffer = io.BytesIO()
    np.save(buffer, song.notes[:, :6], allow_pickle=False)
    meta = {k: v for k, v in song.meta().items() if k not in ("tracks", "downbeat_s")}
    legacy = decode_sample({"notes.npy": buffer.getvalue(), "json": json.dumps(meta).encode()})
    assert legacy.notes.shape == (song.num_notes, 7) and (legacy.notes[:, TRACK] == NO_TRACK).all()
    assert legacy.tracks == [] and legacy.downbeat_s == 0.0
    np.testing.assert_array_equal(legacy.notes[:, :6], song.notes[:, :6])
    with pytest.raises(SongSkipped, match="schema-1"):
        group_tracks(legacy, "parts")


def test_schema_2_sample_round_trips_tracks_and_downbeat():
    song = chorale("bwv101.7")
    back = decode_sample(encode_sample(song, "k", "train"))
    assert back.tracks == song.tracks and back.downbeat_s == song.downbeat_s == 0.5
    np.testing.assert_array_equal(back.notes, song.notes)


@pytest.mark.parametrize(
    "meta",
    [
        {"tracks": [{"name": "S"}]},
        {"tracks": 3},
        {"downbeat_s": float("nan")},
        {"downbeat_s": -1.0},
        {"downbeat_s": "soon"},
    ],
)
def test_malformed_track_or_downbeat_meta_is_a_sample_error(meta):
    song = make_song(seed=6, num_onsets=4)
    sample = encode_sample(song, "k", "train")
    bad = dict(json.loads(sample["json"]), **meta)
    with pytest.raises(SampleError, match="malformed meta"):
        decode_sample({"notes.npy": sample["notes.npy"], "json": json.dumps(bad).encode()})


def test_prepare_writes_schema_2_and_says_when_it_rewrites_schema_1(tmp_path, caplog):
    write_song(tmp_path / "in" / "a.mid", make_song(seed=1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "musicgan-shards/1"}))
    with caplog.at_level(logging.INFO, logger="musicgan.data.prepare"):
        manifest = prepare_dataset(str(tmp_path / "in"), out, workers=1, ratios=(1, 0, 0), progress=False)
    assert manifest["format"] == FORMAT == "musicgan-shards/2"
    assert "re-writing musicgan-shards/1 shards" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="musicgan.data.prepare"):
        prepare_dataset(str(tmp_path / "in"), out, workers=1, ratios=(1, 0, 0), progress=False)
    assert "re-writing" not in caplog.text  # same schema: nothing to say


def test_bach_shards_hold_four_named_tracks_and_a_downbeat(bach_shards):
    songs = list(iter_songs(split_urls(bach_shards, "train")))
    four = [s for s in songs if len(s.tracks) == 4]
    assert len(four) >= 0.7 * len(songs)  # the others add instrument parts (horns, oboe, timpani)
    assert all(
        len(s.tracks) > 4 and [t.name for t in s.tracks[-4:]] == ["Soprano", "Alto", "Tenor", "Bass"]
        for s in songs
        if len(s.tracks) != 4
    )
    assert all([t.name for t in s.tracks] == ["Soprano", "Alto", "Tenor", "Bass"] for s in four)
    assert any(s.downbeat_s > 0 for s in songs) and all(s.downbeat_s >= 0 for s in songs)


# -- grouping rules ----------------------------------------------------------------------------------
def test_parts_rule_gives_the_four_voices_and_skips_other_scores():
    groups = group_tracks(chorale("bwv10.7"), "parts")
    assert [g.name for g in groups] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert sum(len(g.notes) for g in groups) == chorale("bwv10.7").num_notes
    with pytest.raises(SongSkipped, match="5 parts, not 4"):
        group_tracks(chorale("bwv1.6"), "parts")  # a horn part beside the four voices


def test_lpd5_families_follow_general_midi_program_ranges():
    programs = np.arange(128)
    family = lpd5_family(programs, np.zeros(128, dtype=bool))
    expected = np.full(128, 4)
    expected[0:8], expected[24:32], expected[32:40] = 1, 2, 3
    expected[96:104], expected[112:128] = -1, -1
    np.testing.assert_array_equal(family, expected)
    assert (lpd5_family([5, 100, 127], [True, True, True]) == 0).all()  # the drum flag wins
    assert [t[0] for t in LPD5_TRACKS] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]


def test_lpd5_merges_instruments_of_one_family(tmp_path):
    piano = make_song(seed=3, num_onsets=8, program=1)
    epiano = make_song(seed=4, num_onsets=8, program=4)
    fx = make_song(seed=5, num_onsets=8, program=100)
    song = Song(np.concatenate([piano.notes, epiano.notes, fx.notes]))
    groups = group_tracks(song, "lpd5")
    assert [len(g.notes) for g in groups] == [0, piano.num_notes + epiano.num_notes, 0, 0, 0]


def test_melody_rule_is_the_top_part_else_the_skyline():
    song = chorale("bwv10.7")
    (melody,) = group_tracks(song, "melody")
    soprano = song.notes[song.track_ids == 0]
    np.testing.assert_array_equal(melody.notes[:, :3], skyline(soprano)[:, :3])
    assert len(melody.notes) == len(soprano)  # the soprano is already monophonic
    unknown = song.replace(notes=song.notes.copy(), tracks=[])
    unknown.notes[:, TRACK] = NO_TRACK
    (line,) = group_tracks(unknown, "melody")
    np.testing.assert_array_equal(np.sort(line.notes[:, 0]), np.unique(song.notes[:, 0]))  # one note per onset


def test_skyline_keeps_the_highest_note_and_cuts_at_the_next_onset():
    song = Song.from_columns([0.0, 0.0, 0.5, 1.0], [1.0, 2.0, 0.25, 1.0], [60, 67, 55, 64])
    line = skyline(song.notes)
    np.testing.assert_allclose(line[:, :3], [[0.0, 0.5, 67], [0.5, 0.25, 55], [1.0, 1.0, 64]])


def test_unknown_grouping_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown track grouping"):
        group_tracks(make_song(), "quartet")


def _as_schema_1(src, dst) -> list[str]:
    """Copy of a shard split rewritten the way schema 1 stored it: 6 columns, no tracks/downbeat."""
    import tarfile

    dst.mkdir()
    urls = []
    for url in split_urls(src, "train"):
        out = dst / url.rsplit("/", 1)[-1]
        with tarfile.open(url) as tar_in, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar_out:
            for member in tar_in.getmembers():
                data = tar_in.extractfile(member).read()
                if member.name.endswith(".notes.npy"):
                    buffer = io.BytesIO()
                    np.save(buffer, np.load(io.BytesIO(data), allow_pickle=False)[:, :6], allow_pickle=False)
                    data = buffer.getvalue()
                elif member.name.endswith(".json"):
                    meta = {k: v for k, v in json.loads(data).items() if k not in ("tracks", "downbeat_s")}
                    data = json.dumps(meta).encode()
                member.size = len(data)
                tar_out.addfile(member, io.BytesIO(data))
        urls.append(str(out))
    return urls


@pytest.mark.parametrize(("name", "options"), [("events", {"tones_per_step": 3}), ("pianoroll", {})])
def test_schema_1_shards_give_the_same_batches_as_schema_2(bach_shards, tmp_path, name, options):
    from musicgan.data.loader import make_loader
    from musicgan.data.representations import build_representation

    old = _as_schema_1(bach_shards, tmp_path / "v1")
    assert all(s.tracks == [] and (s.notes[:, TRACK] == NO_TRACK).all() for s in iter_songs(old))
    args = dict(seq_len=40, batch_size=4, num_batches=4, seed=9, epoch=1, rank=0, world_size=1)
    rep = build_representation(name, **options)
    new_batches = list(make_loader(split_urls(bach_shards, "train"), rep, **args))
    old_batches = list(make_loader(old, rep, **args))
    assert all(a.keys == b.keys and np.array_equal(a.x, b.x) for a, b in zip(new_batches, old_batches))
    assert len(old_batches) == 4
