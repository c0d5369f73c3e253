"""The DeepSpeed backend: one DeepSpeed engine per network, same interface as `DDPBackend`.

The only module of the package that imports deepspeed (lazily; install the `deepspeed`
extra). Every DeepSpeed trap of `docs/distributed-pitfalls.md` is handled here:

- One `deepspeed.initialize` per network, each from its own config dict derived from the
  config tree (`engine_config`) and optionally overridden by a user JSON.
- ONE `engine.backward` per engine per step (the model family sums D's real and fake
  losses), because under ZeRO 1/2 a second backward before `step()` silently replaces the
  first one's gradient. D's engine never runs inside G's step: the family calls D's plain
  module (`module("discriminator")`) with its parameters frozen.
- Gradient accumulation: the trainer decides where a window of micro steps ends
  (`set_accumulation_boundary`) and the engines are told explicitly, so both engines share
  every boundary on every rank whatever freezing skips. A frozen network adds nothing to the
  window; a window that ends while its network is frozen still applies what earlier micro
  steps accumulated (a zero-valued backward makes DeepSpeed reduce, then `step()`); a window
  with nothing accumulated never calls the optimizer, so momentum/Adam state does not move.
- Refused updates (non-finite or exploding global gradient norm) run DeepSpeed's whole
  `step()` with the torch optimizer's own step turned into a no-op, so DeepSpeed's
  bookkeeping (gradient buffers, partitions, counters) stays consistent.
- Checkpoints: `checkpoints/deepspeed/<network>/<tag>/` per engine (never one shared
  `latest`), written on every rank; the trainer's plain `.pt` is written beside it.
- CPU: `DS_ACCELERATOR=cpu`, gloo, fp32; GPU: NCCL, bf16 (torch autocast) where supported.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musicgan.distributed import collectives
from musicgan.distributed.ddp import OptimizerFactory, TrainBackend, UpdateResult
from musicgan.distributed.dispatch import MethodDispatch, bf16_autocast_supported
from musicgan.distributed.env import DistEnv
from musicgan.errors import ConfigError, UserError, first_line

log = logging.getLogger("musicgan")

ENGINE_DIR = "deepspeed"  # checkpoints/deepspeed/<network>/<tag>/
_TAG = re.compile(r"^step-(\d{8})$")
# Keys the trainer owns: a user JSON may not change them behind the loop's back.
_FORBIDDEN = {
    "optimizer": "the optimizer comes from optim.* (a torch optimizer; DeepSpeed's 'Adam' means AdamW)",
    "scheduler": "learning rates come from optim.* and the trainer's rollback policy",
}


class EngineCheckpointError(UserError):
    """A DeepSpeed engine checkpoint could not be written or read."""


def import_deepspeed():
    """`import deepspeed`, with its CPU accelerator on machines without CUDA."""
    if not torch.cuda.is_available():
        # Must be set before deepspeed is imported: it picks its accelerator once.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed
    except ImportError as exc:
        raise UserError(f"dist.backend=deepspeed needs DeepSpeed: pip install 'musicgan[deepspeed]' ({exc})") from None
    return deepspeed


# -- engine configs ------------------------------------------------------------------------------
def load_user_config(path: str | Path) -> dict:
    """The `--deepspeed-config` JSON: top-level keys apply to every engine, a section named
    after a network (`"generator": {...}`) to that engine only."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"DeepSpeed config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"DeepSpeed config {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"DeepSpeed config {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"DeepSpeed config {path} must hold a JSON object")
    return data


def check_sections(user: dict, model: str, network_names: tuple[str, ...], other_networks: set[str]) -> None:
    """A section named after a network this model does not have (e.g. `discriminator` for a
    model whose networks are `generator` and `critic`) would silently go to every engine."""
    for key in user:
        if key in other_networks and key not in network_names:
            raise ConfigError(
                f"DeepSpeed config section {key!r} names no network of model {model} "
                f"(its networks: {', '.join(network_names)})"
            )


