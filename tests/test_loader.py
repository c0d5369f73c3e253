"""The WebDataset loader: exact batch counts, determinism, rank separation, corrupt data."""

from __future__ import annotations

import io
import logging
import shutil
import tarfile

import numpy as np
import pytest
import torch

from musicgan.data.loader import Batch, batches_per_epoch, iter_songs, make_loader
from musicgan.data.representations import build_representation
from musicgan.data.shards import load_manifest, split_urls
from musicgan.errors import DataError


def _loader(urls, rep=None, **overrides):
    args = dict(seq_len=24, batch_size=4, num_batches=6, seed=7, epoch=0, rank=0, world_size=1, num_workers=0)
    args.update(overrides)
    return make_loader(urls, rep or build_representation("events"), **args)


def _same(a: list[Batch], b: list[Batch]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.x, y.x) and torch.equal(x.lengths, y.lengths) and x.keys == y.keys for x, y in zip(a, b)
    )


def test_batches_have_the_promised_shape_and_padding(midi_folder_shards):
    urls = split_urls(midi_folder_shards, "train")
    sources = {e["path"] for e in load_manifest(midi_folder_shards)["included"] if e["split"] == "train"}
    rep = build_representation("events", tones_per_step=3)
    loader = _loader(urls, rep, seq_len=200, num_batches=5)  # longer than most songs: padding
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    for batch in batches:
        assert batch.x.shape == (4, 200, 10) and batch.x.dtype == torch.float32
        assert batch.lengths.dtype == torch.int64 and len(batch.keys) == 4
        assert set(batch.keys) <= sources
        for row, length in zip(batch.x, batch.lengths):
            assert 0 < length <= 200
            assert torch.all(row[length:] == 0) and torch.any(row[:length] != 0)
    assert any((b.lengths < 200).any() for b in batches)


def test_windows_are_crops_of_the_whole_song_encoding(midi_folder_shards):
    urls = split_urls(midi_folder_shards, "train")
    rep = build_representation("events")
    encodings = {song.source: rep.encode(song) for song in iter_songs(urls)}
    for batch in _loader(urls, rep, seq_len=8, num_batches=3):
        for row, key in zip(batch.x.numpy(), batch.keys):
            full = encodings[key]
            assert any(np.array_equal(full[s : s + 8], row) for s in range(len(full) - 7))


def test_same_arguments_give_identical_batches(midi_folder_shards):
    urls = split_urls(midi_folder_shards, "train")
    first = list(_loader(urls))
    assert _same(first, list(_loader(urls)))  # a fresh loader: how the trainer resumes
    loader = _loader(urls)
    assert _same(list(loader), list(loader))  # and the same loader iterated twice
    assert not _same(first, list(_loader(urls, epoch=1)))
    assert not _same(first, list(_loader(urls, seed=8)))


def test_two_ranks_get_equal_counts_and_different_data(midi_folder_shards, bach_shards):
    for shards in (midi_folder_shards, bach_shards):
        urls = split_urls(shards, "train")
        rank0 = list(_loader(urls, world_size=2, rank=0, num_batches=7))
        rank1 = list(_loader(urls, world_size=2, rank=1, num_batches=7))
        assert len(rank0) == len(rank1) == 7
        assert not _same(rank0, rank1)
        if len(urls) >= 2:  # explicit node splitter: disjoint shard subsets, so disjoint songs
            assert not {k for b in rank0 for k in b.keys} & {k for b in rank1 for k in b.keys}


def test_workers_are_deterministic_too(midi_folder_shards):
    urls = split_urls(midi_folder_shards, "train")
    a = list(_loader(urls, num_workers=2, num_batches=5))
    b = list(_loader(urls, num_workers=2, num_batches=5))
    assert len(a) == 5 and _same(a, b)


