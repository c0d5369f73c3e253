"""`python -m tune.search`: a Ray Tune sweep over musicgan configs (ASHA or PBT).

    python -m tune.search --space crnngan --preset debug --scheduler asha --num-samples 4 \
        --data shards/bach --storage sweeps/ --max-steps 30

Everything is checked before Ray starts (preset, space, data, storage), so a mistake is a
one-line `error: ...` and exit status 2. The sweep lives in STORAGE/NAME (Tune's experiment
folder: one folder per trial with its musicgan run directory under `run/`); the results
table, the best config and the plots are written to STORAGE (tune/report.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicgan.data.paths import resolve_data_dir
from musicgan.errors import ConfigError, DataError, UserError
from tune.objective import OBJECTIVE
from tune.report import STOPPED_FILE
from tune.trial import TrialSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NAME = "sweep"
TINY_CPU = 0.01  # logical CPUs of a waiting TorchTrainer driver / default K-worker reservation


@dataclass
class SweepOptions:
    space: str
    preset: str
    scheduler: str
    num_samples: int
    data: str
    storage: str
    workers_per_trial: int = 1
    cpus_per_worker: float | None = None  # None: 1 for one-process trials, TINY_CPU for K workers
    gpus_per_worker: float = 0.0
    max_steps: int = 0
    address: str | None = None
    resume: bool = False
    name: str = DEFAULT_NAME
    config: str | None = None  # JSON file applied over the preset before the space
    overrides: tuple[str, ...] = ()  # a.b=value applied over the preset before the space
    eval_every: int = 1
    eval_songs: int = 16
    eval_length: int = 0  # 0: the base preset's curriculum.max_len
    reference_songs: int = 64
    max_concurrent: int = 0  # 0: from the cluster's CPUs (or GPUs); PBT: the whole population
    num_cpus: int | None = None  # local Ray only: logical CPUs (default: all cores)
    seed: int = 0
    perturbation_interval: int = 1  # PBT: reports between exploit/explore decisions
    verbose: int = 1


# -- checks before Ray starts --------------------------------------------------------------
def base_config(options: SweepOptions):
    """The preset with the sweep-wide overrides, validated; nested dict of those overrides."""
    from musicgan.config import apply_overrides, load_config_file, validate
    from musicgan.presets import get_preset

    cfg = get_preset(options.preset)
    overrides: dict = {}
    if options.config:
        load_config_file(cfg, options.config)
        overrides = json.loads(Path(options.config).read_text())
    apply_overrides(cfg, list(options.overrides))
    for item in options.overrides:
        key, _, value = item.partition("=")
        section, _, name = key.strip().partition(".")
        overrides.setdefault(section, {})[name] = value.strip()
    cfg.data.path = options.data
    if options.max_steps:
        cfg.train.max_steps = options.max_steps
    return validate(cfg), overrides


def check_options(options: SweepOptions) -> None:
    """Raise a UserError (one line) for anything that would make the sweep fail later."""
    from musicgan.data.shards import split_urls
    from tune.spaces import sample_check

    if options.scheduler not in ("asha", "pbt"):
        raise UserError(f"--scheduler must be asha or pbt, got {options.scheduler!r}")
    if options.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {options.num_samples}")
    if options.workers_per_trial < 1:
        raise UserError(f"--workers-per-trial must be at least 1, got {options.workers_per_trial}")
    if options.cpus_per_worker is not None and not options.cpus_per_worker > 0:
        raise UserError(f"--cpus-per-worker must be > 0, got {options.cpus_per_worker}")
    if options.gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker must be >= 0, got {options.gpus_per_worker}")
    if options.max_steps < 0 or options.eval_every < 1 or options.eval_songs < 2 or options.reference_songs < 2:
        raise UserError("--max-steps must be >= 0, --eval-every >= 1, --eval-songs and --reference-songs >= 2")
    if not Path(options.data).is_dir():
        raise DataError(f"--data {options.data}: no such directory (prepare one with `musicgan prepare`)")
    split_urls(options.data, "train")  # DataError: no manifest / empty train split / missing shard
    base, _ = base_config(options)
    sample_check(options.space, base)  # unknown space, or a space that draws invalid configs
    if options.scheduler == "pbt" and options.num_samples < 2:
        raise UserError("PBT needs --num-samples >= 2 (trials exploit each other)")
    if options.scheduler == "pbt" and 0 < options.max_concurrent < options.num_samples:
        raise UserError(
            f"PBT compares its whole population: --max-concurrent {options.max_concurrent} "
            f"< --num-samples {options.num_samples} would run groups that never meet"
        )
    experiment = Path(options.storage) / options.name
    if options.resume and not experiment.is_dir():
        raise UserError(f"--resume: no sweep to resume in {experiment}")
    if not options.resume and experiment.exists():
        raise UserError(f"{experiment} already holds a sweep: pass --resume, or another --storage/--name")
    try:
        Path(options.storage).mkdir(parents=True, exist_ok=True)
        probe = Path(options.storage) / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--storage {options.storage} is not writable: {exc.strerror}") from None


def resolve_paths(options: SweepOptions) -> SweepOptions:
    """Absolute paths: Tune trials chdir into their own folders."""
    options = copy.copy(options)
    options.data = str(resolve_data_dir(options.data))  # the one resolver of every data path option
    options.storage = str(Path(options.storage).expanduser().resolve())
    if options.config:
        options.config = str(Path(options.config).expanduser().resolve())
    return options


# -- Ray ----------------------------------------------------------------------------------------
def init_ray(options: SweepOptions) -> None:
    """Start (or join) Ray; trials import `tune.*`, so the repo root goes on their path."""
    import ray

    if ray.is_initialized():
        return  # a test (or a notebook) started Ray already
    env_vars = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "RAY_CHDIR_TO_TRIAL_DIR": "1",
    }
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": options.verbose > 0}
    if options.address and options.address.startswith("ray://"):
        # A remote cluster: ship this checkout (not the venv, data or sweeps) to its workers.
        kwargs["runtime_env"] = {
            "working_dir": str(REPO_ROOT),
            "excludes": [".venv", ".git", "shards", "*.tar", "sweeps"],
        }
    else:
        kwargs["runtime_env"] = {"env_vars": env_vars}
    if options.address:
        kwargs["address"] = options.address
    else:
        # "local": always a fresh private instance. A bare ray.init() silently JOINS the
        # newest cluster anyone started on this host (ray start, another sweep) and dies with it.
        kwargs["address"] = "local"
        # The raylet starts its workers at niceness +15 (Ray's worker_niceness): on a shared
        # machine every trial then ran at nice 19, behind everyone else's jobs, whatever
        # `nice` the sweep was started with. 0 keeps the trials at the driver's niceness.
        os.environ.setdefault("RAY_worker_niceness", "0")
        if options.num_cpus:
            kwargs["num_cpus"] = options.num_cpus
    ray.init(**kwargs)


def trial_resources(options: SweepOptions) -> dict[str, float]:
    """Resources of a trial's own actor; K-worker trials' workers are reserved by Ray Train."""
    if options.workers_per_trial == 1:
        return {"cpu": options.cpus_per_worker or 1.0, "gpu": options.gpus_per_worker}
    return {"cpu": TINY_CPU}  # the trial only waits on its TorchTrainer


def max_concurrent_trials(options: SweepOptions) -> int:
    """Trials that can really run side by side: CPU cores (or GPUs) / processes per trial.
    Logical reservations can be tiny (docs/distributed-pitfalls.md, Ray Tune), so count processes
    against real cores."""
    import ray

    if options.max_concurrent:
        return options.max_concurrent
    if options.scheduler == "pbt":
        # The whole population must be alive to be compared: trial reservations (and PBT
        # pausing the trials that lead) share the cores. A generator holding back trials
        # would run the population in separate groups that never exploit each other.
        return options.num_samples
    total = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        per_trial = options.workers_per_trial * options.gpus_per_worker
        return max(1, int(total.get("GPU", 0) // per_trial))
    cores_per_trial = options.workers_per_trial * max(1.0, options.cpus_per_worker or 1.0)
    return max(1, int(total.get("CPU", 1) // cores_per_trial))


def check_fits(options: SweepOptions) -> None:
    """A trial asking for more than the cluster has would wait forever (silently): refuse."""
    import ray

    total = ray.cluster_resources()
    k = options.workers_per_trial
    cpus = options.cpus_per_worker or (1.0 if k == 1 else TINY_CPU)
    need_cpu = cpus if k == 1 else TINY_CPU + k * cpus
    need_gpu = k * options.gpus_per_worker
    if need_cpu > total.get("CPU", 0) + 1e-9 or need_gpu > total.get("GPU", 0) + 1e-9:
        raise UserError(
            f"one trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs but the cluster has "
            f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs: lower --cpus-per-worker "
            f"/ --gpus-per-worker / --workers-per-trial"
        )


def _recording_asha():
    """ASHA that also appends every trial it stops to STOPPED_FILE in the experiment folder,
    so the report can tell "stopped by the scheduler" from "cut off by Ctrl-C" (after an
    interruption Tune marks running trials TERMINATED too)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def __init__(self, record_dir: str, **kwargs) -> None:
            super().__init__(**kwargs)
            self.record_dir = record_dir  # the experiment folder in storage (Tune's staging copy is per session)

        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                Path(self.record_dir).mkdir(parents=True, exist_ok=True)
                with open(Path(self.record_dir) / STOPPED_FILE, "a") as handle:
                    handle.write(trial.trial_id + "\n")
            return decision

    return RecordingASHA


