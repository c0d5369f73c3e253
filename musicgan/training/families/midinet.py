"""MidiNet (Yang et al. 2017, "MidiNet: A Convolutional Generative Adversarial Network for
Symbolic-domain Music Generation"): a DCGAN that writes one bar of melody at a time,
conditioned on the bar's chord and on the previous bar (models/midinet.py).

Data: `melody_chord` windows of two bars (previous, current), bar-aligned; every song
starts with an empty bar, so the first bar's previous bar is zeros.

One phase, "adversarial", on each batch and one draw of z ~ N(0, 1)^latent:
- D: BCE(D(real), 0.9) + BCE(D(fake), 0) (one-sided label smoothing, `train.label_smoothing`
  = 0.1), real and fake through ONE forward with split batch statistics (`splits=2`).
- G, twice (`repeat={generator: 2}`, the same batch and the same z): BCE(D(fake), 1)
  + λ1 ||mean_b f(fake) - mean_b f(real)||² / 2 + λ2 ||mean_b G(z) - mean_b x||² / 2, f = D's
  first convolution (λ1 = `train.feature_matching_weight` 0.1, λ2 = `train.mean_matching_weight`
  0.01). Batch means are per rank under DDP, like the batch statistics.
- `train.instance_noise` (0: off): Gaussian noise on every D input, real and fake, in both
  losses, its std annealed linearly to 0 over the run (losses.instance_noise_std); the mean
  matching compares G's bars themselves.
The engine applies updates in the phase's order from one forward, so G's two updates on a
batch come before D's (G's loss graph holds D's weights, which D's step changes in place):
the run is G G D G G D ..., i.e. the paper's D G G alternation after two extra G updates at
the start, and G's updates on batch t see D as it was after batch t - 1.

Generation (`generate`): bar by bar, each bar conditioned on the previous generated bar
(decoded to one pitch per step, as the data) and on the next chord of a progression: the
`chords` given to `musicgan sample --chords`, else a held-out song's own chords (test split,
else valid). `model.midinet_prime`: zeros (the empty bar every song starts from) or real (the
first bar is a held-out song's first bar). `model.midinet_decode`: argmax (the default: the
highest pitch of every step, as the PyTorch port decodes) or threshold (that pitch only where
its value exceeds 0.5, else a rest): G ends in a sigmoid per pitch trained against rows with
one pitch of 128 on, and its outputs can stay below 0.5 everywhere (README, "Results so far").
`model.midinet_sample_bn`: running (eval mode, the running statistics) or batch (the
reference's training-mode statistics over the `--num` samples, on a copy of G).

Config read: model.latent_dim, g_hidden (G's dense width), d_hidden (D's), minibatch_features
and minibatch_kernel_dim (D's minibatch discrimination, 0: off), midinet_g_channels,
midinet_d_channels, midinet_*; data.frames_per_beat (steps per quarter note), transpose_range;
train.label_smoothing, feature_matching_weight, mean_matching_weight, instance_noise; optim.*.
"""

from __future__ import annotations

import copy
import itertools
from typing import Iterator

import numpy as np
import torch

from musicgan import losses
from musicgan.data.chords import midinet_vectors, parse_chord
from musicgan.errors import ConfigError, DataError, UserError
from musicgan.models.midinet import NUM_PITCHES, MidiNetDiscriminator, MidiNetGenerator
from musicgan.training.families import ModelFamily, register
from musicgan.training.families.musegan import parse_transpose  # the one parser of data.transpose_range
from musicgan.training.phases import Phase, StepContext, StepOutput

NETWORKS = ("generator", "discriminator")  # update order: G's loss graph holds D's weights
BEATS_PER_BAR = 4  # melody_chord keeps 4/4 only (the reference's data)


def split_window(window: torch.Tensor, bar: int):
    """(B, 2 bar, 128 + 13) -> previous bar, current bar (B, 1, bar, 128) and its chord (B, 13)."""
    previous = window[:, None, :bar, :NUM_PITCHES]
    current = window[:, None, bar:, :NUM_PITCHES]
    return previous, current, window[:, bar, NUM_PITCHES:]


