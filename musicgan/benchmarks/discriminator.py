"""Discriminator speed: the C-RNN-GAN discriminator's LSTM stacks through nn.LSTM (oneDNN on
CPU) against the hand-written stack (musicgan.models.lstm_stack), in both of its modes.

The two measurements are D's two shares of an adversarial step at the given sizes:
  update: D forward on real + fake (2B rows, the real rows with lengths) and backward of a
          fixed per-step loss into D's parameters (the input needs no gradient);
  frozen: D with requires_grad False forward on B fakes and backward into the input only
          (G's loss through D).
Variants, timed in alternation (nn_lstm, batched, threads, nn_lstm, ...), medians after
warm-up, wall and process CPU seconds:
  nn_lstm   CRNNDiscriminator.fast_lstm = False
  batched   hand-written stack, both directions in one loop of batched products
  threads   hand-written stack, the two directions' step loops on two threads (one intra-op
            thread each); with 1 torch thread this is the batched loop.
Run: python -m musicgan.benchmarks.discriminator [threads] [repeats]
"""

from __future__ import annotations

import time

import torch

from musicgan.benchmarks import flops
from musicgan.benchmarks.timing import machine_load, median, torch_threads
from musicgan.models import lstm_stack
from musicgan.models.crnngan import CRNNDiscriminator
from musicgan.training.phases import frozen_parameters

VARIANTS = ("nn_lstm", "batched", "threads")


def _configure(discriminator: CRNNDiscriminator, variant: str) -> None:
    discriminator.fast_lstm = variant != "nn_lstm"
    lstm_stack.PARALLEL_STACKS = variant == "threads"


def bench_discriminator(
    threads: int | None = None,
    repeats: int = 7,
    warmup: int = 2,
    batch_size: int = 20,
    seq_len: int = 100,
    hidden: int = 350,
    layers: int = 2,
    num_features: int = 4,
    seed: int = 0,
) -> dict:
    """Median seconds per variant of D's update and frozen passes (see the module docstring)
    and GFLOP/s from the analytic count of the products."""
    previous_parallel = lstm_stack.PARALLEL_STACKS
    try:
        with torch_threads(threads):
            return _bench(repeats, warmup, batch_size, seq_len, hidden, layers, num_features, seed)
    finally:
        lstm_stack.PARALLEL_STACKS = previous_parallel


def _bench(
    repeats: int, warmup: int, batch_size: int, seq_len: int, hidden: int, layers: int, num_features: int, seed: int
) -> dict:
    torch.manual_seed(seed)
    discriminator = CRNNDiscriminator(num_features, hidden=hidden, layers=layers).train()
    both = torch.rand(2 * batch_size, seq_len, num_features)
    lengths = torch.cat([torch.randint(seq_len // 2, seq_len + 1, (batch_size,)), torch.full((batch_size,), seq_len)])
    fake = torch.rand(batch_size, seq_len, num_features)
    weights = torch.linspace(-1, 1, seq_len)

    def update() -> None:
        logits, features = discriminator(both, lengths)
        ((logits * weights).sum() + features.square().mean()).backward()
        discriminator.zero_grad(set_to_none=True)

    def frozen() -> None:
        with frozen_parameters(discriminator):
            x = fake.clone().requires_grad_(True)
            logits, features = discriminator(x, None)
            ((logits * weights).sum() + features.square().mean()).backward()

    shape = flops.StepShape(
        g_hidden=hidden,
        g_layers=layers,
        d_hidden=hidden,
        d_layers=layers,
        batch_size=batch_size,
        seq_len=seq_len,
        num_features=num_features,
        noise_dim=num_features,
    )
    work = {
        "update": 3 * flops.discriminator_forward_flops(shape, 2 * batch_size),
        "frozen": 2 * flops.discriminator_forward_flops(shape, batch_size),
    }
    load_start = machine_load()
    results: dict = {}
    for name, fn in (("update", update), ("frozen", frozen)):
        wall = {v: [] for v in VARIANTS}
        cpu = {v: [] for v in VARIANTS}
        for rep in range(warmup + repeats):
            for variant in VARIANTS:
                _configure(discriminator, variant)
                start, cpu_start = time.perf_counter(), time.process_time()
                fn()
                if rep >= warmup:
                    wall[variant].append(time.perf_counter() - start)
                    cpu[variant].append(time.process_time() - cpu_start)
        entry = {}
        for variant in VARIANTS:
            wall_s, cpu_s = median(wall[variant]), median(cpu[variant])
            entry[variant] = {
                "wall_s": wall_s,
                "cpu_s": cpu_s,
                "gflop_per_s": work[name] / wall_s / 1e9,
                "gflop_per_cpu_s": work[name] / cpu_s / 1e9,
                "all_wall_s": wall[variant],
            }
        for variant in VARIANTS[1:]:
            entry[f"speedup_{variant}"] = entry["nn_lstm"]["wall_s"] / entry[variant]["wall_s"]
            entry[f"speedup_{variant}_cpu_time"] = entry["nn_lstm"]["cpu_s"] / entry[variant]["cpu_s"]
        entry["gflop"] = work[name] / 1e9
        results[name] = entry
    results["settings"] = {
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "hidden": hidden,
        "layers": layers,
        "repeats": repeats,
        "warmup": warmup,
        "torch": torch.__version__,
        "load_average_start": load_start,
        "load_average_end": machine_load(),
    }
    return results


if __name__ == "__main__":  # python -m musicgan.benchmarks.discriminator [threads] [repeats]
    import json
    import sys

    result = bench_discriminator(
        threads=int(sys.argv[1]) if len(sys.argv) > 1 else None, repeats=int(sys.argv[2]) if len(sys.argv) > 2 else 7
    )
    for name in ("update", "frozen"):
        for variant in VARIANTS:
            result[name][variant].pop("all_wall_s")
    print(json.dumps(result, indent=2))