def make_scheduler(options: SweepOptions, base, param_space: dict):
    from ray.tune.schedulers import PopulationBasedTraining

    from tune.spaces import mutations

    evaluations = math.ceil(base.train.epochs / options.eval_every) + 1  # + the final report
    if options.scheduler == "asha":
        return _recording_asha()(
            str(Path(options.storage) / options.name),
            time_attr="training_iteration",
            metric=OBJECTIVE,
            mode="max",
            max_t=max(2, evaluations),
            grace_period=1,
            reduction_factor=2,
        )
    # Synchronous PBT (Jaderberg et al. 2017, "Population Based Training of Neural Networks",
    # appendix A.1): a trial reaching a perturbation point pauses until every live trial has
    # reported there, then the top half hands its latest checkpoint to the bottom half. The
    # asynchronous variant records a donor's checkpoint only when the donor itself reported
    # while on top, and lets a fast trial finish before a slow one reaches the point: with two
    # trials side by side it skipped every exploit ("no checkpoint for trial ..."), depending
    # on which trial the machine's load let report first. The cost: every trial restarts its
    # process from its checkpoint after each perturbation point (the imports, a few seconds).
    return PopulationBasedTraining(
        time_attr="training_iteration",
        metric=OBJECTIVE,
        mode="max",
        perturbation_interval=options.perturbation_interval,
        hyperparam_mutations=mutations(base, param_space),
        quantile_fraction=0.5,  # small populations: the bottom half copies the top half
        resample_probability=0.25,
        synch=True,
    )


