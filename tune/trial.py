"""One Tune trial = one musicgan training run, as one process or as a Ray Train TorchTrainer.

The trial function (`run_trial`) is what `Tuner` runs. It builds the trial's config (base
preset + sweep-wide settings + the trial's sampled values), picks up a Tune checkpoint if
Tune handed one over (PBT exploit, a resumed sweep, a retried trial) and trains with the
SAME `musicgan.training.loop.train` that torchrun runs:

- `workers == 1`: the loop runs right here, in the trial's actor (world size 1).
- `workers > 1`: a `TorchTrainer` (Train V2) starts K workers that form a gloo (CPU) or NCCL
  (GPU) group; every worker calls `train`, which reuses that group. Worker rank 0 sends
  (metrics, checkpoint path) through a Ray queue to this trial function, which reports
  to Tune. So Tune owns real checkpoints (PBT can clone them) whatever the worker count.

Reporting: the loop calls `report_fn` at every epoch end; every `eval_every` epochs (and
once at the end) the trial scores the epoch's checkpoint (tune/objective.py) and calls
`ray.tune.report(metrics, checkpoint=...)` with the objective, both losses, the epoch and
step, and the EFFECTIVE learning rates and freezing thresholds read back from the
checkpoint the trainer just wrote (so a PBT mutation can be seen to take effect).

Traps (docs/distributed-pitfalls.md, Ray Tune): trials chdir into their trial folder (every
path here is absolute); K workers of 1 CPU next to a 1-CPU trial driver hang silently on 2
cores (workers take fractional CPUs, see search.py); a trial stopped while its TorchTrainer
runs can leak the workers' reservation (tiny default reservations; the trial also asks its
workers to stop through a file they poll every step).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune.objective import OBJECTIVE

SOURCE_FILE = "tune_source.json"  # in every Tune checkpoint: which trial/step it came from
STOP_FILE = ".tune-stop"  # in the run dir: workers of a stopped trial stop at the next step
EFFECTIVE_LOG = "effective.jsonl"  # in the run dir: effective values after every (re)start


@dataclass
class TrialSettings:
    """Everything fixed for a whole sweep (not searched)."""

    preset: str
    data: str  # absolute shard directory
    experiment_dir: str = ""  # STORAGE/NAME: trial run directories go straight there (see run_trial)
    base: dict = field(default_factory=dict)  # nested overrides applied before the trial's values
    max_steps: int = 0
    eval_every: int = 1  # epochs between objective evaluations (and Tune reports)
    eval_songs: int = 16
    eval_length: int = 16
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    seed: int = 0


def build_config(settings: TrialSettings, values: dict[str, Any]):
    """Base preset -> sweep-wide overrides -> data path and step cap -> the trial's values."""
    from musicgan.config import apply_dict
    from musicgan.presets import get_preset
    from tune.spaces import apply_trial_values

    cfg = get_preset(settings.preset)
    apply_dict(cfg, settings.base)
    cfg.data.path = settings.data
    if settings.max_steps:
        cfg.train.max_steps = settings.max_steps
    cfg.log.progress = False  # Tune prints its own progress table
    cfg.log.tensorboard = False  # Tune logs every reported metric already (and TB costs seconds per trial)
    return apply_trial_values(cfg, {k: v for k, v in values.items() if not k.startswith("_")})


def effective_values(checkpoint: Path) -> dict[str, float]:
    """Learning rates as the optimizers hold them and the thresholds the loop used, read back
    from a checkpoint the trainer wrote (not from the config we asked for)."""
    import torch

    from musicgan.config import from_dict
    from musicgan.training.families import get_family

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    values = {}
    # Every optimizer the checkpoint holds, named by its config key (optim.g_lr -> g_lr).
    keys = get_family(from_dict(state["config"])).learning_rate_keys if "config" in state else {}
    for name, optimizer in state.get("optimizers", {}).items():
        groups = optimizer.get("param_groups", [])
        if groups:
            label = keys[name].rpartition(".")[2] if name in keys else f"{name}_lr"
            values[f"effective/{label}"] = float(groups[0]["lr"])
    train_cfg = state.get("config", {}).get("train", {})
    for key in ("freeze_d_threshold", "freeze_g_threshold"):
        if key in train_cfg:
            values[f"effective/{key}"] = float(train_cfg[key])
    return values


