"""How a cost grows with a size: least-squares fits of y = a + b * f(n) for f(n) = n,
n log n and n^2, and the log-log slope.

Each model keeps an intercept a >= 0 (start-up and per-call overheads that do not grow
with n) and a slope b >= 0; it is fitted on relative errors, minimising sum(((y - fit) / y)^2),
so a sweep whose values span two decades is not decided by its largest point alone. The
best model is the one with the smallest relative RMS residual. The log-log slope (the
exponent k of y ~ n^k over the sweep) comes beside it: below 1 the fixed costs still
dominate the sweep, whichever model wins.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

MODELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda n: n,
    "n log n": lambda n: n * np.log(n),
    "quadratic": lambda n: n**2,
}


def _weighted_fit(columns: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Coefficients of sum(c_i * column_i) minimising the relative squared error."""
    design = np.stack([c / y for c in columns], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    return coefficients


def fit_model(x: Sequence[float], y: Sequence[float], name: str) -> dict:
    """{"a", "b", "relative_rms"} of y = a + b * MODELS[name](x), with a >= 0 and b >= 0
    (a negative coefficient is dropped and the other refitted alone)."""
    n, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    grown = MODELS[name](n)
    a, b = _weighted_fit([np.ones_like(n), grown], y)
    if a < 0:
        a, b = 0.0, float(_weighted_fit([grown], y)[0])
    if b < 0:
        a, b = float(_weighted_fit([np.ones_like(n)], y)[0]), 0.0
    residual = (y - (a + b * grown)) / y
    return {"a": float(a), "b": float(b), "relative_rms": float(np.sqrt(np.mean(residual**2)))}


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The exponent k of the least-squares line log y = c + k log n."""
    return float(np.polyfit(np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64)), 1)[0])


def fit_growth(x: Sequence[float], y: Sequence[float]) -> dict:
    """Every model's fit, the best one's name and the log-log slope (NaN below 2 points)."""
    if len(x) < 2:
        return {"models": {}, "best": None, "loglog_slope": math.nan}
    models = {name: fit_model(x, y, name) for name in MODELS}
    best = min(models, key=lambda name: models[name]["relative_rms"])
    return {"models": models, "best": best, "loglog_slope": loglog_slope(x, y)}


def predict(fit: dict, name: str, x: Sequence[float]) -> np.ndarray:
    """The fitted model `name` evaluated at `x` (for drawing it)."""
    coefficients = fit["models"][name]
    return coefficients["a"] + coefficients["b"] * MODELS[name](np.asarray(x, dtype=np.float64))
