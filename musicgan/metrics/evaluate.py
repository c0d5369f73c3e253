"""`musicgan evaluate`: how close are generated songs to a real split, per metric and overall.

    musicgan evaluate (--run DIR | --generated DIR_OF_MIDI) --reference SHARDS_OR_MIDI
                      [--split valid] [--compare RUN_OR_DIR ...] --out DIR

Writes `metrics.json` and a report `index.html` (PNG pictures and WAV files beside it,
linked relatively, so the folder opens from disk and can be copied whole) and prints one
summary line per evaluated set. Reference statistics are cached by content hash
(`musicgan.metrics.cache`).

metrics.json layout
- summary: {set: {overlap_area_mean, kl_mean, realism, frechet, frechet_n, num_songs, ...}}
- realism: {set: realism score}
- calibration: the same numbers for real-vs-real (split vs train) and random notes vs
  train, so every figure can be read against its ceiling and floor
- reference: source, split, number of songs, window_notes (length-matched excerpts, see
  `crop_window`; null = whole songs), excluded_features ({feature: reason} reported but
  left out of every headline number, see `window_exclusions`), cache key/hit, per-metric
  {mean, std, n}
- sets: {set: {kind, path, samples_dir, num_songs, num_empty, metrics, distances,
  frechet, curves (runs), extra}}
- comparison (with --compare): per metric, each set's value and the one closer to the
  reference ("tie" within 0.1 %; null for a feature left out by the window); comparison_counts:
  rows won per set, ties, rows not compared
- definitions: what each headline number means

Set-level metrics that need more than songs (the RNN-RBM family's piano-roll likelihood:
`loglik_per_frame`, `bernoulli_loglik_per_frame`, `frame_accuracy`) plug in through
`register_set_metric` (or `run_evaluate(extra_metrics=...)`): each gets a `SetContext`
(songs, run directory, reference location and split) and returns {name: float} or {}
when it does not apply; results land in `sets[name]["extra"]`, in `summary[name]` and in
the report's "Piano-roll likelihood" section. MuseGAN runs get `musegan/<row>/<metric>/<track>`
(musicgan/metrics/musegan.py: generated bars, the real split and train, shuffled-pairs TD),
one summary line per row and the report's MuseGAN table. Runs on discrete tokens (`melody_grid`,
`tokens`: SeqGAN) get `bleu2`, `bleu3`, `bleu4` (musicgan/metrics/bleu.py).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from musicgan.data.paths import files_under, printable, resolve_data_dir
from musicgan.data.song import Song
from musicgan.errors import DataError, MidiError, UserError
from musicgan.metrics import cache
from musicgan.metrics.bleu import bleu_set_metric
from musicgan.metrics.distributions import (
    FEATURES,
    FRECHET_LABEL,
    SetStatistics,
    compare_features,
    compute_statistics,
    frechet_distance,
)
from musicgan.metrics.musegan import musegan_set_metric, musegan_summary_lines
from musicgan.metrics.registry import metric_names, summarize

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
NUM_PIANO_ROLLS = 3  # per evaluated set
NUM_AUDIO = 2  # per evaluated set
NUM_REFERENCE_EXAMPLES = 2
CALIBRATION_MAX_SONGS = 1000
CALIBRATION_VERSION = 2  # bump when the cached calibration numbers change meaning


# -- set-level metric hook (piano-roll likelihood of the RBM family lands here) ----------------
@dataclass
class SetContext:
    """What a set-level metric may look at."""

    name: str
    kind: str  # "run" or "midi"
    path: Path  # the run directory or the MIDI folder
    songs: list[Song]  # the first few evaluated songs (examples); all songs via `read_songs()`
    reference: Path
    reference_kind: str  # "shards" or "midi"
    split: str
    midi_paths: list[Path] = field(default_factory=list)

    def read_songs(self) -> list[Song]:
        return [s for s in map(_read_song_or_none, self.midi_paths) if s is not None]


SetMetric = Callable[[SetContext], "dict[str, float] | None"]
SET_METRICS: dict[str, SetMetric] = {}


def register_set_metric(name: str, fn: SetMetric) -> SetMetric:
    """Add a set-level metric to every `musicgan evaluate` (return {} when it does not apply)."""
    SET_METRICS[name] = fn
    return fn


def _pianoroll_likelihood(context: SetContext) -> dict[str, float]:
    """The RNN-RBM / LSTM-RBM likelihood (musicgan/metrics/pianoroll.py; {} for every other
    run or folder). Imported on call: pianoroll.py imports torch (seconds), which MIDI-folder
    evaluations never need, and a loaded torch makes the statistics pool use spawn."""
    if context.kind != "run" or context.reference_kind != "shards":
        return {}
    from musicgan.metrics.pianoroll import pianoroll_set_metric

    return pianoroll_set_metric(context)


register_set_metric("pianoroll_likelihood", _pianoroll_likelihood)
register_set_metric("musegan", musegan_set_metric)  # MuseGAN runs: per-track EB, UPC, QN, DP, TD
register_set_metric("token_bleu", bleu_set_metric)  # SeqGAN's BLEU-n for melody_grid / tokens runs


# -- inputs --------------------------------------------------------------------------------------
def _read_song_or_none(path) -> Song | None:
    """A MIDI file as a Song, or None (logged) when it cannot be read; runs in pool workers."""
    from musicgan.data.midi import read_midi

    try:
        return read_midi(path, source=printable(Path(path).name))
    except (MidiError, OSError) as exc:
        log.warning("skipping %s: %s", printable(str(path)), exc)
        return None


def _midi_files(folder: Path) -> list[Path]:
    files, skipped = files_under(folder, MIDI_SUFFIXES)
    for name, reason in skipped:
        log.warning("skipping %s in %s: %s", name, printable(str(folder)), reason)
    return files


def _is_run_dir(path: Path) -> bool:
    return (path / "samples").is_dir() or (path / "log.jsonl").is_file()


def latest_samples_dir(run_dir: Path) -> Path:
    """`samples/final` when it holds MIDI, else the highest `samples/epoch-XXXX` that does."""
    samples = run_dir / "samples"
    candidates = []
    if samples.is_dir():
        final = samples / "final"
        if final.is_dir() and _midi_files(final):
            return final
        for sub in samples.iterdir():
            match = re.fullmatch(r"epoch-(\d+)", sub.name)
            if match and sub.is_dir() and _midi_files(sub):
                candidates.append((int(match.group(1)), sub))
    if not candidates:
        raise DataError(f"run {run_dir} has no MIDI samples (expected {samples}/final or {samples}/epoch-XXXX)")
    return max(candidates)[1]


def read_curves(log_path: Path) -> dict[str, dict[str, list]]:
    """{metric: {"epoch": [...], "gen": [...], "real": [...]}} from a run's log.jsonl."""
    curves: dict[str, dict[str, list]] = {}
    if not log_path.is_file():
        return curves
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by an interrupted run
        if not isinstance(record, dict) or record.get("event") != "epoch_metrics" or "epoch" not in record:
            continue
        for key, value in record.items():
            if "/" not in key or not isinstance(value, (int, float)):
                continue
            side, metric = key.split("/", 1)
            if side not in ("gen", "real"):
                continue
            curve = curves.setdefault(metric, {"epoch": [], "gen": [], "real": []})
            if not curve["epoch"] or curve["epoch"][-1] != record["epoch"]:
                curve["epoch"].append(record["epoch"])
                curve["gen"].append(math.nan)
                curve["real"].append(math.nan)
            curve[side][-1] = float(value)
    return curves


