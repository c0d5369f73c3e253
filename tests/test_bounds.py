"""Beat bombs and bad shard meta: a song's span is bounded at prepare and at load, every grid
is sized through `check_grid`, and a bad sample is skipped and counted, never a crash."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from midi_factory import make_song, note, smf, tempo_event, track, write_song

from musicgan.data.bounds import MAX_SONG_BEATS, GridTooLarge, check_grid
from musicgan.data.loader import iter_encoded, iter_songs, make_loader
from musicgan.data.midi import read_midi_bytes
from musicgan.data.prepare import prepare_dataset
from musicgan.data.representations import build_representation
from musicgan.data.shards import MANIFEST, SampleError, ShardWriter, decode_sample, encode_sample
from musicgan.data.song import Song
from musicgan.errors import MidiError
from musicgan.metrics.registry import METRICS

TEN_MILLION = 10_000_000


def beat_bomb() -> bytes:
    """A valid MIDI file: 60,000 bpm (1,000 us per quarter), one tick per quarter note, and a
    note held for (just under) ten million ticks, i.e. ten million beats in 2.8 hours."""
    return smf([track(tempo_event(0, 1000) + note(0, TEN_MILLION - 2, 60) + note(0, 1, 64))], division=1)


def test_the_beat_bomb_is_refused_by_the_reader_and_skipped_by_prepare(tmp_path):
    data = beat_bomb()
    assert len(data) < 800
    with pytest.raises(MidiError, match="beats"):
        read_midi_bytes(data)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bomb.mid").write_bytes(data)
    write_song(tmp_path / "in" / "fine.mid", make_song(seed=1))
    manifest = prepare_dataset(str(tmp_path / "in"), tmp_path / "out", workers=1, progress=False)
    assert [e["path"] for e in manifest["included"]] == ["fine.mid"]
    assert manifest["skipped"][0]["path"] == "bomb.mid" and "beats" in manifest["skipped"][0]["reason"]
    from musicgan.metrics.reference import read_song_or_none

    assert read_song_or_none(tmp_path / "in" / "bomb.mid") is None  # what evaluate reads generated MIDI with


def _huge_song(seconds: float = 9e6) -> Song:
    """An in-memory song no reader would produce: notes at 0 and at `seconds` (120 bpm)."""
    return Song.from_columns([0.0, seconds], [seconds, 0.5], [60, 64], time_signatures=[(0.0, 4, 4)])


def test_grid_encoders_and_metrics_refuse_a_huge_span_without_allocating_it():
    song = _huge_song()  # 18 million beats
    tracemalloc.start()
    try:
        with pytest.raises(GridTooLarge, match="piano roll"):
            build_representation("pianoroll").encode(song)
        values = {name: metric(song) for name, metric in METRICS.items()}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated"
    for name in ("polyphony_muspy", "polyphony_rate", "empty_beat_rate", "groove_consistency"):
        assert math.isnan(values[name]), name
    assert values["tone_span"] == 4  # metrics that build no grid still measure the song
    assert check_grid(10, 88, "x") == 10
    with pytest.raises(GridTooLarge):
        check_grid(10**9, 1, "x")


def _meta(song: Song, **changes) -> bytes:
    return json.dumps(dict(song.meta(), key="k", split="train", **changes)).encode()  # NaN allowed: hostile


BAD_META = {
    "tempo 1e9": {"tempos": [[0.0, 1e9]]},
    "tempo NaN": {"tempos": [[0.0, float("nan")]]},
    "tempo string": {"tempos": [[0.0, "fast"]]},
    "tempos not a list": {"tempos": 120},
    "tempo without time": {"tempos": [[120.0]]},
    "zero denominator": {"time_signatures": [[0.0, 4, 0]]},
    "denominator 3": {"time_signatures": [[0.0, 4, 3]]},
    "signature string": {"time_signatures": [[0.0, "4", 4]]},
    "source number": {"source": 7},
}


def _hostile_shards(tmp_path) -> tuple:
    """A prepared-looking folder: one shard of 2 good songs and every bad sample, both splits."""
    good = [make_song(seed=s, num_onsets=30, source=f"good{s}") for s in range(2)]
    bomb = Song.from_columns([0.0], [10_000.0], [60], tempos=[(0.0, 60_000.0)], source="bomb")  # 10M beats
    # 60,000 beats: within the song bound, but a piano roll of 240,000 x 88 cells is not
    long = Song.from_columns([0.0], [6_000.0], [60], tempos=[(0.0, 600.0)], source="long")
    writer = ShardWriter(tmp_path / "data", "train", shard_size=100)
    (tmp_path / "data").mkdir()
    for i, song in enumerate(good + [bomb, long]):
        writer.write(f"s{i}", encode_sample(song, f"s{i}", "train"))
    members = encode_sample(good[0], "x", "train")
    for i, changes in enumerate(BAD_META.values()):
        writer.write(f"bad{i}", {**members, "json": _meta(good[0], **changes)})
    files = writer.close()
    manifest = {"splits": {s: {"songs": 3, "files": files} for s in ("train", "valid")}}
    (tmp_path / "data" / MANIFEST).write_text(json.dumps(manifest))
    return tmp_path / "data", len(BAD_META) + 1


@pytest.mark.parametrize("label", list(BAD_META))
def test_bad_meta_is_a_sample_error(label):
    song = make_song(seed=0)
    members = encode_sample(song, "k", "train")
    with pytest.raises(SampleError, match="bad meta"):
        decode_sample({**members, "json": _meta(song, **BAD_META[label])})


def test_free_metre_bars_survive_prepare_and_load_and_prepare_asks_what_the_loader_asks(tmp_path):
    """Essen's free-metre songs come as bars like 116/4 (music21): a metre, kept by prepare and
    by the loader (it dropped out of MIDI files and skipped the music21 song at every epoch);
    a signature shard meta may not carry is prepare's reason too, not only the loader's."""
    from musicgan.data.bounds import span_problem

    (tmp_path / "in").mkdir()
    free = make_song(seed=2)
    free.time_signatures = [(0.0, 116, 4)]
    write_song(tmp_path / "in" / "free.mid", free)
    prepare_dataset(str(tmp_path / "in"), tmp_path / "out", workers=1, progress=False)
    urls = [str(p) for p in sorted((tmp_path / "out").glob("*.tar"))]
    assert [song.time_signatures for song in iter_songs(urls)] == [[(0.0, 116, 4)]]
    free.time_signatures = [(0.0, 4, 3)]
    assert span_problem(free) == "time signature 4/3 is not a metre"


def test_a_span_beyond_the_limit_in_shard_meta_is_a_sample_error():
    song = Song.from_columns([0.0], [MAX_SONG_BEATS * 1.01 * 60 / 600], [60], tempos=[(0.0, 600.0)])  # < 6 hours
    with pytest.raises(SampleError, match="beats"):
        decode_sample(encode_sample(song, "k", "train"))


def test_training_loader_and_evaluate_skip_and_count_bad_samples(tmp_path, caplog):
    from musicgan.metrics.reference import load_reference

    folder, num_bad = _hostile_shards(tmp_path)
    urls = [str(p) for p in sorted(folder.glob("*.tar"))]
    for name, usable in (("events", {"good0", "good1", "long"}), ("pianoroll", {"good0", "good1"})):
        loader = make_loader(
            urls,
            build_representation(name),
            seq_len=8,
            batch_size=2,
            num_batches=3,
            seed=0,
            epoch=0,
            rank=0,
            world_size=1,
        )
        batches = list(loader)
        assert len(batches) == 3 and {k for b in batches for k in b.keys} <= usable
        assert loader.num_skipped >= num_bad + (name == "pianoroll")
    with caplog.at_level("WARNING"):
        assert [s.source for s in iter_songs(urls)] == ["good0", "good1", "long"]
    assert f"({num_bad} samples skipped so far)" in caplog.text
    assert [s.source for s, _ in iter_encoded(urls, build_representation("pianoroll"))] == ["good0", "good1"]
    reference = load_reference(str(folder), "valid", None, 1, cache_root=tmp_path / "cache")
    assert reference.stats.num_songs == 3
    assert np.isfinite(reference.stats.metrics["groove_consistency"]).sum() == 2  # "long" has one bar: NaN
