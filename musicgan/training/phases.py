"""GAN schedules as data: a model family returns a table of phases; the step engine walks it.

How a family declares its training (the generic engine knows no network name):

- **Networks**: `ModelFamily.build_networks()` returns `{name: nn.Module}`; the names are
  data (checkpoints, logs `loss/<name>`, DeepSpeed sections, Tune read them). A network the
  family gives no optimizer (`ModelFamily.optimizers()` / `learning_rates()` leave it out:
  a SeqGAN rollout copy, a generator EMA) is saved and restored like the others and is
  changed only by `Phase.after_updates`, which runs identically on every rank.
- **Phase**: `Phase(name, epochs, networks, step, trains=..., hold=..., repeat=...)`.
  `networks` are the networks the phase trains, in update order (G before D when G's loss
  graph holds D's weights, which D's step changes in place).
- **trains(step) -> names**: which of `networks` train at this step of the phase (0-based,
  counted from the phase's first step). A pure function of the counter, so every rank and
  every resume agree: `every({"generator": 5}, networks)` is WGAN-GP's n_critic = 5 (D each step, G on
  every 5th), warm-up rules and lazy-regularisation intervals are other pure functions.
  Default: all of `networks` at every step.
- **hold(values) -> names**: networks to skip at this step, decided from the step's
  ALL-REDUCED scalars (`loss/<name>` for each loss plus every stat the step returned), so
  ranks take the same branch: C-RNN-GAN's freezing. Default: hold nothing.
- A network that is not trained (or held) at a step takes the backend's `skip_update`, so
  gradient-accumulation windows and DeepSpeed engines stay aligned.
- **lr_factors(ctx) -> {name: factor}**: this step's learning rate of a network as a factor
  on the run's rate (the config's, possibly PBT-mutated, times the divergence rollbacks'
  scale), set by the trainer before the step: SeqGAN's adversarial rate, MuseGAN's linear
  decay. A pure function of `ctx` (its `global_step`), so a resume is exact. Default: 1.
- **repeat**: `{name: r}` applies that network's loss r times per step on the same batch
  and the same noise (MidiNet's two G updates per batch); the step function is called again
  with `ctx.trains == {name}`.
- **step(ctx, batch) -> StepOutput**: computes one loss per name in `ctx.trains` (and only
  those: skip forwards nobody needs) plus detached stats. `ctx.run(name, method, ...)`
  forwards through the training wrapper (gradients flow to `name`), `ctx.frozen(name)`
  gives the plain module with its parameters frozen (D inside G's step), and
  `ctx.run_for_penalty(...)` is the forward for a loss differentiated twice (WGAN-GP).
- **Progress**: `ctx.step` (step within the phase), `ctx.global_step`, `ctx.progress`
  (fraction of the run's steps done, in [0, 1]) for schedules such as learning-rate decay
  or progressive growing, `ctx.steps_per_epoch` (so a phase knows its own length in steps:
  a fade-in's blend); all identical on every rank.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import torch

if TYPE_CHECKING:
    from musicgan.config import Config
    from musicgan.data.loader import Batch
    from musicgan.distributed.ddp import TrainBackend


# -- a plain network's state for the duration of a block (restored however the block ends) -------
@contextmanager
def frozen_parameters(network: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`network` with requires_grad off (gradients flow through it to its inputs and none
    accumulate in it: D inside G's step), then on again."""
    network.requires_grad_(False)
    try:
        yield network
    finally:
        network.requires_grad_(True)


@torch.no_grad()
def follow(target: torch.nn.Module, source: torch.nn.Module, keep: float, exact: str = "") -> None:
    """target <- keep * target + (1 - keep) * source, parameter by parameter (an EMA, SeqGAN's
    rollout copy); parameters whose name starts with `exact` (when given) are copied."""
    sources = dict(source.named_parameters())
    for name, parameter in target.named_parameters():
        if exact and name.startswith(exact):
            parameter.copy_(sources[name])
        else:
            parameter.lerp_(sources[name], 1.0 - keep)


@contextmanager
def in_mode(module: torch.nn.Module, training: bool = False) -> Iterator[torch.nn.Module]:
    """`module` in eval mode (or `training`'s mode: dropout, batch statistics), then back in
    the mode it had: `generate` runs mid-training, and D scores rewards without dropout."""
    was_training = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was_training)


