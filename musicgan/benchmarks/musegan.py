"""MuseGAN network speed: one WGAN-GP critic step and one generator step at a named size.

  critic:    G forward without gradients, the critic on [real, fake, interpolates] in one
             forward, the gradient penalty's double backward, backward into the critic
  generator: G forward, the critic frozen, backward into G
Both exclude the optimizer (a few element-wise passes over the parameters). `samples_per_s`
(wall) and `samples_per_cpu_s` are real phrases read per second over one cycle of
`n_critic` critic steps and one generator step: n_critic * batch / (n_critic * critic +
generator).
For v3 sizes the `aten` variant swaps every PatchConv3d / PatchConvTranspose3d back to the
plain ATen module (same weights); variants are timed in alternation, medians after warm-up,
wall and process CPU seconds.

Run: python -m musicgan.benchmarks.musegan SIZE [mode] [threads] [repeats] [batch]
     SIZE: small (chorales, 4 x 4 x 48 x 48, widths / 4), v3 (5 x 4 x 48 x 84), paper (v1, 5 x 4 x 96 x 84)
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from musicgan.benchmarks.timing import machine_load, median, torch_threads
from musicgan.models.musegan import MuseGANGeometry, PatchConv3d, PatchConvTranspose3d, build_musegan
from musicgan.training.phases import frozen_parameters

SIZES = {
    "small": (
        "v3",
        MuseGANGeometry(
            num_tracks=4, num_pitches=48, lowest_pitch=36, width_scale=0.25, v3_pitch_layers=((2, 2), (2, 2))
        ),
        16,
    ),
    "v3": ("v3", MuseGANGeometry(), 64),
    "paper": ("paper", MuseGANGeometry(steps_per_bar=96), 64),
}
N_CRITIC = 5
PENALTY_WEIGHT = 10.0


def plain_aten(module: nn.Module) -> nn.Module:
    """A copy of `module` whose patch convolutions are the plain ATen modules again."""
    module = copy.deepcopy(module)
    for layer in module.modules():
        if type(layer) is PatchConv3d:
            layer.__class__ = nn.Conv3d
        elif type(layer) is PatchConvTranspose3d:
            layer.__class__ = nn.ConvTranspose3d
    return module


def critic_pass(generator: nn.Module, critic: nn.Module, real: torch.Tensor) -> None:
    with torch.no_grad():
        fake = generator(torch.randn(real.shape[0], generator.latent_dim))
    alpha = torch.rand(real.shape[0], 1, 1, 1, 1)
    mixed = (real + alpha * (fake - real)).requires_grad_(True)
    scores = critic(torch.cat([real, fake, mixed]))
    b = real.shape[0]
    (grad,) = torch.autograd.grad(scores[2 * b :].sum(), mixed, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    (scores[b : 2 * b].mean() - scores[:b].mean() + PENALTY_WEIGHT * penalty).backward()
    critic.zero_grad(set_to_none=True)


def generator_pass(generator: nn.Module, critic: nn.Module, batch_size: int) -> None:
    with frozen_parameters(critic):
        (-critic(generator(torch.randn(batch_size, generator.latent_dim))).mean()).backward()
    generator.zero_grad(set_to_none=True)


def bench_musegan(
    size: str = "small",
    mode: str = "hybrid",
    threads: int | None = 1,
    repeats: int = 5,
    warmup: int = 1,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict:
    """Median seconds of the two passes per variant (module docstring) and samples/s."""
    arch, geometry, default_batch = SIZES[size]
    batch_size = batch_size or default_batch
    with torch_threads(threads):
        torch.manual_seed(seed)
        generator, critic = build_musegan(geometry, arch, mode)
        variants = {"patch": (generator, critic)}
        if arch == "v3":
            variants["aten"] = (plain_aten(generator), plain_aten(critic))
        real = torch.rand(batch_size, *geometry.phrase_shape) * 2 - 1
        load_start = machine_load()
        results = {name: _time_variant(nets, real, repeats, warmup) for name, nets in variants.items()}
    if "aten" in results:
        results["speedup_cycle_cpu_time"] = results["aten"]["cycle_cpu_s"] / results["patch"]["cycle_cpu_s"]
    results["settings"] = {
        "size": size,
        "arch": arch,
        "mode": mode,
        "phrase": list(geometry.phrase_shape),
        "batch_size": batch_size,
        "threads": threads,
        "repeats": repeats,
        "n_critic": N_CRITIC,
        "generator_parameters": sum(p.numel() for p in generator.parameters()),
        "critic_parameters": sum(p.numel() for p in critic.parameters()),
        "torch": torch.__version__,
        "load_average_start": load_start,
        "load_average_end": machine_load(),
    }
    return results


def _time_variant(networks, real: torch.Tensor, repeats: int, warmup: int) -> dict:
    generator, critic = networks
    passes = {
        "critic": lambda: critic_pass(generator, critic, real),
        "generator": lambda: generator_pass(generator, critic, real.shape[0]),
    }
    wall = {name: [] for name in passes}
    cpu = {name: [] for name in passes}
    for rep in range(warmup + repeats):
        for name, fn in passes.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            if rep >= warmup:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - cpu_start)
    entry = {f"{name}_wall_s": median(wall[name]) for name in passes}
    entry |= {f"{name}_cpu_s": median(cpu[name]) for name in passes}
    entry["cycle_cpu_s"] = N_CRITIC * entry["critic_cpu_s"] + entry["generator_cpu_s"]
    cycle_wall = N_CRITIC * entry["critic_wall_s"] + entry["generator_wall_s"]
    entry["samples_per_s"] = N_CRITIC * real.shape[0] / cycle_wall
    entry["samples_per_cpu_s"] = N_CRITIC * real.shape[0] / entry["cycle_cpu_s"]
    return entry


if __name__ == "__main__":  # python -m musicgan.benchmarks.musegan SIZE [mode] [threads] [repeats] [batch]
    import json
    import sys

    args = sys.argv[1:]
    print(
        json.dumps(
            bench_musegan(
                args[0] if args else "small",
                args[1] if len(args) > 1 else "hybrid",
                int(args[2]) if len(args) > 2 else 1,
                int(args[3]) if len(args) > 3 else 5,
                batch_size=int(args[4]) if len(args) > 4 else None,
            ),
            indent=2,
        )
    )
