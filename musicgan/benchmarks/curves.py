"""`musicgan bench --scaling-curves`: how cost grows with the sizes a user chooses (the
"full" grid; `--quick`: the "quick" one). The plain `musicgan bench` ends with the same
curves on the small "suite" grid (`suite_section`; "quick" under `--quick`).

  step_vs_seq_len, step_vs_batch_size, step_vs_hidden
      the real training step of the paper preset (`crnngan-paper`, adversarial phase, one
      replayed batch: trainer_step.py) against one size, the others at the paper's values
      (length 100, batch 20, hidden 350 for G and D); seconds per step and events/s
      (batch x length / step time)
  prepare_vs_songs
      `prepare` of an evenly spread subset (every k-th song) of the bundled folk corpora
      (music21 essen + oneills), one worker: seconds and files/s against the songs read
  evaluate_vs_songs
      `evaluate` (metrics.json only: no pictures or audio) of N generated against N real
      MIDI files (musicgan's own writer, folk-song sized), one worker, a fresh cache

Every point runs in its own subprocess, so its peak RSS (`wait4`'s ru_maxrss: the process
and anything it waited for) is that point's alone and its CPU seconds are counted; a step
point times `warmup + steps` steps and keeps the median of the last `steps`. One intra-op
thread per point (MUSICGAN_BENCH_THREADS changes it): CPU seconds then barely depend on
other jobs. Each curve's time and peak RSS are fitted by growth.py (linear, n log n,
quadratic); the PNGs are drawn by musicgan.plots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median  # not timing.median: that module imports torch, which a prepare point must not

from musicgan.benchmarks import growth

FOLK_CORPORA = ("music21:essen", "music21:oneills")
EVALUATE_ONSETS = 64  # folk-song sized files (a generated excerpt is as short)
ALL = "all"  # a prepare size meaning every song of FOLK_CORPORA

GRIDS = {
    "full": {
        "seq_len": [25, 50, 100, 200, 400],
        "batch_size": [8, 16, 32, 64, 128, 256],
        "hidden": [128, 256, 512, 1024],
        "prepare_songs": [100, 300, 1000, 3000, ALL],
        "evaluate_songs": [100, 300, 1000, 3000, 5000],
        "steps": [3],
        "warmup": [1],
    },
    # The plain suite's closing section (suite.py): three points a curve around a small
    # step, so the curves and their PNGs come with every `musicgan bench` for ~1 CPU minute
    # (most of it the 7 step points' torch imports; the sweeps share their base point).
    "suite": {
        "seq_len": [25, 50, 100],
        "batch_size": [4, 8, 16],
        "hidden": [64, 128, 256],
        "prepare_songs": [25, 50, 100],
        "evaluate_songs": [25, 50, 100],
        "steps": [3],
        "warmup": [1],
    },
    "quick": {
        "seq_len": [4, 8],
        "batch_size": [2, 4],
        "hidden": [8, 16],
        "prepare_songs": [2, 4],
        "evaluate_songs": [4, 8],
        "steps": [1],
        "warmup": [1],
    },
}
# The size every other step sweep holds fixed: the paper's, or the quick workload's.
STEP_BASE = {
    "full": {"seq_len": 100, "batch_size": 20, "hidden": 350},
    "suite": {"seq_len": 50, "batch_size": 8, "hidden": 128},
    "quick": {"seq_len": 8, "batch_size": 4, "hidden": 8},
}
SHARD_SONGS = {"full": 64, "suite": 24, "quick": 12}  # enough windows for the largest batch
STEP_SWEEPS = ("seq_len", "batch_size", "hidden")
LABELS = {
    "seq_len": "sequence length (events)",
    "batch_size": "batch size",
    "hidden": "hidden size (G and D)",
    "prepare_songs": "songs prepared",
    "evaluate_songs": "songs evaluated (each set)",
}


def parse_grid(entries: list[str], mode: str) -> dict:
    """The mode's grid with `KEY=V1,V2,...` entries replacing whole rows."""
    grid = {key: list(values) for key, values in GRIDS[mode].items()}
    for entry in entries:
        key, _, text = entry.partition("=")
        if key not in grid or not text:
            raise ValueError(f"--grid expects KEY=V1,V2,... with KEY one of {', '.join(grid)}, got {entry!r}")
        grid[key] = [value if value == ALL else int(value) for value in text.split(",")]
    return grid