def midinet_step(ctx: StepContext, batch) -> StepOutput:
    """D's loss and/or G's (`ctx.trains`); z is the step's first draw, so a repeat replays it."""
    previous, real, chord = split_window(batch.x.to(ctx.device).float(), steps_per_bar(ctx.cfg))
    z = ctx.module("generator").noise(real.shape[0])
    if "generator" in ctx.trains:
        fake = ctx.run("generator", "forward", z, chord, previous)
    else:
        with torch.no_grad():
            fake = ctx.module("generator")(z, chord, previous)
    out = StepOutput({}, {})
    if "generator" in ctx.trains:
        out.losses["generator"] = generator_loss(ctx, fake, real, chord, out.stats)
    if "discriminator" in ctx.trains:
        out.losses["discriminator"] = discriminator_loss(ctx, fake.detach(), real, chord, out.stats)
    return out


def steps_per_bar(cfg) -> int:
    return BEATS_PER_BAR * cfg.data.frames_per_beat


def seen_by_discriminator(ctx: StepContext, bars: torch.Tensor) -> torch.Tensor:
    """D's input: the bars plus instance noise (`train.instance_noise`, annealed to 0 over the
    run; at 0 the bars themselves and no draw). Real and fake alike, in both networks' losses."""
    noise = losses.instance_noise(bars, losses.instance_noise_std(ctx.cfg.train.instance_noise, ctx.progress))
    return bars if noise is None else bars + noise


def discriminator_loss(ctx: StepContext, fake, real, chord, stats: dict) -> torch.Tensor:
    """BCE with the real target 1 - label_smoothing; [real ; fake] in one forward, split batch norm."""
    both = seen_by_discriminator(ctx, torch.cat([real, fake]))
    logits, _ = ctx.run("discriminator", "forward", both, torch.cat([chord, chord]), splits=2)
    real_logits, fake_logits = logits[:, None].chunk(2)  # (B, 1): one "step" per bar
    loss, accuracy = losses.discriminator_loss(real_logits, fake_logits, label_smoothing=ctx.cfg.train.label_smoothing)
    stats.update(accuracy)
    return loss


def generator_loss(ctx: StepContext, fake, real, chord, stats: dict) -> torch.Tensor:
    """Non-saturating BCE + feature matching on D's first convolution + mean matching."""
    t = ctx.cfg.train
    with ctx.frozen("discriminator") as discriminator:
        fake_logits, fake_features = discriminator(seen_by_discriminator(ctx, fake), chord)
        real_features = discriminator.features(seen_by_discriminator(ctx, real), chord).flatten(1).detach()
    adversarial = losses.generator_loss(fake_logits[:, None])
    feature_matching = losses.batch_mean_distance(real_features, fake_features)
    mean_matching = losses.batch_mean_distance(real.flatten(1), fake.flatten(1))
    stats.update({"feature_matching": feature_matching.detach(), "mean_matching": mean_matching.detach()})
    return adversarial + t.feature_matching_weight * feature_matching + t.mean_matching_weight * mean_matching


