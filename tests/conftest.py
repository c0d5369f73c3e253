"""Shared pytest fixtures. Session-scoped shard sets are prepared once and reused by the
data, trainer and metrics tests; treat them as read-only (copy before corrupting)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from midi_factory import make_song, write_song  # tests/ is on the path: pyproject's pytest pythonpath

REPO = Path(__file__).resolve().parent.parent
BACH_SUBSET = 40  # chorales in the bach_shards fixture
MIDI_FOLDER_SONGS = 24


def _shard_cache_dir(name: str, params: dict) -> Path:
    """A folder under .cache/test-shards keyed by the data code, the music21 version and the
    parameters: converting 40 chorales costs 10-60 s on a busy 2-core machine, so later test
    sessions on the same checkout reuse the shards; any change to musicgan/data/ makes a new key."""
    import hashlib
    import json
    from importlib.metadata import version

    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    digest.update(version("music21").encode())
    for path in sorted((REPO / "musicgan" / "data").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return REPO / ".cache" / "test-shards" / f"{name}-{digest.hexdigest()[:16]}"


def _keep_in_cache(out: Path, cached: Path) -> Path:
    """Copy freshly prepared shards into the cache folder (atomically) and return it."""
    staging = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(out, staging)
    try:
        staging.rename(cached)  # atomic; a concurrent session may have won the race
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return cached if (cached / "manifest.json").is_file() else out


@pytest.fixture(scope="session")
def bach_shards(tmp_path_factory) -> Path:
    """Shards of the first 40 music21 Bach chorales (sorted by source): ratios 0.8/0.1/0.1,
    10 songs a shard, every split non-empty. Returns the shard directory (read-only: copy it
    before changing anything). Cached across sessions in .cache/test-shards unless
    MUSICGAN_TEST_CACHE=0."""
    from musicgan.data.prepare import prepare_dataset

    params = dict(spec="music21:bach", shard_size=10, ratios=(0.8, 0.1, 0.1), limit=BACH_SUBSET)
    use_cache = os.environ.get("MUSICGAN_TEST_CACHE", "1") != "0"
    cached = _shard_cache_dir("bach", params)
    if use_cache and (cached / "manifest.json").is_file():
        return cached
    out = tmp_path_factory.mktemp("bach_shards")
    manifest = prepare_dataset(
        params["spec"],
        out,
        workers=2,
        shard_size=params["shard_size"],
        ratios=params["ratios"],
        progress=False,
        limit=params["limit"],
    )
    assert all(manifest["splits"][s]["songs"] > 0 for s in ("train", "valid", "test")), manifest["splits"]
    return _keep_in_cache(out, cached) if use_cache else out


NOTE_SPEC = "soundfont:notes?programs=0,40&pitches=48-53&seconds=1&hold=0.75"  # 12 notes


@pytest.fixture(scope="session")
def note_shards(tmp_path_factory) -> Path:
    """Shards of 12 single notes (2 programs x 6 pitches, 1 s) rendered at 8 kHz: ratios
    0.8/0.1/0.1. Rendering costs ~1 s a note here, so the shards are cached like bach_shards."""
    from musicgan.data.prepare import prepare_dataset

    params = dict(spec=NOTE_SPEC, shard_size=6, ratios=(0.8, 0.1, 0.1), audio_rate=8000)
    use_cache = os.environ.get("MUSICGAN_TEST_CACHE", "1") != "0"
    cached = _shard_cache_dir("notes", params)
    if use_cache and (cached / "manifest.json").is_file():
        return cached
    out = tmp_path_factory.mktemp("note_shards")
    prepare_dataset(
        params["spec"],
        out,
        workers=2,
        shard_size=params["shard_size"],
        ratios=params["ratios"],
        progress=False,
        audio_rate=params["audio_rate"],
    )
    return _keep_in_cache(out, cached) if use_cache else out


@pytest.fixture(scope="session")
def midi_folder(tmp_path_factory) -> Path:
    """A folder of 24 generated MIDI songs (nested, mixed extension case), all valid."""
    root = tmp_path_factory.mktemp("midi_folder")
    for i in range(MIDI_FOLDER_SONGS):
        sub = ("", "set1/", "set2/deep/")[i % 3]
        ext = (".mid", ".MID", ".midi")[i % 3]
        write_song(root / f"{sub}song{i:02d}{ext}", make_song(seed=i, num_onsets=30 + 5 * i))
    return root


@pytest.fixture(scope="session")
def midi_folder_shards(midi_folder, tmp_path_factory) -> Path:
    """Shards of the `midi_folder` songs: ratios 0.6/0.2/0.2, 6 songs a shard, every split
    non-empty. Returns the shard directory."""
    from musicgan.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("midi_folder_shards")
    manifest = prepare_dataset(str(midi_folder), out, workers=1, shard_size=6, ratios=(0.6, 0.2, 0.2), progress=False)
    assert all(manifest["splits"][s]["songs"] > 0 for s in ("train", "valid", "test")), manifest["splits"]
    return out


@pytest.fixture
def one_torch_thread():
    """Tiny tensors gain nothing from a second thread, and on a loaded 2-core machine an
    OpenMP region waiting for a descheduled thread makes such tests 100x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def small_disk(tmp_path, request) -> Path:
    """A real small file system (tmpfs) for full-disk tests, mounted for the test and
    unmounted after it; its size is the test module's TMPFS_SIZE (e.g. "160k"). Skipped
    without root or where mounting is impossible."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    size = request.module.TMPFS_SIZE
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="session")
def bach_audio_shards(tmp_path_factory) -> Path:
    """Five chorales with their audio rendered at 8 kHz (FluidSynth + the GM soundfont), ratios
    0.5/0.5/0 (train and valid both non-empty). Read-only; skips without a soundfont."""
    from musicgan.audio import find_soundfont
    from musicgan.data.prepare import prepare_dataset

    if find_soundfont() is None:
        pytest.skip("needs fluidsynth + fluid-soundfont-gm")
    out = tmp_path_factory.mktemp("bach_audio_shards")
    manifest = prepare_dataset(
        "music21:bach", out, workers=1, ratios=(0.5, 0.5, 0), progress=False, limit=5, audio_rate=8000
    )
    assert all(manifest["splits"][s]["songs"] > 0 for s in ("train", "valid")), manifest["splits"]
    return out