@dataclass
class EvaluatedSet:
    name: str
    kind: str  # "run" or "midi"
    path: Path
    midi_paths: list[Path]
    samples_dir: Path
    curves: dict = field(default_factory=dict)
    stats: SetStatistics | None = None
    examples: list[Song] = field(default_factory=list)


def _resolve_set(path_str: str, force_run: bool | None, max_songs: int | None) -> EvaluatedSet:
    path = Path(path_str)
    if not path.is_dir():
        raise DataError(f"not a directory: {path}")
    is_run = _is_run_dir(path) if force_run is None else force_run
    samples_dir = latest_samples_dir(path) if is_run else path
    midi_paths = _midi_files(samples_dir)
    if not midi_paths:
        raise DataError(f"no MIDI files (.mid/.midi) in {samples_dir}")
    if max_songs:
        midi_paths = midi_paths[:max_songs]
    curves = read_curves(path / "log.jsonl") if is_run else {}
    resolved = path.resolve()
    name = printable(resolved.name or str(path))
    if resolved.parent.name == "samples":  # RUN/samples/epoch-0006: named "RUN:epoch-0006", RUN's curves
        name = printable(f"{resolved.parent.parent.name}:{resolved.name}")
        curves = read_curves(resolved.parent.parent / "log.jsonl")
    return EvaluatedSet(name, "run" if is_run else "midi", path, midi_paths, samples_dir, curves)


