"""Ray Tune sweeps over the real trainer on real chorales (the `bach_shards` fixture), on a
private 2-CPU Ray instance shared by the module: ASHA stops trials early, PBT exploits and
the mutated values really reach the running trainer, a failing trial leaves the sweep
going, and the CLI rejects bad arguments in one line before starting Ray."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from tune.search import SweepOptions, run_sweep  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """One private Ray instance (2 CPUs, no dashboard) for the module; reference statistics
    cached in a temporary folder."""
    previous = os.environ.get("MUSICGAN_CACHE")
    os.environ["MUSICGAN_CACHE"] = str(tmp_path_factory.mktemp("tune-cache"))
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()
    if previous is None:
        os.environ.pop("MUSICGAN_CACHE", None)
    else:
        os.environ["MUSICGAN_CACHE"] = previous


def options(data: Path, storage: Path, **kwargs) -> SweepOptions:
    # Per-epoch sample rounds (MIDI + piano-roll PNGs) are the trainer's business and tested
    # there; trials here only need the checkpoints the objective is computed from.
    defaults = dict(
        space="crnngan",
        preset="debug",
        scheduler="asha",
        num_samples=4,
        data=str(data),
        storage=str(storage),
        eval_songs=8,
        verbose=0,
        overrides=("log.sample_every=0",),
    )
    defaults.update(kwargs)
    return SweepOptions(**defaults)


def trial_dirs(experiment: Path) -> dict[str, Path]:
    """trial id -> trial folder (Tune names them <trainable>_<trial id>_<index>_<values>...)."""
    out = {}
    for path in experiment.iterdir():
        if path.is_dir() and (path / "params.json").exists():
            parts = path.name.split("_")
            out[f"{parts[2]}_{parts[3]}"] = path
    return out


def effective_records(trial_dir: Path) -> list[dict]:
    path = trial_dir / "run" / "effective.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_asha_sweep_of_four_trials(bach_shards, tmp_path, ray_session):
    started = time.perf_counter()
    # One trial at a time: with seeded configs and deterministic training the scores, their
    # order of arrival and so ASHA's decisions are reproducible (two at a time, a trial may
    # or may not be stopped depending on which finishes its epoch first).
    results, summary = run_sweep(options(bach_shards, tmp_path, max_steps=18, max_concurrent=1))
    elapsed = time.perf_counter() - started
    assert elapsed < 180, f"4-trial ASHA sweep took {elapsed:.0f} s"
    rows = summary["rows"]
    assert len(rows) == 4 and summary["errors"] == 0, [r["error"] for r in rows]
    assert any(r["status"] == "stopped early" for r in rows), "ASHA stopped no trial"
    for result in results:
        history = result.metrics_dataframe
        assert len(history) >= 1
        assert history["realism"].between(0.0, 1.0).all()
        assert history["loss/generator"].notna().all()
        assert result.checkpoint is not None  # every report carries the trainer's checkpoint
        assert list(Path(result.checkpoint.path).glob("step-*.pt"))
    # The table, one plot per trial and a best config that `musicgan train --config` runs.
    assert (tmp_path / "results.csv").read_text().count("\n") == 5
    assert len(list((tmp_path / "plots").glob("*.png"))) == 4
    assert (tmp_path / "sweep.png").stat().st_size > 0  # every trial's score vs time on one picture
    # The same report from the experiment folder alone (a sweep still running, or interrupted).
    from tune.report import main as report_main

    table = (tmp_path / "results.csv").read_text()
    (tmp_path / "results.csv").unlink()
    assert report_main([str(tmp_path)]) == 0
    assert sorted((tmp_path / "results.csv").read_text().splitlines()) == sorted(table.splitlines())
    best = json.loads((tmp_path / "best_config.json").read_text())
    best_trial = json.loads((tmp_path / "best_trial.json").read_text())
    assert best["optim"]["g_lr"] == pytest.approx(best_trial["values"]["optim"]["g_lr"])
    assert best["train"]["max_steps"] == 0  # the sweep's cap is not part of the found recipe
    from musicgan.cli import main as musicgan_main  # in-process: the same CLI, without a second start-up

    code = musicgan_main(
        [
            "train",
            "--config",
            str(tmp_path / "best_config.json"),
            "--preset",
            "debug",
            "--data",
            str(bach_shards),
            "--run-dir",
            str(tmp_path / "best-run"),
            "--max-steps",
            "3",
            "--set",
            "log.progress=false",
            "--set",
            "log.tensorboard=false",
        ]
    )
    assert code == 0
    saved = json.loads((tmp_path / "best-run" / "config.json").read_text())
    assert saved["optim"]["g_lr"] == pytest.approx(best["optim"]["g_lr"])
    assert saved["curriculum"] == best["curriculum"]


def test_musegan_sweep_samples_the_families_rates_and_its_trainers_use_them(bach_shards, tmp_path, ray_session):
    """A survey family under Tune unchanged: the `lr` space is built from MuseGAN's own
    learning_rate_keys (generator -> optim.g_lr, critic -> optim.d_lr), both trials run and
    report the realism of their multitrack checkpoints, and the rates each trial's optimizers
    hold (read back from its checkpoint) are the ones Tune sampled for it."""
    results, summary = run_sweep(
        options(
            bach_shards,
            tmp_path,
            space="lr",
            preset="musegan-debug",
            num_samples=2,
            max_steps=4,
            eval_songs=4,
            overrides=("log.sample_every=0", "log.interval=1"),
        )
    )
    rows = summary["rows"]
    assert len(rows) == 2 and summary["errors"] == 0, [r["error"] for r in rows]
    # The table's loss columns are the family's networks, not C-RNN-GAN's.
    assert all(r["loss/critic"] == r["loss/critic"] and "loss/discriminator" not in r for r in rows), rows
    sampled = []
    for result in results:
        assert set(result.config) == {"optim.g_lr", "optim.d_lr"}  # no freezing thresholds: WGAN-GP never freezes
        history = result.metrics_dataframe
        assert len(history) >= 1 and history["realism"].between(0.0, 1.0).all()
        last = result.metrics
        for key in ("optim.g_lr", "optim.d_lr"):
            assert math.isclose(last[f"effective/{key.split('.')[1]}"], result.config[key], rel_tol=1e-9)
        state = torch_load(next(Path(result.checkpoint.path).glob("step-*.pt")))
        assert set(state["optimizers"]) == {"generator", "critic"}
        sampled.append(result.config["optim.g_lr"])
    assert sampled[0] != sampled[1]  # two different points, each reaching its own trainer


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_pbt_exploit_applies_mutated_values_to_the_running_trainer(bach_shards, tmp_path, ray_session):
    """Two trials, three reports each (9 steps an epoch), a perturbation point at the second:
    synchronous PBT compares both trials there, so the weaker one exploits the stronger
    whichever trial the machine's load lets report first, and the restored trial's third
    report shows the mutated values in its optimizers. (One point, not one per report: each
    point restarts both trials' processes, the slow part of this test.)"""
    reports, interval = 3, 2
    run_sweep(
        options(
            bach_shards,
            tmp_path,
            space="lr",
            scheduler="pbt",
            num_samples=2,
            max_steps=9 * reports,
            perturbation_interval=interval,
        )
    )
    experiment = tmp_path / "sweep"
    log = experiment / "pbt_global.txt"  # one line per exploit
    exploits = log.read_text().splitlines() if log.exists() else []
    points = reports // interval
    assert len(exploits) == points, f"{len(exploits)} exploits at {points} perturbation points"
    policies = sorted(experiment.glob("pbt_policy_*.txt"))
    trials = trial_dirs(experiment)
    checked = 0
    for policy in policies:
        target = trials[policy.stem.removeprefix("pbt_policy_")]
        restored = [r for r in effective_records(target) if r.get("restored_from_trial")]
        for line in policy.read_text().splitlines():
            _, _, _, _, old, new = json.loads(line)
            # Values read back from the checkpoint the trainer wrote AFTER restoring the
            # donor's checkpoint (whose optimizers still held the donor's rates).
            matching = [
                r
                for r in restored
                if all(math.isclose(r[f"effective/{key.split('.')[1]}"], new[key], rel_tol=1e-9) for key in new)
            ]
            if not matching:
                continue  # a later exploit replaced this one before the trial reported again
            # The donor's checkpoint held the donor's rates in its optimizer state: the trainer
            # really applied the mutated config on restore.
            assert any(
                not math.isclose(matching[0][f"effective/{k.split('.')[1]}"], old[k], rel_tol=1e-9)
                for k in ("optim.g_lr", "optim.d_lr")
            )
            checked += 1
    assert checked >= 1, "no exploit was followed by a report showing the mutated values"


def test_restarted_trial_does_not_report_the_step_it_restored_again(bach_shards, tmp_path):
    """Synchronous PBT restarts every trial after each report: a trial restored at its last
    step would otherwise report that step again, be paused again, and never finish."""
    from tune.trial import Reporter, TrialSettings

    sent = []
    reporter = Reporter(
        TrialSettings(preset="debug", data=str(bach_shards)),
        tmp_path,
        reference=None,
        send=lambda metrics, staged: sent.append(metrics["step"]),
        trial_id="t",
        restored={"trial_id": "t", "step": 18},
    )
    reporter({"step": 18, "epoch": 2}, tmp_path / "step-000018.pt", final=True)
    assert sent == []


def test_failing_trial_does_not_end_the_sweep_and_an_interrupted_sweep_resumes(bach_shards, tmp_path, ray_session):
    """One trial at a time: trial 0 points at a missing shard folder and raises; the sweep
    goes on with trial 1, which is interrupted (SIGINT, caught by Tune) once it has reported
    a checkpoint; --resume then finishes it from that checkpoint (the failed trial stays failed)."""
    import signal
    import threading

    from ray import tune

    bad = str(tmp_path / "no-such-shards")
    experiment = tmp_path / "sweep"
    opts = options(bach_shards, tmp_path, space="lr", num_samples=1, max_steps=18, max_concurrent=1)
    space = {"data.path": tune.grid_search([bad, str(bach_shards)])}

    def interrupt_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(experiment.glob("*/checkpoint_000000")):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)  # Tune's handler saves the state and ends fit()

    watcher = threading.Thread(target=interrupt_after_first_checkpoint, daemon=True)
    watcher.start()
    _, first = run_sweep(opts, param_space=space)
    watcher.join()
    rows = {r["data.path"]: r for r in first["rows"]}
    assert rows[bad]["status"] == "error"
    assert "DataError" in rows[bad]["error"] and "manifest.json" in rows[bad]["error"]
    assert rows[str(bach_shards)]["status"] == "unfinished" and first["interrupted"]
    good = rows[str(bach_shards)]["trial"]

    _, resumed = run_sweep(SweepOptions(**{**opts.__dict__, "resume": True}), param_space=space)
    rows = {r["data.path"]: r for r in resumed["rows"]}
    assert not resumed["interrupted"] and resumed["errors"] == 1 and resumed["completed"]
    assert rows[bad]["status"] == "error"
    assert rows[str(bach_shards)]["status"] == "finished"
    assert 0.0 <= rows[str(bach_shards)]["realism_last"] <= 1.0
    assert (tmp_path / "best_config.json").exists()
    # The resumed trial went on from its own Tune checkpoint, not from scratch.
    records = effective_records(trial_dirs(experiment)[good])
    assert any(r.get("restored_from_trial") == good for r in records), records
    assert records[-1]["step"] == 18