def build_trainable(settings: TrialSettings, reference, resources: dict):
    from ray import tune

    from tune.trial import run_trial

    return tune.with_resources(tune.with_parameters(run_trial, settings=settings, reference=reference), resources)


def run_sweep(options: SweepOptions, param_space: dict | None = None):
    """Check, start Ray, run (or resume) the sweep, write the report. Returns (ResultGrid, summary).

    `param_space` replaces the named space (tests add e.g. a bad data path for one trial).
    """
    from ray import tune

    from tune import report
    from tune.objective import reference_statistics
    from tune.spaces import get_space

    options = resolve_paths(options)
    check_options(options)
    base, overrides = base_config(options)
    eval_length = options.eval_length or base.curriculum.max_len
    space = get_space(options.space, base)
    if param_space is not None:
        space = {**space, **param_space}
    print(
        f"[tune] reference: up to {options.reference_songs} real excerpts of {eval_length} steps from {options.data}",
        flush=True,
    )
    reference = reference_statistics(base, options.data, eval_length, options.reference_songs)
    settings = TrialSettings(
        preset=options.preset,
        data=options.data,
        experiment_dir=str(Path(options.storage) / options.name),
        base=overrides,
        max_steps=options.max_steps,
        eval_every=options.eval_every,
        eval_songs=options.eval_songs,
        eval_length=eval_length,
        workers=options.workers_per_trial,
        cpus_per_worker=options.cpus_per_worker or (1.0 if options.workers_per_trial == 1 else TINY_CPU),
        gpus_per_worker=options.gpus_per_worker,
        seed=options.seed,
    )
    init_ray(options)
    check_fits(options)
    experiment_dir = Path(options.storage) / options.name
    experiment_dir.mkdir(parents=True, exist_ok=True)
    (experiment_dir / report.BASE_CONFIG_FILE).write_text(base.to_json() + "\n")  # for `python -m tune.report`
    resources = trial_resources(options)
    trainable = build_trainable(settings, reference, resources)
    experiment = Path(options.storage) / options.name
    if options.resume:
        print(f"[tune] resuming the sweep in {experiment}", flush=True)
        tuner = tune.Tuner.restore(
            str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
        )
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                num_samples=options.num_samples,
                scheduler=make_scheduler(options, base, space),
                # The generator itself limits concurrency: TuneConfig.max_concurrent_trials is
                # ignored (with a warning) once a search_alg instance is passed.
                search_alg=BasicVariantGenerator(
                    random_state=options.seed, max_concurrent=max_concurrent_trials(options)
                ),
                # Reusing a trial's process saves its imports (~5 s a trial). Not for K-worker
                # trials (their process owns a TorchTrainer; docs/distributed-pitfalls.md: leaked
                # reservations) and
                # not for PBT: with reuse, exploited trials were reset but never restored from
                # the donor's checkpoint (seen here with ray 2.60); fresh processes restore cleanly.
                reuse_actors=options.workers_per_trial == 1 and options.scheduler == "asha",
            ),
            run_config=tune.RunConfig(
                name=options.name,
                storage_path=options.storage,
                verbose=options.verbose,
                # PBT restores from older checkpoints: keep all (num_to_keep=2 failed to recover
                # a trial: docs/distributed-pitfalls.md).
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if options.scheduler == "pbt" else 2),
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
    results = tuner.fit()  # Ctrl-C: Tune saves the experiment state and returns (no exception)
    summary = report.write_report(results, Path(options.storage), experiment, base=base, overrides=overrides)
    expected = options.num_samples * _grid_size(space)
    summary["interrupted"] = bool(summary["unfinished"]) or len(summary["rows"]) < expected
    return results, summary


