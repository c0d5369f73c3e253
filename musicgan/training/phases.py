"""GAN schedules as data: a model family returns a table of phases; the loop walks it.

A phase says for how many epochs it runs, which networks it updates (in order) and which
function computes its losses from a batch; freezing and the curriculum are flags of the
phase, not branches in the loop (stylegan2-ada's `phases` list, in spirit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from musicgan.config import Config
    from musicgan.data.loader import Batch
    from musicgan.distributed.ddp import TrainBackend


@dataclass
class StepContext:
    """What a phase's step function may use: the networks (through the backend) and config."""

    cfg: "Config"
    backend: "TrainBackend"
    device: torch.device
    seq_len: int

    def run(self, name: str, method: str, *args, **kwargs):
        """Forward through the training wrapper of `name` (DDP / engine): gradients flow to it."""
        return self.backend.train_module(name)(method, *args, **kwargs)

    def module(self, name: str) -> torch.nn.Module:
        """The plain network: for frozen forwards (D inside G's step) and parameters."""
        return self.backend.module(name)


@dataclass
class StepOutput:
    losses: dict[str, torch.Tensor]  # network name -> scalar loss that updates it
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars to log
    # Losses the freezing rule compares, when they differ from `losses` (feature matching
    # trains G on a distance whose scale has nothing to do with D's log-loss, so the rule
    # compares D's loss with G's adversarial loss instead). Keys: generator, discriminator.
    freeze_on: dict[str, torch.Tensor] | None = None


StepFn = Callable[[StepContext, "Batch"], StepOutput]


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int | None  # None: until the end of the run
    updates: tuple[str, ...]  # networks updated, in this order
    step: StepFn
    freezing: bool = False  # apply the θ_D / θ_G rule between discriminator and generator
    curriculum: bool = True  # sequence length follows the curriculum (else curriculum.max_len)


def phase_for_epoch(phases: list[Phase], epoch: int) -> tuple[Phase, int]:
    """(phase, first epoch of that phase) for a 0-based epoch; the last phase runs on."""
    start = 0
    for phase in phases:
        if phase.epochs is None or epoch < start + phase.epochs:
            return phase, start
        start += phase.epochs
    return phases[-1], start - (phases[-1].epochs or 0)
