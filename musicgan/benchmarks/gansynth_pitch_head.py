"""Can GANSynth's critic learn pitch at all? Its pitch head trained ALONE (cross-entropy on
real training notes, no adversarial loss, no gradient penalty) at one resolution stage, with
the run's optimizer (Adam (0, 0.99) at the preset's rate, batch 16), then scored on the
validation notes. Two inits of the same network: `equalized` (the model's: N(0, 1) weights
x He's constant) and `default` (PyTorch's init with the constant 1, i.e. the code before the
equalized learning rate). It separates "the head cannot learn pitch at this size" from "the
GAN's schedule is too short or its other losses get in the way" (README, GANSynth).

Run: python -m musicgan.benchmarks.gansynth_pitch_head --data SHARDS [--stage 4] [--steps 150]
       [--set KEY=VALUE ...] (overrides on gansynth-small, e.g. model.filter_cap=8, data.mel=true)
Prints one line per (init, logged step): train-batch CE, validation CE and accuracy, CPU s.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.config import apply_overrides
from musicgan.models.gansynth import downscale
from musicgan.presets import get_preset

INITS = ("equalized", "default")


def note_set(family, representation, data: str, split: str):
    from musicgan.data.shards import split_urls
    from musicgan.training.note_sampling import note_images

    return note_images(family, representation, split_urls(data, split))


def use_default_init(critic: nn.Module) -> None:
    """PyTorch's own init and no runtime constant: the layers of the code before equalized LR."""
    for layer in critic.modules():
        if hasattr(layer, "he_constant"):
            base = nn.Conv2d if isinstance(layer, nn.Conv2d) else nn.Linear
            base.reset_parameters(layer)  # PyTorch's own init, not the N(0, 1) override
            layer.he_constant = 1.0


def accuracy(logits: torch.Tensor, classes: torch.Tensor) -> float:
    """Share of rows whose top logit is their class, rounded as the probes print it."""
    return round((logits.argmax(1) == classes).float().mean().item(), 3)


def train_head(cfg, critic, train, valid, stage: int, steps: int, log_every: int, seed: int):
    images, classes = train
    valid_images = downscale(valid[0], stage, cfg.model.stages)
    optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.optim.d_lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    generator = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for step in range(1, steps + 1):
        pick = torch.randint(len(images), (cfg.data.batch_size,), generator=generator)
        _, logits = critic(downscale(images[pick], stage, cfg.model.stages), stage)
        loss = F.cross_entropy(logits, classes[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            with torch.no_grad():
                _, valid_logits = critic(valid_images, stage)
            yield {
                "step": step,
                "train_ce": round(loss.item(), 3),
                "valid_ce": round(F.cross_entropy(valid_logits, valid[1]).item(), 3),
                "valid_accuracy": accuracy(valid_logits, valid[1]),
                "cpu_s": round(time.process_time() - start, 1),
            }


def main(argv: list[str] | None = None) -> None:
    from musicgan.data.loader import iter_songs
    from musicgan.data.shards import split_urls
    from musicgan.training.families import get_family

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--stage", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = apply_overrides(get_preset("gansynth-small"), [f"data.path={args.data}", *args.overrides])
    family = get_family(cfg)
    representation = family.build_representation()
    representation.fit(iter_songs(split_urls(args.data, "train")))
    train, valid = (note_set(family, representation, args.data, split) for split in ("train", "valid"))
    print(json.dumps({"chance_ce": round(math.log(cfg.model.num_pitches), 3), "train": len(train[1])}))
    for init in INITS:
        torch.manual_seed(args.seed)
        critic = family.build_networks(representation)["discriminator"]
        if init == "default":
            use_default_init(critic)
        for row in train_head(cfg, critic, train, valid, args.stage, args.steps, args.log_every, args.seed):
            print(json.dumps({"init": init, "stage": args.stage, **row}), flush=True)


if __name__ == "__main__":
    main()