def _unique_names(sets: list[EvaluatedSet]) -> None:
    seen: dict[str, int] = {}
    for s in sets:
        base = s.name
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            s.name = f"{base}-{seen[base]}"


def crop_window(song: Song, num_notes: int | None, seed: int = 0) -> Song:
    """One window of `num_notes` consecutive notes (onset order) of a song, starting at a
    random note (seeded by `seed` and the song's source, so the choice is reproducible in
    any process), moved to start at the beginning of its bar with the tempo and time
    signature in force there. Songs with at most `num_notes` notes come back unchanged.

    Why: features like note count and pitch range grow with length, so generated excerpts
    must be compared with real excerpts of the same size (the C-RNN-GAN paper measures
    100-event windows of real songs for the same reason).
    """
    if not num_notes or song.num_notes <= num_notes:
        return song
    rng = np.random.default_rng([seed, zlib.crc32(song.source.encode())])
    start = int(rng.integers(0, song.num_notes - num_notes + 1))
    notes = song.notes[start : start + num_notes].copy()
    bar = song.bar_length_beats() or 4.0
    first_beat = float(song.seconds_to_beats(notes[0, 0]))
    shift = float(song.beats_to_seconds(np.floor(first_beat / bar) * bar))
    notes[:, 0] -= shift
    in_force = [b for t, b in song.tempos if t <= shift][-1:] or [song.tempos[0][1]]
    tempos = [(0.0, in_force[0])] + [(t - shift, b) for t, b in song.tempos if t > shift]
    signatures = [(0.0, n, d) for t, n, d in song.time_signatures if t <= shift][-1:]
    signatures += [(t - shift, n, d) for t, n, d in song.time_signatures if t > shift]
    return song.replace(notes=notes, tempos=tempos, time_signatures=signatures, source=f"{song.source}@{start}")


# Below this many notes per window the histogram features of real songs are so noisy that
# uniformly random notes overlap them (random-vs-train 0.48 at 16 notes on the full Bach
# corpus, <= 0.39 from 32 notes up): the report warns, the numbers stay as they are.
MIN_RELIABLE_WINDOW = 32

WINDOW_NOTE_COUNT_REASON = (
    "fixed by the window construction: every reference window holds exactly {n} notes "
    "(shorter songs whole), so the feature measures the crop, not the music"
)


def window_exclusions(window_notes: int | None) -> dict[str, str]:
    """{feature: reason} left out of the headline numbers (overlap_area_mean, kl_mean,
    realism, frechet) when the reference is cropped to `window_notes`-note windows.

    Why note_count: with windows, every reference song has N notes (songs shorter than N
    are kept whole), and N itself is the generated set's median, so the feature compares
    the crop with the crop. On the full Bach corpus it scored OA 1.000 for random notes
    and for real songs alike at N <= 80 (all distances 0), lifting random-vs-train from
    0.35 to 0.43 at N = 48, and its near-zero reference std made the z-scored Frechet
    vector hinge on a single short song. Whole songs (no window) keep every feature.
    """
    return {"note_count": WINDOW_NOTE_COUNT_REASON.format(n=window_notes)} if window_notes else {}


