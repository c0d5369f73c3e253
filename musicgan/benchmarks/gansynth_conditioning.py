"""Can GANSynth's generator reach a pitch through its conditioning at all? A bug hunt in
G's pitch path, separate from the GAN's dynamics: the critic's pitch head is first trained
ALONE on real notes (as `gansynth_pitch_head`), then frozen, and a fresh generator is
trained on the auxiliary loss only (cross-entropy of the frozen head on G(z, pitch) against
the conditioning pitch; no Wasserstein term, no gradient penalty). A working conditioning
path drives that cross-entropy far below chance within a few hundred steps (the head is a
fixed differentiable classifier); one that stays near chance has a bug between the one-hot
and the image, unless `--zero-latent` (z = 0: pitch is G's only input) gets there, in which
case the path works and z's variation is what hides the pitch.

Run: python -m musicgan.benchmarks.gansynth_conditioning --data SHARDS [--stage 2]
       [--head-steps 300] [--steps 300] [--zero-latent] [--set KEY=VALUE ...] (overrides on
       gansynth-small, e.g. model.filter_cap=8, model.pitch_conditioning=blocks)
Prints the head's validation line, then one line per logged G step: G's CE through the
frozen head on fresh z and pitches, the head's accuracy on them, and how far G's output
moves between two pitches at one z vs between two z at one pitch (mean absolute).

       python -m musicgan.benchmarks.gansynth_conditioning --run RUN [--num 256]
probes a trained run's last checkpoint instead: the critic's pitch cross-entropy and
accuracy on the fakes of G and of its EMA at random conditioning pitches, and the same two
sensitivities (the README's "sure of the wrong pitch" figures).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

from musicgan.benchmarks.gansynth_pitch_head import accuracy, note_set, train_head
from musicgan.config import apply_overrides
from musicgan.errors import UserError
from musicgan.presets import get_preset


def reinit(network: torch.nn.Module, seed: int) -> None:
    """Fresh weights from `seed` for every layer: the same head whatever G holds (G's
    pitch biases draw from the generator before the critic is built)."""
    torch.manual_seed(seed)
    for layer in network.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.reset_parameters()


def class_one_hot(classes: torch.Tensor, cfg) -> torch.Tensor:
    """G's conditioning input for pitch classes (0 = model.min_pitch)."""
    return F.one_hot(classes, cfg.model.num_pitches).float()


