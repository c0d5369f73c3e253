"""Hostile manifests and path options: nothing but a regular file inside the data folder
ever reaches WebDataset (which would run `pipe:CMD` through a shell and read `-` from stdin)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musicgan.data.loader import iter_songs, make_loader
from musicgan.data.paths import printable, resolve_data_dir, utf8_name
from musicgan.data.representations import build_representation
from musicgan.data.shards import MANIFEST, load_manifest, split_urls
from musicgan.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _hostile_copy(shards: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a prepared folder whose train split lists `name` (and, so that an existence
    check alone would not stop it, a real shard saved under that very name where possible)."""
    folder = tmp_path / "data"
    shutil.copytree(shards, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    first = manifest["splits"]["train"]["files"][0]
    if "/" not in name:
        shutil.copy(folder / first, folder / name)
    manifest["splits"]["train"]["files"] = [name]
    manifest["splits"]["valid"]["files"] = [name]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def _musicgan_in(folder: Path, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI run with `folder` as working directory and stdin left open (a read would hang)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "musicgan", *args],
        cwd=folder,
        env=env,
        stdin=subprocess.PIPE,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines and lines[-1].startswith("error: ") and expected in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_manifest_listing_pipe_runs_nothing_from_the_dot_folder(midi_folder_shards, tmp_path):
    folder = _hostile_copy(midi_folder_shards, tmp_path, "pipe:touch MARKER")
    (tmp_path / "gen").mkdir()
    proc = _musicgan_in(
        folder,
        [
            "evaluate",
            "--generated",
            str(tmp_path / "gen"),
            "--reference",
            ".",
            "--out",
            str(tmp_path / "out"),
            "--no-report",
        ],
    )
    _assert_one_line_error(proc, "not a local path")
    with pytest.raises(DataError, match="not a local path"):
        split_urls(folder, "train")
    assert not (folder / "MARKER").exists() and not (tmp_path / "MARKER").exists()


def test_a_manifest_listing_dash_never_reads_stdin(midi_folder_shards, tmp_path):
    folder = _hostile_copy(midi_folder_shards, tmp_path, "-")
    (tmp_path / "gen").mkdir()
    proc = _musicgan_in(
        folder,
        [
            "evaluate",
            "--generated",
            str(tmp_path / "gen"),
            "--reference",
            ".",
            "--out",
            str(tmp_path / "out"),
            "--no-report",
        ],
        timeout=120,
    )
    _assert_one_line_error(proc, "not a local path")


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "folder"])
def test_shards_outside_the_folder_or_not_regular_files_are_refused(midi_folder_shards, tmp_path, monkeypatch, kind):
    outside = tmp_path / "x.tar"
    shutil.copy(split_urls(midi_folder_shards, "train")[0], outside)
    name = {"parent": "../x.tar", "absolute": str(outside), "symlink": "link.tar", "folder": "sub"}[kind]
    folder = _hostile_copy(midi_folder_shards, tmp_path, "placeholder.tar")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["splits"]["train"]["files"] = [name]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    if kind == "symlink":
        (folder / "link.tar").symlink_to(outside)
    if kind == "folder":
        (folder / "sub").mkdir()
    monkeypatch.chdir(folder)  # the folder given as "."
    expected = {
        "parent": "outside its folder",
        "absolute": "outside its folder",
        "symlink": "outside",
        "folder": "not a regular file",
    }[kind]
    with pytest.raises(DataError, match=expected) as info:
        split_urls(".", "train")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"splits": []}',
        '{"splits": {"train": {"files": "a.tar"}}}',
        '{"splits": {"train": "a.tar"}}',
        '{"splits": {"train": {"files": [3], "songs": 1}}}',
        '{"splits": {"train": {"files": ["train-000000.tar"], "songs": "many"}}}',
    ],
)
def test_manifests_of_the_wrong_shape_are_one_line_data_errors(midi_folder_shards, tmp_path, text):
    folder = tmp_path / "data"
    shutil.copytree(midi_folder_shards, folder)
    (folder / MANIFEST).write_text(text)
    with pytest.raises(DataError) as info:
        split_urls(folder, "train")
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_every_data_path_option_goes_through_the_resolver(tmp_path):
    for args in (["--data", "pipe:touch MARKER"], ["--set", "data.path=pipe:touch MARKER"]):
        proc = _musicgan_in(
            tmp_path, ["train", "--run-dir", str(tmp_path / "run"), "--preset", "debug", *args, "--dry-run"]
        )
        _assert_one_line_error(proc, "not a local path")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"path": "-"}}))
    proc = _musicgan_in(
        tmp_path,
        ["train", "--run-dir", str(tmp_path / "run"), "--preset", "debug", "--config", str(config), "--dry-run"],
    )
    _assert_one_line_error(proc, "not a local path")
    proc = _musicgan_in(
        tmp_path,
        ["train", "--run-dir", str(tmp_path / "run"), "--preset", "debug", "--set", "data.path=.", "--dry-run"],
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["data"]["path"] == str(tmp_path.resolve())
    assert not (tmp_path / "MARKER").exists()


def test_tune_data_option_uses_the_same_resolver(tmp_path, monkeypatch):
    from tune.search import SweepOptions, resolve_paths

    options = SweepOptions(
        space="lr", preset="debug", scheduler="asha", num_samples=1, data="pipe:ls", storage=str(tmp_path)
    )
    with pytest.raises(DataError, match="not a local path"):
        resolve_paths(options)
    monkeypatch.chdir(tmp_path)
    assert resolve_paths(SweepOptions(**{**options.__dict__, "data": "."})).data == str(tmp_path.resolve())


def test_the_loader_refuses_urls_and_relative_paths(midi_folder_shards):
    representation = build_representation("events")
    for url in ("pipe:cat x.tar", "-", "relative/train-000000.tar"):
        with pytest.raises(DataError):
            make_loader(
                [url], representation, seq_len=4, batch_size=1, num_batches=1, seed=0, epoch=0, rank=0, world_size=1
            )
        with pytest.raises(DataError):
            list(iter_songs([url]))
    assert len(list(iter_songs(split_urls(midi_folder_shards, "train")))) == len(
        [e for e in load_manifest(midi_folder_shards)["included"] if e["split"] == "train"]
    )


def test_names_that_are_not_utf8_or_hold_newlines_become_safe_text():
    raw = os.fsdecode(b"caf\xe9\nx.mid")
    assert utf8_name(raw) == "caf\\xe9\nx.mid" and utf8_name("plain é.mid") == "plain é.mid"
    assert printable(raw) == "caf\\xe9\\nx.mid"
    assert resolve_data_dir("rel") == Path.cwd() / "rel"


# -- file names and folders a file system allows -------------------------------------------------------
def _write_named(root: Path, raw_name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(root), raw_name), "wb") as handle:
        handle.write(data)