def test_token_and_pianoroll_batches(bach_shards):
    urls = split_urls(bach_shards, "train")
    tokens = build_representation("tokens")
    tokens.fit(iter_songs(urls))
    batch = next(iter(_loader(urls, tokens, seq_len=16, num_batches=1)))
    assert batch.x.dtype == torch.int64 and batch.x.shape == (4, 16, 1) and int(batch.x.min()) >= 0
    roll = build_representation("pianoroll", frames_per_beat=1, transpose="c")
    batch = next(iter(_loader(urls, roll, seq_len=32, num_batches=1)))
    assert batch.x.shape == (4, 32, 88) and set(torch.unique(batch.x).tolist()) <= {0.0, 1.0}


def test_iter_songs_yields_every_song_once_in_shard_order(bach_shards):
    manifest = load_manifest(bach_shards)
    urls = split_urls(bach_shards, "train")
    expected = [e["path"] for e in manifest["included"] if e["split"] == "train"]
    assert [song.source for song in iter_songs(urls)] == expected


def test_batches_per_epoch():
    assert batches_per_epoch(100, 20, 1) == 5
    assert batches_per_epoch(101, 20, 1) == 6
    assert batches_per_epoch(100, 20, 2) == 3
    assert batches_per_epoch(0, 20, 4) == 1


# -- corrupt data: unreadable shards and samples are skipped, counted and named --------------------------
def _corrupt_copy(shards, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(shards, out)
    urls = split_urls(out, "train")
    assert len(urls) >= 3
    data = open(urls[0], "rb").read()
    open(urls[0], "wb").write(data[: len(data) // 2 + 100])  # truncated mid-sample
    open(urls[1], "wb").write(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    # third shard: a sample whose notes.npy does not decode, and one whose array has the wrong shape
    with tarfile.open(urls[2]) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    keys = sorted({m.name.split(".")[0] for m, _ in members})
    with tarfile.open(urls[2], "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, payload in members:
            if member.name == f"{keys[0]}.notes.npy":
                payload = b"\x93NUMPY garbage"
            if member.name == f"{keys[1]}.notes.npy":
                buffer = io.BytesIO()
                np.save(buffer, np.zeros((3, 2)))
                payload = buffer.getvalue()
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    return urls, keys


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_shards_and_samples_are_skipped_and_counted(midi_folder_shards, tmp_path, caplog, num_workers):
    urls, keys = _corrupt_copy(midi_folder_shards, tmp_path)
    caplog.set_level(logging.WARNING, logger="musicgan.data.loader")
    rank_batches = []
    for rank in (0, 1):
        loader = _loader(urls, rank=rank, world_size=2, num_batches=12, num_workers=num_workers)
        batches = list(loader)
        rank_batches.append(len(batches))
        assert all(b.x.shape == (4, 24, 4) for b in batches)
        assert loader.num_skipped + loader.num_shard_errors > 0
    # rank 1 owns only the garbage shard (3 shards, 2 ranks): it falls back to all shards
    assert rank_batches == [12, 12]  # training continues with equal batches on every rank
    single = _loader(urls, num_batches=40)
    assert len(list(single)) == 40
    assert single.num_skipped >= 1 and single.num_shard_errors >= 1
    if num_workers == 0:  # workers log in their own processes; in-process we can read the records
        text = caplog.text
        assert f"sample {keys[0]} in shard {urls[2]}" in text and "samples skipped so far" in text
        assert "skipping unreadable shard" in text and urls[1] in text


def test_all_shards_corrupt_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "train-000000.tar"
    path.write_bytes(b"\x00" * 10 + b"junk" * 100)
    with pytest.raises(DataError, match="no usable sample"):
        list(_loader([str(path)], num_batches=2))


def test_iter_songs_skips_corrupt_shards(midi_folder_shards, tmp_path):
    urls, _ = _corrupt_copy(midi_folder_shards, tmp_path)
    songs = list(iter_songs(urls))
    intact = [e for e in load_manifest(midi_folder_shards)["included"] if e["split"] == "train"]
    assert 0 < len(songs) < len(intact)
