"""JazzGAN (Trieu & Keller 2018, "JazzGAN: Improvising with Generative Adversarial Networks"):
a chord-conditioned LSTM GAN on discrete melody tokens (representation
`melody_chord_events`, one of four rhythm encodings by `data.rhythm_encoding`).

One phase, "adversarial". Each step takes a batch of real windows, splits every row into
its tokens and its chord, and feeds the SAME chords to the generator (conditional GAN: the
critic judges tokens given the chords). Real tokens reach the critic as one-hot rows, the
generator's as distributions, each concatenated with the chord. How the critic sees the
discrete outputs is not stated by the paper; `model.jazzgan_objective` picks, and the run's
config.json records it:

  wgan-gp (default): softmax rows, the WGAN-GP critic loss (mean D(fake) - mean D(real) +
      λ·GP, real, fake and interpolates through ONE critic forward) and -mean D(fake) for G;
      the critic trains every step, G on every `train.n_critic`-th. The critic's LSTM is
      written in torch ops (musicgan.models.jazzgan) so the penalty's double backward works
      on any device.
  gumbel: Gumbel-softmax rows (temperature `model.gumbel_tau`), the standard GAN losses
      (BCE on the critic's score as a logit, non-saturating G), both networks every step.

Sampling (`generate`): the chords of held-out songs (test split, else valid, else train;
windows from each song's first bar line, cycled), one token per field and row, rows
[tokens ; chords] that the representation decodes to a melody track and a chord track.
`model.jazzgan_decode` picks the token: sample (default) draws it from the field's
softmax(logits / `model.sample_temperature`) with torch's default generator, which
`musicgan sample --seed` seeds (as it seeds G's noise), so a seed repeats its samples;
argmax takes the most probable token. Sample is the default because argmax throws the
distribution away: a generator that spreads its note probability over many pitches still
puts the single sustain / empty-slot token first at nearly every row, and argmax writes an
empty melody (README "JazzGAN" has the measured figures); sampling is also what JazzGAN and
sequence GANs generally do at generation time.

Config read: data.rhythm_encoding, window_bars (when > 0 the family sets curriculum.start and
max_len to that many bars of the encoding's rows, so one preset serves every encoding);
model.latent_dim, g_hidden, g_layers, d_hidden, d_layers, jazzgan_objective, gumbel_tau,
jazzgan_decode, sample_temperature (the last two at sampling only);
train.n_critic, gp_weight; curriculum.max_len (the window); optim.*.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch

from musicgan import losses
from musicgan.errors import ConfigError, DataError, UserError
from musicgan.models.jazzgan import JazzCritic, JazzGenerator, one_hot_tokens
from musicgan.training.families import ModelFamily, register
from musicgan.training.phases import Phase, StepContext, StepOutput, every

NETWORKS = ("generator", "critic")  # update order: G's loss graph holds the critic's weights


class JazzStep:
    """The phase's step function for one representation's token fields and one objective."""

    def __init__(self, vocab_sizes: tuple[int, ...], objective: str, gumbel_tau: float) -> None:
        self.vocab_sizes, self.fields = vocab_sizes, len(vocab_sizes)
        self.objective, self.tau = objective, gumbel_tau if objective == "gumbel" else 0.0

    def __call__(self, ctx: StepContext, batch) -> StepOutput:
        x = batch.x.to(ctx.device).float()
        chords = x[..., self.fields :]
        real = torch.cat([one_hot_tokens(x[..., : self.fields].round(), self.vocab_sizes), chords], dim=2)
        fake = torch.cat([self._generated(ctx, chords), chords], dim=2)
        if self.objective == "gumbel":
            return self._standard_gan(ctx, real, fake)
        return self._wgan_gp(ctx, real, fake)

    def _generated(self, ctx: StepContext, chords: torch.Tensor) -> torch.Tensor:
        if "generator" in ctx.trains:
            logits = ctx.run("generator", "forward", chords)
        else:
            with torch.no_grad():  # a critic-only step: nobody needs G's graph
                logits = ctx.module("generator")(chords)
        return ctx.module("generator").distributions(logits, self.tau)

    def _wgan_gp(self, ctx: StepContext, real: torch.Tensor, fake: torch.Tensor) -> StepOutput:
        out = StepOutput({}, {})
        if "generator" in ctx.trains:
            with ctx.frozen("critic") as critic:
                out.losses["generator"] = losses.wasserstein_g(critic(fake))
        x_hat = losses.interpolate(real, fake.detach())
        scores = ctx.run_for_penalty("critic", "forward", torch.cat([real, fake.detach(), x_hat]))
        real_scores, fake_scores, hat_scores = scores.split(real.shape[0])
        distance = losses.wasserstein_d(real_scores, fake_scores)
        penalty = losses.gradient_penalty(hat_scores, x_hat, ctx.cfg.train.gp_weight)
        out.losses["critic"] = distance + penalty
        out.stats.update({"wasserstein": (-distance).detach(), "gradient_penalty": penalty.detach()})
        return out

    def _standard_gan(self, ctx: StepContext, real: torch.Tensor, fake: torch.Tensor) -> StepOutput:
        out = StepOutput({}, {})
        if "generator" in ctx.trains:
            with ctx.frozen("critic") as critic:
                out.losses["generator"] = losses.generator_loss(critic(fake)[:, None])
        scores = ctx.run("critic", "forward", torch.cat([real, fake.detach()]))  # one forward for both
        real_scores, fake_scores = scores.split(real.shape[0])
        out.losses["critic"], stats = losses.discriminator_loss(real_scores[:, None], fake_scores[:, None])
        out.stats.update(stats)
        return out


def sampled_tokens(logits: torch.Tensor, vocab_sizes, temperature: float = 1.0) -> torch.Tensor:
    """(B, T, fields) tokens, each field's drawn from softmax(logits / temperature) with torch's
    default generator; probabilities in float32 whatever precision the network ran in."""
    fields = []
    for field_logits in logits.split(tuple(vocab_sizes), dim=2):
        probs = torch.softmax(field_logits.float() / temperature, dim=2)
        drawn = torch.multinomial(probs.reshape(-1, probs.shape[2]), 1)
        fields.append(drawn.reshape(probs.shape[:2]))
    return torch.stack(fields, dim=2)


@register("jazzgan")
class JazzGANFamily(ModelFamily):
    sampling_keys = ("model.jazzgan_decode", "model.sample_temperature")
    network_names = NETWORKS
    learning_rate_keys = {"generator": "optim.g_lr", "critic": "optim.d_lr"}

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        if cfg.data.window_bars > 0:  # before the trainer writes config.json: the run records the rows
            rows = cfg.data.window_bars * self.build_representation().window_align
            cfg.curriculum.start = cfg.curriculum.max_len = rows

    def build_representation(self):
        from musicgan.data.representations import build_representation

        if self.cfg.data.representation != "melody_chord_events":
            raise ConfigError(
                f"model.name=jazzgan needs data.representation=melody_chord_events, "
                f"got {self.cfg.data.representation!r}"
            )
        return build_representation("melody_chord_events", rhythm_encoding=self.cfg.data.rhythm_encoding)

    def build_networks(self, representation):
        m = self.cfg.model
        vocab, chord_dim = representation.vocab_sizes, representation.num_features - representation.num_token_fields
        return {
            "generator": JazzGenerator(vocab, chord_dim, m.latent_dim, m.g_hidden, m.g_layers),
            "critic": JazzCritic(sum(vocab) + chord_dim, m.d_hidden, m.d_layers),
        }

    def phases(self) -> list[Phase]:
        m, representation = self.cfg.model, self.build_representation()
        period = self.cfg.train.n_critic if m.jazzgan_objective == "wgan-gp" else 1
        step = JazzStep(representation.vocab_sizes, m.jazzgan_objective, m.gumbel_tau)
        return [
            Phase("adversarial", None, NETWORKS, step, trains=every({"generator": period}, NETWORKS), curriculum=False)
        ]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        """(num, length, F) rows [decoded tokens ; held-out chords] (module docstring)."""
        representation = self.build_representation()
        if num < 1:
            return np.zeros((0, length, representation.num_features), dtype=np.float32)
        generator = networks["generator"]
        weight = next(generator.parameters())
        chords = torch.as_tensor(
            self._held_out_chords(representation, num, length), device=weight.device, dtype=weight.dtype
        )
        tokens = self._decode(generator, generator(chords))
        return torch.cat([tokens.to(chords.dtype), chords], dim=2).float().cpu().numpy()

    def _decode(self, generator, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.model.jazzgan_decode == "argmax":
            return generator.tokens(logits)
        return sampled_tokens(logits, generator.vocab_sizes, self.cfg.model.sample_temperature)

    def _held_out_chords(self, representation, num: int, length: int) -> np.ndarray:
        chords = representation.chord_slice
        found = list(
            itertools.islice(
                (s[:length, chords] for s in self._held_out_songs(representation) if len(s) >= length), num
            )
        )
        if not found:
            raise UserError(
                f"no song of {length} rows under data.path={self.cfg.data.path!r} to take a chord progression from"
            )
        return np.stack([found[i % len(found)] for i in range(num)])

    def _held_out_songs(self, representation) -> Iterator[np.ndarray]:
        from musicgan.data.loader import iter_encoded
        from musicgan.data.shards import split_urls

        for split in ("test", "valid", "train"):
            try:
                urls = split_urls(self.cfg.data.path, split)
            except DataError:
                continue
            for _, steps in iter_encoded(urls, representation):
                yield steps