def fixed_length_exclusions(reference: SetStatistics) -> dict[str, str]:
    """`window_exclusions` for a reference made of fixed-length excerpts (the Ray Tune
    objective's windows of L steps of a one-note-per-step representation): when every
    reference song holds the same number of notes, note_count is fixed by the excerpting,
    not by the music. Piano-roll excerpts (note counts vary) keep every feature."""
    counts = reference.features["note_count"][:, 0]
    if len(counts) < 2 or not np.all(counts == counts[0]):
        return {}
    return window_exclusions(int(counts[0]))


@dataclass(frozen=True)
class _ReadCropped:
    """Picklable reader for pool workers: a MIDI path -> cropped Song (or None)."""

    num_notes: int | None
    seed: int

    def __call__(self, path) -> Song | None:
        song = _read_song_or_none(path)
        return None if song is None else crop_window(song, self.num_notes, self.seed)


def _shard_songs(urls: list[str], max_songs: int | None, num_notes: int | None = None, seed: int = 0):
    from musicgan.data.loader import iter_songs

    for i, song in enumerate(iter_songs(urls)):
        if max_songs and i >= max_songs:
            return
        yield crop_window(song, num_notes, seed)


@dataclass
class Reference:
    kind: str  # "shards" or "midi"
    path: Path
    split: str
    stats: SetStatistics
    examples: list[Song]
    cache_key: str
    cache_hit: bool
    seconds: float
    window_notes: int | None = None


def load_reference(
    reference: str,
    split: str,
    max_songs: int | None,
    workers: int | None,
    cache_root: Path | None = None,
    window_notes: int | None = None,
    seed: int = 0,
) -> Reference:
    """Statistics of the real songs, a shard split (via the manifest) or a MIDI folder,
    optionally cropped to one window of `window_notes` notes per song (`crop_window`)."""
    path = resolve_data_dir(reference)
    start = time.perf_counter()
    window = {"window_notes": window_notes, "window_seed": seed} if window_notes else {}
    if (path / "manifest.json").is_file():
        from musicgan.data.shards import MANIFEST, split_urls

        urls = split_urls(path, split)
        key = cache.content_hash([path / MANIFEST, *urls], kind="shards", split=split, max_songs=max_songs, **window)

        def compute():
            songs = _shard_songs(urls, max_songs, window_notes, seed)
            return compute_statistics(songs, workers, keep_songs=NUM_REFERENCE_EXAMPLES)

        kind = "shards"
    elif path.is_dir():
        files = _midi_files(path)
        if not files:
            raise DataError(f"reference {path} is neither a shard folder (no manifest.json) nor a folder of MIDI files")
        files = files[:max_songs] if max_songs else files
        key = cache.content_hash(files, kind="midi", max_songs=max_songs, **window)

        def compute():
            return compute_statistics(
                files, workers, read=_ReadCropped(window_notes, seed), keep_songs=NUM_REFERENCE_EXAMPLES
            )

        kind = "midi"
    else:
        raise DataError(f"reference not found: {path}")
    stats, examples, hit = cache.cached_statistics(key, compute, cache_root)
    if stats.num_songs == 0:
        raise DataError(f"reference {path} (split {split!r}) holds no readable songs")
    return Reference(kind, path, split, stats, examples, key, hit, time.perf_counter() - start, window_notes)


# -- calibration: real-vs-real ceiling, random-notes floor -------------------------------------
def random_songs(num_songs: int, seed: int = 0, num_notes: int | None = None) -> list[Song]:
    """Uniformly random notes: 100-300 per song (or exactly `num_notes`), pitch 21-108,
    velocity 1-127, onsets uniform over 0.25 s per note, durations 0.1-1.0 s. The floor
    every model should beat.

    The time scale is deliberately music-like (mean gap 0.25 s; Bach chorales: 0.25-0.49 s
    per song, median 0.33) so the floor is not made easy by tempo alone: avg_ioi overlaps
    real music (OA ~0.93) and the floor's distance comes from pitch, pitch-class and
    rhythm structure."""
    rng = np.random.default_rng(seed)
    songs = []
    for i in range(num_songs):
        n = int(num_notes or rng.integers(100, 301))
        onsets = np.sort(rng.uniform(0.0, 0.25 * n, n))
        songs.append(
            Song.from_columns(
                onsets,
                rng.uniform(0.1, 1.0, n),
                rng.integers(21, 109, n),
                rng.integers(1, 128, n),
                source=f"random-{i:04d}",
            )
        )
    return songs