def test_any_file_name_is_included_or_skipped_with_a_reason(tmp_path, caplog):
    from midi_factory import make_song

    from musicgan.data.midi import midi_bytes
    from musicgan.metrics.evaluate import run_evaluate

    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    root.mkdir(), elsewhere.mkdir()
    for i, raw in enumerate((b"caf\xe9.mid", b"new\nline.mid", b"-rf.mid", b"with space.mid", b"caf\\xe9.mid")):
        _write_named(root, raw, midi_bytes(make_song(seed=i, num_onsets=25)))
    _write_named(root, b"bad\xff.mid", b"not music")
    _write_named(elsewhere, b"outside.mid", midi_bytes(make_song(seed=9)))
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    proc = _musicgan_in(
        tmp_path,
        [
            "prepare",
            "--midi-dir",
            str(root),
            "--out",
            str(tmp_path / "shards"),
            "--workers",
            "1",
            "--split-ratios",
            "1,0,0",
        ],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(line.startswith(("[musicgan]", "  skipped ")) for line in proc.stdout.splitlines()), proc.stdout
    manifest = load_manifest(tmp_path / "shards")
    included = {e["path"] for e in manifest["included"]}
    skipped = {e["path"]: e["reason"] for e in manifest["skipped"]}
    assert included == {"caf\\xe9.mid", "new\nline.mid", "-rf.mid", "with space.mid"}
    assert set(skipped) == {"caf\\xe9.mid", "bad\\xff.mid", "linked/"}
    assert "rename one" in skipped["caf\\xe9.mid"] and "not a MIDI file" in skipped["bad\\xff.mid"]
    assert "symlinked folder" in skipped["linked/"]
    assert {s.source for s in iter_songs(split_urls(tmp_path / "shards", "train"))} == included
    with caplog.at_level("WARNING"):
        result = run_evaluate(
            generated=str(root),
            reference=str(root),
            out=str(tmp_path / "eval"),
            audio=0,
            calibrate=False,
            cache_root=tmp_path / "cache",
            echo=lambda line: None,
        )
    assert "skipping linked/ in" in caplog.text and "symlinked folder" in caplog.text
    assert result["sets"]["in"]["num_songs"] == 5  # the unusable file is skipped, the clash read twice
    page = (tmp_path / "eval" / "index.html").read_text(encoding="utf-8")
    assert "caf\\xe9.mid" in page or "new\\nline.mid" in page


def test_unreadable_subfolders_are_listed_as_skipped(tmp_path):
    import tempfile

    from midi_factory import make_song, write_song

    from musicgan.data.corpora import list_items

    root = Path(tempfile.mkdtemp())  # not under pytest's 0700 folder: an unprivileged user must reach it
    try:
        root.chmod(0o755)
        write_song(root / "ok.mid", make_song(seed=0))
        write_song(root / "locked" / "hidden.mid", make_song(seed=1))
        (root / "locked").chmod(0)
        items = _as_unprivileged_user(list_items, str(root))
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)
    assert [(i.source, i.skip) for i in items] == [("locked/", "unreadable folder: Permission denied"), ("ok.mid", "")]


def _as_unprivileged_user(fn, *args):
    """fn(*args) with the effective uid of `nobody` when run as root (root reads every folder)."""
    if os.geteuid() != 0:
        return fn(*args)
    os.seteuid(65534)
    try:
        return fn(*args)
    finally:
        os.seteuid(0)