@register("midinet")
class MidiNetFamily(ModelFamily):
    network_names = NETWORKS
    sample_conditions = ("chords",)
    sampling_keys = ("model.midinet_prime", "model.midinet_decode", "model.midinet_sample_bn")

    @property
    def bar(self) -> int:
        return steps_per_bar(self.cfg)

    def build_representation(self):
        from musicgan.data.representations import build_representation

        d = self.cfg.data
        if d.representation != "melody_chord":
            raise ConfigError(f"model.name=midinet needs data.representation=melody_chord, got {d.representation!r}")
        if self.cfg.curriculum.max_len != 2 * self.bar:
            raise ConfigError(
                f"model.name=midinet trains on windows of 2 bars: curriculum.max_len must be "
                f"{2 * self.bar} (2 x 4 x data.frames_per_beat), got {self.cfg.curriculum.max_len}"
            )
        return build_representation(
            "melody_chord", steps_per_beat=d.frames_per_beat, transpose=parse_transpose(d.transpose_range)
        )

    def build_networks(self, representation):
        m = self.cfg.model
        generator = MidiNetGenerator(self.bar, m.latent_dim, m.g_hidden, m.midinet_g_channels)
        return {
            "generator": generator,
            "discriminator": MidiNetDiscriminator(
                self.bar, m.midinet_d_channels, m.d_hidden, m.minibatch_features, m.minibatch_kernel_dim
            ),
        }

    def phases(self) -> list[Phase]:
        return [Phase("adversarial", None, NETWORKS, midinet_step, repeat={"generator": 2}, curriculum=False)]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int, chords: str | None = None) -> np.ndarray:
        """(num, bars x bar, 128 + 13) melody_chord steps, bar by bar (module docstring);
        bars = the number of `chords` when given, else length // bar (at least 1). The
        generator's train/eval mode is restored afterwards (the loop samples mid-run)."""
        generator = networks["generator"]
        was_training = generator.training
        try:
            return self._generate_bars(self._sampling_generator(generator, num), num, length, chords)
        finally:
            generator.train(was_training)

    def _generate_bars(self, generator, num: int, length: int, chords: str | None) -> np.ndarray:
        bars = len(chords.split()) if chords else max(1, length // self.bar)
        progression, primes = self._conditions(num, bars, chords)
        device = next(generator.parameters()).device
        previous = torch.as_tensor(primes, device=device)[:, None]  # (num, 1, bar, 128)
        out = []
        for b in range(bars):
            chord = torch.as_tensor(progression[:, b], device=device)
            if b == 0 and self.cfg.model.midinet_prime == "real":
                bar = previous
            else:
                bar = self._decode(generator(generator.noise(num), chord, previous))
            out.append(torch.cat([bar[:, 0], chord[:, None].expand(-1, self.bar, -1)], dim=2))
            previous = bar
        return torch.cat(out, dim=1).float().cpu().numpy()

    def _sampling_generator(self, generator, num: int):
        """Eval mode (running statistics), or a training-mode copy (batch statistics)."""
        if self.cfg.model.midinet_sample_bn == "running":
            return generator.eval()
        if num < 2:
            raise UserError("model.midinet_sample_bn=batch normalises over the samples: --num must be at least 2")
        return copy.deepcopy(generator).train()  # a copy: the checkpoint's running statistics stay as trained

    def _decode(self, bar: torch.Tensor) -> torch.Tensor:
        """(num, 1, bar, 128) in (0, 1) -> one-hot rows: the highest pitch per step (threshold:
        only where it exceeds 0.5, else a rest)."""
        best = bar.max(dim=3, keepdim=True)
        onehot = torch.zeros_like(bar).scatter_(3, best.indices, 1.0)
        if self.cfg.model.midinet_decode == "threshold":
            onehot = onehot * (best.values > 0.5)
        return onehot

    def _conditions(self, num: int, bars: int, chords: str | None):
        """((num, bars, 13) chord vectors, (num, bar, 128) priming bars)."""
        need_song = chords is None or self.cfg.model.midinet_prime == "real"
        songs = self.held_out_windows(bars + 1, num) if need_song else None
        if chords is None:
            progression = np.stack([s[self.bar :: self.bar, NUM_PITCHES:][:bars] for s in songs])
        else:
            vectors = midinet_vectors([parse_chord(name) for name in chords.split()])
            progression = np.repeat(vectors[None], num, axis=0)
        if self.cfg.model.midinet_prime == "real":
            primes = np.stack([s[self.bar : 2 * self.bar, :NUM_PITCHES] for s in songs])
        else:
            primes = np.zeros((num, self.bar, NUM_PITCHES), dtype=np.float32)
        return progression.astype(np.float32), primes.astype(np.float32)

    def held_out_windows(self, bars: int, num: int) -> list[np.ndarray]:
        """`num` encoded held-out songs (cycled) with at least `bars` bars, empty bar included."""
        long_enough = (steps for steps in self._held_out_songs() if len(steps) >= bars * self.bar)
        found = list(itertools.islice(long_enough, num))
        if not found:
            raise UserError(
                f"no held-out song of {bars - 1} bars under data.path={self.cfg.data.path!r} to take "
                f'chords or a first bar from: give --chords "C G Am F" (and model.midinet_prime=zeros)'
            )
        return [found[i % len(found)] for i in range(num)]

    def _held_out_songs(self) -> Iterator[np.ndarray]:
        from musicgan.data.loader import iter_encoded
        from musicgan.data.shards import split_urls

        for split in ("test", "valid"):
            try:
                urls = split_urls(self.cfg.data.path, split)
            except DataError:
                continue
            for _, steps in iter_encoded(urls, self.build_representation()):
                yield steps
            return
