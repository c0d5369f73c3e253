"""The one training loop: any model family, one process or many (torchrun, SLURM, Ray).

Per step: reseed torch from (seed, rank, step); the phase computes its losses; ONE
all-reduce carries the losses, the stop flag and the non-finite flag, so every rank takes
every decision (freezing, stopping, divergence handling) from the same numbers; then each
updated network's backend applies its step. Rank 0 alone writes logs, checkpoints and
samples; every rank runs every collective.

Exact resume: data of epoch e on rank r is a pure function of (seed, e, r) and torch is
reseeded from (seed, rank, step), so a resumed run rebuilds the epoch's stream, discards
the batches already consumed, and continues with exactly the numbers it would have seen.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from musicgan.config import Config, validate
from musicgan.data.loader import batches_per_epoch, make_loader
from musicgan.data.shards import load_manifest, split_urls
from musicgan.distributed import collectives
from musicgan.distributed.env import DistEnv, init_distributed, teardown
from musicgan.errors import UserError
from musicgan.stop_signals import STOP_SIGNALS
from musicgan.training import checkpoint as ckpt
from musicgan.training import engine, sampling
from musicgan.training.curriculum import seq_len_for_epoch
from musicgan.training.families import all_network_names, get_family
from musicgan.training.logger import RunLogger
from musicgan.training.phases import StepContext, phase_for_epoch

log = logging.getLogger("musicgan")


class DivergenceError(UserError):
    """Training produced a non-finite loss or an exploding gradient and the policy is `stop`."""


class _Rollback(Exception):
    """Internal: restart the epoch loop from the last checkpoint with lowered learning rates."""


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


def step_scalars(values: dict, state: TrainState, trained: list[str], **train: float) -> dict:
    """One train row: the step's reduced values (bare stat names under stats/), `train/*`,
    and per trained network whether it was held and how many updates it has taken."""
    row = {(k if "/" in k else f"stats/{k}"): v for k, v in values.items()}
    row.update({f"train/{k}": v for k, v in train.items()})
    row.update({f"freeze/{n}": float(n in state.held) for n in trained})
    row.update({f"updates/{n}": state.updates.get(n, 0) for n in trained})
    return row


class _StopFlag:
    """Set by SIGINT/SIGTERM/SIGUSR2; read into the per-step all-reduce."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum, _frame) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"