def test_two_worker_trial_runs_the_same_loop_under_ray_train(bach_shards, tmp_path, ray_session):
    """--workers-per-trial 2: a TorchTrainer (gloo) inside the trial; fractional worker CPUs
    so a 2-CPU machine does not wait forever for 1 + 2 CPUs."""
    import torch

    results, summary = run_sweep(
        options(bach_shards, tmp_path, space="lr", num_samples=1, max_steps=5, workers_per_trial=2)
    )
    (row,) = summary["rows"]
    assert row["status"] == "finished" and 0.0 <= row["realism_last"] <= 1.0, row
    checkpoint = next(Path(results[0].checkpoint.path).glob("step-*.pt"))
    state = torch.load(checkpoint, weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 5


def _argv(data: Path, storage: Path, **changes: str) -> list[str]:
    values = {
        "--space": "crnngan",
        "--preset": "debug",
        "--scheduler": "asha",
        "--num-samples": "2",
        "--data": str(data),
        "--storage": str(storage),
    }
    values.update(changes)
    return [item for pair in values.items() for item in pair]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--space": "nope"}, "unknown search space 'nope'"),
        ({"--data": "/no/such/dir"}, "--data /no/such/dir: no such directory"),
        ({"--preset": "nope"}, "unknown preset 'nope'"),
        ({"--scheduler": "pbt", "--num-samples": "1"}, "PBT needs --num-samples >= 2"),
        ({"--scheduler": "pbt", "--num-samples": "3", "--max-concurrent": "2"}, "PBT compares its whole population"),
        ({"--workers-per-trial": "0"}, "--workers-per-trial must be at least 1"),
        ({"--reference-songs": "1"}, "--reference-songs >= 2"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_ray_starts(bach_shards, tmp_path, capsys, change, message):
    from tune.search import main

    assert main(_argv(bach_shards, tmp_path / "s", **change)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s" / "sweep").exists()  # nothing started


def test_cli_prints_no_traceback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "tune.search", *_argv(empty, tmp_path / "s")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: no manifest.json in {empty}: run `musicgan prepare` first"


def test_best_trial_is_chosen_among_those_trained_longest():
    """ASHA stops weak trials after one report: a stopped trial's early score is not compared
    with the final scores of trials that ran the whole budget its config is written for."""
    from tune.report import best_candidates

    early = ({"trial": "stopped", "reports": 1, "realism_last": 0.9}, None)
    full = [({"trial": name, "reports": 5, "realism_last": score}, None) for name, score in (("a", 0.5), ("b", 0.6))]
    chosen = best_candidates([early, *full])
    assert [row["trial"] for row, _ in chosen] == ["a", "b"]
    assert best_candidates([early]) == [early]  # nothing ran longer: the longest run is the candidate


def test_report_of_a_folder_that_is_not_a_sweep_is_a_one_line_error(tmp_path, capsys):
    from tune.report import main as report_main

    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "base_config.json" in err and len(err.splitlines()) == 1