def _headline(distances: dict, frechet: dict, num_songs: int) -> dict:
    return {
        "overlap_area_mean": distances["overlap_area_mean"],
        "kl_mean": distances["kl_mean"],
        "realism": distances["realism"],
        "frechet": frechet["frechet"],
        "frechet_n": frechet["frechet_n"],
        "num_songs": num_songs,
        "pairs_n": distances["n"],
    }


def calibration(ref: Reference, workers: int | None, seed: int, cache_root: Path | None) -> dict:
    """Headline numbers of `<split> vs train` (real vs real) and `random notes vs train`.

    Needs a shard reference with a train split; for a MIDI reference only random notes vs
    the reference itself. The result depends on the reference alone, so it is cached
    under the reference's content hash (first run ~2x the cost of one comparison).
    """
    # The key covers the window; v2: headline numbers leave out `window_exclusions`.
    cache_name = f"calibration-v{CALIBRATION_VERSION}-{ref.cache_key[:32]}-seed{seed}-max{CALIBRATION_MAX_SONGS}"
    cached = cache.load_json(cache_name, cache_root)
    if cached is not None:
        return cached
    out = _calibration(ref, workers, seed, cache_root)
    cache.save_json(cache_name, _json_safe(out), cache_root)
    return out


def _calibration(ref: Reference, workers: int | None, seed: int, cache_root: Path | None) -> dict:
    out = {}
    exclude = window_exclusions(ref.window_notes)

    def headline(base_stats: SetStatistics, other: SetStatistics, num_songs: int) -> dict:
        d = compare_features(base_stats, other, seed=seed, exclude=exclude)
        return _headline(d, frechet_distance(base_stats, other, seed=seed, exclude=exclude), num_songs)

    base, base_name = ref, ref.split if ref.kind == "shards" else "reference"
    if ref.kind == "shards":
        try:
            base = (
                ref
                if ref.split == "train"
                else load_reference(
                    str(ref.path), "train", CALIBRATION_MAX_SONGS, workers, cache_root, ref.window_notes, seed
                )
            )
            base_name = "train"
        except DataError:
            base = ref
        if base is not ref:
            out[f"{ref.split}_vs_train"] = headline(base.stats, ref.stats, ref.stats.num_songs)
        elif ref.split == "train":
            try:
                other = load_reference(
                    str(ref.path), "valid", CALIBRATION_MAX_SONGS, workers, cache_root, ref.window_notes, seed
                )
                out["valid_vs_train"] = headline(ref.stats, other.stats, other.stats.num_songs)
            except DataError:
                pass
    count = min(max(base.stats.num_songs, 2), CALIBRATION_MAX_SONGS)
    rand = compute_statistics(random_songs(count, seed, ref.window_notes), workers)
    out[f"random_vs_{base_name}"] = headline(base.stats, rand, count)
    return out


# -- comparison table --------------------------------------------------------------------------------
TIE_TOLERANCE = 1e-3  # relative: scores closer than this are reported as a tie


def _closer(scores: dict[str, float]) -> str | None:
    """Name with the smallest score (a distance to the reference), "tie" when the best two
    are within TIE_TOLERANCE, None when no score is defined."""
    finite = sorted((v, n) for n, v in scores.items() if v is not None and np.isfinite(v))
    if not finite:
        return None
    if len(finite) > 1 and abs(finite[1][0] - finite[0][0]) <= TIE_TOLERANCE * max(1.0, abs(finite[0][0])):
        return "tie"
    return finite[0][1]