def step_overrides(size: dict, quick: bool) -> list[str]:
    from musicgan.benchmarks.workload import workload_overrides

    return workload_overrides(quick) + [
        f"curriculum.start={size['seq_len']}",
        f"curriculum.max_len={size['seq_len']}",
        f"data.batch_size={size['batch_size']}",
        f"model.g_hidden={size['hidden']}",
        f"model.d_hidden={size['hidden']}",
    ]


# -- points: each runs in a child process (`python -m musicgan.benchmarks.curves SPEC OUT`) ----
def step_point(data_dir: str, overrides: list[str], steps: int, warmup: int, run_dir: str) -> dict:
    from musicgan.benchmarks import trainer_step, workload
    from musicgan.distributed.env import init_distributed

    cfg = workload.bench_config(data_dir, overrides)
    env = init_distributed(cfg.dist.timeout_s)
    with trainer_step.open_trainer(cfg, Path(run_dir), env) as trainer:
        batch = trainer_step.first_batch(trainer, cfg.curriculum.max_len)
        # The loop's last step is not timed; `between` turns the per-step timing on.
        wall, cpu = trainer_step.run_trainer_steps(trainer, batch, warmup + steps + 1, between=lambda: None)
    rows, length = int(batch.x.shape[0]), int(batch.x.shape[1])
    step_s = float(median(wall[warmup:]))
    return {
        "step_s": step_s,
        "step_cpu_s": float(median(cpu[warmup:])),
        "step_all_s": wall,
        "events_per_s": rows * length / step_s,
        "samples_per_s": rows / step_s,
        "batch_rows": rows,
        "batch_length": length,
    }