def pitch_draw(classes: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """`size` pitch classes drawn from the training notes' (what the GAN step conditions on)."""
    return classes[torch.randint(len(classes), (size,), generator=generator)]


@torch.no_grad()
def pitch_sensitivity(cfg, generator_net, stage: int, seed: int) -> tuple[float, float]:
    """(|G(z, p1) - G(z, p2)|, |G(z, p1) - G(z', p1)|), mean absolute over 16 draws; p1, p2
    the lowest and the highest pitch."""
    from musicgan.training.families.gansynth import pitch_one_hot

    draw = torch.Generator().manual_seed(seed)
    z, other = (torch.randn(16, cfg.model.latent_dim, generator=draw) for _ in range(2))
    low = pitch_one_hot(torch.full((16,), cfg.model.min_pitch), cfg)[1]
    high = pitch_one_hot(torch.full((16,), cfg.model.min_pitch + cfg.model.num_pitches - 1), cfg)[1]
    base = generator_net(z, low, stage)
    return (base - generator_net(z, high, stage)).abs().mean().item(), (
        base - generator_net(other, low, stage)
    ).abs().mean().item()


@torch.no_grad()
def probe_run(run_dir: str, count: int, seed: int):
    """One row per generator (trained, EMA) of a run's last checkpoint at its top stage: the
    critic's pitch CE and accuracy on `count` fakes, and `pitch_sensitivity`."""
    from musicgan.training.sampling import load_run

    cfg, _, _, networks, path = load_run(run_dir)
    stage = cfg.model.stages - 1
    draw = torch.Generator().manual_seed(seed)
    picked = torch.randint(cfg.model.num_pitches, (count,), generator=draw)
    z = torch.randn(count, cfg.model.latent_dim, generator=draw)
    for name in ("generator", "generator_ema"):
        fakes = networks[name](z, class_one_hot(picked, cfg), stage)
        _, logits = networks["discriminator"](fakes, stage)
        between_pitches, between_z = pitch_sensitivity(cfg, networks[name], stage, seed)
        yield {
            "checkpoint": str(path),
            "generator": name,
            "critic_ce_on_fakes": round(F.cross_entropy(logits, picked).item(), 3),
            "critic_accuracy_on_fakes": accuracy(logits, picked),
            "chance_ce": round(math.log(cfg.model.num_pitches), 3),
            "between_pitches": round(between_pitches, 4),
            "between_z": round(between_z, 4),
        }


def train_generator(
    cfg, generator_net, critic, classes, stage: int, steps: int, log_every: int, seed: int, zero_latent: bool = False
):
    """G trained on CE(frozen head on G(z, pitch), pitch) alone (z = 0: `zero_latent`); yields logged rows."""
    critic.requires_grad_(False)
    optimizer = torch.optim.Adam(
        generator_net.parameters(), lr=cfg.optim.g_lr, betas=(cfg.optim.beta1, cfg.optim.beta2)
    )
    draw = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for step in range(1, steps + 1):
        picked = pitch_draw(classes, cfg.data.batch_size, draw)
        z = torch.randn(len(picked), cfg.model.latent_dim, generator=draw) * (0.0 if zero_latent else 1.0)
        _, logits = critic(generator_net(z, class_one_hot(picked, cfg), stage), stage)
        loss = F.cross_entropy(logits, picked)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            between_pitches, between_z = pitch_sensitivity(cfg, generator_net, stage, seed + step)
            yield {
                "step": step,
                "g_ce": round(loss.item(), 3),
                "head_accuracy_on_fakes": accuracy(logits, picked),
                "between_pitches": round(between_pitches, 4),
                "between_z": round(between_z, 4),
                "cpu_s": round(time.process_time() - start, 1),
            }


def main(argv: list[str] | None = None) -> None:
    from musicgan.data.loader import iter_songs
    from musicgan.data.shards import split_urls
    from musicgan.training.families import get_family

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--run", help="probe this trained run's checkpoint instead of training")
    parser.add_argument("--num", type=int, default=256, help="fakes per generator with --run")
    parser.add_argument("--stage", type=int, default=2)
    parser.add_argument("--head-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zero-latent", action="store_true", help="z = 0: pitch is G's only input")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.run:
        try:
            for row in probe_run(args.run, args.num, args.seed):
                print(json.dumps(row), flush=True)
        except UserError as exc:  # one line and the CLI's status 2, as `musicgan` gives
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    if not args.data:
        parser.error("--data SHARDS is needed unless --run RUN is given")
    cfg = apply_overrides(get_preset("gansynth-small"), [f"data.path={args.data}", *args.overrides])
    family = get_family(cfg)
    representation = family.build_representation()
    representation.fit(iter_songs(split_urls(args.data, "train")))
    train, valid = (note_set(family, representation, args.data, split) for split in ("train", "valid"))
    print(json.dumps({"chance_ce": round(math.log(cfg.model.num_pitches), 3), "train": len(train[1])}))
    networks = family.build_networks(representation)
    reinit(networks["discriminator"], args.seed)
    head_rows = train_head(
        cfg, networks["discriminator"], train, valid, args.stage, args.head_steps, args.head_steps, args.seed
    )
    print(json.dumps({"head": "alone on real notes", "stage": args.stage, **list(head_rows)[-1]}), flush=True)
    rows = train_generator(
        cfg,
        networks["generator"],
        networks["discriminator"],
        train[1],
        args.stage,
        args.steps,
        args.log_every,
        args.seed,
        args.zero_latent,
    )
    for row in rows:
        print(json.dumps({"generator": "aux loss only, head frozen", "stage": args.stage, **row}), flush=True)


if __name__ == "__main__":
    main()
