"""`musicgan evaluate`: how close are generated songs to a real split, per metric and overall.

    musicgan evaluate (--run DIR | --generated DIR_OF_MIDI) --reference SHARDS_OR_MIDI
                      [--split valid] [--compare RUN_OR_DIR ...] --out DIR

Writes `metrics.json` and a report `index.html` (PNG pictures and WAV files beside it,
linked relatively, so the folder opens from disk and can be copied whole) and prints one
summary line per evaluated set. Reference statistics are cached by content hash
(`musicgan.metrics.cache`).

This module runs the command; the real split is read and cropped in
`musicgan.metrics.reference`, calibration rows, the comparison table and the printed text
are in `musicgan.metrics.compare`.

metrics.json layout
- summary: {set: {overlap_area_mean, kl_mean, realism, frechet, frechet_n, num_songs, ...}}
- realism: {set: realism score}
- calibration: the same numbers for real-vs-real (split vs train) and random notes vs
  train, so every figure can be read against its ceiling and floor
- reference: source, split, number of songs, window_notes (length-matched excerpts, see
  `crop_window`; null = whole songs; the first set's: each set meets windows of its own
  median length, sets.<set>.reference_window_notes), excluded_features ({feature: reason} reported but
  left out of every headline number, see `window_exclusions`), cache key/hit, per-metric
  {mean, std, n}
- sets: {set: {kind, path, samples_dir, num_songs, num_empty, metrics, distances,
  frechet, curves (runs), extra, reference_window_notes, reference_metrics (of its windows)}}
- comparison (with --compare): per metric, each set's value and the one closer to its
  reference windows ("tie" within 0.1 %; null for a feature left out by the window); comparison_counts:
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
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from musicgan.data.paths import printable
from musicgan.data.song import Song
from musicgan.errors import DataError, UserError
from musicgan.metrics.bleu import bleu_set_metric
from musicgan.metrics.compare import (
    DEFINITIONS,
    calibration,
    comparison_counts,
    comparison_lines,
    comparison_table,
    headline_numbers,
    json_safe,
    summary_lines,
)
from musicgan.metrics.distributions import SetStatistics, compare_features, compute_statistics, frechet_distance
from musicgan.metrics.musegan import musegan_set_metric
from musicgan.metrics.reference import Reference, load_reference, midi_files, read_song_or_none, window_exclusions
from musicgan.metrics.registry import summarize

NUM_PIANO_ROLLS = 3  # per evaluated set
NUM_AUDIO = 2  # per evaluated set


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
        return [s for s in map(read_song_or_none, self.midi_paths) if s is not None]


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


# -- the evaluated sets: a run's latest samples or a MIDI folder ---------------------------------
def _is_run_dir(path: Path) -> bool:
    return (path / "samples").is_dir() or (path / "log.jsonl").is_file()


def latest_samples_dir(run_dir: Path) -> Path:
    """`samples/final` when it holds MIDI, else the highest `samples/epoch-XXXX` that does."""
    samples = run_dir / "samples"
    candidates = []
    if samples.is_dir():
        final = samples / "final"
        if final.is_dir() and midi_files(final):
            return final
        for sub in samples.iterdir():
            match = re.fullmatch(r"epoch-(\d+)", sub.name)
            if match and sub.is_dir() and midi_files(sub):
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
    reference: Reference | None = None  # the real songs cut to this set's length


def _resolve_set(path_str: str, force_run: bool | None, max_songs: int | None) -> EvaluatedSet:
    path = Path(path_str)
    if not path.is_dir():
        raise DataError(f"not a directory: {path}")
    is_run = _is_run_dir(path) if force_run is None else force_run
    samples_dir = latest_samples_dir(path) if is_run else path
    midi_paths = midi_files(samples_dir)
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
    (`crop_window`); "auto" (default) uses, for each evaluated set, its own median note
    count when that is below the reference's median (generated excerpts vs whole songs would
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
            s.midi_paths, workers, read=read_song_or_none, keep_songs=max(NUM_PIANO_ROLLS, audio)
        )
        if s.stats.num_songs == 0:
            raise DataError(f"no readable MIDI files in {s.samples_dir}")
    # Each set meets real windows of ITS OWN median length, so a set's numbers never depend on
    # which other sets are evaluated beside it (with the first set's length for all, one MLE
    # sample set scored overlap 0.614 or 0.477 depending on its neighbour's 20 or 48 notes).
    whole, refs = ref, {}
    for s in sets:
        window = _window_notes(reference_window, whole.stats, s.stats)
        if window not in refs:
            refs[window] = (
                load_reference(reference, split, max_songs, workers, cache_root, window, seed) if window else whole
            )
        s.reference = refs[window]
    ref = sets[0].reference  # the reference block, the calibration and the report's real rows

    result_sets: dict[str, dict] = {}
    densities: dict[str, dict] = {}
    for s in sets:
        exclude = window_exclusions(s.reference.window_notes)
        distances = compare_features(s.reference.stats, s.stats, seed=seed, keep_densities=True, exclude=exclude)
        densities[s.name] = {f: e.pop("densities") for f, e in distances["features"].items() if "densities" in e}
        frechet = frechet_distance(s.reference.stats, s.stats, seed=seed, exclude=exclude)
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
            "summary": {**headline_numbers(distances, frechet, s.stats.num_songs), **extra},
            "reference_window_notes": s.reference.window_notes,
            "reference_metrics": summarize(s.reference.stats.metrics),  # of the windows it met
        }

    reference_block = {
        "kind": ref.kind,
        "path": str(ref.path),
        "split": split if ref.kind == "shards" else None,
        "num_songs": ref.stats.num_songs,
        "num_empty": ref.stats.num_empty,
        "window_notes": ref.window_notes,  # the first set's; each set's: sets.<name>.reference_window_notes
        "excluded_features": window_exclusions(ref.window_notes),
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
    (out_dir / "metrics.json").write_text(json.dumps(json_safe(result), indent=1), encoding="utf-8")
    for line in summary_lines(result) + comparison_lines(result):
        echo(line)
    echo(f"report: {out_dir / 'index.html'}" if report else f"metrics: {out_dir / 'metrics.json'}")
    return result


def _check_counts(**counts) -> None:
    """Song and note counts given by the user: None or a whole number >= 1, in one line."""
    for option, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"--{option.replace('_', '-')} must be a whole number >= 1, got {value!r}")
