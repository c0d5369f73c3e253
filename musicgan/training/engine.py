"""The step engine: one trainer step of any family on any backend, in a fixed order.

    plan      which networks train at this step of the phase (`Phase.trains`, a pure function)
    rates     each optimizer's learning rate for the step (`learning_rates`: the run's rate
              times the phase's `lr_factors`), set by the trainer before the forward
    forward   the phase's step function, told which networks train, returns their losses
    reduce    ONE payload (losses, stats, the non-finite flag, stop / budget flags), ONE
              all-reduce, ONE device-to-host copy: every rank decides from the same numbers
    decide    `Phase.hold` on the reduced values; non-finite values are a divergence
    update    each network of the phase: `backend.update` when it trains and is not held,
              else `backend.skip_update` (accumulation windows and engines stay aligned);
              `Phase.repeat` re-applies a loss on the same batch and noise
    after     `Phase.after_updates` (networks without an optimizer: EMA, rollout copy)

The engine knows no network name and no model rule. The divergence *policy* (skip, roll
back, stop) needs checkpoints and logs, so the trainer applies it from `divergence_action`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from musicgan.distributed import collectives
from musicgan.distributed.ddp import TrainBackend
from musicgan.errors import ConfigError
from musicgan.training.phases import Phase, StepContext, StepOutput


@dataclass(frozen=True)
class StepPlan:
    phase: Phase
    step: int  # step within the phase
    trains: frozenset[str]

    @classmethod
    def at(cls, phase: Phase, step: int) -> "StepPlan":
        return cls(phase, step, phase.trained_at(step))


@dataclass
class Reduced:
    """The all-reduced step: identical on every rank."""

    losses: list[str]  # networks with a loss, in the step's order
    values: dict[str, float]  # loss/<name> and every stat
    stop: bool  # some rank was asked to stop
    budget_spent: bool  # rank 0's time budget is spent
    nonfinite: bool  # some rank saw a non-finite loss or stat

    def nonfinite_message(self) -> str:
        return "non-finite loss " + ", ".join(f"{n}={self.values[f'loss/{n}']}" for n in self.losses)


@dataclass
class StepReport:
    values: dict[str, float]  # loss/<name>, stats, grad_norm/<name> of the updates taken
    held: frozenset[str] = frozenset()
    updated: list[str] = field(default_factory=list)  # networks whose update ran, in order
    refused: list[str] = field(default_factory=list)  # "<name> gradient norm N" per refused update

    @property
    def losses(self) -> dict[str, float]:
        return {k: v for k, v in self.values.items() if k.startswith("loss/")}


def check_repeat(phases: list[Phase], grad_accum: int) -> None:
    """`repeat` steps an engine several times per trainer step, which shifts DeepSpeed's
    accumulation boundary against the other engines' (docs/distributed-pitfalls.md)."""
    for phase in phases:
        if grad_accum > 1 and any(r > 1 for r in phase.repeat.values()):
            raise ConfigError(
                f"phase {phase.name} repeats an update per batch, which needs dist.grad_accum=1 (got {grad_accum})"
            )


def learning_rates(phase: Phase, ctx: StepContext, run_rates: dict[str, float], scale: float) -> dict[str, float]:
    """{name: rate} for this step: `run_rates` (the config's, PBT-mutated in a trial) times the
    rollbacks' `scale` times the phase's factor, so neither a schedule nor a rollback nor a
    PBT mutation overrides the others."""
    factors = phase.lr_factors(ctx) if phase.lr_factors is not None else {}
    unknown = set(factors) - set(run_rates)
    assert not unknown, f"phase {phase.name}: lr_factors named {sorted(unknown)}, which have no optimizer"
    return {name: rate * scale * factors.get(name, 1.0) for name, rate in run_rates.items()}


def set_learning_rates(backend: TrainBackend, phase: Phase, ctx: StepContext, run_rates, scale: float = 1.0) -> None:
    """`learning_rates` into the optimizers, before every step (a few float stores each)."""
    for name, rate in learning_rates(phase, ctx, run_rates, scale).items():
        backend.set_lr(name, rate)


def forward(plan: StepPlan, ctx: StepContext, batch) -> StepOutput:
    """The phase's step function for exactly the networks the plan trains."""
    ctx.trains, ctx.step = plan.trains, plan.step
    out = plan.phase.step(ctx, batch)
    assert set(out.losses) == set(plan.trains), (
        f"phase {plan.phase.name} returned losses for {sorted(out.losses)}, expected {sorted(plan.trains)}"
    )
    return out