@dataclass
class StepContext:
    """What a phase's step function may use: the networks (through the backend), the config
    and where in the run this step is."""

    cfg: "Config"
    backend: "TrainBackend"
    device: torch.device
    seq_len: int
    trains: frozenset[str] = frozenset()  # networks whose loss this call must return
    step: int = 0  # step within the phase (0-based)
    global_step: int = 0  # trainer step of the run (0-based)
    progress: float = 0.0  # global_step / total steps of the run
    steps_per_epoch: int = 1  # trainer steps of one epoch (a phase of E epochs lasts E * this)

    def run(self, name: str, method: str, *args, **kwargs):
        """Forward through the training wrapper of `name` (DDP / engine): gradients flow to it."""
        return self.backend.train_module(name)(method, *args, **kwargs)

    def run_for_penalty(self, name: str, method: str, *args, **kwargs):
        """`run` for a graph that is differentiated twice (a gradient penalty; a forward two
        backward passes read, as C-RNN-GAN's shared D forward): each backend picks the
        forward that works through (DDP wrapper / engine.module)."""
        return self.backend.penalty_module(name)(method, *args, **kwargs)

    def module(self, name: str) -> torch.nn.Module:
        """The plain network: for frozen forwards (D inside G's step) and parameters."""
        return self.backend.module(name)

    def frozen(self, name: str) -> AbstractContextManager[torch.nn.Module]:
        """The plain network with its parameters frozen, so gradients flow only through it
        (never the D wrapper / engine inside G's step: docs/distributed-pitfalls.md)."""
        return frozen_parameters(self.module(name))


@dataclass
class StepOutput:
    losses: dict[str, torch.Tensor]  # network name -> scalar loss that updates it
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars: logged, seen by `hold`


StepFn = Callable[[StepContext, "Batch"], StepOutput]
TrainsFn = Callable[[int], "frozenset[str] | set[str]"]
HoldFn = Callable[[dict[str, float]], "set[str]"]
AfterFn = Callable[[StepContext, "frozenset[str]"], None]
LrFn = Callable[[StepContext], "dict[str, float]"]


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int | None  # None: until the end of the run
    networks: tuple[str, ...]  # networks the phase trains, in update order
    step: StepFn
    trains: TrainsFn | None = None  # step of the phase -> names trained then (None: all, always)
    hold: HoldFn | None = None  # all-reduced values -> names skipped this step (None: none)
    repeat: dict[str, int] = field(default_factory=dict)  # name -> applications per step (default 1)
    # After the updates, on every rank: (ctx, names whose update was applied) -> None. For
    # networks no optimizer steps (EMA, rollout copy); must be deterministic.
    after_updates: AfterFn | None = None
    curriculum: bool = True  # sequence length follows the curriculum (else curriculum.max_len)
    lr_factors: LrFn | None = None  # (ctx) -> {name: factor on the run's rate} (None: 1 for all)

    def trained_at(self, step: int) -> frozenset[str]:
        """Networks trained at `step` of this phase, in no particular order."""
        names = frozenset(self.networks if self.trains is None else self.trains(step))
        unknown = names - set(self.networks)
        assert not unknown, f"phase {self.name}: trains() named {sorted(unknown)}, not in {self.networks}"
        return names

    def held(self, values: dict[str, float]) -> frozenset[str]:
        return frozenset(self.hold(values)) if self.hold is not None else frozenset()


def every(periods: dict[str, int], networks: tuple[str, ...]) -> TrainsFn:
    """A `trains` hook: network n trains on the last step of each run of `periods[n]` steps
    (1 when absent: every step). n_critic = 5 is `every({"generator": 5}, networks)`."""

    def trains(step: int) -> frozenset[str]:
        return frozenset(n for n in networks if (step + 1) % periods.get(n, 1) == 0)

    return trains


def phase_for_epoch(phases: list[Phase], epoch: int) -> tuple[Phase, int]:
    """(phase, first epoch of that phase) for a 0-based epoch; the last phase runs on."""
    start = 0
    for phase in phases:
        if phase.epochs is None or epoch < start + phase.epochs:
            return phase, start
        start += phase.epochs
    return phases[-1], start - (phases[-1].epochs or 0)
