"""What a sweep leaves behind in STORAGE:

- `results.csv` and the same table printed: one row per trial (status, objective, losses,
  steps, the host it ran on, sampled values, error);
- `best_config.json`: the best trial's resolved config, nested, as `musicgan train --config`
  reads it (the sweep-only caps — step limit, no progress bar, no TensorBoard — replaced by
  the base config's values);
- `best_trial.json`: which trial, its score, values and last Tune checkpoint;
- `plots/<trial>.png`: the objective and both losses over training steps, one PNG per trial
  (drawn by musicgan.plots, the package's only matplotlib importer);
- `sweep.png`: every trial's objective against wall time, CPU time and epoch, one PNG.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from tune.objective import OBJECTIVE

SWEEP_ONLY = ("train.max_steps", "log.progress", "log.tensorboard")
STATUS_FINISHED, STATUS_STOPPED, STATUS_ERROR = "finished", "stopped early", "error"
STATUS_UNFINISHED = "unfinished"  # still to run when the sweep was interrupted (--resume continues it)
STOPPED_FILE = "scheduler_stopped.txt"  # trial ids the scheduler stopped (tune/search.py)
BASE_CONFIG_FILE = "base_config.json"  # the sweep's base config, in the experiment folder (tune/search.py)


def one_line_error(error: BaseException | None) -> str:
    """`Type: message` of the original exception inside Ray's wrappers."""
    if error is None:
        return ""
    seen = 0
    while getattr(error, "cause", None) is not None and seen < 8:  # RayTaskError -> user exception
        error, seen = error.cause, seen + 1
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


def _history(result) -> list[dict]:
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or len(frame) == 0:
        return []
    return frame.to_dict("records")


def cumulative_cpu(history: list[dict]) -> list[float]:
    """The trial's CPU seconds at each report, summed over its processes: `cpu_s` counts from
    the process's (re)start, so it drops after a resumed sweep or a PBT restart."""
    out, offset, previous = [], 0.0, 0.0
    for record in history:
        value = _number(record.get("cpu_s"))
        if math.isnan(value):
            out.append(math.nan)
            continue
        if value < previous:
            offset += previous
        previous = value
        out.append(offset + value)
    return out


