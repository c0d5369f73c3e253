"""Audio rendered once into the shards: FluidSynth timing, determinism, prepare, hostile input."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from midi_factory import make_song, write_song

from musicgan.audio import find_soundfont, from_pcm16, render_audio, to_pcm16
from musicgan.cli import main
from musicgan.data.loader import iter_songs
from musicgan.data.prepare import prepare_dataset
from musicgan.data.shards import SampleError, decode_sample, encode_sample, split_urls
from musicgan.data.song import Song
from musicgan.errors import DataError

pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="needs fluidsynth + fluid-soundfont-gm")
RATE = 8000  # the lowest rate FluidSynth renders: the timing checks need no more


def _rms(audio: np.ndarray, start_s: float, end_s: float, rate: int = RATE) -> float:
    part = from_pcm16(audio[int(start_s * rate) : int(end_s * rate)])
    return float(np.sqrt(np.mean(part.astype(np.float64) ** 2)))


def _shortest_chorales(bach_shards, count: int) -> list[Song]:
    songs = sorted(iter_songs(split_urls(bach_shards, "train")), key=lambda s: (s.end_time, s.source))
    return songs[:count]


def test_rendered_audio_follows_the_notes_in_time():
    # A note, 1.5 s of rest, a second note: sound where notes are, (near) silence between.
    song = Song.from_columns([0.0, 2.5], [1.0, 0.5], [60, 67], [100, 100], program=[0, 0])
    audio = render_audio(song, RATE)
    assert audio.dtype == np.int16 and len(audio) == 3 * RATE
    loud = min(_rms(audio, 0.1, 0.9), _rms(audio, 2.6, 2.95))
    quiet = _rms(audio, 2.0, 2.4)
    assert loud > 0.01 and quiet < loud / 100, (loud, quiet)


def test_rendered_chorales_last_as_long_as_the_songs_and_render_identically(bach_shards):
    for song in _shortest_chorales(bach_shards, 2):
        audio = render_audio(song, RATE)
        assert abs(len(audio) / RATE - song.end_time) < 0.5  # the bound; here exact to a sample
        assert _rms(audio, song.end_time - 0.5, song.end_time) > 0.005  # the last notes are in it
        assert np.array_equal(audio, render_audio(song, RATE))  # no reverb/chorus/dither: same samples


def test_prepare_with_audio_rate_stores_int16_audio_deterministically(tmp_path):
    manifests = [
        prepare_dataset(
            "music21:bach",
            tmp_path / name,
            workers=2,
            shard_size=2,
            ratios=(1, 0, 0),
            progress=False,
            limit=3,
            audio_rate=RATE,
        )
        for name in ("a", "b")
    ]
    assert manifests[0]["audio_rate"] == RATE and len(manifests[0]["included"]) == 3
    for name in manifests[0]["splits"]["train"]["files"]:  # byte-identical shards
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with tarfile.open(tmp_path / "a" / "train-000000.tar") as tar:
        assert sorted(m.name.split(".", 1)[1] for m in tar.getmembers()) == [
            "audio.npy",
            "audio.npy",
            "json",
            "json",
            "notes.npy",
            "notes.npy",
        ]
    songs = list(iter_songs(split_urls(tmp_path / "a", "train")))
    seconds = {e["path"]: e["audio_s"] for e in manifests[0]["included"]}
    for song in songs:
        assert song.audio.dtype == np.int16 and song.audio_rate == RATE
        assert len(song.audio) / RATE == pytest.approx(seconds[song.source], abs=1e-3)
        assert abs(seconds[song.source] - song.end_time) < 0.5
    assert manifests[0]["splits"]["train"]["audio_seconds"] == pytest.approx(sum(seconds.values()))


def test_prepare_without_audio_rate_writes_no_audio(bach_shards):
    with tarfile.open(split_urls(bach_shards, "train")[0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
    assert not any(n.endswith(".audio.npy") for n in names) and "audio_rate" not in meta


def test_a_song_too_long_to_render_is_skipped_with_its_reason(tmp_path):
    write_song(tmp_path / "in" / "good.mid", make_song(seed=1, num_onsets=8))
    write_song(tmp_path / "in" / "endless.mid", Song.from_columns([0.0], [1300.0], [60]))
    manifest = prepare_dataset(
        str(tmp_path / "in"), tmp_path / "out", workers=1, ratios=(1, 0, 0), progress=False, audio_rate=RATE
    )
    assert [e["path"] for e in manifest["included"]] == ["good.mid"]
    assert manifest["skipped"] == [
        {"path": "endless.mid", "reason": "audio: the song lasts 22 min, above the 20 min limit for rendering"}
    ]


def test_a_broken_soundfont_skips_every_song_with_the_reason(tmp_path, monkeypatch):
    write_song(tmp_path / "in" / "a.mid", make_song(seed=2, num_onsets=4))
    (tmp_path / "broken.sf2").write_bytes(b"not a soundfont" * 100)
    monkeypatch.setenv("MUSICGAN_SOUNDFONT", str(tmp_path / "broken.sf2"))
    with pytest.raises(
        DataError, match=r"a\.mid: audio: FluidSynth rendered only silence \(fluidsynth: error: fluid_is_soundfont"
    ):
        prepare_dataset(str(tmp_path / "in"), tmp_path / "out", workers=1, progress=False, audio_rate=RATE)


def test_missing_fluidsynth_or_bad_rate_is_one_line_at_the_cli(tmp_path, monkeypatch, capsys):
    write_song(tmp_path / "in" / "a.mid", make_song(seed=3, num_onsets=4))
    args = ["prepare", "--midi-dir", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main(args + ["--audio-rate", "100"]) == 2
    assert (
        capsys.readouterr().err.strip() == "error: audio rate must be a whole number of Hz in 8000-96000 "
        "(FluidSynth's range), got 100"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth program on it
    assert main(args + ["--audio-rate", "16000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: audio rendering needs the fluidsynth program") and "\n" not in err
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_audio_member_must_be_int16_with_a_rate():
    song = make_song(seed=4, num_onsets=4).replace(audio=np.arange(8, dtype=np.int16), audio_rate=RATE)
    members = encode_sample(song, "k", "train")
    assert np.array_equal(decode_sample(members).audio, song.audio)
    assert decode_sample(encode_sample(song.replace(audio=None), "k", "train")).audio is None
    bad_meta = dict(members, json=members["json"].replace(b'"audio_rate":8000', b'"audio_rate":0'))
    with pytest.raises(SampleError, match="audio_rate"):
        decode_sample(bad_meta)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(4, dtype=np.float32))
    with pytest.raises(SampleError, match="expected .samples,. int16"):
        decode_sample(dict(members, **{"audio.npy": buffer.getvalue()}))


def test_pcm16_round_trip_is_exact():
    pcm = np.array([-32767, -1, 0, 1, 32767], dtype=np.int16)
    assert np.array_equal(to_pcm16(from_pcm16(pcm)), pcm)


def test_partitioned_prepare_with_audio_merges_its_audio_totals(tmp_path):
    from musicgan.data.prepare import merge_manifests

    for i in range(3):
        write_song(tmp_path / "in" / f"s{i}.mid", make_song(seed=10 + i, num_onsets=6))
    whole = prepare_dataset(str(tmp_path / "in"), tmp_path / "whole", workers=1, progress=False, audio_rate=RATE)
    for task in range(2):
        prepare_dataset(
            str(tmp_path / "in"), tmp_path / "parts", workers=1, progress=False, audio_rate=RATE, partition=(task, 2)
        )
    merged = merge_manifests(tmp_path / "parts")
    assert merged["audio_rate"] == RATE
    for split in ("train", "valid", "test"):
        assert merged["splits"][split]["audio_seconds"] == pytest.approx(whole["splits"][split]["audio_seconds"])
    assert [e["audio_s"] for e in merged["included"]] == [e["audio_s"] for e in whole["included"]]