def _grid_size(space: dict) -> int:
    """Trials per sample: the product of grid_search lengths in the space."""
    size = 1
    for value in space.values():
        if isinstance(value, dict) and "grid_search" in value:
            size *= len(value["grid_search"])
    return size


# -- CLI ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> SweepOptions:
    p = argparse.ArgumentParser(prog="python -m tune.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, help="search space (tune/spaces.py): crnngan, lr")
    p.add_argument("--preset", required=True, help="base preset the space composes with (musicgan/presets.py)")
    p.add_argument("--scheduler", required=True, choices=("asha", "pbt"))
    p.add_argument("--num-samples", type=int, required=True, help="trials (PBT: population size)")
    p.add_argument("--data", required=True, help="prepared shard directory (musicgan prepare)")
    p.add_argument("--storage", required=True, help="folder for the sweep, its table, best config and plots")
    p.add_argument("--workers-per-trial", type=int, default=1, help="K > 1: a Ray Train TorchTrainer per trial")
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help=f"logical CPUs per worker (default 1; {TINY_CPU} for K > 1: see tune/README.md)",
    )
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--max-steps", type=int, default=0, help="cap every trial at S optimizer steps")
    p.add_argument("--address", default=None, help="join a Ray cluster: auto or ray://HOST:10001")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in STORAGE/NAME")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"experiment folder under STORAGE (default {DEFAULT_NAME})")
    p.add_argument("--config", help="JSON config applied over the preset before the space")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="a.b=value",
        help="config value applied over the preset before the space (repeatable)",
    )
    p.add_argument("--eval-every", type=int, default=1, help="epochs between objective evaluations")
    p.add_argument("--eval-songs", type=int, default=16, help="generated excerpts scored per evaluation")
    p.add_argument("--eval-length", type=int, default=0, help="excerpt length in steps (default: preset max_len)")
    p.add_argument("--reference-songs", type=int, default=64, help="real valid excerpts the objective compares against")
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        help="trials at once (default: from the cluster; PBT: the whole population)",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray: logical CPUs (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no Tune progress tables")
    a = p.parse_args(argv)
    return SweepOptions(
        space=a.space,
        preset=a.preset,
        scheduler=a.scheduler,
        num_samples=a.num_samples,
        data=a.data,
        storage=a.storage,
        workers_per_trial=a.workers_per_trial,
        cpus_per_worker=a.cpus_per_worker,
        gpus_per_worker=a.gpus_per_worker,
        max_steps=a.max_steps,
        address=a.address,
        resume=a.resume,
        name=a.name,
        config=a.config,
        overrides=tuple(a.overrides),
        eval_every=a.eval_every,
        eval_songs=a.eval_songs,
        eval_length=a.eval_length,
        reference_songs=a.reference_songs,
        max_concurrent=a.max_concurrent,
        num_cpus=a.num_cpus,
        seed=a.seed,
        verbose=0 if a.quiet else 1,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(argv)
        _, summary = run_sweep(options)
    except (UserError, ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; continue with the same command plus --resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; MUSICGAN_DEBUG=1 for the traceback
        if os.environ.get("MUSICGAN_DEBUG"):
            raise
        text = str(exc).strip().splitlines()
        print(
            f"error: unexpected {type(exc).__name__}: {text[-1] if text else ''} "
            "(MUSICGAN_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    if summary.get("interrupted"):
        print("error: the sweep was interrupted; continue it with the same command plus --resume", file=sys.stderr)
        return 130
    return 0 if summary["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
