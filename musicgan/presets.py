"""Named configs as code. Each preset is a function returning a fresh `Config`; presets
derive from each other so a change to the paper preset propagates to its variants."""

from __future__ import annotations

from typing import Callable

from musicgan.config import Config
from musicgan.errors import ConfigError

PRESETS: dict[str, Callable[[], Config]] = {}


def preset(name: str):
    def register(fn: Callable[[], Config]) -> Callable[[], Config]:
        PRESETS[name] = fn
        return fn

    return register


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    cfg = PRESETS[name]()
    cfg.preset = name
    return cfg


@preset("crnngan-paper")
def crnngan_paper() -> Config:
    """Mogren 2016 as published: SGD 0.1 (D at half), clip 5, L2 0.1, batch 20, 6 MLE
    pretraining epochs, seq_len = min(4 (epoch + 1), 100), freezing at 0.7, feature matching."""
    return Config()


@preset("crnngan-3")
def crnngan_3() -> Config:
    """C-RNN-GAN-3: up to three tones per LSTM step (features 3K+1 = 10)."""
    cfg = crnngan_paper()
    cfg.data.tones_per_step = 3
    return cfg


@preset("lstm-baseline")
def lstm_baseline() -> Config:
    """The paper's baseline: the same generator trained only on next-event squared error."""
    cfg = crnngan_paper()
    cfg.model.name = "mle"
    cfg.train.pretrain_epochs = cfg.train.epochs
    cfg.train.freeze_d_threshold = 0.0
    cfg.train.freeze_g_threshold = 0.0
    return cfg


def _debug_sizes(cfg: Config) -> Config:
    """Tiny networks, short sequences, few epochs: seconds on a CPU."""
    cfg.model.g_hidden = 16
    cfg.model.d_hidden = 16
    cfg.data.batch_size = 4
    cfg.curriculum.start = 4
    cfg.curriculum.growth = 4
    cfg.curriculum.max_len = 16
    cfg.train.epochs = 4
    cfg.train.pretrain_epochs = 1
    cfg.log.interval = 5
    cfg.log.num_samples = 2
    cfg.log.metric_samples = 4
    cfg.log.metric_songs = 8
    cfg.dist.timeout_s = 60.0
    return cfg


@preset("debug")
def debug() -> Config:
    """C-RNN-GAN at toy sizes for tests and smoke runs."""
    return _debug_sizes(crnngan_paper())


@preset("crnngan-demo")
def crnngan_demo() -> Config:
    """What `./launch/demo` trains on 2 CPU processes in a few minutes: paper recipe at
    reduced width and length (hidden 64, up to 32 events)."""
    cfg = crnngan_paper()
    cfg.model.g_hidden = 64
    cfg.model.d_hidden = 64
    cfg.curriculum.max_len = 32
    cfg.train.epochs = 12
    cfg.train.pretrain_epochs = 3
    cfg.log.interval = 5
    cfg.log.sample_every = 3
    cfg.log.metric_samples = 32
    return cfg
