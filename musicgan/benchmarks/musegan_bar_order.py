"""Does a MuseGAN critic see bar order? Its scores of real phrases against the same phrases
with their bars shuffled (a random non-identity order per phrase) and with the first bar
repeated N times, from a run's final checkpoint, on every whole phrase of a split.

A critic that reads the phrase as a sequence moves its score under a shuffle by a share of
its spread over real phrases; one that scores bars apart moves it by ~0 (the shuffle keeps
every bar). Usage: python -m musicgan.benchmarks.musegan_bar_order RUN_DIR --data SHARDS
[--split valid] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from musicgan.data.shards import split_urls
from musicgan.metrics.musegan import whole_phrase_windows
from musicgan.training.sampling import load_run


def shuffled_bars(windows: np.ndarray, steps_per_bar: int, rng: np.random.Generator) -> np.ndarray:
    """(M, N * S, F) -> the same phrases, each with its N bars in a random non-identity order."""
    m, t, f = windows.shape
    bars = windows.reshape(m, t // steps_per_bar, steps_per_bar, f)
    out = np.empty_like(bars)
    for i in range(m):
        order = np.arange(bars.shape[1])
        while (order == np.arange(bars.shape[1])).all():
            order = rng.permutation(bars.shape[1])
        out[i] = bars[i, order]
    return out.reshape(m, t, f)


def first_bar_repeated(windows: np.ndarray, steps_per_bar: int) -> np.ndarray:
    m, t, f = windows.shape
    return np.tile(windows[:, :steps_per_bar], (1, t // steps_per_bar, 1))


@torch.no_grad()
def critic_scores(critic, windows: np.ndarray) -> np.ndarray:
    return critic(torch.as_tensor(windows, dtype=torch.float32)).numpy()


def bar_order_report(run_dir: str, data: str, split: str = "valid", seed: int = 0) -> dict[str, float]:
    cfg, _, representation, networks, _ = load_run(run_dir)
    bar, length = representation.window_align, cfg.curriculum.max_len
    urls = split_urls(data, split)
    windows = np.stack(list(whole_phrase_windows(urls, representation, length)))
    critic = networks["critic"].eval()
    real = critic_scores(critic, windows)
    shuffled = critic_scores(critic, shuffled_bars(windows, bar, np.random.default_rng(seed)))
    repeated = critic_scores(critic, first_bar_repeated(windows, bar))
    return {
        "phrases": len(windows),
        "real_mean": float(real.mean()),
        "real_sd": float(real.std()),
        "shuffled_minus_real_mean": float((shuffled - real).mean()),
        "shuffled_minus_real_mean_abs": float(np.abs(shuffled - real).mean()),
        "repeated_minus_real_mean": float((repeated - real).mean()),
        "repeated_above_real_share": float((repeated > real).mean()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in bar_order_report(args.run_dir, args.data, args.split, args.seed).items():
        print(f"{key:30s} {value:.4g}")


if __name__ == "__main__":
    main()