@contextmanager
def _stop_signals(flag: _StopFlag):
    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, flag)
            except ValueError:  # not the main thread (e.g. inside some Ray actors)
                pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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

        manifest = load_manifest(cfg.data.path)
        self.train_urls = split_urls(cfg.data.path, "train")
        self.num_train_songs = int(manifest["splits"]["train"]["songs"])
        self.batches_per_epoch = batches_per_epoch(self.num_train_songs, cfg.data.batch_size, env.world_size)
        self.total_steps = cfg.train.epochs * self.batches_per_epoch
        if cfg.train.max_steps:
            self.total_steps = min(self.total_steps, cfg.train.max_steps)

        self._fit_representation()
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        networks = self.family.build_networks(self.representation)
        self.backend = make_backend(cfg, env, deepspeed_config, self.family.network_names)
        self.backend.setup(networks, self.family.optimizers())
        self.base_lr = {name: self.backend.get_lr(name) for name in self.family.learning_rates()}
        self.state = TrainState()
        self._rolled_back_at: set[int] = set()  # steps that triggered a rollback
        self._started = time.monotonic()  # for train.max_minutes (this process's share of the run)
        self.stop = _StopFlag()
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict = {}
        self.real_metrics: dict | None = None
        self.logger: RunLogger | None = logger
        self.last_losses: dict = {}  # reduced losses of the last step (progress bar, reports)
        self.last_values: dict = {}  # every reduced scalar of the last step (logging)
        self._stop_requested = False  # a stop was agreed; it happens when the accumulation window closes

    # -- set-up ------------------------------------------------------------------------------
    def _fit_representation(self) -> None:
        """Representations with learned state (the token vocabulary) fit on rank 0's train
        songs and broadcast, so every rank encodes identically."""
        if not getattr(self.representation, "needs_fit", False):
            return
        state = None
        if self.env.is_main:
            from musicgan.data.loader import iter_songs

            self.representation.fit(iter_songs(self.train_urls))
            state = self.representation.state_dict()
        self.representation.load_state_dict(collectives.broadcast_object(state, "representation"))

    def prepare_run_dir(self, resume: bool = False, overwrite: bool = False) -> None:
        """Rank 0 claims the run directory (see checkpoint.claim_run_dir); a refusal reaches
        every rank. A running run is neither stopped nor finished: a stale marker of an
        earlier invocation (e.g. before the run was extended) must not decide a requeue."""
        error = None
        if self.env.is_main:
            try:
                ckpt.claim_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / "config.json").write_text(self.cfg.to_json() + "\n")
                for marker in ("stopped.json", "finished.json"):
                    (self.run_dir / marker).unlink(missing_ok=True)
            except UserError as exc:
                error = str(exc)
            except OSError as exc:
                error = f"cannot prepare run directory {self.run_dir}: {exc}"
        error = collectives.broadcast_object(error, "run directory")
        if error:
            raise UserError(error)

    def resume(self) -> bool:
        """Load the newest valid checkpoint (chosen by rank 0, read by all); False if none."""
        chosen = None
        if self.env.is_main:
            found = ckpt.find_latest_valid(self.run_dir)
            chosen = str(found[0]) if found else None
        chosen = collectives.broadcast_object(chosen, "checkpoint choice")
        if chosen is None:
            return False
        self._restore(Path(chosen))
        return True

    def _restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        hint = ckpt.model_differences(state.get("config", {}), self.cfg.to_dict())
        for name in self.family.network_names:
            ckpt.load_network(
                self.backend.module(name), ckpt.network_state(state, name), name=name, source=path, hint=hint
            )
        self.backend.load_optimizer_state(state.get("optimizers", {}))
        self.backend.load_extra(ckpt.checkpoint_dir(self.run_dir), path.stem)
        if "representation" in state:
            self.representation.load_state_dict(state["representation"])
        self.state = TrainState.from_checkpoint(state)
        self.last_checkpoint = path
        self._apply_lrs()

    def _apply_lrs(self) -> None:
        """The config's learning rates (possibly mutated by a PBT trial) times the rollback scale."""
        for name, lr in self.base_lr.items():
            self.backend.set_lr(name, lr * self.state.lr_scale)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self) -> Path:
        """Every rank calls this (DeepSpeed engines save on all ranks); rank 0 writes the .pt."""
        tag = Path(ckpt.checkpoint_name(self.state.step)).stem
        self.backend.save_extra(ckpt.checkpoint_dir(self.run_dir), tag)
        path = ckpt.checkpoint_dir(self.run_dir) / ckpt.checkpoint_name(self.state.step)
        error = None
        if self.env.is_main:
            path, error = ckpt.save_or_error(self.run_dir, self._checkpoint_state, self.state.step, self.cfg.log.keep)
        error = collectives.broadcast_object(error, "checkpoint result")
        if error:
            raise ckpt.CheckpointWriteError(error)
        self.last_checkpoint = path
        return path

    def _checkpoint_state(self) -> dict:
        return {
            **ckpt.pack_networks({n: self.backend.module(n).state_dict() for n in self.family.network_names}),
            "optimizers": self.backend.optimizer_state(),
            "representation": self.representation.state_dict(),
            "config": self.cfg.to_dict(),
            "world_size": self.env.world_size,
            "backend": self.backend.name,
            **self.state.to_dict(),
        }

    # -- samples and metrics ---------------------------------------------------------------------
    def _sample_round(self, label: str) -> dict:
        """Rank 0 generates, writes MIDI + piano rolls, scores them; metrics broadcast to all."""
        metrics = None
        if self.env.is_main:
            networks = {name: self.backend.module(name) for name in self.family.network_names}
            metrics = sampling.sample_round(
                self.family,
                networks,
                self.representation,
                self.run_dir / "samples" / label,
                num_samples=self.cfg.log.num_samples,
                metric_samples=self.cfg.log.metric_samples,
                length=self.cfg.curriculum.max_len,
                png=label == "final",
                logger=self.logger,
                step=self.state.step,
            )
            metrics.update(self.real_metrics or {})
        metrics = collectives.broadcast_object(metrics, "sample metrics")
        self.last_metrics = metrics
        return metrics

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        self.prepare_run_dir(resume, overwrite)
        if resume:
            resumed = self.resume()
            if self.env.is_main:
                print(
                    "[musicgan] "
                    + (
                        f"resuming from {self.last_checkpoint}"
                        if resumed
                        else "no checkpoint to resume: starting fresh"
                    ),
                    flush=True,
                )
        if self.logger is None:
            self.logger = RunLogger(
                self.run_dir,
                enabled=self.env.is_main,
                total_steps=self.total_steps,
                tensorboard=self.cfg.log.tensorboard,
                progress=self.cfg.log.progress,
                initial_step=self.state.step,
            )
        if self.env.is_main:
            self.real_metrics = sampling.real_metrics(self.cfg, self.representation, self.train_urls)
        try:
            with _stop_signals(self.stop):
                while True:
                    try:
                        finished = self.run_epochs()
                        break
                    except _Rollback:
                        self._rollback()
            if finished:
                if self.last_checkpoint is None or self.last_checkpoint.name != ckpt.checkpoint_name(self.state.step):
                    self.save()
                self._sample_round("final")
                self.logger.event("finished", self.state.step, epoch=self.state.epoch)
                if self.env.is_main:
                    (self.run_dir / "finished.json").write_text(json.dumps(self.state.to_dict()) + "\n")
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

    def _count_skipped(self, loader) -> None:
        """Corrupt samples the loader skipped (all ranks, summed), logged for the run."""
        local = torch.tensor([float(getattr(loader, "num_skipped", 0)), float(getattr(loader, "num_shard_errors", 0))])
        total = collectives.all_reduce_mean(local, "skipped sample count") * self.env.world_size
        skipped, shard_errors = (int(round(float(v))) for v in total)
        self.state.skipped_samples += skipped
        if skipped or shard_errors:
            self.logger.message(
                f"[musicgan] epoch {self.state.epoch}: {skipped} corrupt samples skipped "
                f"({self.state.skipped_samples} in total), {shard_errors} unreadable shard reads"
            )
        self.logger.event(
            "data",
            self.state.step,
            epoch=self.state.epoch,
            skipped_samples=skipped,
            skipped_samples_total=self.state.skipped_samples,
            shard_errors=shard_errors,
        )

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
        if self.env.is_main:
            reason = ", ".join(f"{r} on rank {i}" for i, r in enumerate(reasons) if r) or "stop requested"
            (self.run_dir / "stopped.json").write_text(
                json.dumps({"step": self.state.step, "reason": reason, "checkpoint": str(path)}) + "\n"
            )
            self.logger.event("stopped", self.state.step, reason=reason, checkpoint=str(path))
            self.logger.message(
                f"[musicgan] stopped at step {self.state.step} ({reason}); checkpoint {path}. "
                f"Resume with the same command plus --resume."
            )

    def _train_step(self, ctx: StepContext, phase, phase_start: int, batch) -> bool:
        """One trainer step of `phase` (engine.py); True when all ranks agreed to stop after it."""
        seed = step_seed(self.cfg.train.seed, self.env.rank, self.state.step)
        reseed(seed)
        plan = engine.StepPlan.at(phase, self.state.step - phase_start * self.batches_per_epoch)
        ctx.global_step, ctx.progress = self.state.step, self.state.step / max(self.total_steps, 1)
        out = engine.forward(plan, ctx, batch)
        external_stop = self.stop.reason is not None or (self.should_stop is not None and self.should_stop())
        reduced = engine.reduce(
            out, stop=external_stop, budget_spent=self._budget_spent(), what=f"losses at step {self.state.step}"
        )
        if reduced.budget_spent:
            self._end_at_window()
        # An agreed stop waits until the open accumulation window closes (at most
        # dist.grad_accum - 1 more steps), so its checkpoint holds no half window.
        boundary = self._closes_window()
        self._stop_requested = self._stop_requested or reduced.stop
        stop = self._stop_requested and boundary
        self.last_losses = {k: v for k, v in reduced.values.items() if k.startswith("loss/")}
        if reduced.nonfinite:
            self._diverged(batch, reduced.nonfinite_message())
            return stop
        report = engine.update(
            self.backend,
            plan,
            out,
            reduced,
            boundary=boundary,
            redo=lambda name: self._redo(plan, ctx, batch, seed, name),
        )
        engine.after_updates(plan, ctx, report)
        self.state.held = tuple(n for n in phase.networks if n in report.held)
        for name in report.updated:
            self.state.updates[name] = self.state.updates.get(name, 0) + 1
        self.last_values = report.values
        if report.refused:
            self._diverged(batch, "; ".join(report.refused))
        return stop

    def _redo(self, plan, ctx: StepContext, batch, seed: int, name: str) -> torch.Tensor:
        """`name`'s loss again on the same batch and noise (Phase.repeat)."""
        reseed(seed)
        again = engine.StepPlan(plan.phase, plan.step, frozenset({name}))
        return engine.forward(again, ctx, batch).losses[name]

    def _end_at_window(self) -> None:
        """Time budget spent (rank 0's clock, agreed by all): end like max_steps does, at the
        end of the open accumulation window."""
        if self.total_steps <= self.state.step + 1:
            return
        accum = self.cfg.dist.grad_accum
        self.total_steps = self.state.step + 1 + (accum - (self.state.step + 1) % accum) % accum
        self.logger.message(
            f"[musicgan] train.max_minutes={self.cfg.train.max_minutes} reached: finishing at step {self.total_steps}"
        )

    def _budget_spent(self) -> bool:
        """True on rank 0 once `train.max_minutes` of training have passed (0: no budget)."""
        budget = self.cfg.train.max_minutes
        return bool(budget and self.env.is_main and time.monotonic() - self._started > budget * 60)

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

    def _diverged(self, batch, what: str) -> None:
        """A non-finite loss or exploding gradient, seen identically by every rank."""
        keys = collectives.all_gather_object(list(batch.keys), "batch sources")
        sources = sorted({k for rank_keys in keys for k in rank_keys})
        policy = self.cfg.train.nonfinite
        self.logger.event("divergence", self.state.step, what=what, policy=policy, sources=sources)
        message = (
            f"[musicgan] divergence at step {self.state.step}: {what}; batch songs: "
            f"{', '.join(sources[:8])}{' ...' if len(sources) > 8 else ''}"
        )
        action = engine.divergence_action(
            policy,
            has_checkpoint=self.last_checkpoint is not None,
            rolled_back_here=self.state.step in self._rolled_back_at,
        )
        if action in ("skip", "skip-again"):
            self.state.skipped_steps += 1
            self.logger.message(
                message
                + (" -> step skipped" if action == "skip" else " -> diverged again after rolling back: step skipped")
            )
            return
        if action == "rollback":
            self._rolled_back_at.add(self.state.step)
            self.logger.message(
                message + f" -> rolling back to {self.last_checkpoint.name}, "
                f"learning rates x{self.cfg.train.rollback_lr_factor}"
            )
            raise _Rollback()
        last = self.last_checkpoint.name if self.last_checkpoint else "none written yet"
        raise DivergenceError(f"{message.removeprefix('[musicgan] ')}; stopped, last good checkpoint: {last}")

    def _rollback(self) -> None:
        scale = self.state.lr_scale * self.cfg.train.rollback_lr_factor
        skipped = self.state.skipped_steps + 1
        self._restore(self.last_checkpoint)
        self.state.lr_scale = scale
        self.state.skipped_steps = skipped
        self._apply_lrs()

    def _log_step(self, phase, seq_len: int, seconds: float) -> None:
        samples = self.cfg.log.interval * self.cfg.data.batch_size * self.env.world_size
        row = step_scalars(
            self.last_values,
            self.state,
            list(self.base_lr),
            seq_len=seq_len,
            epoch=self.state.epoch,
            samples_per_s=samples / max(seconds, 1e-9),
            lr_scale=self.state.lr_scale,
        )
        self.logger.scalars(self.state.step, row, phase=phase.name)


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
