"""The shard format: one tar sample per song, written deterministically and atomically.

A sample is two or three tar members sharing a key (see shards/README.md for the full schema):
    <key>.notes.npy   Song.notes, float64 (n, 7), written by np.save (never pickle); schema-1
                      shards hold (n, 6) and load with track = -1
    <key>.json        Song.meta() plus "key" and "split"
    <key>.audio.npy   optional: Song.audio, int16 mono at meta["audio_rate"] (np.save, no pickle)
The key is a hash of the song's source (WebDataset cuts keys at the first dot, and sources
such as "music21:bach/bwv66.6" or "a/b.mid" contain dots and slashes).

Byte-identical output: members carry fixed metadata (mtime 0, uid/gid 0, mode 0644, empty
user names, USTAR format) and samples arrive in a deterministic order. Atomic output: a
shard is written under a temporary name in the same folder and renamed when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from musicgan.data.bounds import meta_problem, span_problem
from musicgan.data.paths import resolve_data_dir, shard_path
from musicgan.data.song import LEGACY_NOTE_COLUMNS, NUM_NOTE_COLUMNS, Song
from musicgan.errors import DataError

NOTES_SUFFIX = "notes.npy"
META_SUFFIX = "json"
AUDIO_SUFFIX = "audio.npy"
TMP_MARKER = ".tmp-"
MANIFEST = "manifest.json"


class SampleError(ValueError):
    """A shard sample whose members are missing or do not decode."""


def song_key(source: str) -> str:
    """Stable tar key for a source: 20 hex digits of its SHA-256 (no dots, no slashes)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:20]