def folk_subset_stride(songs: int | str) -> tuple[int, int]:
    """(k, total): every k-th song of FOLK_CORPORA gives about `songs` songs of `total`."""
    from musicgan.data.corpora import list_items

    total = sum(len(list_items(spec)) for spec in FOLK_CORPORA)
    return (1 if songs == ALL else max(1, total // int(songs))), total


def prepare_point(songs: int | str, out_dir: str) -> dict:
    from musicgan.data.prepare import prepare_dataset

    stride, total = folk_subset_stride(songs)
    seconds, cpu_s, files, per_corpus = 0.0, 0.0, 0, {}
    for spec in FOLK_CORPORA:
        out = Path(out_dir) / spec.replace(":", "-")
        start, cpu_start = time.perf_counter(), time.process_time()
        manifest = prepare_dataset(spec, out, workers=1, progress=False, partition=(0, stride))
        elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
        shutil.rmtree(out, ignore_errors=True)
        count = len(manifest["included"]) + len(manifest["skipped"])
        per_corpus[spec] = {"files": count, "included": len(manifest["included"]), "seconds": elapsed}
        seconds, cpu_s, files = seconds + elapsed, cpu_s + cpu_elapsed, files + count
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "files": files,
        "files_per_s": files / seconds,
        "stride": stride,
        "corpus_songs": total,
        "per_corpus": per_corpus,
    }


def evaluate_point(generated: str, reference: str, songs: int, out_dir: str) -> dict:
    from musicgan.metrics.evaluate import run_evaluate

    start, cpu_start = time.perf_counter(), time.process_time()
    result = run_evaluate(
        generated=generated,
        reference=reference,
        out=str(Path(out_dir) / "report"),
        max_songs=songs,
        workers=1,
        audio=0,
        report=False,
        cache_root=Path(out_dir) / "cache",  # fresh: no cached reference statistics
        echo=lambda line: None,
    )
    return {
        "seconds": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu_start,
        "songs_generated": result["sets"][next(iter(result["sets"]))]["num_songs"],
        "songs_reference": result["reference"]["num_songs"],
    }


POINTS = {"step": step_point, "prepare": prepare_point, "evaluate": evaluate_point}


def _vm_hwm_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """This process's peak RSS, or its children's (prepare/evaluate workers) if larger, MiB.

    Measured from inside: the parent's wait4 ru_maxrss would also count the parent's own
    pages mapped into the child between fork and exec (BENCHMARKS.md, "How cost grows")."""
    import resource

    own = _vm_hwm_kb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024  # KiB on Linux


def _child_main(spec_json: str, out_path: str) -> None:
    spec = json.loads(spec_json)
    threads, kind = spec.pop("threads"), spec.pop("kind")
    if kind == "step":  # the others need no torch: importing it would inflate their RSS
        import torch

        torch.set_num_threads(threads)
    result = POINTS[kind](**spec)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["torch_imported"] = "torch" in sys.modules
    Path(out_path).write_text(json.dumps(result))


def run_point(kind: str, threads: int, **arguments) -> dict:
    """One point in a fresh child process; its result plus peak RSS, CPU and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="musicgan-curve-point-") as scratch:
        out = Path(scratch) / "result.json"
        spec = json.dumps({"kind": kind, "threads": threads, **arguments})
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "musicgan.benchmarks.curves", spec, str(out)], env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        measured = {
            "wait4_maxrss_mb": usage.ru_maxrss / 1024,  # includes the parent's pages at fork: see _peak_rss_mb
            "process_cpu_s": usage.ru_utime + usage.ru_stime,
            "process_wall_s": time.perf_counter() - start,
        }
        if child.returncode != 0 or not out.exists():
            return {"failed": f"exit code {child.returncode}", **measured}
        return {**json.loads(out.read_text()), **measured}


# -- the sweeps ----------------------------------------------------------------------------------
def _announce(text: str) -> None:
    print(f"[musicgan bench --scaling-curves] {text}", file=sys.stderr, flush=True)


def _curve(x_name: str, time_key: str, cpu_key: str, points: list[tuple[object, dict]]) -> dict:
    """A sweep's points and the fits of its wall time (`time_key`), CPU time (`cpu_key`) and
    peak RSS; failed points are kept but left out of the fits."""
    # prepare's x is the number of songs actually read (every k-th song: about the one asked for)
    points = [{"requested": x, "x": p.get("files", x), **p} for x, p in points]
    good = [p for p in points if "failed" not in p]
    xs = [p["x"] for p in good]
    return {
        "x_name": x_name,
        "time_key": time_key,
        "cpu_key": cpu_key,
        "x": xs,
        "points": points,
        "fit_time": growth.fit_growth(xs, [p[time_key] for p in good]),
        "fit_cpu_time": growth.fit_growth(xs, [p[cpu_key] for p in good]),
        "fit_peak_rss": growth.fit_growth(xs, [p["peak_rss_mb"] for p in good]),
    }


def step_curves(grid: dict, mode: str, data_dir: Path, root: Path, threads: int) -> dict:
    """One curve per swept size; a size two sweeps share (the base point) is measured once
    and appears in both (`shared_with` names the first)."""
    curves, measured = {}, {}
    for name in STEP_SWEEPS:
        points = []
        for value in grid[name]:
            size = {**STEP_BASE[mode], name: value}
            key = tuple(size[k] for k in STEP_SWEEPS)
            if key in measured:
                points.append((value, {**measured[key][1], "shared_with": measured[key][0]}))
                continue
            _announce(f"step, {name}={value}")
            point = run_point(
                "step",
                threads,
                data_dir=str(data_dir),
                overrides=step_overrides(size, mode == "quick"),
                steps=grid["steps"][0],
                warmup=grid["warmup"][0],
                run_dir=str(root / f"run-{name}-{value}"),
            )
            measured[key] = (f"step_vs_{name}", {**point, "size": size})
            points.append((value, measured[key][1]))
        curves[f"step_vs_{name}"] = _curve(name, "step_s", "step_cpu_s", points)
    return curves


def prepare_curve(grid: dict, root: Path, threads: int) -> dict:
    points = []
    for songs in grid["prepare_songs"]:
        _announce(f"prepare, {songs} songs")
        points.append((songs, run_point("prepare", threads, songs=songs, out_dir=str(root / "prepare"))))
    return _curve("prepare_songs", "seconds", "cpu_s", points)


def evaluate_curve(grid: dict, root: Path, threads: int) -> dict:
    from musicgan.benchmarks.dataset import write_midi_folder

    most = max(grid["evaluate_songs"])
    _announce(f"evaluate: writing 2 x {most} MIDI files")
    generated = write_midi_folder(root / "generated", most, num_onsets=EVALUATE_ONSETS, seed=0)
    reference = write_midi_folder(root / "reference", most, num_onsets=EVALUATE_ONSETS, seed=10**6)
    points = []
    for songs in grid["evaluate_songs"]:
        _announce(f"evaluate, {songs} songs")
        out_dir = root / f"evaluate-{songs}"
        points.append(
            (
                songs,
                run_point(
                    "evaluate",
                    threads,
                    generated=str(generated),
                    reference=str(reference),
                    songs=songs,
                    out_dir=str(out_dir),
                ),
            )
        )
        shutil.rmtree(out_dir, ignore_errors=True)
    return _curve("evaluate_songs", "seconds", "cpu_s", points)


def step_shards(root: Path, grid: dict, mode: str) -> Path:
    """Shards of random songs long enough for the longest sequence swept (no padding)."""
    from musicgan.benchmarks import dataset

    longest = max([*grid["seq_len"], STEP_BASE[mode]["seq_len"]])
    midi = dataset.write_midi_folder(root / "midi", SHARD_SONGS[mode], num_onsets=longest)
    dataset.prepare_shards(midi, root / "shards")
    return root / "shards"


def measure_curves(grid: dict, mode: str, root: Path, threads: int) -> dict:
    """Every curve of `grid` (points in child processes under `root`), with the CPU seconds
    spent here and in the children."""
    cpu_start = os.times()
    data_dir = step_shards(root, grid, mode)
    curves = step_curves(grid, mode, data_dir, root, threads)
    curves["prepare_vs_songs"] = prepare_curve(grid, root, threads)
    curves["evaluate_vs_songs"] = evaluate_curve(grid, root, threads)
    spent = os.times()
    return {
        "curves": curves,
        "cpu_s": {
            "parent": (spent.user - cpu_start.user) + (spent.system - cpu_start.system),
            "children": (spent.children_user - cpu_start.children_user)
            + (spent.children_system - cpu_start.children_system),
        },
    }


def plots_beside(out: str | None, suffix: str) -> Path:
    """Where the PNGs go without --plots: OUT (less .json) + suffix beside --out, or in the
    current folder."""
    if not out:
        return Path(f"bench{suffix}")
    path = Path(out)
    stem = path.stem if path.suffix == ".json" else path.name
    return path.with_name(stem + suffix)


def timed_plots(results: dict, folder: Path) -> dict[str, str]:
    """draw_curves, its CPU seconds (matplotlib's import, mostly) kept as cpu_s["plots"]."""
    start = time.process_time()
    plots = draw_curves(results["curves"], folder)
    results["cpu_s"]["plots"] = time.process_time() - start
    return plots


def suite_section(root: Path, plots_dir: Path, quick: bool) -> dict:
    """The plain suite's `scaling_curves` section: the "suite" grid (the "quick" one with
    --quick), fitted, the four PNGs written to `plots_dir`, a Markdown table."""
    mode = "quick" if quick else "suite"
    grid = parse_grid([], mode)
    threads = int(os.environ.get("MUSICGAN_BENCH_THREADS") or 1)
    section = {"mode": mode, "grid": grid, "base": STEP_BASE[mode], "threads": threads}
    section.update(measure_curves(grid, mode, root, threads))
    section["plots"] = timed_plots(section, plots_dir)
    section["markdown"] = "\n".join(
        [
            curve_table(section["curves"]),
            "",
            f"Scaling curves, {mode} grid (steps around length {STEP_BASE[mode]['seq_len']}, batch "
            f"{STEP_BASE[mode]['batch_size']}, hidden {STEP_BASE[mode]['hidden']}; the full grid: "
            f"`musicgan bench --scaling-curves`), {threads} thread(s) per point; CPU seconds "
            f"{section['cpu_s']['children']:.0f} in the points + {section['cpu_s']['parent']:.0f} here "
            f"+ {section['cpu_s']['plots']:.0f} drawing. "
            f"Plots: {', '.join(section['plots'].values())}.",
        ]
    )
    return section


def run_curves(
    out: str | None = None,
    quick: bool = False,
    grid_entries: list[str] | None = None,
    plots_dir: str | None = None,
    workdir: str | None = None,
) -> dict:
    """Measure every curve, fit and draw them; return (and with `out` write) the results."""
    import torch

    from musicgan.benchmarks.suite import machine_info
    from musicgan.benchmarks.timing import machine_load

    mode = "quick" if quick else "full"
    grid = parse_grid(grid_entries or [], mode)
    threads = int(os.environ.get("MUSICGAN_BENCH_THREADS") or 1)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="musicgan-curves-"))
    results: dict = {"mode": mode, "machine": machine_info(torch.device("cpu")), "grid": grid, "threads": threads}
    try:
        results.update(measure_curves(grid, mode, root, threads))
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    results["machine"]["load_average_1min_end"] = machine_load()
    plots = Path(plots_dir) if plots_dir else (Path(out).parent if out else Path("bench-plots"))
    results["plots"] = timed_plots(results, plots)
    results["markdown"] = markdown_table(results)
    print(results["markdown"], flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results


# -- plots and the table ---------------------------------------------------------------------
def _measured_and_fit(curve: dict, keys: dict[str, str], fit_key: str, unit: str) -> tuple[str, str, dict]:
    """Measured series {label: point key} and the best model of `fit_key` drawn over them."""
    good = [p for p in curve["points"] if "failed" not in p]
    series = {label: (curve["x"], [p[key] for p in good]) for label, key in keys.items()}
    fit = curve[fit_key]
    if fit["best"]:
        series[f"fit: {fit['best']}"] = (curve["x"], list(growth.predict(fit, fit["best"], curve["x"])))
    return LABELS[curve["x_name"]], unit, series


def _measured(curve: dict, key: str, unit: str) -> tuple[str, str, dict]:
    good = [p for p in curve["points"] if "failed" not in p]
    return LABELS[curve["x_name"]], unit, {"measured": (curve["x"], [p[key] for p in good])}


TIMES = {"wall": "step_s", "CPU": "step_cpu_s"}
TIMES_DATA = {"wall": "seconds", "CPU": "cpu_s"}


def draw_curves(curves: dict, folder: Path) -> dict[str, str]:
    """Four PNGs: step time, step throughput, prepare/evaluate, peak RSS of every sweep; the
    dashed line is the best model of the CPU time (less disturbed by other jobs than wall)."""
    from musicgan.plots import loglog_png

    steps = [f"step_vs_{name}" for name in STEP_SWEEPS]
    data = curves["prepare_vs_songs"], curves["evaluate_vs_songs"]
    panels = {
        "scaling-step": {
            f"step time vs {curves[c]['x_name']}": _measured_and_fit(curves[c], TIMES, "fit_cpu_time", "s/step")
            for c in steps
        },
        "scaling-throughput": {
            f"events/s vs {curves[c]['x_name']}": _measured(curves[c], "events_per_s", "events/s") for c in steps
        },
        "scaling-data": {
            "prepare time": _measured_and_fit(data[0], TIMES_DATA, "fit_cpu_time", "s"),
            "prepare throughput": _measured(data[0], "files_per_s", "files/s"),
            "evaluate time": _measured_and_fit(data[1], TIMES_DATA, "fit_cpu_time", "s"),
        },
        "scaling-memory": {
            f"peak RSS vs {curve['x_name']}": _measured_and_fit(
                curve, {"peak RSS": "peak_rss_mb"}, "fit_peak_rss", "MiB"
            )
            for curve in curves.values()
        },
    }
    return {name: loglog_png(p, folder / f"{name}.png") for name, p in panels.items()}


def _fit_text(fit: dict) -> str:
    if not fit["best"]:
        return "(fewer than 2 points)"
    others = ", ".join(
        f"{name} {100 * m['relative_rms']:.1f} %" for name, m in fit["models"].items() if name != fit["best"]
    )
    best = fit["models"][fit["best"]]
    return f"**{fit['best']}** ({100 * best['relative_rms']:.1f} %; {others}); slope {fit['loglog_slope']:.2f}"


def _values(curve: dict, key: str, fmt: str) -> str:
    return ", ".join(f"{p['x']}: {p['failed'] if 'failed' in p else format(p[key], fmt)}" for p in curve["points"])


def _load(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


ROWS = (
    ("wall s", "time_key", "fit_time", ".3g"),
    ("CPU s", "cpu_key", "fit_cpu_time", ".3g"),
    ("peak RSS MiB", None, "fit_peak_rss", ".0f"),
)


def curve_table(curves: dict) -> str:
    lines = [
        "| Curve | Quantity | Measured (x: value) | Best fit (relative RMS; the others); log-log slope |",
        "|---|---|---|---|",
    ]
    for name, curve in curves.items():
        for quantity, key_field, fit_key, fmt in ROWS:
            key = curve[key_field] if key_field else "peak_rss_mb"
            lines.append(f"| {name} | {quantity} | {_values(curve, key, fmt)} | {_fit_text(curve[fit_key])} |")
    return "\n".join(lines)


def markdown_table(results: dict) -> str:
    lines = [curve_table(results["curves"])]
    m = results["machine"]
    load_start, load_end = (_load(m.get(k)) for k in ("load_average_1min_start", "load_average_1min_end"))
    lines.append("")
    lines.append(
        f"{m['date_utc']}; {m['cpu']}, {m['cpu_count']} cores; python {m['python']}, torch {m['torch']}; "
        f"mode {results['mode']}, {results['threads']} thread(s) per point; load average (1 min) "
        f"{load_start} at start, {load_end} at end; CPU seconds "
        f"{results['cpu_s']['children']:.0f} in the points + {results['cpu_s']['parent']:.0f} in the parent "
        f"+ {results['cpu_s']['plots']:.0f} drawing."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