def _merge(base: dict, override: dict) -> dict:
    """Recursive dict merge: `override` wins, nested objects merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def engine_config(
    cfg,
    name: str,
    *,
    world_size: int,
    bf16_supported: bool,
    user: dict | None = None,
    network_names: tuple[str, ...] = ("generator", "discriminator"),
) -> dict:
    """The DeepSpeed config dict of network `name`'s engine.

    Micro batch and accumulation are given and DeepSpeed derives `train_batch_size`, so the
    same config works at any world size. A torch optimizer is passed in, hence
    `zero_allow_untested_optimizer` (plain SGD under ZeRO >= 1).
    """
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.dist.grad_accum,
        "gradient_clipping": float(cfg.optim.grad_clip),
        "zero_optimization": {"stage": cfg.dist.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # the trainer logs; no DeepSpeed progress lines
        "wall_clock_breakdown": False,
    }
    if cfg.dist.precision == "bf16" and bf16_supported:
        # Autocast keeps fp32 master weights and fp32 inputs, so the plain modules (D inside
        # G's step, sampling) run unchanged; `"bf16": {"enabled": true}` would cast the
        # parameters themselves and every caller's inputs.
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    user = user or {}
    for key, why in _FORBIDDEN.items():
        for scope, section in [("", user)] + [(f"{n}.", user.get(n)) for n in network_names]:
            if isinstance(section, dict) and key in section:
                raise ConfigError(f"DeepSpeed config key {scope}{key!r} is not supported: {why}")
    common = {k: v for k, v in user.items() if k not in network_names}
    own = user.get(name, {})
    if not isinstance(own, dict):
        raise ConfigError(f"DeepSpeed config section {name!r} must be a JSON object")
    config = _merge(_merge(config, common), own)
    _check_batch_keys(cfg, name, config, world_size)
    _check_supported(name, config)
    return config


def _check_supported(name: str, config: dict) -> None:
    """Settings a user JSON could ask for that this GAN port cannot run correctly."""
    stage = (config.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (0, 1, 2):
        # G's step reads D's parameters outside D's engine; ZeRO-3 partitions them (wrong
        # numbers, silently: docs/distributed-pitfalls.md).
        raise ConfigError(f"DeepSpeed config ({name}): ZeRO stage {stage} is not supported; use 0, 1 or 2")
    for key in ("fp16", "bf16"):
        if isinstance(config.get(key), dict) and config[key].get("enabled"):
            # Casting the parameters breaks the fp32 callers of the plain modules (sampling,
            # D inside G's step); dist.precision=bf16 uses autocast with fp32 weights instead.
            raise ConfigError(
                f"DeepSpeed config ({name}): '{key}' is not supported; "
                "use --set dist.precision=bf16 (bf16 autocast on GPUs that support it)"
            )


def _check_batch_keys(cfg, name: str, config: dict, world_size: int) -> None:
    """The loop's batches and accumulation windows come from the config tree; a user JSON
    that disagrees would make DeepSpeed scale losses for a window the loop does not run."""
    if config["train_micro_batch_size_per_gpu"] != cfg.data.batch_size:
        raise ConfigError(
            f"DeepSpeed config ({name}): train_micro_batch_size_per_gpu={config['train_micro_batch_size_per_gpu']} "
            f"differs from data.batch_size={cfg.data.batch_size}; set data.batch_size instead"
        )
    if config["gradient_accumulation_steps"] != cfg.dist.grad_accum:
        raise ConfigError(
            f"DeepSpeed config ({name}): gradient_accumulation_steps={config['gradient_accumulation_steps']} "
            f"differs from dist.grad_accum={cfg.dist.grad_accum}; set dist.grad_accum instead"
        )
    total = cfg.data.batch_size * cfg.dist.grad_accum * world_size
    if "train_batch_size" in config and config["train_batch_size"] != total:
        raise ConfigError(
            f"DeepSpeed config ({name}): train_batch_size={config['train_batch_size']} must equal "
            f"data.batch_size x dist.grad_accum x world size = {total}; leave it out and DeepSpeed derives it"
        )


def _peer_failures_named(op: str, name: str):
    """DeepSpeed reduces gradients inside `backward` (ZeRO 0) or `step` (ZeRO 1/2 partitions):
    a peer that stalls or dies there reads like the trainer's own collectives."""
    return collectives.peer_failures_named(op, f"gradients of {name}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the backend ---------------------------------------------------------------------------------
class DeepSpeedBackend(TrainBackend):
    name = "deepspeed"

    def __init__(
        self,
        env: DistEnv,
        cfg,
        user_config: str | Path | dict | None = None,
        network_names: tuple[str, ...] = ("generator", "discriminator"),
        other_models_networks: set[str] = frozenset(),
    ) -> None:
        self.env = env
        self.cfg = cfg
        # Read (and reject) the user's JSON before the slow deepspeed import.
        if isinstance(user_config, (str, Path)):
            user_config = load_user_config(user_config)
        self.user_config: dict = user_config or {}
        check_sections(self.user_config, cfg.model.name, network_names, other_models_networks)
        for name in network_names:  # reject bad keys before the slow import
            engine_config(
                cfg,
                name,
                world_size=env.world_size,
                bf16_supported=False,
                user=self.user_config,
                network_names=network_names,
            )
        self.ds = import_deepspeed()
        self.networks: dict[str, nn.Module] = {}
        self.engines: dict[str, Any] = {}
        self.plain: dict[str, nn.Module] = {}  # networks without an optimizer (none in the GANs)
        self.torch_optimizers: dict[str, torch.optim.Optimizer] = {}
        self.engine_configs: dict[str, dict] = {}
        self._boundary = True  # does the current trainer step close an accumulation window?
        self._pending: dict[str, bool] = {}  # name -> gradients accumulated in the open window
        self._last_norm: dict[str, float] = {}
        self._norm_before_step: dict[str, float | None] = {}
        self._refused: dict[str, bool] = {}
        self._force_refuse = False
        self._created_group = False

    # -- set-up --------------------------------------------------------------------------------
    def _init_comm(self) -> None:
        """DeepSpeed's comm layer on top of the trainer's process group (gloo on CPU, NCCL on
        GPU). One process: create a one-rank group, or DeepSpeed would try MPI."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
                os.environ.setdefault(key, value)
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            self._created_group = True
        backend = "nccl" if self.env.device.type == "cuda" else "gloo"
        self.ds.init_distributed(
            dist_backend=backend,
            auto_mpi_discovery=False,
            verbose=False,
            timeout=datetime.timedelta(seconds=self.cfg.dist.timeout_s),
        )

    def _bf16_supported(self) -> bool:
        # One rule for both backends (dispatch.py): bf16 autocast on CUDA devices with bf16.
        return bf16_autocast_supported(self.env.device)

    def setup(self, networks: dict[str, nn.Module], optimizers: dict[str, OptimizerFactory]) -> None:
        self._init_comm()
        bf16 = self._bf16_supported()
        if self.cfg.dist.precision == "bf16" and not bf16 and self.env.is_main:
            log.warning("dist.precision=bf16 is not supported on %s: training in fp32", self.env.device)
        names = tuple(networks)
        for name, net in networks.items():
            net.to(self.env.device)
            self.networks[name] = net
            params = [p for p in net.parameters() if p.requires_grad]
            if name not in optimizers or not params:
                self.plain[name] = MethodDispatch(net)
                continue
            optimizer = optimizers[name](params)
            self._guard(name, optimizer)
            config = engine_config(
                self.cfg,
                name,
                world_size=self.env.world_size,
                bf16_supported=bf16,
                user=self.user_config,
                network_names=names,
            )
            try:
                engine, _, _, _ = self.ds.initialize(model=MethodDispatch(net), optimizer=optimizer, config=config)
            except (ValueError, AssertionError, TypeError, KeyError) as exc:
                raise ConfigError(f"DeepSpeed rejected the {name} engine's config: {first_line(exc)}") from None
            self.engines[name] = engine
            self.torch_optimizers[name] = optimizer
            self.engine_configs[name] = config
            self._pending[name] = False

    def _guard(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Make the torch optimizer's step refuse a non-finite or exploding gradient.

        DeepSpeed calls it inside `engine.step()` after reducing, clipping and (ZeRO) computing
        the global norm; returning without updating lets DeepSpeed finish its bookkeeping
        (zeroed gradients, consistent partitions) with the weights and optimizer state untouched.
        """
        original = optimizer.step

        def guarded_step(*args, **kwargs):
            norm = self._current_norm(name)
            if self._force_refuse or not math.isfinite(norm) or norm > self.cfg.train.max_grad_norm:
                self._refused[name] = True
                return None
            return original(*args, **kwargs)

        optimizer.step = guarded_step  # instance attribute: shadows the class's step

    def _current_norm(self, name: str) -> float:
        """Global L2 gradient norm (all ranks agree) of the step being taken, before clipping."""
        precomputed = self._norm_before_step.get(name)
        if precomputed is not None:
            return precomputed
        norm = getattr(self.engines[name].optimizer, "_global_grad_norm", None)  # ZeRO / bf16 optimizers
        return float(norm) if norm is not None else 0.0

    def _grads_norm(self, name: str) -> float:
        """Norm of the reduced gradients in `.grad` (no ZeRO: DeepSpeed all-reduced them in
        the boundary backward, so every rank holds the same, averaged gradient)."""
        grads = [p.grad.detach() for p in self.networks[name].parameters() if p.grad is not None]
        if not grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))

    # -- forwards ------------------------------------------------------------------------------
    def train_module(self, name: str) -> nn.Module:
        return self.engines[name] if name in self.engines else self.plain[name]

    def module(self, name: str) -> nn.Module:
        return self.networks[name]

    def penalty_module(self, name: str) -> nn.Module:
        """The engine's own module, not the engine: a double backward through the engine's
        forward fails at ZeRO 0/1/2 (docs/distributed-pitfalls.md); `engine.backward(loss)`
        still reduces the gradients, so ranks agree."""
        return self.engines[name].module if name in self.engines else self.plain[name]

    # -- updates -------------------------------------------------------------------------------
    def set_accumulation_boundary(self, boundary: bool) -> None:
        self._boundary = bool(boundary)

    def update(self, name: str, loss: torch.Tensor) -> UpdateResult:
        engine = self.engines[name]
        engine.set_gradient_accumulation_boundary(self._boundary)
        # ONE backward per engine per trainer step (docs/distributed-pitfalls.md, lost gradients).
        with _peer_failures_named("all_reduce", name):
            engine.backward(loss)
        self._pending[name] = True
        if not self._boundary:
            with _peer_failures_named("deepspeed_step", name):
                engine.step()  # inside a window: DeepSpeed only counts the micro step
            return UpdateResult(self._last_norm.get(name, 0.0), applied=True)
        return self._step(name)

    def skip_update(self, name: str) -> UpdateResult | None:
        """Freezing skips `name` this step: it adds nothing to the window. If the window ends
        here and earlier micro steps accumulated gradients, apply them (as DDP does)."""
        if not (self._boundary and self._pending.get(name)):
            return None
        self._zero_backward(name)
        return self._step(name)

    def _zero_backward(self, name: str) -> None:
        """A backward that adds exactly zero to every gradient, at a boundary: DeepSpeed
        reduces (ZeRO 1/2: partitions) the window's gradients inside `backward`."""
        engine = self.engines[name]
        engine.set_gradient_accumulation_boundary(True)
        params = [p for p in self.networks[name].parameters() if p.requires_grad]
        zero = torch.stack([p.sum() for p in params]).sum() * 0.0
        with _peer_failures_named("all_reduce", name):
            engine.backward(zero)

    def _step(self, name: str) -> UpdateResult:
        """Close the window: DeepSpeed's step (clip, optimizer, zero grads), guarded."""
        engine = self.engines[name]
        plain_optimizer = engine.optimizer is self.torch_optimizers[name]  # no ZeRO, no bf16 wrapper
        self._norm_before_step[name] = self._grads_norm(name) if plain_optimizer else None
        self._refused[name] = False
        with _peer_failures_named("deepspeed_step", name):
            engine.step()
        norm = self._norm_before_step[name]
        if norm is None:
            global_norm = engine.get_global_grad_norm()
            norm = float(global_norm) if global_norm is not None else 0.0
        self._norm_before_step[name] = None
        self._pending[name] = False
        applied = bool(engine.was_step_applied()) and not self._refused[name]
        self._last_norm[name] = norm
        return UpdateResult(norm, applied)

    def _discard_window(self) -> None:
        """Drop half-accumulated gradients (resume, rollback) through DeepSpeed's own step
        with the optimizer refusing, so no internal buffer keeps stale gradients."""
        self._force_refuse = True
        try:
            for name, pending in self._pending.items():
                if pending:
                    self._zero_backward(name)
                    self._step(name)
        finally:
            self._force_refuse = False

    # -- optimizer state and learning rates --------------------------------------------------
    def optimizer_state(self) -> dict[str, dict]:
        # Under ZeRO the optimizer state is partitioned across ranks: the engine checkpoints
        # (`save_extra`) hold it, not the plain .pt.
        return {}

    def load_optimizer_state(self, states: dict[str, dict]) -> None:
        """Plain-checkpoint optimizer states are ignored: `load_extra` restores the engines'."""

    def set_lr(self, name: str, lr: float) -> None:
        for group in self.torch_optimizers[name].param_groups:
            group["lr"] = lr

    def get_lr(self, name: str) -> float:
        return float(self.torch_optimizers[name].param_groups[0]["lr"])

    # -- checkpoints -----------------------------------------------------------------------------
    def engine_dir(self, directory: Path, name: str) -> Path:
        return Path(directory) / ENGINE_DIR / name

    def save_extra(self, directory: Path, tag: str) -> None:
        """Every rank: each engine saves into its own directory with an explicit tag."""
        error = None
        for name, engine in self.engines.items():
            try:
                engine.save_checkpoint(
                    str(self.engine_dir(directory, name)), tag=tag, save_latest=False, client_state={"network": name}
                )
            except (OSError, RuntimeError) as exc:  # torch.save: a full disk is a RuntimeError
                where = self.engine_dir(directory, name) / tag
                error = f"could not write DeepSpeed checkpoint {where}: {first_line(exc)}"
                break
        # Every rank learns whether any rank failed, so all raise (or none) at the same point.
        errors = [e for e in collectives.all_gather_object(error, "DeepSpeed checkpoint result") if e]
        if errors:
            raise EngineCheckpointError(errors[0])
        if self.env.is_main:
            self._prune(Path(directory), tag)

    def _prune(self, directory: Path, current: str) -> None:
        """Remove engine tags older than `current` whose plain .pt is gone (pruned by the
        trainer's keep-K policy, or never written because that save failed)."""
        current_step = int(_TAG.match(current).group(1)) if _TAG.match(current) else None
        for name in self.engines:
            root = self.engine_dir(directory, name)
            if current_step is None or not root.is_dir():
                continue
            for tag_dir in root.iterdir():
                match = _TAG.match(tag_dir.name)
                if (
                    match
                    and tag_dir.is_dir()
                    and int(match.group(1)) < current_step
                    and not (directory / f"{tag_dir.name}.pt").exists()
                ):
                    shutil.rmtree(tag_dir, ignore_errors=True)

    def load_extra(self, directory: Path, tag: str) -> None:
        """Every rank: restore each engine (weights, optimizer state, fp32 master partitions)."""
        self._discard_window()
        for name, engine in self.engines.items():
            root = self.engine_dir(directory, name)
            present = collectives.broadcast_object((root / tag).is_dir(), "DeepSpeed checkpoint lookup")
            if not present:
                # E.g. a DDP run resumed with DeepSpeed: weights come from the plain .pt.
                if self.env.is_main:
                    log.warning(
                        "no DeepSpeed checkpoint %s: %s weights from the plain checkpoint, fresh optimizer state",
                        root / tag,
                        name,
                    )
                refresh = getattr(engine.optimizer, "refresh_fp32_params", None)
                if refresh is not None:
                    refresh()  # ZeRO keeps fp32 master copies: take the loaded weights
                continue
            try:
                loaded, _ = engine.load_checkpoint(
                    str(root),
                    tag=tag,
                    load_module_strict=True,
                    load_optimizer_states=True,
                    load_lr_scheduler_states=False,
                )
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise EngineCheckpointError(
                    f"cannot load DeepSpeed checkpoint {root / tag}: {first_line(exc)}"
                ) from None
            if loaded is None:
                raise EngineCheckpointError(f"cannot load DeepSpeed checkpoint {root / tag}")

    # -- teardown --------------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy the engines before the process group goes (aborts at exit otherwise)."""
        for engine in self.engines.values():
            try:
                engine.destroy()
            except Exception as exc:  # noqa: BLE001 - teardown must not mask the run's own error
                log.debug("DeepSpeed engine teardown: %s", exc)
        self.engines.clear()
        if self._created_group and torch.distributed.is_initialized():
            try:
                torch.distributed.destroy_process_group()
            except Exception:  # noqa: BLE001
                pass
            self._created_group = False