def comparison_table(reference: dict, sets: dict) -> dict:
    """Per registry metric, mgeval feature and headline number: each set's value and which
    set is closer to the reference ("tie" within TIE_TOLERANCE). A feature left out of the
    headline numbers (reference["excluded_features"]) keeps its row, with closer None and
    the reason as its rule: it is equal by construction, not a tie between the models."""
    excluded = reference.get("excluded_features") or {}
    table = {}
    names = list(sets)
    for metric in metric_names("all"):
        ref_mean = reference["metrics"][metric]["mean"]
        values = {n: sets[n]["metrics"][metric]["mean"] for n in names}
        gaps = {n: abs(v - ref_mean) for n, v in values.items()}
        table[f"metric/{metric}"] = {
            "reference": ref_mean,
            "values": values,
            "closer": _closer(gaps),
            "rule": "|mean - reference mean| smaller",
        }
    for feature in FEATURES:
        values = {n: sets[n]["distances"]["features"].get(feature, {}).get("oa", math.nan) for n in names}
        if feature in excluded:
            table[f"overlap_area/{feature}"] = {
                "reference": 1.0,
                "values": values,
                "closer": None,
                "rule": f"not compared: {excluded[feature]}",
            }
            continue
        table[f"overlap_area/{feature}"] = {
            "reference": 1.0,
            "values": values,
            "closer": _closer({n: -v for n, v in values.items()}),
            "rule": "larger overlap",
        }
    for key, sign in (("overlap_area_mean", -1.0), ("realism", -1.0), ("frechet", 1.0)):
        values = {n: sets[n]["summary"][key] for n in names}
        table[f"summary/{key}"] = {
            "reference": None,
            "values": values,
            "closer": _closer({n: sign * v for n, v in values.items()}),
            "rule": "smaller" if sign > 0 else "larger",
        }
    return table


def comparison_counts(table: dict, names: list[str]) -> dict[str, int]:
    """Rows of the comparison table each set is closer on, plus "tie" and "not compared"."""
    counts = {name: 0 for name in names} | {"tie": 0, "not compared": 0}
    for entry in table.values():
        counts["not compared" if entry["closer"] is None else entry["closer"]] += 1
    return counts


def _window_notes(setting, reference: SetStatistics, generated: SetStatistics) -> int | None:
    if setting in (None, 0, "none", "off"):
        return None
    if setting != "auto":
        return int(setting)
    ref_counts, gen_counts = reference.features["note_count"][:, 0], generated.features["note_count"][:, 0]
    if not len(ref_counts) or not len(gen_counts):
        return None
    median_gen = int(np.median(gen_counts))
    return median_gen if 1 <= median_gen < np.median(ref_counts) else None


