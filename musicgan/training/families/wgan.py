"""WGAN-GP (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs") on piano-roll
windows: the proof that the step engine runs a schedule other than C-RNN-GAN's.

One phase, "adversarial": the critic trains at every step, the generator on every
`train.n_critic`-th (`every`), each step on a fresh batch and fresh noise. The critic's loss
is mean D(fake) - mean D(real) + λ·GP (+ ε·drift), with real, fake and the interpolates x̂
through ONE critic forward (so DDP sees one forward per backward) and the penalty's
gradient taken with create_graph (double backward). The generator's loss is -mean D(fake)
through the critic's plain module, frozen. `generator_ema` is an exponential moving average
of the generator that no optimizer steps; it is updated after every generator update on
every rank alike (same weights in, same weights out) and is what `generate` samples from.

Config read: model.latent_dim, g_hidden, d_hidden, ema_decay; train.n_critic, gp_weight,
drift_penalty; curriculum.max_len (the window; the phase ignores the curriculum); optim.*.
"""

from __future__ import annotations

import numpy as np
import torch

from musicgan import losses
from musicgan.errors import ConfigError
from musicgan.models.wgan import RollCritic, RollGenerator
from musicgan.training.families import ModelFamily, register
from musicgan.training.phases import Phase, StepContext, StepOutput, every, follow

NETWORKS = ("generator", "critic")  # update order: G's loss graph holds the critic's weights


def wgan_gp_step(ctx: StepContext, batch) -> StepOutput:
    """The losses of the networks in `ctx.trains`: the critic's always, G's on its steps."""
    train = ctx.cfg.train
    real = batch.x.to(ctx.device).float()  # (B, T, 88)
    batch_size = real.shape[0]
    if "generator" in ctx.trains:
        fake = ctx.run("generator", "forward", batch_size)  # (B, T, 88), graph into G
    else:
        with torch.no_grad():  # a critic-only step: nobody needs G's graph
            fake = ctx.module("generator")(batch_size)
    out = StepOutput({}, {})
    if "generator" in ctx.trains:
        with ctx.frozen("critic") as critic:
            out.losses["generator"] = losses.wasserstein_g(critic(fake))
    x_hat = losses.interpolate(real, fake.detach())
    scores = ctx.run_for_penalty("critic", "forward", torch.cat([real, fake.detach(), x_hat]))  # (3B,)
    real_scores, fake_scores, hat_scores = scores.split(batch_size)
    distance = losses.wasserstein_d(real_scores, fake_scores)
    norms = losses.input_gradient_norms(hat_scores, x_hat)
    penalty = losses.penalty_of_norms(norms, train.gp_weight)
    critic_loss = distance + penalty
    if train.drift_penalty > 0:
        critic_loss = critic_loss + losses.drift_penalty(real_scores, train.drift_penalty)
    out.losses["critic"] = critic_loss
    out.stats.update(critic_stats(distance, penalty, norms, real, fake))
    return out


def critic_stats(distance, penalty, norms, real, fake) -> dict[str, torch.Tensor]:
    """What the log shows of the critic: its Wasserstein estimate, the penalty, the mean
    slope at x̂ and the real-fake batch distance, so a large estimate can be read as
    slope x distance (docs/musegan.md)."""
    with torch.no_grad():
        return {
            "wasserstein": -distance.detach(),
            "gradient_penalty": penalty.detach(),
            "critic_slope": norms.detach().mean(),
            "batch_distance": losses.batch_distance(real, fake.detach()),
        }


def ema_update(decay: float):
    """The phase's `after_updates`: generator_ema <- decay * ema + (1 - decay) * generator."""

    def after(ctx: StepContext, trained: frozenset[str]) -> None:
        if "generator" in trained:
            follow(ctx.module("generator_ema"), ctx.module("generator"), decay)

    return after


@register("wgan-gp")
class WGANGPFamily(ModelFamily):
    network_names = ("generator", "critic", "generator_ema")
    learning_rate_keys = {"generator": "optim.g_lr", "critic": "optim.d_lr"}

    def build_representation(self):
        if self.cfg.data.representation != "pianoroll":
            raise ConfigError(
                f"model.name=wgan-gp needs data.representation=pianoroll, got {self.cfg.data.representation!r}"
            )
        return super().build_representation()

    def build_networks(self, representation):
        m = self.cfg.model
        keys, seq_len = representation.num_features, self.cfg.curriculum.max_len
        generator = RollGenerator(keys, seq_len, m.latent_dim, m.g_hidden)
        ema = RollGenerator(keys, seq_len, m.latent_dim, m.g_hidden)
        ema.load_state_dict(generator.state_dict())
        ema.requires_grad_(False)
        return {"generator": generator, "critic": RollCritic(keys, m.d_hidden), "generator_ema": ema}

    def phases(self) -> list[Phase]:
        return [
            Phase(
                "adversarial",
                None,
                NETWORKS,
                wgan_gp_step,
                trains=every({"generator": self.cfg.train.n_critic}, NETWORKS),
                after_updates=ema_update(self.cfg.model.ema_decay),
                curriculum=False,
            )
        ]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        """(num, length, 88) from the EMA generator; windows of max_len frames concatenated."""
        generator = networks["generator_ema"]
        chunks, have = [], 0
        while have < length:
            chunks.append(generator(num))
            have += chunks[-1].shape[1]
        return torch.cat(chunks, dim=1)[:, :length].float().cpu().numpy()