def _number(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def tune_statuses(result_grid) -> dict[str, str]:
    """{trial folder name: Tune status (TERMINATED, ERROR, PENDING, RUNNING, PAUSED)}.
    ResultGrid has no public per-trial status; an unknown layout yields {} (statuses then
    come from the reports alone)."""
    trials = getattr(getattr(result_grid, "_experiment_analysis", None), "trials", None) or []
    out = {}
    for trial in trials:
        path = getattr(trial, "path", None) or getattr(trial, "local_path", None)
        if path:
            out[Path(path).name] = str(trial.status)
    return out


def trial_config(result) -> dict:
    """The trial's sampled values; after Tuner.restore an errored trial's Result carries no
    config, so fall back to the params.json Tune keeps in the trial folder."""
    if result.config:
        return dict(result.config)
    params = Path(result.path) / "params.json"
    try:
        return json.loads(params.read_text())
    except (OSError, ValueError):
        return {}


def trial_rows(results, statuses: dict[str, str] | None = None, stopped: set[str] | None = None) -> list[dict]:
    """One dict per trial: identity, status, scores, losses, sampled values, error.

    `stopped`: trial ids the scheduler stopped; None when the scheduler does not stop trials
    (PBT) or did not record it, and then a trial without its final report counts as stopped
    only if Tune says it is not pending/running."""
    rows = []
    statuses = statuses or {}
    for result in results:
        history = _history(result)
        # The trial's own last report: after a PBT exploit Ray's `result.metrics` can hold the
        # DONOR's last result (seen with ray 2.60: both rows showed trial 0's id and score).
        last = history[-1] if history else (result.metrics or {})
        scores = [_number(r.get(OBJECTIVE)) for r in history]
        scores = [s for s in scores if not math.isnan(s)]
        if result.error is not None:
            status = STATUS_ERROR
        elif last.get("final"):
            status = STATUS_FINISHED
        elif statuses.get(Path(result.path).name, "TERMINATED") not in ("TERMINATED", "ERROR"):
            status = STATUS_UNFINISHED
        elif stopped is not None and str(last.get("trial_id", "")) not in stopped:
            status = STATUS_UNFINISHED  # neither finished nor stopped by the scheduler: interrupted
        else:
            status = STATUS_STOPPED  # the scheduler ended it before the trainer did
        row = {
            "trial": last.get("trial_id") or Path(result.path).name,
            "status": status,
            f"{OBJECTIVE}_last": _number(last.get(OBJECTIVE)),
            f"{OBJECTIVE}_best": max(scores) if scores else math.nan,
            "reports": len(history),
            "step": last.get("step", ""),
            "epoch": last.get("epoch", ""),
            "cpu_s": (cumulative_cpu(history) or [math.nan])[-1],  # at the last report
            "host": last.get("hostname", ""),  # Tune's own key: which node ran the trial
            # The family's own networks (MuseGAN: generator, critic): whatever the trial logged.
            **{f"loss/{name}": _number(last.get(f"loss/{name}")) for name in _loss_names(history)},
        }
        row.update({k: v for k, v in sorted(trial_config(result).items())})
        row["error"] = one_line_error(result.error)
        row["path"] = result.path
        rows.append(row)
    return rows


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _score_order(row: dict) -> tuple[bool, float]:
    """Best last score first, trials without one last (comparing trials starts at the top)."""
    score = _number(row.get(f"{OBJECTIVE}_last"))
    return (math.isnan(score), -score if not math.isnan(score) else 0.0)


def format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_format(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return columns


def nested(flat: dict[str, Any]) -> dict[str, dict]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        section, dot, name = key.partition(".")
        if dot:
            out.setdefault(section, {})[name] = value
        else:
            out[key] = value
    return out


def best_config(result, base) -> dict:
    """The best trial's resolved config (its run's config.json, which PBT rewrites at every
    restart), with the sweep-only values put back to the base config's."""
    from musicgan.config import from_dict, get_value, set_value

    run_config = Path(result.path) / "run" / "config.json"
    if run_config.is_file():
        cfg = from_dict(json.loads(run_config.read_text()))
    else:  # no run directory (e.g. a remote trial): base + the sampled values
        import copy

        from tune.spaces import apply_trial_values

        cfg = apply_trial_values(copy.deepcopy(base), trial_config(result))
    from musicgan.presets import get_preset

    preset = get_preset(base.preset) if base.preset else base
    for key in SWEEP_ONLY:
        set_value(cfg, key, get_value(preset, key))
    return cfg.to_dict()


def plot_trials(rows: list[dict], results, directory: Path) -> list[Path]:
    from musicgan.plots import curves_png

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for row, result in zip(rows, results):
        history = _history(result)
        if not history:
            continue
        steps = [_number(r.get("step")) for r in history]
        panels = {
            f"{OBJECTIVE} (higher is better)": {row["trial"]: (steps, [_number(r.get(OBJECTIVE)) for r in history])},
            "losses": {
                name: (steps, [_number(r.get(f"loss/{name}")) for r in history]) for name in _loss_names(history)
            },
        }
        paths.append(Path(curves_png(panels, directory / f"{row['trial']}.png", xlabel="step", ncols=2)))
    return paths


SWEEP_PLOT = "sweep.png"


def plot_sweep(rows: list[dict], results, path: Path) -> Path | None:
    """The whole sweep on one PNG: every trial's objective against its wall time (Tune's
    time_total_s, the machine's load included), its CPU seconds and its epoch, so trials
    stopped early, trials still climbing and the best one can be told apart at a glance."""
    from musicgan.plots import curves_png

    axes = {"wall time (s)": "time_total_s", "CPU time of the trial (s)": "cpu_s", "epoch": "epoch"}
    panels: dict[str, dict] = {f"{OBJECTIVE} vs {axis}": {} for axis in axes}
    for row, result in sorted(zip(rows, results), key=lambda pair: str(pair[0]["trial"])):
        history = _history(result)
        if not history:
            continue
        label = f"{str(row['trial'])[-5:]} ({row['status']})"
        y = [_number(r.get(OBJECTIVE)) for r in history]
        for axis, key in axes.items():
            x = cumulative_cpu(history) if key == "cpu_s" else [_number(r.get(key)) for r in history]
            panels[f"{OBJECTIVE} vs {axis}"][label] = (x, y)
    if not any(panels.values()):
        return None
    xlabels = {f"{OBJECTIVE} vs {axis}": axis for axis in axes}
    return Path(curves_png(panels, path, ncols=3, xlabels=xlabels, panel_size=(5.0, 4.0)))


def best_candidates(pairs: list[tuple[dict, Any]]) -> list[tuple[dict, Any]]:
    """The trials the best is chosen from: those that reported the most times. Under ASHA a
    trial stopped after one report was compared at a fraction of the budget its config is
    written for; its early score must not beat a trial judged after the whole budget."""
    most = max(row["reports"] for row, _ in pairs)
    return [(row, result) for row, result in pairs if row["reports"] == most]


def _loss_names(history: list[dict]) -> list[str]:
    """Networks with a `loss/<name>` anywhere in a trial's history, in first-seen order."""
    names = [k.removeprefix("loss/") for r in history for k in r if k.startswith("loss/")]
    return list(dict.fromkeys(names))


def write_report(results, storage: Path, experiment: Path, *, base, overrides: dict | None = None) -> dict:
    """Write the table, best config and plots; print the table; return a summary dict."""
    statuses = tune_statuses(results)
    stopped_file = experiment / STOPPED_FILE
    stopped = set(stopped_file.read_text().split()) if stopped_file.exists() else set()
    results = [results[i] for i in range(len(results))]
    rows = trial_rows(results, statuses, stopped)
    columns = write_csv(rows, storage / "results.csv")
    shown = [c for c in columns if c not in ("path",)]
    print(f"\n[tune] {len(rows)} trials in {experiment}")
    print(format_table(sorted(rows, key=_score_order), shown))
    ok = [
        (r, res)
        for r, res in zip(rows, results)
        if r["status"] != STATUS_ERROR and not math.isnan(r[f"{OBJECTIVE}_last"])
    ]
    summary: dict[str, Any] = {
        "rows": rows,
        "completed": bool(ok),
        "errors": sum(r["status"] == STATUS_ERROR for r in rows),
        "unfinished": sum(r["status"] == STATUS_UNFINISHED for r in rows),
        "table": str(storage / "results.csv"),
    }
    cpu = sum(r["cpu_s"] for r in rows if not math.isnan(r["cpu_s"]))
    print(f"[tune] CPU time of the trials up to their last reports: {cpu / 60:.1f} min")
    summary["cpu_minutes"] = cpu / 60
    for row in rows:
        if row["error"]:
            print(f"[tune] trial {row['trial']} failed: {row['error']}")
    if ok:
        best_row, best_result = max(best_candidates(ok), key=lambda pair: pair[0][f"{OBJECTIVE}_last"])
        config = best_config(best_result, base)
        (storage / "best_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        checkpoint = best_result.checkpoint.path if best_result.checkpoint else None
        best = {
            "trial": best_row["trial"],
            OBJECTIVE: best_row[f"{OBJECTIVE}_last"],
            "values": nested(trial_config(best_result)),
            "step": best_row["step"],
            "checkpoint": checkpoint,
            "path": best_result.path,
        }
        (storage / "best_trial.json").write_text(json.dumps(best, indent=2, default=str) + "\n")
        summary["best"] = best
        print(
            f"[tune] best trial {best_row['trial']} (of the {len(best_candidates(ok))} with the most reports, "
            f"{best_row['reports']}): {OBJECTIVE}={best_row[f'{OBJECTIVE}_last']:.4f} at epoch {best_row['epoch']}; "
            f"config -> {storage / 'best_config.json'}"
        )
        for key, value in sorted(trial_config(best_result).items()):
            print(f"[tune]   {key} = {_format(value)}")
    else:
        print("[tune] no trial produced a score: no best config written")
    try:
        summary["plots"] = [str(p) for p in plot_trials(rows, results, storage / "plots")]
        summary["sweep_plot"] = str(plot_sweep(rows, results, storage / SWEEP_PLOT) or "")
    except Exception as exc:  # noqa: BLE001 - a missing picture must not hide the table
        print(f"[tune] plots failed: {exc}")
        summary["plots"] = []
    return summary


# -- `python -m tune.report STORAGE`: the same report from disk --------------------------------
def report_from_disk(storage: Path, name: str) -> dict:
    """Rebuild the table, best config and plots of a sweep that is still running, was
    interrupted or finished earlier, from its experiment folder alone (no Ray cluster)."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from musicgan.config import from_dict
    from musicgan.errors import UserError

    experiment = storage / name
    base_file = experiment / BASE_CONFIG_FILE
    if not base_file.is_file():
        raise UserError(f"{experiment}: no {BASE_CONFIG_FILE} (not a sweep written by tune.search?)")
    try:
        grid = ResultGrid(ExperimentAnalysis(str(experiment)))
    except Exception as exc:  # noqa: BLE001 - Tune's own message names what is missing
        raise UserError(f"{experiment}: Tune cannot read it: {one_line_error(exc)}") from None
    return write_report(grid, storage, experiment, base=from_dict(json.loads(base_file.read_text())))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from musicgan.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m tune.report", description=report_from_disk.__doc__)
    parser.add_argument("storage", help="the sweep's --storage folder")
    parser.add_argument("--name", default="sweep", help="its --name (default sweep)")
    args = parser.parse_args(argv)
    try:
        summary = report_from_disk(Path(args.storage).expanduser().resolve(), args.name)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if summary["completed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