def split_fraction(source: str) -> float:
    """A number in [0, 1) fixed by the source alone: adding files never moves a song's split."""
    digest = hashlib.sha256(b"musicgan-split:" + source.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def encode_sample(song: Song, key: str, split: str) -> dict[str, bytes]:
    """{member suffix: bytes} for one song (the audio member only when the song has audio)."""
    meta = dict(song.meta(), key=key, split=split)
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    members = {
        NOTES_SUFFIX: _npy_bytes(np.ascontiguousarray(song.notes, dtype=np.float64)),
        META_SUFFIX: text.encode("utf-8"),
    }
    if song.audio is not None:
        members[AUDIO_SUFFIX] = _npy_bytes(np.ascontiguousarray(song.audio, dtype="<i2"))
    return members


def decode_sample(sample: dict) -> Song:
    """Inverse of encode_sample on a WebDataset sample dict (bytes values); raises SampleError."""
    if NOTES_SUFFIX not in sample or META_SUFFIX not in sample:
        missing = [s for s in (NOTES_SUFFIX, META_SUFFIX) if s not in sample]
        raise SampleError(f"missing member(s) {', '.join(missing)}")
    try:
        notes = np.load(io.BytesIO(sample[NOTES_SUFFIX]), allow_pickle=False)
        meta = json.loads(sample[META_SUFFIX].decode("utf-8"))
    except Exception as exc:
        raise SampleError(f"undecodable member: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}") from None
    if notes.ndim != 2 or notes.shape[1] not in (NUM_NOTE_COLUMNS, LEGACY_NOTE_COLUMNS) or notes.dtype.kind != "f":
        raise SampleError(
            f"notes array has shape {notes.shape} and dtype {notes.dtype}, "
            f"expected (n, {NUM_NOTE_COLUMNS}) float (or (n, {LEGACY_NOTE_COLUMNS}) in schema 1)"
        )
    if not np.isfinite(notes).all():
        raise SampleError("notes array holds NaN or infinity")
    if not isinstance(meta, dict):
        raise SampleError("meta is not a JSON object")
    problem = meta_problem(meta)  # meta is as untrusted as the notes: a zero denominator, NaN tempos
    if problem:
        raise SampleError(f"bad meta: {problem}")
    try:
        song = Song.from_arrays(notes, meta, _decode_audio(sample, meta))
    except (KeyError, TypeError, ValueError) as exc:
        raise SampleError(f"malformed meta: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}") from None
    problem = span_problem(song)
    if problem:
        raise SampleError(problem)
    return song


def _decode_audio(sample: dict, meta: dict) -> np.ndarray | None:
    """The optional audio member: int16 mono with a positive `audio_rate`; SampleError otherwise."""
    if AUDIO_SUFFIX not in sample:
        return None
    try:
        audio = np.load(io.BytesIO(sample[AUDIO_SUFFIX]), allow_pickle=False)
    except Exception as exc:
        raise SampleError(
            f"undecodable audio member: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        ) from None
    if audio.ndim != 1 or audio.dtype != np.int16:
        raise SampleError(f"audio array has shape {audio.shape} and dtype {audio.dtype}, expected (samples,) int16")
    if not isinstance(meta.get("audio_rate"), int) or meta["audio_rate"] <= 0:
        raise SampleError(
            f"audio member without a positive integer audio_rate in the meta (got {meta.get('audio_rate')!r})"
        )
    return audio


def _tar_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class ShardWriter:
    """Writes samples into `<prefix>-%06d.tar` shards of `shard_size` samples each.

    Each shard is written to `<name>.tmp-<pid>` and renamed on completion, so readers never
    see a half shard and an interrupted run leaves only temporary files (removed on re-run).
    """

    def __init__(self, out_dir, prefix: str, shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.shard_size = shard_size
        self.names: list[str] = []  # completed shard file names, in order
        self._tar: tarfile.TarFile | None = None
        self._tmp_path: Path | None = None
        self._count = 0

    def write(self, key: str, members: dict[str, bytes]) -> str:
        """Add one sample; returns the name of the shard it went into."""
        if self._tar is None:
            self._open()
        for suffix in sorted(members):
            data = members[suffix]
            self._tar.addfile(_tar_member(f"{key}.{suffix}", len(data)), io.BytesIO(data))
        name = self._current_name
        self._count += 1
        if self._count >= self.shard_size:
            self._finish()
        return name

    def close(self) -> list[str]:
        if self._tar is not None:
            self._finish()
        return self.names

    def abort(self) -> None:
        """Drop the shard in progress (used when the run fails)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            if self._tmp_path is not None and self._tmp_path.exists():
                self._tmp_path.unlink()

    @property
    def _current_name(self) -> str:
        return f"{self.prefix}-{len(self.names):06d}.tar"

    def _open(self) -> None:
        self._tmp_path = self.out_dir / f"{self._current_name}{TMP_MARKER}{os.getpid()}"
        self._tar = tarfile.open(self._tmp_path, "w", format=tarfile.USTAR_FORMAT)
        self._count = 0

    def _finish(self) -> None:
        self._tar.close()
        self._tar = None
        os.replace(self._tmp_path, self.out_dir / self._current_name)
        self.names.append(self._current_name)
        self._count = 0


# -- reading a prepared folder -----------------------------------------------------------------------
def load_manifest(data_dir) -> dict:
    """The manifest.json of a prepared folder; DataError when there is none or it is not a
    JSON object whose `splits` map names to objects with a `files` list."""
    path = resolve_data_dir(data_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"no {MANIFEST} in {data_dir}: run `musicgan prepare` first")
    return read_manifest(path)


def read_manifest(path: Path) -> dict:
    """A manifest file (manifest.json or a partition's manifest-pNNNN.json), shape checked."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable {path}: {' '.join(str(exc).split())[:160]}") from None
    _check_manifest_shape(manifest, path)
    return manifest


def _check_manifest_shape(manifest, path: Path) -> None:
    """Hand-edited manifests: the shape every reader relies on, checked once, in one line."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits", {}), dict):
        raise DataError(f"{path} is not a musicgan manifest (expected an object with a 'splits' object)")
    for split, entry in manifest.get("splits", {}).items():
        if not _is_split_entry(entry):
            raise DataError(f"{path}: split {split!r} must be an object with a 'files' list and a 'songs' count")


def _is_split_entry(entry) -> bool:
    songs = entry.get("songs") if isinstance(entry, dict) else None
    return isinstance(entry, dict) and isinstance(entry.get("files"), list) and type(songs) is int and songs >= 0


def split_urls(data_dir, split: str) -> list[str]:
    """Absolute paths of a split's shards, each a regular file inside `data_dir` (see
    `musicgan.data.paths.shard_path`); DataError when the split is unknown or empty."""
    root = resolve_data_dir(data_dir)
    manifest = load_manifest(root)
    if split not in manifest.get("splits", {}):
        raise DataError(f"{data_dir} has no split {split!r} (splits: {', '.join(manifest.get('splits', {}))})")
    files = manifest["splits"][split]["files"]
    if not files:
        raise DataError(f"split {split!r} of {data_dir} is empty (0 songs): prepare more data or change the ratios")
    return [shard_path(root, name, root / MANIFEST) for name in files]
