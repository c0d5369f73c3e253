"""`musicgan prepare`: MIDI folder or music21 corpus -> WebDataset shards + manifest.json.

Flow: list the input's items (sorted by source) -> parse them in worker processes (ordered
imap, so output order never depends on scheduling) -> each song goes to the split decided by
a hash of its source -> three ShardWriters append samples as results stream in (memory
stays bounded by one shard per split) -> manifest.json is written last (atomically).

A SLURM array job prepares slice i of n (`partition=(i, n)`: items i, i+n, ...) into
`<split>-p<i>-%06d.tar` and `manifest-p<i>.json`; `merge_manifests(out_dir)` then writes
one manifest.json whose splits hold exactly the songs a one-process prepare would put there
(splits come from the source hash, never from the slicing).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

from musicgan.data.corpora import SongItem, corpus_name, list_items, load_item
from musicgan.data.paths import printable
from musicgan.data.shards import (  # noqa: F401  (load_manifest, split_urls re-exported)
    MANIFEST,
    TMP_MARKER,
    ShardWriter,
    encode_sample,
    load_manifest,
    read_manifest,
    song_key,
    split_fraction,
    split_urls,
)
from musicgan.errors import DataError, MidiError

SPLITS = ("train", "valid", "test")
FORMAT = "musicgan-shards/2"  # 2: note column `track`, meta `tracks` and `downbeat_s` (shards/README.md)
STAGING_PREFIX = ".prepare-"  # staging folders of runs in progress, inside the output folder
log = logging.getLogger(__name__)
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 8000, 96000  # FluidSynth's synth.sample-rate bounds
_SHARD_NAME = re.compile(r"^(train|valid|test)-(p\d{4}-)?\d{6}\.tar$")


# -- splits -----------------------------------------------------------------------------------
def _check_ratios(ratios) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise DataError(f"split ratios must be three non-negative numbers (train, valid, test), got {ratios}")
    total = sum(ratios)
    return tuple(r / total for r in ratios)


def assign_split(source: str, ratios) -> str:
    """'train' | 'valid' | 'test' from a stable hash of the source."""
    u = split_fraction(source)
    train, valid, _ = ratios
    if u < train:
        return "train"
    return "valid" if u < train + valid else "test"


# -- parsing (worker side) ------------------------------------------------------------------------
def _load(args: tuple[SongItem, str]):
    """Worker: item -> ("ok", source, members-less song) or ("skip", source, reason). Never raises."""
    item, corpus = args
    return _guarded(item.source, lambda: load_item(item, corpus))


def _load_with_audio(args: tuple[SongItem, str], audio_rate: int):
    """Worker: _load, then the song rendered once at `audio_rate` (a render failure skips it)."""
    from musicgan.audio import render_audio

    item, corpus = args

    def load_and_render():
        song = load_item(item, corpus)
        return song.replace(audio=render_audio(song, audio_rate), audio_rate=audio_rate)

    return _guarded(item.source, load_and_render)


def _guarded(source: str, make_song):
    """("ok", source, make_song()) or ("skip", source, one-line reason); never raises."""
    try:
        return ("ok", source, make_song())
    except MidiError as exc:
        return ("skip", source, str(exc))
    except MemoryError:
        return ("skip", source, "out of memory while parsing")
    except Exception as exc:  # a bug in a parser must not stop the whole run
        text = " ".join(str(exc).split())[:160]
        return ("skip", source, f"unexpected error: {type(exc).__name__}: {text}")


def _start_method() -> str:
    """fork when it is safe (one thread, torch not loaded: `musicgan prepare`), because it
    skips re-importing numpy/music21 in every worker (~1 s each); spawn otherwise, since
    forking a process with live thread pools can deadlock the children."""
    if (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and "torch" not in sys.modules
    ):
        return "fork"
    return "spawn"


def _results(items: list[SongItem], corpus: str, workers: int, load=None):
    """Yield load((item, corpus)) results in item order, in `workers` processes when worthwhile.

    A worker that dies (killed for memory, a crash in a C extension) breaks the pool: the
    first unfinished item is then retried alone in a fresh process and skipped with a reason
    if that process dies too; the pool restarts after it. So one poisonous file costs a
    restart, never the run (multiprocessing.Pool would instead wait forever).
    """
    load = load or _load
    jobs = [(item, corpus) for item in items]
    if workers <= 1 or len(items) <= 1:
        yield from map(load, jobs)
        return
    context = multiprocessing.get_context(_start_method())
    chunksize = max(1, min(8, len(jobs) // (workers * 4)))
    position = 0
    while position < len(jobs):
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        try:
            for result in executor.map(load, jobs[position:], chunksize=chunksize):
                yield result
                position += 1
        except BrokenProcessPool:
            yield _load_alone(load, jobs[position], context)
            position += 1
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _load_alone(load, job, context):
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        try:
            return executor.submit(load, job).result()
        except BrokenProcessPool:
            return ("skip", job[0].source, "the parser process died on this file (out of memory or a crash)")


# -- the run -----------------------------------------------------------------------------------
def prepare_dataset(
    input_spec: str,
    out_dir,
    *,
    workers: int | None = None,
    shard_size: int = 200,
    ratios=(0.9, 0.05, 0.05),
    progress: bool = True,
    limit: int | None = None,
    partition: tuple[int, int] | None = None,
    audio_rate: int | None = None,
) -> dict:
    """Prepare shards from a MIDI folder or `music21:NAME`; returns the manifest (also written).

    limit: only the first N items (sorted order), for tests and quick looks.
    partition: (i, n) to prepare only items i, i+n, i+2n, ... (SLURM array task i of n).
    audio_rate: also render each song once (FluidSynth, mono int16 at this rate) into the
        optional `<key>.audio.npy` member; a song that fails to render is skipped with its reason.
    Raises DataError when the input does not exist or no song was included.
    Workers are forked, or spawned when torch is loaded or threads run: a script that
    imports torch and calls this with workers > 1 needs the usual `if __name__ == "__main__":`
    guard.
    """
    input_spec = str(input_spec)
    ratios = _check_ratios(ratios)
    if shard_size < 1:
        raise DataError(f"shard size must be >= 1, got {shard_size}")
    load = _audio_loader(audio_rate)
    items = list_items(input_spec)
    if not items:
        raise DataError(f"no MIDI files (.mid/.midi) found in {input_spec}")
    if limit is not None:
        if int(limit) < 1:
            raise DataError(f"limit must be at least 1 song, got {limit}")
        items = items[: int(limit)]
    tag = ""
    if partition is not None:
        index, count = int(partition[0]), int(partition[1])
        if not 0 <= index < count:
            raise DataError(f"partition must be (i, n) with 0 <= i < n, got {partition}")
        items = items[index::count]
        tag = f"p{index:04d}"
    out = Path(out_dir)
    workers = max(1, min(int(workers or os.cpu_count() or 1), len(items)))
    corpus = corpus_name(input_spec)
    manifest_path = out / (f"manifest-{tag}.json" if tag else MANIFEST)
    _note_older_schema(manifest_path)
    # The new dataset is built whole in a staging folder beside the old one (so a failed run,
    # a full disk or ^C changes nothing of it; the price is room for both) and then moved in
    # by renames, which need no space.
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{tag or 'all'}-", dir=out))
    except OSError as exc:
        raise _write_error(out, exc) from None
    try:
        bar = _progress_bar(len(items), input_spec, progress)
        shard_names, included, skipped, stats = _write_splits(
            items, corpus, workers, load, staging, tag, shard_size, ratios, bar, audio_rate
        )
        manifest = _manifest(
            input_spec, corpus, ratios, shard_size, partition, shard_names, stats, included, skipped, audio_rate
        )
        _write_json(staging / manifest_path.name, manifest)
        if not included:
            raise _no_song_error(input_spec, skipped, staging, manifest_path)
        _install(staging, out, tag, shard_names, manifest_path)
    except OSError as exc:
        raise _write_error(out, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_error(out: Path, exc: OSError) -> DataError:
    return DataError(
        f"cannot write the dataset in {out}: {exc.strerror or exc}; nothing of an existing dataset there was changed"
    )


def _write_splits(items, corpus, workers, load, staging: Path, tag: str, shard_size: int, ratios, bar, audio_rate):
    """Parse (and render, per `load`) `items` and write each song into its split's shards
    under `staging`; returns ({split: shard names}, included, skipped, {split: counts})."""
    writers = {split: ShardWriter(staging, f"{split}-{tag}" if tag else split, shard_size) for split in SPLITS}
    stats = {split: {"songs": 0, "notes": 0, **({"audio_seconds": 0.0} if audio_rate else {})} for split in SPLITS}
    included, skipped = [], []
    try:
        for status, source, payload in _results(items, corpus, workers, load):
            if status == "ok":
                split = assign_split(source, ratios)
                key = song_key(source)
                shard = writers[split].write(key, encode_sample(payload, key, split))
                entry = {"path": source, "split": split, "key": key, "shard": shard, "notes": payload.num_notes}
                included.append(dict(entry, **_audio_entry(payload)))
                stats[split]["songs"] += 1
                stats[split]["notes"] += payload.num_notes
                if audio_rate:
                    stats[split]["audio_seconds"] = round(stats[split]["audio_seconds"] + included[-1]["audio_s"], 4)
            else:
                skipped.append({"path": source, "reason": payload})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(included=len(included), skipped=len(skipped), refresh=False)
        return {split: writers[split].close() for split in SPLITS}, included, skipped, stats
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()


def _manifest(
    input_spec, corpus, ratios, shard_size, partition, shard_names, stats, included, skipped, audio_rate
) -> dict:
    return {
        "format": FORMAT,
        "input": input_spec,
        "corpus": corpus,
        "ratios": list(ratios),
        "shard_size": shard_size,
        "partition": list(partition) if partition is not None else None,
        "splits": {
            split: {**stats[split], "shards": len(shard_names[split]), "files": shard_names[split]} for split in SPLITS
        },
        "included": included,
        "skipped": skipped,
        **({"audio_rate": int(audio_rate)} if audio_rate else {}),
    }


def _no_song_error(input_spec: str, skipped: list, staging: Path, manifest_path: Path) -> DataError:
    """The error of a run that included nothing. Its manifest (the skip reasons) is kept
    only where no dataset is replaced by it."""
    kept = "the existing dataset is unchanged" if manifest_path.exists() else f"reasons in {manifest_path}"
    if not manifest_path.exists():
        os.replace(staging / manifest_path.name, manifest_path)
    reasons = "; ".join(f"{printable(s['path'])}: {s['reason']}" for s in skipped[:3])
    return DataError(
        f"no song could be used from {input_spec} ({len(skipped)} skipped"
        + (f", e.g. {reasons}" if reasons else "")
        + f"); {kept}"
    )


def _install(staging: Path, out: Path, tag: str, shard_names: dict, manifest_path: Path) -> None:
    """Move a complete staged dataset into `out`: old manifest out first (it must never
    describe a half-replaced folder), shards in, stale shards out, new manifest in."""
    manifest_path.unlink(missing_ok=True)
    names = {name for names in shard_names.values() for name in names}
    for name in sorted(names):
        os.replace(staging / name, out / name)
    _remove_stale(out, tag, names | {staging.name})
    os.replace(staging / manifest_path.name, manifest_path)


def _note_older_schema(manifest_path: Path) -> None:
    """Say so when a run replaces shards of another schema version (they still load)."""
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(old, str) and old != FORMAT:
        log.info("re-writing %s shards in %s as %s", old, manifest_path.parent, FORMAT)


def _audio_loader(audio_rate: int | None):
    """The worker function for this run: plain parsing, or parsing + rendering (checked here
    first, so a missing FluidSynth is one clear error instead of a skip per song)."""
    if audio_rate is None:
        return _load
    if not isinstance(audio_rate, int) or not MIN_AUDIO_RATE <= audio_rate <= MAX_AUDIO_RATE:
        raise DataError(
            f"audio rate must be a whole number of Hz in {MIN_AUDIO_RATE}-{MAX_AUDIO_RATE} "
            f"(FluidSynth's range), got {audio_rate!r}"
        )
    from musicgan.audio import require_fluidsynth

    require_fluidsynth()
    return partial(_load_with_audio, audio_rate=audio_rate)


def _audio_entry(song) -> dict:
    """{"audio_s": seconds} for a song with audio (manifest bookkeeping), else {}."""
    return {"audio_s": round(len(song.audio) / song.audio_rate, 4)} if song.audio is not None else {}


def _progress_bar(total: int, label: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"prepare {label}", unit="song", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _remove_stale(out: Path, tag: str, keep: set[str]) -> None:
    """Delete shards of an earlier run that this run did not rewrite, leftover temp files,
    and staging folders of earlier runs of this task that were killed (SIGKILL, power loss)."""
    for path in out.iterdir():
        name = path.name
        if name.startswith(f"{STAGING_PREFIX}{tag or 'all'}-") and path.is_dir() and name not in keep:
            shutil.rmtree(path, ignore_errors=True)
            continue
        # Only this task's files: array tasks share `out`, and another task's temp shard is
        # still being written (deleting it made that task fail at its rename).
        ours = f"-{tag}-" in name if tag else "-p" not in name
        if TMP_MARKER in name and _SHARD_NAME.match(name.split(TMP_MARKER)[0]) and ours:
            path.unlink(missing_ok=True)
        elif _SHARD_NAME.match(name) and name not in keep and ours:
            path.unlink(missing_ok=True)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f"{TMP_MARKER}{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written manifest behind


# -- merging partitions -----------------------------------------------------------------------------
def _read_partition(path: Path) -> dict:
    """A task's manifest with what merging reads (every split's counts, the song lists, the
    partition), or a one-line DataError: hand-edited or foreign files are refused, not merged."""
    manifest = read_manifest(path)
    splits, partition = manifest.get("splits", {}), manifest.get("partition")
    counted = all(type(splits.get(s, {}).get("notes")) is int for s in SPLITS)
    listed = all(isinstance(manifest.get(k), list) for k in ("included", "skipped"))
    tasked = isinstance(partition, list) and len(partition) == 2 and all(type(x) is int for x in partition)
    if not (counted and listed and tasked):
        raise DataError(
            f"{path} is not a partition manifest written by `musicgan prepare --task-index`: re-run that task"
        )
    return manifest


def merge_manifests(out_dir) -> dict:
    """Combine the `manifest-p*.json` of a partitioned prepare into manifest.json."""
    out = Path(out_dir)
    parts = sorted(out.glob("manifest-p*.json"))
    if not parts:
        raise DataError(f"no partition manifests (manifest-p*.json) in {out}")
    manifests = [_read_partition(p) for p in parts]
    first = manifests[0]
    count = first["partition"][1] if first.get("partition") else len(parts)
    found = sorted(m["partition"][0] for m in manifests if m.get("partition"))
    if found != list(range(count)):
        raise DataError(f"partition manifests in {out} cover tasks {found}, expected 0..{count - 1}")
    merged = {
        "format": FORMAT,
        "input": first["input"],
        "corpus": first["corpus"],
        "ratios": first["ratios"],
        "shard_size": first["shard_size"],
        "partition": None,
        "merged_from": [p.name for p in parts],
        "splits": {},
        "included": [],
        "skipped": [],
    }
    if "audio_rate" in first:
        merged["audio_rate"] = first["audio_rate"]
    for split in SPLITS:
        files = [name for m in manifests for name in m["splits"][split]["files"]]
        counts = {
            name: round(sum(m["splits"][split][name] for m in manifests), 4)
            for name in ("songs", "notes", "audio_seconds")
            if name in first["splits"][split]
        }
        merged["splits"][split] = {**counts, "shards": len(files), "files": files}
    merged["included"] = sorted((e for m in manifests for e in m["included"]), key=lambda e: e["path"])
    merged["skipped"] = sorted((e for m in manifests for e in m["skipped"]), key=lambda e: e["path"])
    _write_json(out / MANIFEST, merged)
    if not merged["included"]:
        raise DataError(f"no song could be used from {first['input']}")
    return merged