# -- main entry -----------------------------------------------------------------------------------------
def run_evaluate(
    *,
    run: str | None = None,
    generated: str | None = None,
    reference: str,
    split: str = "valid",
    compare: Sequence[str] = (),
    out: str,
    max_songs: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    extra_metrics: Sequence[SetMetric] = (),
    audio: int = NUM_AUDIO,
    calibrate: bool = True,
    report: bool = True,
    reference_window: int | str | None = "auto",
    cache_root: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Evaluate a run's latest samples (or a MIDI folder) and optional others against a real
    split; write metrics.json + index.html under `out`; return the metrics.json content.

    audio: WAV files rendered per evaluated set (0: none); calibrate: also score the real
    split against train and random notes (see `calibration`); extra_metrics: set-level
    metrics run in addition to the registered `SET_METRICS`; report=False writes
    metrics.json only (no pictures, audio or index.html: sweeps).
    reference_window: compare against one window of this many notes per real song
    (`crop_window`); "auto" (default) uses the median note count of the first evaluated
    set when that is below the reference's median (generated excerpts vs whole songs would
    otherwise differ in length alone); None compares whole songs.
    """
    if (run is None) == (generated is None):
        raise UserError("evaluate needs exactly one of --run DIR or --generated DIR_OF_MIDI")
    from musicgan.metrics.audio_evaluate import audio_samples_dir, run_audio_evaluate

    if run is not None and audio_samples_dir(Path(run)) is not None:  # an audio model: WAV samples, no MIDI
        return run_audio_evaluate(
            run=run,
            reference=reference,
            split=split,
            compare=compare,
            out=out,
            max_songs=max_songs,
            seed=seed,
            report=report,
            echo=echo,
        )
    window_count = reference_window if isinstance(reference_window, int) and reference_window != 0 else None
    _check_counts(max_songs=max_songs, reference_window=window_count)  # 0 and "none" switch windows off
    started = time.perf_counter()
    out_dir = Path(out)
    ref = load_reference(reference, split, max_songs, workers, cache_root)
    sets = [_resolve_set(run or generated, True if run else False, max_songs)]
    sets += [_resolve_set(c, None, max_songs) for c in compare]
    _unique_names(sets)
    for s in sets:
        s.stats, s.examples = compute_statistics(
            s.midi_paths, workers, read=_read_song_or_none, keep_songs=max(NUM_PIANO_ROLLS, audio)
        )
        if s.stats.num_songs == 0:
            raise DataError(f"no readable MIDI files in {s.samples_dir}")
    window = _window_notes(reference_window, ref.stats, sets[0].stats)
    if window:
        ref = load_reference(reference, split, max_songs, workers, cache_root, window, seed)

    exclude = window_exclusions(ref.window_notes)
    result_sets: dict[str, dict] = {}
    densities: dict[str, dict] = {}
    for s in sets:
        distances = compare_features(ref.stats, s.stats, seed=seed, keep_densities=True, exclude=exclude)
        densities[s.name] = {f: e.pop("densities") for f, e in distances["features"].items() if "densities" in e}
        frechet = frechet_distance(ref.stats, s.stats, seed=seed, exclude=exclude)
        context = SetContext(s.name, s.kind, s.path, s.examples, ref.path, ref.kind, split, s.midi_paths)
        extra = {}
        for fn in [*SET_METRICS.values(), *extra_metrics]:
            extra.update(fn(context) or {})
        result_sets[s.name] = {
            "kind": s.kind,
            "path": str(s.path),
            "samples_dir": str(s.samples_dir),
            "num_songs": s.stats.num_songs,
            "num_empty": s.stats.num_empty,
            "metrics": summarize(s.stats.metrics),
            "distances": distances,
            "frechet": frechet,
            "curves": s.curves,
            "extra": extra,
            "summary": {**_headline(distances, frechet, s.stats.num_songs), **extra},
        }

    reference_block = {
        "kind": ref.kind,
        "path": str(ref.path),
        "split": split if ref.kind == "shards" else None,
        "num_songs": ref.stats.num_songs,
        "num_empty": ref.stats.num_empty,
        "window_notes": ref.window_notes,
        "excluded_features": exclude,
        "cache_key": ref.cache_key,
        "cache_hit": ref.cache_hit,
        "load_seconds": round(ref.seconds, 3),
        "metrics": summarize(ref.stats.metrics),
    }
    result = {
        "summary": {n: r["summary"] for n, r in result_sets.items()},
        "realism": {n: r["summary"]["realism"] for n, r in result_sets.items()},
        "calibration": calibration(ref, workers, seed, cache_root) if calibrate else {},
        "reference": reference_block,
        "sets": result_sets,
        "definitions": DEFINITIONS,
    }
    if len(result_sets) > 1:
        result["comparison"] = comparison_table(reference_block, result_sets)
        result["comparison_counts"] = comparison_counts(result["comparison"], list(result_sets))

    out_dir.mkdir(parents=True, exist_ok=True)
    result["seconds"] = round(time.perf_counter() - started, 3)
    if report:
        from musicgan.metrics.report import write_report

        write_report(out_dir, result, ref, sets, densities, audio=audio)
    result["seconds_with_report"] = round(time.perf_counter() - started, 3)
    (out_dir / "metrics.json").write_text(json.dumps(_json_safe(result), indent=1), encoding="utf-8")
    for line in summary_lines(result) + comparison_lines(result):
        echo(line)
    echo(f"report: {out_dir / 'index.html'}" if report else f"metrics: {out_dir / 'metrics.json'}")
    return result


def _check_counts(**counts) -> None:
    """Song and note counts given by the user: None or a whole number >= 1, in one line."""
    for option, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"--{option.replace('_', '-')} must be a whole number >= 1, got {value!r}")


def summary_lines(result: dict) -> list[str]:
    ref = result["reference"]
    where = f"{ref['path']} split {ref['split']}" if ref["split"] else ref["path"]
    window = f", one {ref['window_notes']}-note window each" if ref.get("window_notes") else ""
    lines = [f"reference: {where} ({ref['num_songs']} songs{window}{', cached' if ref['cache_hit'] else ''})"]
    for feature, reason in (ref.get("excluded_features") or {}).items():
        lines.append(f"headline numbers leave out {feature}: {reason}")
    if ref.get("window_notes") and ref["window_notes"] < MIN_RELIABLE_WINDOW:
        lines.append(
            f"warning: windows of {ref['window_notes']} notes (< {MIN_RELIABLE_WINDOW}) are too short for the "
            "histogram features to separate real from random music: read the random-notes floor below"
        )
    rows = [(n, s) for n, s in result["summary"].items()] + [
        (f"[calibration] {n}", s) for n, s in result["calibration"].items()
    ]
    for name, s in rows:
        lines.append(
            f"{name}: overlap_area_mean={_num(s['overlap_area_mean'])} frechet={_num(s['frechet'])} "
            f"realism={_num(s['realism'])} (n={s['num_songs']})"
        )
    for name, entry in result["sets"].items():
        lines += [f"{name}: {line}" for line in musegan_summary_lines(entry["extra"])]
    if result.get("comparison_counts"):
        total = sum(result["comparison_counts"].values())
        lines.append(
            f"closer to the reference, of {total} rows: "
            + ", ".join(f"{n} {c}" for n, c in result["comparison_counts"].items())
        )
    return lines


def comparison_lines(result: dict) -> list[str]:
    """The side-by-side table as text (with --compare): one row per metric, the reference
    value, each set's value and the set closer to the reference."""
    table = result.get("comparison")
    if not table:
        return []
    names = list(result["sets"])
    width = max(len(k) for k in table)
    lines = ["", f"{'metric':<{width}}  {'real':>9}  " + "  ".join(f"{n[:12]:>12}" for n in names) + "  closer"]
    for key, entry in table.items():
        real = "" if entry["reference"] is None else _num(entry["reference"])
        values = "  ".join(f"{_num(entry['values'].get(n)):>12}" for n in names)
        lines.append(f"{key:<{width}}  {real:>9}  {values}  {entry['closer'] or 'not compared'}")
    return lines


