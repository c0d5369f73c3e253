"""Search spaces as code.

A space is a function of the base config (any preset): it returns a FLAT dict
{"section.key": ray.tune domain or plain value}. Ranges are placed relative to the
preset's own values where a scale matters (learning rates, batch size, lengths), so one
space composes with the paper preset, the demo preset or the debug preset alike; every
sampled point is a valid config (e.g. curriculum.start never exceeds curriculum.max_len).

`mutations(space_name, base)` gives the keys Population Based Training may perturb during
a run: learning rates and freezing thresholds (the values the trainer re-applies after it
restores a checkpoint).

Add a family's space with `@space("name")`; `rnnrbm` and friends slot in beside `crnngan`.
"""

from __future__ import annotations

from typing import Any, Callable

from musicgan.config import Config, set_value, validate
from musicgan.errors import ConfigError

SpaceFn = Callable[[Config], dict[str, Any]]
SPACES: dict[str, SpaceFn] = {}
MUTABLE_KEYS = ("optim.g_lr", "optim.d_lr", "train.freeze_d_threshold", "train.freeze_g_threshold")


def space(name: str) -> Callable[[SpaceFn], SpaceFn]:
    def register(fn: SpaceFn) -> SpaceFn:
        SPACES[name] = fn
        return fn

    return register


def _tune():
    from ray import tune  # tune/ may import ray; the package never does

    return tune


def learning_rate_keys(base: Config) -> list[str]:
    """The config keys of the rates the preset's family trains with (its `learning_rate_keys`
    of the networks it has: MuseGAN's generator/critic, C-RNN-GAN's generator/discriminator), in
    the family's order, each once."""
    from musicgan.training.families import get_family

    family = get_family(base)
    keys = [key for name, key in family.learning_rate_keys.items() if name in family.network_names]
    return list(dict.fromkeys(keys))


def _learning_rates(base: Config) -> dict[str, Any]:
    """Every rate of the family log-uniform over [rate / 10, 3 x rate] of the preset's rate."""
    from musicgan.config import get_value

    tune = _tune()
    rates = {key: float(get_value(base, key)) for key in learning_rate_keys(base)}
    return {key: tune.loguniform(rate / 10.0, rate * 3.0) for key, rate in rates.items()}


def _thresholds(base: Config) -> dict[str, Any]:
    """θ_D, θ_G where the family freezes (its `freezing_keys`; none for MuseGAN's WGAN-GP):
    0 never freezes; the paper uses 0.7; above 1 one network is frozen most steps."""
    from musicgan.training.families import get_family

    tune = _tune()
    return {key: tune.uniform(0.0, 1.0) for key in get_family(base).freezing_keys}


