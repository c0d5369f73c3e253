"""The benchmarked configuration: the paper preset (hidden 350, 2 layers, batch 20, SGD,
clip 5, L2 0.1, feature matching) at its full length of 100 steps, in the adversarial phase;
`--quick` shrinks it to toy sizes so the suite's plumbing can be smoke-tested in seconds."""

from __future__ import annotations

from musicgan.benchmarks.trainer_step import ADVERSARIAL_FULL_LENGTH
from musicgan.config import Config, apply_overrides, validate
from musicgan.presets import get_preset

PRESET = "crnngan-paper"
PAPER_OVERRIDES = ("curriculum.start=100", "curriculum.max_len=100")
QUICK_OVERRIDES = (
    "model.g_hidden=24",
    "model.d_hidden=24",
    "curriculum.start=12",
    "curriculum.max_len=12",
    "data.batch_size=8",
)


def workload_overrides(quick: bool) -> list[str]:
    return list(ADVERSARIAL_FULL_LENGTH) + list(QUICK_OVERRIDES if quick else PAPER_OVERRIDES)


def bench_config(data_dir: str, overrides: list[str]) -> Config:
    """The paper preset on `data_dir` with the benchmark's overrides applied."""
    cfg = get_preset(PRESET)
    cfg.data.path = str(data_dir)
    return validate(apply_overrides(cfg, list(overrides)))