def reduce(out: StepOutput, *, stop: bool, budget_spent: bool, what: str) -> Reduced:
    """ONE payload, ONE all-reduce, ONE device-to-host copy (the non-finite check is folded
    into the payload instead of one `float()` per value, each a sync on a GPU)."""
    names, stat_names = list(out.losses), sorted(out.stats)
    local = [out.losses[n].detach().float().reshape(()) for n in names]
    device = local[0].device if local else torch.device("cpu")
    local += [out.stats[k].detach().float().reshape(()).to(device) for k in stat_names]
    stacked = torch.stack(local) if local else torch.zeros(0, device=device)
    flags = torch.tensor([float(stop), float(budget_spent)], device=device)
    payload = torch.cat([stacked, (~torch.isfinite(stacked)).any().float().reshape(1), flags])
    reduced = collectives.all_reduce_mean(payload, what).cpu().tolist()
    keys = [f"loss/{n}" for n in names] + stat_names
    values = dict(zip(keys, reduced))
    nonfinite = reduced[-3] > 0 or not all(map(_finite, reduced[:-3]))
    return Reduced(names, values, stop=reduced[-2] > 0, budget_spent=reduced[-1] > 0, nonfinite=nonfinite)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def update(
    backend: TrainBackend,
    plan: StepPlan,
    out: StepOutput,
    reduced: Reduced,
    *,
    boundary: bool,
    redo: Callable[[str], torch.Tensor],
) -> StepReport:
    """Hold, then update or skip every network of the phase in its order (same on all ranks).
    `redo(name)` recomputes `name`'s loss on the same batch and noise (for `repeat`)."""
    report = StepReport(dict(reduced.values), held=plan.phase.held(reduced.values))
    backend.set_accumulation_boundary(boundary)
    for name in plan.phase.networks:
        if name in report.held or name not in plan.trains:
            _note(report, name, backend.skip_update(name))  # may close a window earlier steps filled
            continue
        for repeat in range(plan.phase.repeat.get(name, 1)):
            loss = out.losses[name] if repeat == 0 else redo(name)
            _note(report, name, backend.update(name, loss), trained=True)
    return report


def _note(report: StepReport, name: str, result, trained: bool = False) -> None:
    if trained:
        report.updated.append(name)
        report.values[f"grad_norm/{name}"] = result.grad_norm
    if result is not None and not result.applied:
        report.refused.append(f"{name} gradient norm {result.grad_norm:.3g}")


def after_updates(plan: StepPlan, ctx: StepContext, report: StepReport) -> None:
    """The phase's hook for networks no optimizer steps, given the networks that trained."""
    if plan.phase.after_updates is not None:
        plan.phase.after_updates(ctx, frozenset(report.updated))


def closes_window(
    step_after: int,
    *,
    grad_accum: int,
    total_steps: int,
    batch_after: int,
    batches_per_epoch: int,
    checkpoint_every: int,
) -> bool:
    """Does this trainer step end a window of `grad_accum` micro steps? Also at every step
    after which a checkpoint is written (epoch end, `log.checkpoint_every`, the last step),
    so no checkpoint holds half a window and resumes stay exact. Identical on all ranks."""
    return (
        grad_accum == 1
        or step_after % grad_accum == 0
        or step_after >= total_steps
        or batch_after >= batches_per_epoch
        or bool(checkpoint_every and step_after % checkpoint_every == 0)
    )


def end_of_window(step_after: int, grad_accum: int) -> int:
    """The first step count from `step_after` on that closes a window of `grad_accum` micro steps."""
    return step_after + (grad_accum - step_after % grad_accum) % grad_accum


class TimeBudget:
    """`train.max_minutes` (0: none) of this process's share of the run, on rank 0's clock
    only: the flag travels in the step's all-reduce, so every rank ends at the same step."""

    def __init__(self, minutes: float, is_main: bool) -> None:
        self.minutes, self.is_main = minutes, is_main
        self.started = time.monotonic()

    def spent(self) -> bool:
        return bool(self.minutes and self.is_main and time.monotonic() - self.started > self.minutes * 60)


def divergence_action(policy: str, *, has_checkpoint: bool, rolled_back_here: bool) -> str:
    """ "skip" | "skip-again" | "rollback" | "stop" for a step that diverged on every rank.
    The same step diverging again after a rollback is a bad batch (a NaN in the data):
    replaying it would loop forever, so it is skipped."""
    if policy == "skip":
        return "skip"
    if policy == "rollback" and has_checkpoint:
        return "skip-again" if rolled_back_here else "rollback"
    return "stop"