def _curriculum(base: Config) -> dict[str, Any]:
    """Start length, growth per epoch and maximum length around the preset's curriculum;
    start choices are capped by the smallest max_len choice so every sample validates."""
    tune = _tune()
    c = base.curriculum
    max_lens = sorted({max(2, c.max_len // 2), c.max_len})
    starts = sorted({s for s in (max(1, c.start // 2), c.start, c.start * 2) if s <= max_lens[0]}) or [max_lens[0]]
    growths = sorted({max(1, c.growth // 2), c.growth, c.growth * 2})
    return {
        "curriculum.start": tune.choice(starts),
        "curriculum.growth": tune.choice(growths),
        "curriculum.max_len": tune.choice(max_lens),
    }


def _pretraining(base: Config) -> dict[str, Any]:
    """MLE pretraining epochs from 0 to twice the preset's, always leaving one adversarial epoch."""
    tune = _tune()
    top = max(0, min(2 * max(1, base.train.pretrain_epochs), base.train.epochs - 1))
    return {"train.pretrain_epochs": tune.randint(0, top + 1)}  # randint's upper bound is exclusive


def _batch_sizes(base: Config) -> list[int]:
    b = base.data.batch_size
    return sorted({max(1, b // 2), b, 2 * b})


@space("crnngan")
def crnngan_space(base: Config) -> dict[str, Any]:
    """C-RNN-GAN: rates, freezing, curriculum, pretraining, feature matching, smoothing, batch."""
    tune = _tune()
    return {
        **_learning_rates(base),
        **_thresholds(base),
        **_curriculum(base),
        **_pretraining(base),
        "train.feature_matching": tune.choice([True, False]),
        "train.label_smoothing": tune.choice([0.0, 0.1, 0.2]),
        "data.batch_size": tune.choice(_batch_sizes(base)),
    }


@space("lr")
def lr_space(base: Config) -> dict[str, Any]:
    """The family's learning rates and freezing thresholds (what PBT mutates); the rest from the preset."""
    return {**_learning_rates(base), **_thresholds(base)}


def get_space(name: str, base: Config) -> dict[str, Any]:
    if name not in SPACES:
        raise ConfigError(f"unknown search space {name!r}: choose one of {', '.join(sorted(SPACES))}")
    return SPACES[name](base)


def mutations(base: Config, param_space: dict[str, Any]) -> dict[str, Any]:
    """PBT's `hyperparam_mutations`: the mutable keys with the space's (or a default) domain."""
    from ray.tune.search.sample import Domain

    defaults = {**_learning_rates(base), **_thresholds(base)}  # only the keys the family has
    return {
        key: param_space[key] if isinstance(param_space.get(key), Domain) else defaults[key]
        for key in MUTABLE_KEYS
        if key in defaults
    }


def apply_trial_values(base: Config, values: dict[str, Any]) -> Config:
    """A trial's flat {"a.b": value} on top of the base config, validated (ConfigError on a bad point)."""
    for key, value in values.items():
        set_value(base, key, value)
    return validate(base)


def sample_check(name: str, base: Config, draws: int = 32, seed: int = 0) -> None:
    """Draw `draws` points from the space and validate each on a copy of `base` (used by the
    CLI before starting Ray, so a space/preset mismatch is a one-line error, not N failed trials)."""
    import copy
    import random

    rng = random.Random(seed)
    domains = get_space(name, base)
    for _ in range(draws):
        point = {
            k: (v.sample(random_state=rng.randint(0, 2**31 - 1)) if hasattr(v, "sample") else v)
            for k, v in domains.items()
        }
        apply_trial_values(copy.deepcopy(base), {k: _plain(v) for k, v in point.items()})


def _plain(value: Any) -> Any:
    """numpy scalars from a domain's sampler -> Python numbers (set_value coerces by type)."""
    return value.item() if hasattr(value, "item") else value


# -- models beyond C-RNN-GAN: RNN-RBM / LSTM-RBM and the discrete-note models -----------------
def _scaled_choices(value: int) -> list[int]:
    return sorted({max(1, value // 2), value, 2 * value})


@space("rbm")
def rbm_space(base: Config) -> dict[str, Any]:
    """RNN-RBM / LSTM-RBM: learning rate, k of CD-k, RBM hidden and recurrent units, batch."""
    tune = _tune()
    return {
        "optim.g_lr": tune.loguniform(base.optim.g_lr / 10.0, base.optim.g_lr * 3.0),
        "model.gibbs_steps": tune.choice(sorted({1, 5, base.model.gibbs_steps})),
        "model.rbm_hidden": tune.choice(_scaled_choices(base.model.rbm_hidden)),
        "model.g_hidden": tune.choice(_scaled_choices(base.model.g_hidden)),
        "data.batch_size": tune.choice(_batch_sizes(base)),
    }


@space("note-lstm")
def note_lstm_space(base: Config) -> dict[str, Any]:
    """Discrete-note LSTM: learning rate, width, dropout, direction, batch."""
    tune = _tune()
    return {
        "optim.g_lr": tune.loguniform(base.optim.g_lr / 10.0, base.optim.g_lr * 3.0),
        "model.g_hidden": tune.choice(_scaled_choices(base.model.g_hidden)),
        "model.g_dropout": tune.uniform(0.0, 0.5),
        "model.bidirectional": tune.choice([True, False]),
        "data.batch_size": tune.choice(_batch_sizes(base)),
    }


@space("note-mlpgan")
def note_mlpgan_space(base: Config) -> dict[str, Any]:
    """Discrete-note MLP-GAN: both learning rates, latent size, D width, batch."""
    tune = _tune()
    return {
        **_learning_rates(base),
        "model.latent_dim": tune.choice(sorted({100, base.model.latent_dim})),
        "model.d_hidden": tune.choice(_scaled_choices(base.model.d_hidden)),
        "data.batch_size": tune.choice(_batch_sizes(base)),
    }
