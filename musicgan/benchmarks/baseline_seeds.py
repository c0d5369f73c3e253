"""C-RNN-GAN against its MLE baseline over several seeds, judged on one split.

For each seed: train both presets on their own fixed epoch budgets (one process, one torch
thread each, one after the other), sample both alike (`--num` excerpts of `--length` steps,
the seed), and `musicgan evaluate` the GAN `--compare` the baseline against `--split`. Then
one table over the seeds: per-metric verdicts, overlap, realism and Frechet (mean and spread),
the real-vs-real and random-notes floors, and the six statistics of the C-RNN-GAN paper's
table for real, MLE and GAN. A seed "beats" the baseline when the GAN is closer on more rows
of the comparison than the baseline AND has the larger overlap_area_mean.

Restartable: a finished run, a full samples folder or an existing metrics.json is reused, so
the same command continues after an interruption (and `--table-only` just reprints).
`--gan-set KEY=VALUE` changes the GAN only (a remedy); `--baseline-from EARLIER_OUT` judges it
against the very same baseline runs (sampled and trained there, never retrained: each seed's
baseline run must have finished in EARLIER_OUT).

Usage: python -m musicgan.benchmarks.baseline_seeds --data shards/bach --out runs/bach-seeds \\
           [--gan crnngan-bach] [--baseline lstm-baseline-bach] [--seeds 0 1 2] [--split test]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from musicgan.errors import UserError

PAPER_STATISTICS = (  # Mogren 2016, table 1 (our correct definitions: musicgan/metrics/registry.py)
    "polyphony",
    "scale_consistency",
    "repetitions_3",
    "tone_span",
    "unique_tones",
    "intensity_span",
)
HEADLINE = ("overlap_area_mean", "realism", "frechet")


def _musicgan(*args: str) -> None:
    """One `python -m musicgan` step in its own process, one torch thread (what a user runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    print("[seeds] musicgan " + " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "musicgan", *args], env=env)
    if done.returncode != 0:
        raise UserError(f"`musicgan {args[0]}` failed with exit status {done.returncode} (its message is above)")


def _finished(run_dir: Path) -> bool:
    log = run_dir / "log.jsonl"
    return log.is_file() and '"event": "finished"' in log.read_text()


def train_and_sample(preset: str, run_dir: Path, args: argparse.Namespace, seed: int, changes: list[str]) -> None:
    if not _finished(run_dir):
        train = ["--preset", preset, "--data", args.data, "--run-dir", str(run_dir), "--overwrite"]
        extra = [item for change in changes for item in ("--set", change)]
        _musicgan("train", *train, "--set", f"train.seed={seed}", "--set", "log.progress=false", *extra)
    final = run_dir / "samples" / "final"
    if len(list(final.glob("*.mid"))) != args.num:  # the trainer's own final samples are fewer
        shutil.rmtree(final, ignore_errors=True)
        sizes = ["--num", str(args.num), "--length", str(args.length)]
        _musicgan("sample", "--run", str(run_dir), *sizes, "--seed", str(seed), "--out", str(final))


def baseline_run_dir(args: argparse.Namespace, seed: int) -> Path:
    """This seed's baseline run: in OUT, or the finished one of `--baseline-from` (a typo in
    that path must not quietly train a second baseline, so an unfinished one is an error)."""
    if args.baseline_from is None:
        return Path(args.out) / f"seed-{seed}" / args.baseline
    run_dir = Path(args.baseline_from) / f"seed-{seed}" / args.baseline
    if not _finished(run_dir):
        raise UserError(
            f"--baseline-from {args.baseline_from}: no finished {args.baseline} run for seed {seed} ({run_dir})"
        )
    return run_dir


def run_seed(args: argparse.Namespace, seed: int) -> Path:
    """Train, sample and evaluate both presets for one seed; the path of its metrics.json."""
    seed_dir = Path(args.out) / f"seed-{seed}"
    metrics = seed_dir / "eval" / "metrics.json"
    if metrics.is_file():
        return metrics
    baseline_dir = baseline_run_dir(args, seed)
    train_and_sample(args.gan, seed_dir / args.gan, args, seed, args.gan_set)
    train_and_sample(args.baseline, baseline_dir, args, seed, [])
    runs = ["--run", str(seed_dir / args.gan), "--compare", str(baseline_dir)]
    judged = ["--reference", args.data, "--split", args.split, "--out", str(seed_dir / "eval"), "--no-audio"]
    _musicgan("evaluate", *runs, *judged)
    return metrics


# -- the table over seeds ------------------------------------------------------------------------
def _spread(values: list[float], digits: int | None = None) -> str:
    """mean ± std over seeds (population std: the seeds run, not an estimate beyond them)."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return "nan"
    if digits is None:
        digits = 1 if abs(finite.mean()) >= 100 else 3
    return f"{finite.mean():.{digits}f} ± {finite.std():.{digits}f}"


def seed_verdict(result: dict, gan: str, baseline: str) -> dict:
    counts = result["comparison_counts"]
    overlap = {name: result["summary"][name]["overlap_area_mean"] for name in (gan, baseline)}
    return {
        "gan_closer": counts.get(gan, 0),
        "mle_closer": counts.get(baseline, 0),
        "ties": counts.get("tie", 0),
        "beats": counts.get(gan, 0) > counts.get(baseline, 0) and overlap[gan] > overlap[baseline],
    }


def seed_table(results: dict[int, dict], gan: str, baseline: str, split: str) -> str:
    """Markdown: one row per seed, the mean ± std row, the floors, the paper's statistics."""
    lines = [
        "| seed | verdicts GAN / MLE / tie | overlap GAN vs MLE | realism GAN vs MLE | Frechet GAN vs MLE "
        "| GAN beats MLE |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = {seed: seed_verdict(r, gan, baseline) for seed, r in results.items()}
    for seed, result in results.items():
        v, s = verdicts[seed], result["summary"]
        cells = [f"{s[gan][key]:.3f} vs {s[baseline][key]:.3f}" for key in HEADLINE[:2]]
        cells.append(f"{s[gan]['frechet']:.0f} vs {s[baseline]['frechet']:.0f}")
        lines.append(
            f"| {seed} | {v['gan_closer']} / {v['mle_closer']} / {v['ties']} | "
            + " | ".join(cells)
            + f" | {'yes' if v['beats'] else 'no'} |"
        )
    spread = [
        f"{_spread([r['summary'][gan][k] for r in results.values()])} vs "
        f"{_spread([r['summary'][baseline][k] for r in results.values()])}"
        for k in HEADLINE
    ]
    counts = [_spread([float(v[k]) for v in verdicts.values()], digits=1) for k in ("gan_closer", "mle_closer", "ties")]
    wins = sum(v["beats"] for v in verdicts.values())
    lines.append(f"| mean ± std | {' / '.join(counts)} | " + " | ".join(spread) + f" | {wins} of {len(results)} |")
    first = next(iter(results.values()))
    lines += ["", "| floor (same reference) | overlap | realism | Frechet |", "|---|---|---|---|"]
    for name, s in first["calibration"].items():
        lines.append(f"| {name} | {s['overlap_area_mean']:.3f} | {s['realism']:.3f} | {s['frechet']:.0f} |")
    lines += ["", f"| statistic (mean per excerpt) | real ({split}) | MLE | GAN |", "|---|---|---|---|"]
    for metric in PAPER_STATISTICS:
        real = first["reference"]["metrics"][metric]["mean"]
        mle = _spread([r["sets"][baseline]["metrics"][metric]["mean"] for r in results.values()])
        gan_value = _spread([r["sets"][gan]["metrics"][metric]["mean"] for r in results.values()])
        lines.append(f"| {metric} | {real:.3f} | {mle} | {gan_value} |")
    always = [
        key for key in first["comparison"] if all(r["comparison"][key]["closer"] == baseline for r in results.values())
    ]
    lines += ["", f"MLE closer on every seed ({len(always)} rows): {', '.join(always) or 'none'}"]
    lines.append(f"GAN beats MLE (majority of rows and overall overlap) on {wins} of {len(results)} seeds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musicgan.benchmarks.baseline_seeds", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", required=True, help="prepared shard directory (musicgan prepare)")
    parser.add_argument("--out", required=True, help="folder for the runs, evaluations and table.md")
    parser.add_argument("--gan", default="crnngan-bach")
    parser.add_argument("--baseline", default="lstm-baseline-bach")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split", default="test", help="the split both are judged on (a sweep tunes on valid)")
    parser.add_argument("--num", type=int, default=100, help="samples per model")
    parser.add_argument("--length", type=int, default=48, help="steps per sample (the presets' max_len)")
    parser.add_argument(
        "--gan-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config change for the GAN only (a remedy tried against the same baseline; repeatable)",
    )
    parser.add_argument(
        "--baseline-from",
        metavar="EARLIER_OUT",
        help="reuse the finished baseline runs of an earlier --out (seed-N/BASELINE) instead of training them",
    )
    parser.add_argument("--table-only", action="store_true", help="reprint the table from existing evaluations")
    args = parser.parse_args(argv)
    try:
        if not (Path(args.data) / "manifest.json").is_file():
            raise UserError(f"--data {args.data}: no manifest.json (prepare it with `musicgan prepare`)")
        if args.baseline_from is not None and not args.table_only:
            for seed in args.seeds:  # every seed's baseline exists before anything trains
                baseline_run_dir(args, seed)
        results = {}
        for seed in args.seeds:
            path = Path(args.out) / f"seed-{seed}" / "eval" / "metrics.json"
            if not args.table_only:
                path = run_seed(args, seed)
            if not path.is_file():
                raise UserError(f"{path}: no evaluation for seed {seed} (run without --table-only)")
            results[seed] = json.loads(path.read_text())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = seed_table(results, args.gan, args.baseline, args.split)
    (Path(args.out) / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
