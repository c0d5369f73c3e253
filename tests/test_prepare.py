"""prepare_dataset: shards, manifest, bad input, determinism, stable splits, atomicity, partitions."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from midi_factory import make_song, write_corpus_folder, write_song
from prepare_helpers import die_on_poison

import musicgan.data.prepare as prepare_module
from musicgan.data.corpora import list_items, load_item
from musicgan.data.loader import iter_songs
from musicgan.data.midi import read_midi
from musicgan.data.prepare import assign_split, merge_manifests, prepare_dataset
from musicgan.data.shards import load_manifest, split_urls
from musicgan.errors import DataError

RATIOS = (0.6, 0.2, 0.2)
TMPFS_SIZE = "1m"  # the `small_disk` fixture (conftest): a full disk for prepare


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _read_shard(path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            assert member.mtime == 0 and member.uid == 0 and member.gid == 0 and member.uname == ""
            key, suffix = member.name.split(".", 1)
            samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def test_folder_with_malformed_files(tmp_path):
    layout = write_corpus_folder(tmp_path / "in", num_valid=6)
    out = tmp_path / "out"
    manifest = prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=2, ratios=RATIOS, progress=False)

    assert sorted(e["path"] for e in manifest["included"]) == layout["valid"]  # every valid file
    skipped = {e["path"]: e["reason"] for e in manifest["skipped"]}
    assert set(skipped) == set(layout["malformed"])  # every bad one, none dropped silently
    for path, expected in layout["malformed"].items():
        assert expected in skipped[path] and "\n" not in skipped[path]
    assert manifest["input"] == str(tmp_path / "in") and manifest["ratios"] == pytest.approx(list(RATIOS))
    assert manifest == load_manifest(out)

    total_notes = 0
    for split, info in manifest["splits"].items():
        members = [e for e in manifest["included"] if e["split"] == split]
        assert info["songs"] == len(members)
        assert info["notes"] == sum(e["notes"] for e in members)
        assert info["shards"] == len(info["files"]) == -(-len(members) // 2)
        assert all(name.startswith(f"{split}-") and (out / name).is_file() for name in info["files"])
        total_notes += info["notes"]
    for entry in manifest["included"]:
        assert entry["split"] == assign_split(entry["path"], RATIOS)

    # one sample per song: notes.npy (no pickle) + json meta naming the relative source
    seen = 0
    for split in ("train", "valid", "test"):
        for name in manifest["splits"][split]["files"]:
            for key, members in _read_shard(out / name).items():
                assert set(members) == {"notes.npy", "json"}
                notes = np.load(io.BytesIO(members["notes.npy"]), allow_pickle=False)
                meta = json.loads(members["json"])
                assert meta["split"] == split and meta["key"] == key and meta["corpus"] == ""
                assert meta["tempos"] == [[0.0, 120.0]] and meta["time_signatures"] == [[0.0, 4, 4]]
                np.testing.assert_array_equal(notes, read_midi(tmp_path / "in" / meta["source"]).notes)
                seen += 1
    assert seen == 6 and total_notes == sum(e["notes"] for e in manifest["included"])


def test_two_runs_give_byte_identical_output_with_any_worker_count(tmp_path):
    write_corpus_folder(tmp_path / "in", num_valid=8)
    prepare_dataset(str(tmp_path / "in"), tmp_path / "a", workers=1, shard_size=3, ratios=RATIOS, progress=False)
    prepare_dataset(str(tmp_path / "in"), tmp_path / "b", workers=2, shard_size=3, ratios=RATIOS, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(a) == list(b) and len(a) >= 4
    assert a == b


def test_rerun_replaces_stale_shards_and_temp_files(tmp_path):
    for i in range(9):
        write_song(tmp_path / "in" / f"s{i}.mid", make_song(seed=i))
    out = tmp_path / "out"
    first = prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=1, ratios=RATIOS, progress=False)
    (out / "train-000000.tar.tmp-999").write_bytes(b"half a shard")
    for i in range(4, 9):
        (tmp_path / "in" / f"s{i}.mid").unlink()
    second = prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=1, ratios=RATIOS, progress=False)
    listed = {name for info in second["splits"].values() for name in info["files"]} | {"manifest.json"}
    assert {p.name for p in out.iterdir()} == listed
    assert len(second["included"]) == 4 < len(first["included"])


def test_adding_files_never_moves_songs_between_splits(tmp_path):
    for i in range(12):
        write_song(tmp_path / "in" / f"song{i:02d}.mid", make_song(seed=i, num_onsets=10))
    before = prepare_dataset(str(tmp_path / "in"), tmp_path / "o1", workers=1, ratios=RATIOS, progress=False)
    for i in range(12, 30):
        write_song(tmp_path / "in" / f"song{i:02d}.mid", make_song(seed=i, num_onsets=10))
    after = prepare_dataset(str(tmp_path / "in"), tmp_path / "o2", workers=1, ratios=RATIOS, progress=False)
    split_after = {e["path"]: e["split"] for e in after["included"]}
    assert all(split_after[e["path"]] == e["split"] for e in before["included"])
    assert {e["split"] for e in after["included"]} == {"train", "valid", "test"}


def test_unusable_inputs_raise_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_dataset(str(tmp_path / "nowhere"), tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MIDI files"):
        prepare_dataset(str(tmp_path / "empty"), tmp_path / "o", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mid").write_bytes(b"")
    (tmp_path / "bad" / "y.MID").write_bytes(b"MThd garbage")
    with pytest.raises(DataError, match="no song could be used.*reasons in") as info:
        prepare_dataset(str(tmp_path / "bad"), tmp_path / "o", workers=1, progress=False)
    assert "\n" not in str(info.value)
    assert len(load_manifest(tmp_path / "o")["skipped"]) == 2  # no dataset was there: the reasons are on disk
    with pytest.raises(DataError, match="ratios"):
        prepare_dataset(str(tmp_path / "bad"), tmp_path / "o", ratios=(1, -1, 0), progress=False)
    with pytest.raises(DataError, match="unknown corpus"):
        prepare_dataset("music21:nope", tmp_path / "o", progress=False)


def _interrupt_after(monkeypatch, count: int) -> None:
    real_results = prepare_module._results

    def interrupted(items, corpus, workers, load=None):
        for index, result in enumerate(real_results(items, corpus, workers, load)):
            if index == count:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(prepare_module, "_results", interrupted)


def test_interrupted_run_leaves_the_folder_as_it_was_and_can_be_rerun(tmp_path, monkeypatch):
    for i in range(8):
        write_song(tmp_path / "in" / f"s{i}.mid", make_song(seed=i, num_onsets=10))
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    _interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=2, ratios=(1, 0, 0), progress=False)
    assert _files(out) == {"manifest.json": b"{}"}  # no shard, no temp file, no staging folder
    monkeypatch.undo()
    manifest = prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=2, ratios=(1, 0, 0), progress=False)
    assert manifest["splits"]["train"]["songs"] == 8 and len(split_urls(out, "train")) == 4
    with pytest.raises(DataError, match="empty"):
        split_urls(out, "valid")
    with pytest.raises(DataError, match="no split"):
        split_urls(out, "holdout")


def test_a_failed_reprepare_deletes_nothing_of_the_existing_dataset(tmp_path, monkeypatch):
    for i in range(6):
        write_song(tmp_path / "in" / f"s{i}.mid", make_song(seed=i, num_onsets=10))
    (tmp_path / "unusable").mkdir()
    for name, data in (("x.mid", b""), ("y.MID", b"MThd garbage")):
        (tmp_path / "unusable" / name).write_bytes(data)
    out = tmp_path / "out"
    prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=2, ratios=RATIOS, progress=False)
    before = _files(out)
    with pytest.raises(DataError, match="limit must be at least 1"):
        prepare_dataset(str(tmp_path / "in"), out, workers=1, limit=0, progress=False)
    assert _files(out) == before
    with pytest.raises(DataError, match="no song could be used.*the existing dataset is unchanged") as info:
        prepare_dataset(str(tmp_path / "unusable"), out, workers=1, shard_size=2, progress=False)
    assert "\n" not in str(info.value) and _files(out) == before
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(str(tmp_path / "in"), out, workers=1, shard_size=1, ratios=(1, 0, 0), progress=False)
    assert _files(out) == before
    assert sum(1 for _ in iter_songs(split_urls(out, "train"))) == load_manifest(out)["splits"]["train"]["songs"]


def test_a_full_disk_leaves_the_old_dataset_and_no_temp_shard(tmp_path, small_disk):
    write_song(tmp_path / "small" / "a.mid", make_song(seed=0, num_onsets=20))
    for i in range(2):  # ~1.1 MiB of notes (48 bytes each): more than the 1 MiB disk holds
        write_song(tmp_path / "big" / f"b{i}.mid", make_song(seed=i, num_onsets=12_000, chord_prob=0.0))
    out = small_disk / "shards"
    prepare_dataset(str(tmp_path / "small"), out, workers=1, ratios=(1, 0, 0), progress=False)
    before = _files(out)
    with pytest.raises(DataError, match="No space left on device; nothing of an existing dataset") as info:
        prepare_dataset(str(tmp_path / "big"), out, workers=1, shard_size=1, ratios=(1, 0, 0), progress=False)
    assert "\n" not in str(info.value)
    assert _files(out) == before  # every old byte, and no temp shard or staging folder left
    assert [s.source for s in iter_songs(split_urls(out, "train"))] == ["a.mid"]


def test_a_worker_dying_on_one_file_skips_that_file_only(tmp_path):
    for i in range(6):
        write_song(tmp_path / "in" / f"s{i}.mid", make_song(seed=i, num_onsets=8))
    write_song(tmp_path / "in" / "poison.mid", make_song(seed=9, num_onsets=8))
    items = list_items(str(tmp_path / "in"))
    results = list(prepare_module._results(items, "", 2, load=die_on_poison))
    assert [r[1] for r in results] == [item.source for item in items]  # every item, in order
    status = {source: (kind, payload) for kind, source, payload in results}
    assert status["poison.mid"][0] == "skip" and "process died" in status["poison.mid"][1]
    assert all(status[f"s{i}.mid"][0] == "ok" for i in range(6))


def test_partitions_merge_to_the_one_process_splits(tmp_path):
    layout = write_corpus_folder(tmp_path / "in", num_valid=10)
    whole = prepare_dataset(
        str(tmp_path / "in"), tmp_path / "whole", workers=1, shard_size=2, ratios=RATIOS, progress=False
    )
    out = tmp_path / "parts"
    for task in range(3):
        part = prepare_dataset(
            str(tmp_path / "in"), out, workers=1, shard_size=2, ratios=RATIOS, progress=False, partition=(task, 3)
        )
        assert all("-p%04d-" % task in name for info in part["splits"].values() for name in info["files"])
    with pytest.raises(DataError, match="manifest"):
        load_manifest(out)
    good = (out / "manifest-p0001.json").read_text()
    for hostile in ('{"splits": {}}', "[1, 2]", good.replace('"partition": [', '"partition": "x", "was": [')):
        (out / "manifest-p0001.json").write_text(hostile)
        with pytest.raises(DataError, match="manifest-p0001.json") as info:
            merge_manifests(out)
        assert "\n" not in str(info.value)
    (out / "manifest-p0001.json").write_text(good)
    merged = merge_manifests(out)
    assert merged == load_manifest(out)
    strip = lambda entries: sorted((e["path"], e["split"], e["key"], e["notes"]) for e in entries)  # noqa: E731
    assert strip(merged["included"]) == strip(whole["included"])
    assert merged["skipped"] == sorted(whole["skipped"], key=lambda e: e["path"])
    assert len(merged["skipped"]) == len(layout["malformed"])
    for split in ("train", "valid", "test"):
        assert merged["splits"][split]["songs"] == whole["splits"][split]["songs"]
        assert merged["splits"][split]["notes"] == whole["splits"][split]["notes"]
        merged_sources = sorted(s.source for s in iter_songs(split_urls(out, split)))
        whole_sources = sorted(s.source for s in iter_songs(split_urls(tmp_path / "whole", split)))
        assert merged_sources == whole_sources


def test_bach_fixture_shards_hold_the_chorales(bach_shards):
    manifest = load_manifest(bach_shards)
    assert manifest["input"] == "music21:bach" and manifest["corpus"] == "music21:bach"
    assert len(manifest["included"]) + len(manifest["skipped"]) == 40
    assert len(manifest["included"]) >= 38
    songs = [song for split in ("train", "valid", "test") for song in iter_songs(split_urls(bach_shards, split))]
    assert sorted(s.source for s in songs) == sorted(e["path"] for e in manifest["included"])
    assert all(s.source.startswith("music21:bach/") and s.corpus == "music21:bach" for s in songs)
    first = songs[0]
    item = next(i for i in list_items("music21:bach") if i.source == first.source)
    np.testing.assert_array_equal(first.notes, load_item(item, "music21:bach").notes)
    assert 4 <= len({int(p) for p in first.notes[:, 2]}) and first.num_notes > 50


def test_midi_folder_fixture(midi_folder_shards):
    manifest = load_manifest(midi_folder_shards)
    assert len(manifest["included"]) == 24 and manifest["skipped"] == []
    assert {e["path"].split("/")[0] for e in manifest["included"]} >= {"set1", "set2"}
