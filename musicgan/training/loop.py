"""The one training loop: any model family, one process or many (torchrun, SLURM, Ray).

Per step: reseed torch from (seed, rank, step); the phase computes its losses; ONE
all-reduce carries the losses, the stop flag and the non-finite flag, so every rank takes
every decision (freezing, stopping, divergence handling) from the same numbers; then each
updated network's backend applies its step. Rank 0 alone writes logs, checkpoints and
samples; every rank runs every collective.

Around the loop, each in its own module: the step itself (engine.py), the run directory and
its checkpoints (run_files.py), what a diverged step does (divergence.py), the log rows
(logger.py) and the sample rounds (sampling.py).

Exact resume: data of epoch e on rank r is a pure function of (seed, e, r) and torch is
reseeded from (seed, rank, step), so a resumed run rebuilds the epoch's stream, discards
the batches already consumed, and continues with exactly the numbers it would have seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from musicgan.config import Config, validate
from musicgan.data.loader import batches_per_epoch, make_loader
from musicgan.data.shards import load_manifest, split_urls
from musicgan.distributed import collectives
from musicgan.distributed.env import DistEnv, init_distributed, teardown
from musicgan.stop_signals import StopFlag, catch_stop_signals
from musicgan.training import checkpoint as ckpt
from musicgan.training import engine, sampling
from musicgan.training.curriculum import seq_len_for_epoch
from musicgan.training.divergence import DivergenceError, DivergenceHandler, Rollback
from musicgan.training.families import all_network_names, get_family
from musicgan.training.logger import RunLogger, step_scalars
from musicgan.training.phases import StepContext, phase_for_epoch
from musicgan.training.run_files import RunFiles

__all__ = ["DivergenceError", "TrainResult", "TrainState", "Trainer", "step_seed", "train"]  # tests and tune use these


@dataclass
class TrainState:
    step: int = 0  # trainer steps taken = batches per rank; the optimizers step every dist.grad_accum of them
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    lr_scale: float = 1.0  # product of rollback factors
    held: tuple[str, ...] = ()  # networks the phase's `hold` skipped at the last step
    updates: dict[str, int] = field(default_factory=dict)  # name -> steps at which it trained
    skipped_steps: int = 0
    skipped_samples: int = 0  # corrupt data samples skipped by the loader, all ranks

    def record(self, report: engine.StepReport, networks: tuple[str, ...]) -> None:
        """The step's held networks (in the phase's order) and one more update per network trained."""
        self.held = tuple(n for n in networks if n in report.held)
        for name in report.updated:
            self.updates[name] = self.updates.get(name, 0) + 1

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "lr_scale": self.lr_scale,
            "skipped_steps": self.skipped_steps,
            "skipped_samples": self.skipped_samples,
            "held": list(self.held),
            "updates": dict(self.updates),
        }

    @classmethod
    def from_checkpoint(cls, state: dict) -> "TrainState":
        # Format 1 wrote {"freeze": {name: bool}} instead of "held".
        held = state.get("held", [name for name, frozen in state.get("freeze", {}).items() if frozen])
        return cls(
            step=int(state["step"]),
            epoch=int(state["epoch"]),
            batch_in_epoch=int(state["batch_in_epoch"]),
            lr_scale=float(state.get("lr_scale", 1.0)),
            skipped_steps=int(state.get("skipped_steps", 0)),
            skipped_samples=int(state.get("skipped_samples", 0)),
            held=tuple(held),
            updates={k: int(v) for k, v in state.get("updates", {}).items()},
        )


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    finished: bool  # reached the end (epochs or max_steps); False when stopped by a signal
    checkpoint: Path | None
    metrics: dict = field(default_factory=dict)  # last round of sample metrics


def step_seed(seed: int, rank: int, step: int) -> int:
    """Torch seed of one step on one rank (noise, dropout): a pure function, so resumes replay."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63 - 1)


