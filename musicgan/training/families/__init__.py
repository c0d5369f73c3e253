"""Model families: what to build, how to train it (a phase table), how to sample from it.

A family is the only place that knows a model's losses; the loop, the backends, the
checkpoints and the CLI are shared by all of them. Register a new family with
`@register("name")`; `model.name` in the config picks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from musicgan.errors import ConfigError

if TYPE_CHECKING:
    from musicgan.config import Config
    from musicgan.data.representations import Representation
    from musicgan.training.phases import Phase

FAMILIES: dict[str, type["ModelFamily"]] = {}


def register(name: str) -> Callable[[type["ModelFamily"]], type["ModelFamily"]]:
    def add(cls: type["ModelFamily"]) -> type["ModelFamily"]:
        FAMILIES[name] = cls
        cls.name = name
        return cls

    return add


class ModelFamily:
    name = "base"
    # Network names; "generator" is what sampling runs. Plain checkpoints always hold
    # `generator` and `discriminator` keys (empty dict for families without a D).
    network_names: tuple[str, ...] = ("generator", "discriminator")

    def __init__(self, cfg: "Config") -> None:
        self.cfg = cfg

    def build_representation(self) -> "Representation":
        from musicgan.data.representations import build_representation

        d = self.cfg.data
        if d.representation == "events":
            return build_representation(
                "events", tones_per_step=d.tones_per_step, pitch_unit=d.pitch_unit, time_unit=d.time_unit
            )
        if d.representation == "pianoroll":
            return build_representation("pianoroll", frames_per_beat=d.frames_per_beat, transpose=d.transpose)
        return build_representation(d.representation)

    def build_networks(self, representation: "Representation") -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, Callable]:
        """One torch optimizer factory per trained network, from `cfg.optim`."""
        o = self.cfg.optim
        lrs = {"generator": o.g_lr, "discriminator": o.d_lr}

        def factory(lr: float):
            if o.optimizer == "adam":
                return lambda params: torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2))
            if o.optimizer == "rmsprop":  # torch's defaults (alpha 0.99, eps 1e-8); Keras' rho is 0.9
                return lambda params: torch.optim.RMSprop(params, lr=lr)
            return lambda params: torch.optim.SGD(params, lr=lr, momentum=o.momentum)

        return {name: factory(lrs.get(name, o.g_lr)) for name in self.network_names}

    def phases(self) -> list["Phase"]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, networks: dict[str, nn.Module], num: int, length: int) -> np.ndarray:
        """(num, length, F) steps in the representation's space, networks in eval mode."""
        raise NotImplementedError


def get_family(cfg: "Config") -> ModelFamily:
    _import_builtin_families()
    if cfg.model.name not in FAMILIES:
        raise ConfigError(f"model.name={cfg.model.name!r} is not one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[cfg.model.name](cfg)


def _import_builtin_families() -> None:
    # Imported here, not at module top, so `config.py` can list families without pulling
    # every model in at import time of the package.
    import importlib

    for module in ("crnngan", "rbm", "notes", "spectral"):
        try:
            importlib.import_module(f"musicgan.training.families.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"musicgan.training.families.{module}":
                raise


_import_builtin_families()
