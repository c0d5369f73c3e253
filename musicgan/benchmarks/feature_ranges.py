"""Per-feature spread of a preset's event representation on a split: the scale instance noise
(`train.instance_noise`) is judged against.

For each feature of one-tone events (dt, length, pitch, velocity, normalised as the model
sees them): std, 1st and 99th percentiles, and the smallest step between distinct values
(the grid real music lies on, which a generator's continuous outputs miss).

Usage: python -m musicgan.benchmarks.feature_ranges --data shards/bach [--preset crnngan-bach] [--split train]
"""

from __future__ import annotations

import argparse

import numpy as np

FEATURES = ("dt", "length", "pitch", "velocity")  # EventRepresentation, one tone per step


def feature_ranges(events: np.ndarray) -> dict[str, dict[str, float]]:
    """(N, 4) events -> {feature: {std, p1, p99, grid}}; grid 0 when the feature is constant."""
    table = {}
    for i, name in enumerate(FEATURES):
        values = np.unique(np.round(events[:, i].astype(np.float64), 6))
        steps = np.diff(values)
        table[name] = {
            "std": float(events[:, i].std()),
            "p1": float(np.percentile(events[:, i], 1)),
            "p99": float(np.percentile(events[:, i], 99)),
            "grid": float(steps.min()) if steps.size else 0.0,
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musicgan.benchmarks.feature_ranges", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="crnngan-bach")
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    from musicgan.data.loader import iter_encoded
    from musicgan.data.shards import split_urls
    from musicgan.presets import get_preset
    from musicgan.training.families import get_family

    cfg = get_preset(args.preset)
    cfg.data.path = args.data
    representation = get_family(cfg).build_representation()
    events = np.concatenate([e for _, e in iter_encoded(split_urls(args.data, args.split), representation)])
    if events.shape[1] != len(FEATURES):
        print(f"error: {args.preset} has {events.shape[1]} features per step; this reads one-tone events only")
        return 2
    print(f"{args.preset} on {args.data} ({args.split}, {len(events)} events)")
    for name, row in feature_ranges(events).items():
        print(f"{name:9s} std {row['std']:.4f}  p1 {row['p1']:.4f}  p99 {row['p99']:.4f}  grid {row['grid']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
