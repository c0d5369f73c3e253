"""The DDP backend: one DistributedDataParallel wrapper and one torch optimizer per network.

A backend owns the networks' training wrappers and optimizers; the loop only asks it for
a module to run, and to apply an update. `musicgan/distributed/deepspeed.py` implements the
same interface with one DeepSpeed engine per network.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from musicgan.distributed import collectives
from musicgan.distributed.dispatch import MethodDispatch, bf16_autocast_supported
from musicgan.distributed.env import DistEnv

log = logging.getLogger("musicgan")

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class UpdateResult:
    grad_norm: float  # global L2 norm of the (all-reduced) gradient before clipping
    applied: bool  # False when the step was refused (non-finite or exploding gradient)


class TrainBackend:
    """Interface shared by the DDP and DeepSpeed backends."""

    name = "base"

    def setup(self, networks: dict[str, nn.Module], optimizers: dict[str, OptimizerFactory]) -> None:
        raise NotImplementedError

    def train_module(self, name: str) -> nn.Module:
        """Callable as `m(method, *args)` for a forward whose loss updates `name` (DDP / engine)."""
        raise NotImplementedError

    def module(self, name: str) -> nn.Module:
        """The plain network (frozen forwards, sampling, state dicts)."""
        raise NotImplementedError

    def penalty_module(self, name: str) -> nn.Module:
        """Like `train_module`, for a forward whose graph is differentiated twice (a gradient
        penalty; C-RNN-GAN's shared D forward, whose graph G's input-only backward reads
        before D's). DDP: the wrapper itself, run ONCE per backward on cat(real, fake, x̂)
        (exact; never static_graph, which is silently wrong with a penalty)."""
        return self.train_module(name)

    def update(self, name: str, loss: torch.Tensor) -> UpdateResult:
        raise NotImplementedError

    def skip_update(self, name: str) -> UpdateResult | None:
        """Called instead of `update` when freezing skips `name` this step (keeps counters
        aligned). Returns the update's result when it closed an accumulation window that
        earlier micro steps filled, else None."""

    def set_accumulation_boundary(self, boundary: bool) -> None:
        """Called once per trainer step, before its updates: True when this step closes a
        window of `dist.grad_accum` micro steps (always True at grad_accum=1)."""

    def optimizer_state(self) -> dict[str, dict]:
        raise NotImplementedError

    def load_optimizer_state(self, states: dict[str, dict]) -> None:
        raise NotImplementedError

    def set_lr(self, name: str, lr: float) -> None:
        raise NotImplementedError

    def get_lr(self, name: str) -> float:
        raise NotImplementedError

    def save_extra(self, directory: Path, tag: str) -> None:
        """Backend-specific checkpoint files (every rank calls it); DDP has none."""

    def load_extra(self, directory: Path, tag: str) -> None:
        """Restore what `save_extra` wrote; DDP has none."""

    def close(self) -> None:
        """Release engines before the process group goes away."""


class DDPBackend(TrainBackend):
    name = "ddp"

    def __init__(
        self, env: DistEnv, grad_clip: float, max_grad_norm: float, grad_accum: int = 1, precision: str = "fp32"
    ) -> None:
        self.env = env
        # dist.precision=bf16: forwards of trained networks under bf16 autocast (see dispatch.py).
        self.autocast_dtype = None
        if precision == "bf16":
            if bf16_autocast_supported(env.device):
                self.autocast_dtype = torch.bfloat16
            elif env.is_main:
                log.warning("dist.precision=bf16 is not supported on %s: training in fp32", env.device)
        self.grad_clip = grad_clip
        self.max_grad_norm = max_grad_norm
        # Gradient accumulation, same semantics as the DeepSpeed backend: each micro step adds
        # loss / grad_accum to .grad; the optimizer steps when the trainer closes the window.
        self.grad_accum = grad_accum
        self._boundary = True
        self._pending: dict[str, bool] = {}  # name -> gradients accumulated in the open window
        self._last_norm: dict[str, float] = {}
        self.networks: dict[str, nn.Module] = {}
        self.wrappers: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def setup(self, networks, optimizers) -> None:
        for name, net in networks.items():
            net.to(self.env.device)
            self.networks[name] = net
            params = [p for p in net.parameters() if p.requires_grad]
            dispatch = MethodDispatch(net, self.autocast_dtype)
            if self.env.distributed and params and name in optimizers:
                # broadcast_buffers=False: with the default, "D on real, D on fake, one
                # backward" raises an in-place error on torch >= 2.6 (docs/distributed-pitfalls.md).
                # Our networks have no buffers; torch 2.13 calls the flag deprecated but its
                # replacement (forward_sync_buffers) still syncs at init, which is harmless.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                    self.wrappers[name] = DistributedDataParallel(
                        dispatch,
                        device_ids=[self.env.device.index] if self.env.device.type == "cuda" else None,
                        broadcast_buffers=False,
                    )
            else:  # one process, or a network no optimizer steps (EMA, rollout copy)
                self.wrappers[name] = dispatch
            if name in optimizers and params:
                self.optimizers[name] = optimizers[name](params)

    def train_module(self, name: str) -> nn.Module:
        return self.wrappers[name]

    def module(self, name: str) -> nn.Module:
        return self.networks[name]

    def set_accumulation_boundary(self, boundary: bool) -> None:
        self._boundary = bool(boundary)

    def update(self, name: str, loss: torch.Tensor) -> UpdateResult:
        optimizer = self.optimizers[name]
        if not self._pending.get(name):
            optimizer.zero_grad(set_to_none=True)  # a new window starts from zero
        # DDP all-reduces the gradients here, so the norm below is global; a peer that stalls
        # or dies surfaces here too, named like the trainer's own collectives.
        with collectives.peer_failures_named("all_reduce", f"gradients of {name}"):
            (loss / self.grad_accum if self.grad_accum > 1 else loss).backward()
        self._pending[name] = True
        if not self._boundary:
            return UpdateResult(self._last_norm.get(name, 0.0), applied=True)
        return self._apply(name)

    def skip_update(self, name: str) -> UpdateResult | None:
        # Frozen this micro step; a window that ends here still applies what it accumulated.
        if self._boundary and self._pending.get(name):
            return self._apply(name)
        return None

    def _apply(self, name: str) -> UpdateResult:
        optimizer = self.optimizers[name]
        self._pending[name] = False
        params = [p for p in self.networks[name].parameters() if p.grad is not None]
        clip = self.grad_clip if self.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip)) if params else 0.0
        self._last_norm[name] = norm
        # Every rank sees the same all-reduced gradient, hence the same norm and decision.
        if not math.isfinite(norm) or norm > self.max_grad_norm:
            optimizer.zero_grad(set_to_none=True)
            return UpdateResult(norm, applied=False)
        optimizer.step()
        return UpdateResult(norm, applied=True)

    def load_extra(self, directory: Path, tag: str) -> None:
        # Restoring (resume, rollback) drops a half-accumulated window.
        self._pending.clear()
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def optimizer_state(self) -> dict[str, dict]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_optimizer_state(self, states: dict[str, dict]) -> None:
        for name, state in states.items():
            if name in self.optimizers:
                self.optimizers[name].load_state_dict(state)

    def set_lr(self, name: str, lr: float) -> None:
        for group in self.optimizers[name].param_groups:
            group["lr"] = lr

    def get_lr(self, name: str) -> float:
        return float(self.optimizers[name].param_groups[0]["lr"])