def _num(value) -> str:
    """3 decimals; "nan" for undefined (NaN, or None from cached JSON)."""
    return "nan" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _json_safe(value):
    """NaN/inf -> null, numpy -> Python: metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


DEFINITIONS = {
    "overlap_area_mean": "mean over the mgeval features of the overlapping area between the KDEs of intra-reference "
    "and inter-set (reference x evaluated) song distances; 1 = indistinguishable",
    "kl_mean": "mean over features of KL(intra-reference || inter-set), nats, both densities on one grid",
    "realism": "mean over features of (OA(intra-ref, inter) + OA(intra-ref, intra-evaluated)) / 2: closeness and "
    "matching diversity; in [0, 1], higher is better",
    "frechet": FRECHET_LABEL + "; lower is better",
    "frechet_n": "the same Frechet distance with all evaluated songs, before extrapolation",
    "compat": "*_compat metrics reproduce the C-RNN-GAN reference code's quirks, only to compare with published "
    "numbers; the plain names are the correct definitions",
    "calibration": "<split>_vs_train: a real held-out split against train (the ceiling); random_vs_*: uniformly "
    "random notes (the floor: pitch 21-108, velocity 1-127, onsets uniform at 4 notes/s on average, "
    "durations 0.1-1.0 s, as many notes as the reference window)",
    "excluded_features": "features compared and shown per feature but left out of overlap_area_mean, kl_mean, "
    "realism and frechet, with the reason (note_count when the reference is cropped to windows "
    "of N notes: fixed by the crop)",
    "onset_tolerance_s": "onsets closer than 0.651 ms (half a 1/384-quarter tick at 120 bpm) count as simultaneous",
}
