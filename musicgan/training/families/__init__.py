"""Model families: what to build, how to train it (a phase table), how to sample from it.

A family is the only place that knows a model's losses; the loop, the backends, the
checkpoints and the CLI are shared by all of them. Register a new family with
`@register("name")` and list its module in `musicgan/model_names.py`; `model.name` in the
config picks it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from musicgan.config import get_value
from musicgan.errors import ConfigError
from musicgan.model_names import FAMILY_MODULES

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
    # Every network of the family, trained or not (an EMA or rollout copy has no optimizer);
    # checkpoints, logs, DeepSpeed sections and Tune read the names from here.
    network_names: tuple[str, ...] = ("generator", "discriminator")
    # The config key of each TRAINED network's learning rate: the networks listed here get
    # an optimizer, the others none.
    learning_rate_keys: dict[str, str] = {"generator": "optim.g_lr", "discriminator": "optim.d_lr"}
    # Config keys of the loss-based freezing thresholds the family's step reads (C-RNN-GAN's
    # θ_D, θ_G); Tune samples and PBT mutates only these, so no sweep spends trials on a no-op.
    freezing_keys: tuple[str, ...] = ()
    # Keyword conditions `generate` accepts from `musicgan sample` (MidiNet: "chords").
    sample_conditions: tuple[str, ...] = ()
    # Config keys `musicgan sample --set` may change on a trained run: how it draws, never the
    # networks' shapes (MidiNet: "model.midinet_decode").
    sampling_keys: tuple[str, ...] = ()

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

    def learning_rates(self) -> dict[str, float]:
        """Learning rate of every trained network (the keys of `learning_rate_keys` it has)."""
        return {
            name: float(get_value(self.cfg, key))
            for name, key in self.learning_rate_keys.items()
            if name in self.network_names
        }

    def optimizers(self) -> dict[str, Callable]:
        """One torch optimizer factory per trained network, from `cfg.optim`."""
        o = self.cfg.optim

        def factory(lr: float):
            if o.optimizer == "adam":
                return lambda params: torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2))
            if o.optimizer == "rmsprop":  # torch's defaults (alpha 0.99, eps 1e-8); Keras' rho is 0.9
                return lambda params: torch.optim.RMSprop(params, lr=lr)
            return lambda params: torch.optim.SGD(params, lr=lr, momentum=o.momentum)

        return {name: factory(lr) for name, lr in self.learning_rates().items()}

    def phases(self) -> list["Phase"]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, networks: dict[str, nn.Module], num: int, length: int) -> np.ndarray:
        """(num, length, F) steps in the representation's space, networks in eval mode."""
        raise NotImplementedError


def all_network_names() -> set[str]:
    """Network names of every family (to reject a DeepSpeed section meant for another model)."""
    for module in set(FAMILY_MODULES.values()):
        importlib.import_module(module)
    return {name for family in FAMILIES.values() for name in family.network_names}


def get_family(cfg: "Config") -> ModelFamily:
    """The family `model.name` names, importing only its module (models import torch code)."""
    module = FAMILY_MODULES.get(cfg.model.name)
    if module is None:
        raise ConfigError(f"model.name={cfg.model.name!r} is not one of {', '.join(sorted(FAMILY_MODULES))}")
    importlib.import_module(module)
    return FAMILIES[cfg.model.name](cfg)