def last_logged_losses(run_dir: Path) -> dict[str, float]:
    """The newest `loss/*` values in the trainer's log.jsonl (logged every log.interval steps)."""
    path = run_dir / "log.jsonl"
    if not path.exists():
        return {}
    for line in reversed(path.read_text().splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if row.get("event") == "train":
            return {k: float(v) for k, v in row.items() if k.startswith("loss/")}
    return {}


# -- checkpoints between Tune and the trainer ------------------------------------------------
def stage_checkpoint(checkpoint: Path, staging: Path, source: dict) -> Path:
    """A directory holding only this .pt (hard link when possible) and its origin, for Tune to persist."""
    staging.mkdir(parents=True, exist_ok=True)
    target = staging / checkpoint.name
    try:
        os.link(checkpoint, target)
    except OSError:
        shutil.copy2(checkpoint, target)
    (staging / SOURCE_FILE).write_text(json.dumps(source) + "\n")
    return staging


def restore_from_tune(run_dir: Path) -> dict | None:
    """If Tune handed this trial a checkpoint (PBT exploit, resumed sweep), make it the run
    directory's ONLY checkpoint, so the trainer's `resume` picks exactly it; returns its origin."""
    import ray.tune

    from musicgan.training import checkpoint as ckpt

    tune_checkpoint = ray.tune.get_checkpoint()
    if tune_checkpoint is None:
        return None
    with tune_checkpoint.as_directory() as directory:
        files = sorted(Path(directory).glob("step-*.pt"))
        if not files:
            raise RuntimeError(f"Tune checkpoint {tune_checkpoint.path} holds no step-*.pt")
        source_path = Path(directory) / SOURCE_FILE
        source = json.loads(source_path.read_text()) if source_path.exists() else {}
        target_dir = ckpt.checkpoint_dir(run_dir)
        if target_dir.exists():
            shutil.rmtree(target_dir)  # a newer own checkpoint would otherwise win the resume
        target_dir.mkdir(parents=True)
        shutil.copy2(files[-1], target_dir / files[-1].name)
        (target_dir / ckpt.LATEST).write_text(files[-1].name + "\n")
    source["restored_file"] = files[-1].name
    return source


# -- the reporter: decides when to evaluate, builds the Tune report --------------------------
class Reporter:
    """Called (on the rank that talks to Tune) with each epoch's metrics and checkpoint."""

    def __init__(
        self, settings: TrialSettings, run_dir: Path, reference, send, trial_id: str, restored: dict | None
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.reference = reference
        self.send = send  # (metrics, staged checkpoint dir or None) -> None
        self.trial_id = trial_id
        self.restored = restored
        # A restarted trial (PBT pause or exploit, resumed sweep) never reports the step it
        # restored again: that checkpoint is someone's earlier report, and synchronous PBT
        # would pause and restart a trial restored at its last step forever.
        self.last_step = int(restored.get("step", -1)) if restored else -1
        self.last_losses: dict[str, float] = {}
        # CPU seconds of this trial's process since it (re)started: what a sweep's budget is
        # counted in on a shared machine (Tune's time_total_s is wall time, load included).
        # With reused actors the process outlives a trial, so count from here.
        self.cpu_start = time.process_time()

    def __call__(self, metrics: dict, checkpoint: Path | None, final: bool = False) -> None:
        losses = {k: float(v) for k, v in metrics.items() if k.startswith("loss/")}
        if final and not losses:  # the run ended mid-epoch (or exactly at an epoch end without a report)
            losses = last_logged_losses(self.run_dir)
        self.last_losses = losses or self.last_losses
        epoch = int(metrics.get("epoch", 0))
        due = final or (epoch % max(1, self.settings.eval_every) == 0)
        if not due or checkpoint is None or int(metrics["step"]) <= self.last_step:
            return
        from tune.objective import evaluate_checkpoint

        started = time.perf_counter()
        scores = evaluate_checkpoint(
            self.run_dir,
            checkpoint,
            self.reference,
            self.settings.eval_songs,
            self.settings.eval_length,
            seed=self.settings.seed,
        )
        undefined = scores[OBJECTIVE] != scores[OBJECTIVE]  # NaN: fewer than 2 non-empty songs
        report = {
            "step": int(metrics["step"]),
            "epoch": epoch,
            OBJECTIVE: 0.0 if undefined else scores[OBJECTIVE],  # no music counts as the worst score
            "eval/undefined": float(undefined),
            "eval/empty_songs": scores["eval/empty_songs"],
            "eval/seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - self.cpu_start,
            **self.last_losses,
            **effective_values(checkpoint),
            "final": bool(final),
        }
        if self.restored:
            report["restored_from_trial"] = str(self.restored.get("trial_id", ""))
            report["restored_from_step"] = int(self.restored.get("step", -1))
        with open(self.run_dir / EFFECTIVE_LOG, "a") as log:
            log.write(
                json.dumps({k: report[k] for k in report if k.startswith(("effective/", "restored_", "step"))}) + "\n"
            )
        self.last_step = report["step"]
        with tempfile.TemporaryDirectory(prefix="tune-ckpt-", dir=self.run_dir) as tmp:
            staged = stage_checkpoint(
                checkpoint,
                Path(tmp) / "checkpoint",
                {"trial_id": self.trial_id, "step": report["step"], "run_dir": str(self.run_dir)},
            )
            self.send(report, staged)


# -- the trial function ------------------------------------------------------------------------
def run_trial(config: dict, settings: TrialSettings, reference) -> None:
    """Tune's trainable: train one sampled config, reporting the objective with checkpoints."""
    import ray.tune

    context = ray.tune.get_context()
    # The run directory lives in the trial's folder IN STORAGE, not in the trial's local
    # staging folder under /tmp/ray, which Tune copies to storage after every report (every
    # checkpoint and sample twice on disk, and copies racing the trainer's writes).
    trial_dir_name = Path(context.get_trial_dir()).name
    run_dir = (
        Path(settings.experiment_dir) / trial_dir_name if settings.experiment_dir else Path(context.get_trial_dir())
    ) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    cfg = build_config(settings, config)  # a bad point raises ConfigError: the trial errors, the sweep goes on
    restored = restore_from_tune(run_dir)
    if restored:
        print(
            f"[tune] trial {context.get_trial_id()} restored {restored['restored_file']} "
            f"(from trial {restored.get('trial_id', '?')}); config now g_lr={cfg.optim.g_lr:.4g} "
            f"d_lr={cfg.optim.d_lr:.4g} theta_D={cfg.train.freeze_d_threshold:.3g} "
            f"theta_G={cfg.train.freeze_g_threshold:.3g}",
            flush=True,
        )

    def send(metrics: dict, staged: Path | None) -> None:
        checkpoint = ray.tune.Checkpoint.from_directory(str(staged)) if staged else None
        ray.tune.report(metrics, checkpoint=checkpoint)

    reporter = Reporter(settings, run_dir, reference, send, context.get_trial_id(), restored)
    if settings.workers <= 1:
        _train_here(cfg, run_dir, reporter, resume=restored is not None)
    else:
        _train_with_workers(
            cfg,
            settings,
            run_dir,
            reporter,
            resume=restored is not None,
            name=f"{context.get_experiment_name()}-{context.get_trial_id()}",
        )


def _train_here(cfg, run_dir: Path, reporter: Reporter, resume: bool) -> None:
    import torch

    from musicgan.training.loop import train

    torch.set_num_threads(1)  # one core per trial: trials run side by side
    # No Tune checkpoint: the trial starts afresh, archiving what an earlier attempt left.
    result = train(cfg, run_dir, resume=resume, overwrite=not resume, report_fn=reporter)
    if result.checkpoint is not None:  # a max_steps cap may end the run mid-epoch: report that too
        reporter({"step": result.step, "epoch": result.epoch}, Path(result.checkpoint), final=True)


# -- K workers: Ray Train ----------------------------------------------------------------------
def _worker_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker: the same musicgan loop, in Ray's process group."""
    import ray.train
    import torch

    from musicgan.config import from_dict
    from musicgan.training.loop import train

    torch.set_num_threads(1)  # one thread per rank (docs/distributed-pitfalls.md: OMP oversubscription)
    cfg = from_dict(loop_config["config"])
    run_dir = Path(loop_config["run_dir"])
    queue = loop_config["queue"]
    rank = ray.train.get_context().get_world_rank()
    stop_file = run_dir / STOP_FILE

    def report_fn(metrics: dict, checkpoint: Path | None) -> None:
        if rank == 0:  # the other ranks' calls are no-ops: nothing collective happens here
            queue.put(("epoch", metrics, str(checkpoint) if checkpoint else None))

    result = train(
        cfg,
        run_dir,
        resume=loop_config["resume"],
        overwrite=not loop_config["resume"],
        report_fn=report_fn,
        should_stop=stop_file.exists,
    )
    if rank == 0:
        queue.put(
            ("end", {"step": result.step, "epoch": result.epoch}, str(result.checkpoint) if result.checkpoint else None)
        )


def _train_with_workers(
    cfg, settings: TrialSettings, run_dir: Path, reporter: Reporter, resume: bool, name: str
) -> None:
    from queue import Empty

    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    use_gpu = settings.gpus_per_worker > 0
    resources = {"CPU": settings.cpus_per_worker, **({"GPU": settings.gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": cfg.to_dict(), "run_dir": str(run_dir), "queue": queue, "resume": resume},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=int(cfg.dist.timeout_s)),
        scaling_config=ray.train.ScalingConfig(
            num_workers=settings.workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(run_dir.parent / "ray-train"),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
    )
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the trial thread below
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, metrics, path = queue.get(timeout=1.0)
            except Empty:
                if not thread.is_alive():
                    break
                continue
            reporter(metrics, Path(path) if path else None, final=(kind == "end"))
            if kind == "end":
                break
    finally:
        # Tune stopping this trial (ASHA, PBT) surfaces as SystemExit inside reporter(): ask
        # the workers to stop at their next step so their reservation is released cleanly.
        (run_dir / STOP_FILE).touch()
        thread.join(timeout=max(30.0, cfg.dist.timeout_s))
    if "error" in outcome:
        raise RuntimeError(f"Ray Train workers failed: {_one_line(outcome['error'])}") from outcome["error"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