def reseed(seed: int) -> None:
    """torch.manual_seed's effect without its cost (it queues lazy seeds for every
    accelerator type and captures a traceback: 0.1-0.7 ms a step on CPU-only torch)."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_backend(
    cfg: Config,
    env: DistEnv,
    deepspeed_config: str | None = None,
    network_names: tuple[str, ...] = ("generator", "discriminator"),
):
    if cfg.dist.backend == "deepspeed":
        from musicgan.distributed.deepspeed import DeepSpeedBackend  # the only deepspeed importer

        return DeepSpeedBackend(
            env,
            cfg,
            user_config=deepspeed_config,
            network_names=network_names,
            other_models_networks=all_network_names() - set(network_names),
        )
    from musicgan.distributed.ddp import DDPBackend

    return DDPBackend(
        env,
        grad_clip=cfg.optim.grad_clip,
        max_grad_norm=cfg.train.max_grad_norm,
        grad_accum=cfg.dist.grad_accum,
        precision=cfg.dist.precision,
    )


class Trainer:
    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        *,
        env: DistEnv,
        deepspeed_config: str | None = None,
        report_fn: Callable[[dict, Path | None], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        loader_factory: Callable = make_loader,
        logger: RunLogger | None = None,
    ) -> None:
        """`loader_factory` (make_loader's signature) and `logger` (else `fit` opens a
        RunLogger) are seams for benchmarks and tests that replay or corrupt batches."""
        self.cfg = validate(cfg)
        self.loader_factory = loader_factory
        self.run_dir = Path(run_dir)
        self.env = env
        self.report_fn = report_fn
        self.should_stop = should_stop
        self.family = get_family(cfg)
        self.phases = self.family.phases()
        engine.check_repeat(self.phases, cfg.dist.grad_accum)
        self.representation = self.family.build_representation()

        self.train_urls = split_urls(cfg.data.path, "train")
        self.num_train_songs = int(load_manifest(cfg.data.path)["splits"]["train"]["songs"])
        self.batches_per_epoch = batches_per_epoch(self.num_train_songs, cfg.data.batch_size, env.world_size)
        self.total_steps = run_steps(cfg, self.batches_per_epoch)
        fit_representation(self.representation, self.train_urls, env.is_main)
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        networks = self.family.build_networks(self.representation)
        self.backend = make_backend(cfg, env, deepspeed_config, self.family.network_names)
        self.backend.setup(networks, self.family.optimizers())
        self.base_lr = {name: self.backend.get_lr(name) for name in self.family.learning_rates()}
        self.files = RunFiles(self.run_dir, self.cfg, env, self.backend, self.family.network_names, self.representation)
        self.divergence = DivergenceHandler(self.cfg.train.nonfinite, self.cfg.train.rollback_lr_factor)
        self.state = TrainState()
        self.budget = engine.TimeBudget(self.cfg.train.max_minutes, env.is_main)
        self.stop = StopFlag()
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict = {}
        self.real_metrics: dict | None = None
        self.logger: RunLogger | None = logger
        self.last_losses: dict = {}  # reduced losses of the last step (progress bar, reports)
        self.last_values: dict = {}  # every reduced scalar of the last step (logging)
        self._stop_requested = False  # a stop was agreed; it happens when the accumulation window closes

    # -- the run directory and its checkpoints (run_files.py) -----------------------------------
    def prepare_run_dir(self, resume: bool = False, overwrite: bool = False) -> None:
        self.files.prepare(resume, overwrite)

    def resume(self) -> bool:
        """Load the newest valid checkpoint (chosen by rank 0, read by all); False if none."""
        chosen = self.files.latest_valid()
        if chosen is not None:
            self._restore(chosen)
        return chosen is not None

    def _restore(self, path: Path, rolling_back_from: TrainState | None = None) -> None:
        """Load `path`; a rollback keeps lowering the learning rates (divergence.after_rollback).
        The optimizers' rates are not set here: every step sets them from the run's rates, the
        state's `lr_scale` and the phase's factors (engine.set_learning_rates)."""
        restored = TrainState.from_checkpoint(self.files.restore(path))
        if rolling_back_from is not None:
            restored = self.divergence.after_rollback(rolling_back_from, restored)
        self.state = restored
        self.last_checkpoint = path

    def save(self) -> Path:
        """Every rank calls this (DeepSpeed engines save on all ranks); rank 0 writes the .pt."""
        self.last_checkpoint = self.files.save(self.state.step, self.state.to_dict())
        return self.last_checkpoint

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        self.prepare_run_dir(resume, overwrite)
        if resume:
            self.resume()
        if self.logger is None:
            self.logger = RunLogger.for_run(
                self.run_dir, self.cfg.log, self.env.is_main, self.total_steps, self.state.step
            )
        if self.env.is_main:
            self.real_metrics = sampling.real_metrics(self.cfg, self.representation, self.train_urls)
        try:
            with catch_stop_signals(self.stop):
                while True:
                    try:
                        finished = self.run_epochs()
                        break
                    except Rollback:
                        self._restore(self.last_checkpoint, rolling_back_from=self.state)
            if finished:
                if self.last_checkpoint is None or self.last_checkpoint.name != ckpt.checkpoint_name(self.state.step):
                    self.save()
                self._sample_round("final")
                self.logger.event("finished", self.state.step, epoch=self.state.epoch)
                self.files.mark_finished(self.state.to_dict())
            return TrainResult(
                self.run_dir, self.state.step, self.state.epoch, finished, self.last_checkpoint, self.last_metrics
            )
        finally:
            self.logger.close()

    def _done(self) -> bool:
        return self.state.step >= self.total_steps or self.state.epoch >= self.cfg.train.epochs

    def run_epochs(self) -> bool:
        """True when the run reached its end; False when a stop was agreed (checkpoint written)."""
        while not self._done():
            epoch = self.state.epoch
            phase, phase_start = phase_for_epoch(self.phases, epoch)
            seq_len = seq_len_for_epoch(self.cfg.curriculum, epoch, grows=phase.curriculum)
            ctx = StepContext(self.cfg, self.backend, self.env.device, seq_len, steps_per_epoch=self.batches_per_epoch)
            loader = self.loader_factory(
                self.train_urls,
                self.representation,
                seq_len=seq_len,
                batch_size=self.cfg.data.batch_size,
                num_batches=self.batches_per_epoch,
                seed=self.cfg.train.seed,
                epoch=epoch,
                rank=self.env.rank,
                world_size=self.env.world_size,
                num_workers=self.cfg.data.num_workers,
            )
            t_last = time.perf_counter()
            for index, batch in enumerate(loader):
                if index < self.state.batch_in_epoch:
                    continue  # consumed before the checkpoint we resumed from
                stop = self._train_step(ctx, phase, phase_start, batch)
                self.state.batch_in_epoch = index + 1
                self.state.step += 1
                if self.state.step % self.cfg.log.interval == 0 or stop:
                    now = time.perf_counter()
                    self._log_step(phase, seq_len, now - t_last)
                    t_last = now
                self.logger.progress(1, epoch=epoch, phase=phase.name, **self.last_losses)
                every = self.cfg.log.checkpoint_every
                if stop:
                    self._stop_cleanly()
                    return False
                if every and self.state.step % every == 0:
                    self.save()
                if self.state.step >= self.total_steps:
                    self._count_skipped(loader)
                    # No _end_epoch here even when this step closed the epoch: the run's end
                    # is reported once, by the caller (tune/trial.py reports after train()).
                    return True
            self._count_skipped(loader)
            self._end_epoch(epoch)
        return True

    def _end_epoch(self, epoch: int) -> None:
        self.state.epoch = epoch + 1
        self.state.batch_in_epoch = 0
        every = self.cfg.log.sample_every
        metrics = {}
        if every and (epoch + 1) % every == 0 and not self._done():
            metrics = self._sample_round(f"epoch-{epoch + 1:04d}")
            self.logger.event("epoch_metrics", self.state.step, epoch=epoch + 1, **metrics)
        path = self.save() if not self.cfg.log.checkpoint_every else self.last_checkpoint
        if self.report_fn is not None:
            self.report_fn({"step": self.state.step, "epoch": epoch + 1, **self.last_losses, **metrics}, path)

    def _stop_cleanly(self) -> None:
        path = self.save()
        # Every rank is here at the same step, so this (rare) collective is safe: say which
        # rank got which signal, since often only one did.
        reasons = collectives.all_gather_object(self.stop.reason, "stop reasons")
        reason = ", ".join(f"{r} on rank {i}" for i, r in enumerate(reasons) if r) or "stop requested"
        self.files.mark_stopped(self.state.step, reason, path)
        self.logger.stopped(self.state.step, reason, path)

    def _train_step(self, ctx: StepContext, phase, phase_start: int, batch) -> bool:
        """One trainer step of `phase` (engine.py); True when all ranks agreed to stop after it."""
        seed = step_seed(self.cfg.train.seed, self.env.rank, self.state.step)
        reseed(seed)
        plan = engine.StepPlan.at(phase, self.state.step - phase_start * self.batches_per_epoch)
        ctx.global_step, ctx.progress = self.state.step, self.state.step / max(self.total_steps, 1)
        engine.set_learning_rates(self.backend, phase, ctx, self.base_lr, self.state.lr_scale)
        out = engine.forward(plan, ctx, batch)
        external_stop = self.stop.reason is not None or (self.should_stop is not None and self.should_stop())
        reduced = engine.reduce(
            out, stop=external_stop, budget_spent=self.budget.spent(), what=f"losses at step {self.state.step}"
        )
        if reduced.budget_spent and self.total_steps > self.state.step + 1:
            self._end_at_window()
        # An agreed stop waits until the open accumulation window closes (at most
        # dist.grad_accum - 1 more steps), so its checkpoint holds no half window.
        boundary = self._closes_window()
        self._stop_requested = self._stop_requested or reduced.stop
        stop = self._stop_requested and boundary
        self.last_losses = {k: v for k, v in reduced.values.items() if k.startswith("loss/")}
        if reduced.nonfinite:
            self.divergence(self.state, batch, reduced.nonfinite_message(), self.last_checkpoint, self.logger)
            return stop
        redo = partial(redo_loss, plan, ctx, batch, seed)  # Phase.repeat
        report = engine.update(self.backend, plan, out, reduced, boundary=boundary, redo=redo)
        engine.after_updates(plan, ctx, report)
        self.state.record(report, phase.networks)
        self.last_values = report.values
        if report.refused:
            self.divergence(self.state, batch, "; ".join(report.refused), self.last_checkpoint, self.logger)
        return stop

    def _closes_window(self) -> bool:
        """Gradient accumulation: does this trainer step end a window (engine.closes_window)?"""
        return engine.closes_window(
            self.state.step + 1,
            grad_accum=self.cfg.dist.grad_accum,
            total_steps=self.total_steps,
            batch_after=self.state.batch_in_epoch + 1,
            batches_per_epoch=self.batches_per_epoch,
            checkpoint_every=self.cfg.log.checkpoint_every,
        )

    def _end_at_window(self) -> None:
        """Time budget spent (rank 0's clock, agreed by all): end like max_steps does, at the
        end of the open accumulation window."""
        self.total_steps = engine.end_of_window(self.state.step + 1, self.cfg.dist.grad_accum)
        self.logger.message(
            f"[musicgan] train.max_minutes={self.cfg.train.max_minutes} reached: finishing at step {self.total_steps}"
        )

    # -- logs and samples (logger.py, sampling.py) --------------------------------------------------
    def _log_step(self, phase, seq_len: int, seconds: float) -> None:
        samples = self.cfg.log.interval * self.cfg.data.batch_size * self.env.world_size
        train = dict(seq_len=seq_len, epoch=self.state.epoch, samples_per_s=samples / max(seconds, 1e-9))
        row = step_scalars(self.last_values, self.state, list(self.base_lr), **train, lr_scale=self.state.lr_scale)
        self.logger.scalars(self.state.step, row, phase=phase.name)

    def _count_skipped(self, loader) -> None:
        """Corrupt samples the loader skipped (all ranks, summed), logged for the run."""
        skipped, shard_errors = skipped_counts(loader, self.env.world_size)
        self.state.skipped_samples += skipped
        self.logger.skipped_samples(self.state, skipped, shard_errors)

    def _sample_round(self, label: str) -> dict:
        """Rank 0 generates, writes MIDI + piano rolls, scores them; every rank gets the metrics."""
        networks = {name: self.backend.module(name) for name in self.family.network_names}
        self.last_metrics = sampling.shared_sample_round(
            self.family,
            networks,
            self.representation,
            self.cfg,
            self.run_dir / "samples" / label,
            logger=self.logger,
            step=self.state.step,
            is_main=self.env.is_main,
            real_metrics=self.real_metrics,
        )
        return self.last_metrics


def redo_loss(plan: engine.StepPlan, ctx: StepContext, batch, seed: int, name: str) -> torch.Tensor:
    """`name`'s loss again on the same batch and noise (Phase.repeat)."""
    reseed(seed)
    again = engine.StepPlan(plan.phase, plan.step, frozenset({name}))
    return engine.forward(again, ctx, batch).losses[name]


def run_steps(cfg: Config, batches_per_epoch: int) -> int:
    """Trainer steps of the whole run: every epoch, or train.max_steps when that ends it sooner."""
    total = cfg.train.epochs * batches_per_epoch
    return min(total, cfg.train.max_steps) if cfg.train.max_steps else total


def fit_representation(representation, train_urls: list[str], is_main: bool) -> None:
    """Representations with learned state (the token vocabulary) fit on rank 0's train songs
    and broadcast, so every rank encodes identically."""
    if not getattr(representation, "needs_fit", False):
        return
    state = None
    if is_main:
        from musicgan.data.loader import iter_songs

        representation.fit(iter_songs(train_urls))
        state = representation.state_dict()
    representation.load_state_dict(collectives.broadcast_object(state, "representation"))


def skipped_counts(loader, world_size: int) -> tuple[int, int]:
    """(corrupt samples skipped, unreadable shard reads) of this epoch's loader, summed over ranks."""
    local = torch.tensor([float(getattr(loader, "num_skipped", 0)), float(getattr(loader, "num_shard_errors", 0))])
    total = collectives.all_reduce_mean(local, "skipped sample count") * world_size
    skipped, shard_errors = (int(round(float(v))) for v in total)
    return skipped, shard_errors


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    deepspeed_config: str | None = None,
    report_fn=None,
    should_stop=None,
    loader_factory: Callable = make_loader,
) -> TrainResult:
    """Train `cfg` into `run_dir` as this process's rank (one process, torchrun, SLURM or Ray)."""
    env = init_distributed(cfg.dist.timeout_s)
    trainer = None
    try:
        trainer = Trainer(
            cfg,
            run_dir,
            env=env,
            deepspeed_config=deepspeed_config,
            report_fn=report_fn,
            should_stop=should_stop,
            loader_factory=loader_factory,
        )
        return trainer.fit(resume=resume, overwrite=overwrite)
    finally:
        if trainer is not None:
            trainer.backend.close()
        teardown(env)
