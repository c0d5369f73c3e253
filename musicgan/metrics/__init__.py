"""Objective evaluation: per-song metric registry, distribution comparisons, report.

`registry` holds small pure `Song -> float` metrics (C-RNN-GAN and MusPy style; `musegan`
adds MuseGAN's per-bar, per-track set and registers its song-level means), used by
the training loop and by `musicgan evaluate`; `distributions` compares sets of songs
(mgeval-style overlapping area / KL, in-house Frechet distance, realism score).
"""

from musicgan.metrics import musegan as _musegan  # noqa: F401  registers the "musegan" group
from musicgan.metrics.distributions import (
    SetStatistics,
    compare_features,
    compute_statistics,
    frechet_distance,
    realism_score,
)
from musicgan.metrics.registry import (
    DEFAULT_ONSET_TOLERANCE,
    GROUPS,
    METRICS,
    Metric,
    compute_metrics,
    crnngan_summary,
    metric_names,
    register,
    summarize,
)

__all__ = [
    "SetStatistics",
    "compare_features",
    "compute_statistics",
    "frechet_distance",
    "realism_score",
    "DEFAULT_ONSET_TOLERANCE",
    "GROUPS",
    "METRICS",
    "Metric",
    "compute_metrics",
    "crnngan_summary",
    "metric_names",
    "register",
    "summarize",
]
