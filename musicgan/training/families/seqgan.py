"""SeqGAN (Yu et al. 2017) and Polyphonic SeqGAN (Lee et al. 2017) on discrete tokens:
`melody_grid` melodies or `tokens` note/chord words. Networks: models/seqgan.py.

Phases (epochs of the loader, each step one real batch):
  pretrain_g   train.pretrain_epochs: maximum likelihood, the note-LSTM's mean token NLL
               step (families/notes.lm_step); the rollout copy follows G exactly.
  pretrain_d   train.pretrain_d_epochs: D on the real batch vs as many fresh G samples.
  adversarial  the rest: D at every step, G on every train.n_critic-th (the D-to-G ratio);
               G's loss is the policy gradient -sum_{b,t} log p(y_t | y_<t) * Q(b, t) (a
               sum, not a mean; no discount; no baseline unless
               model.seqgan_reward_baseline=batch_mean), after each G update the rollout
               copy moves: rollout <- rate * rollout + (1 - rate) * G (rate
               model.seqgan_rollout_update_rate; the embedding is copied exactly, as the
               reference does), identically on every rank. G's learning rate here is
               optim.g_lr times model.seqgan_adversarial_lr_factor (1, as the reference;
               Polyphonic SeqGAN's 10), a phase factor on the run's rate (phases.py).
Fakes are made on the fly: every D step draws fresh G samples instead of the reference's
file of negatives regenerated every few epochs (the same distribution, no disk round trip).
Rewards Q(b, t): for t < T the mean over K = model.seqgan_rollouts completions of y_<=t by
the rollout copy of D's P(real); for t = T, D(y) itself. All B*K*(T-1) completions are ONE
generation call (SeqGenerator.rollout); under DDP each rank rolls out its own batch. D in
eval mode (no dropout) scores them, as the reference feeds keep_prob 1 there.
D's loss: cross-entropy of the 2-way output, or least squares on one score
(model.seqgan_d_loss=lsgan, Polyphonic SeqGAN: reward sigmoid(score)), plus
model.seqgan_d_l2 * sum(w^2)/2 over the output layer.

Config read: model.embedding_dim, g_hidden (G), seqgan_* (D, rollouts, G's adversarial
rate factor, reward baseline), d_dropout (1 - keep probability); train.pretrain_epochs, pretrain_d_epochs,
n_critic; curriculum.max_len (T: the phases ignore the curriculum); optim.g_lr, d_lr, grad_clip (the reference clips G's
gradient at 5.0 and not D's; here the backend's one key clips both networks).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from musicgan.errors import ConfigError
from musicgan.models.notes import SPECIAL
from musicgan.models.seqgan import FILTER_TABLES, CNNDiscriminator, SeqGenerator
from musicgan.training.families import ModelFamily, register
from musicgan.training.families.notes import lm_step
from musicgan.training.phases import Phase, StepContext, StepOutput, every, follow, in_mode

NETWORKS = ("generator", "discriminator")  # update order of the adversarial phase
REPRESENTATIONS = ("melody_grid", "tokens")
# Rollouts D scores per forward: (T-1)*K*B rows of the paper's music config are ~32k, whose
# convolution activations alone would take ~7 GB in one call.
REWARD_CHUNK = 4096


def _ids(batch, device) -> torch.Tensor:
    return batch.x.to(device)[..., 0].long()  # (B, T)


# ---------------------------------------------------------------------------------------------
def d_loss(ctx: StepContext, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D on [real; fresh G samples] in ONE forward (DDP sees one forward per backward)."""
    m = ctx.cfg.model
    fake = ctx.module("generator").sample(real.shape[0], real.shape[1])  # no graph: only D trains here
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(real.device)
    scores = ctx.run("discriminator", "forward", torch.cat([real, fake]))
    if m.seqgan_d_loss == "lsgan":
        loss, says_real = F.mse_loss(scores, labels), scores > 0.5
    else:
        loss, says_real = F.cross_entropy(scores, labels.long()), scores[:, 1] > scores[:, 0]
    loss = loss + m.seqgan_d_l2 * ctx.module("discriminator").output_l2()
    correct = (says_real == labels.bool()).float()
    return loss, {
        "d_acc_real": correct[: len(real)].mean().detach(),
        "d_acc_fake": correct[len(real) :].mean().detach(),
    }


def pretrain_d_step(ctx: StepContext, batch) -> StepOutput:
    loss, stats = d_loss(ctx, _ids(batch, ctx.device))
    return StepOutput({"discriminator": loss}, stats)


@torch.no_grad()
def rewards(
    rollout: SeqGenerator, discriminator: CNNDiscriminator, ids: torch.Tensor, num_rollouts: int
) -> torch.Tensor:
    """(B, T) sampled ids -> (B, T) Q: mean D(P real) of K completions per prefix, D(y) at t = T."""
    completions = rollout.rollout(ids, num_rollouts).reshape(-1, ids.shape[1])  # ((T-1) K B, T)
    with in_mode(discriminator):  # no dropout
        scored = torch.cat([discriminator.real_probability(chunk) for chunk in completions.split(REWARD_CHUNK)])
        full = discriminator.real_probability(ids)  # (B,)
    partial = scored.view(ids.shape[1] - 1, num_rollouts, ids.shape[0]).mean(dim=1)  # (T-1, B)
    return torch.cat([partial.T, full[:, None]], dim=1)


def policy_gradient_loss(log_probs: torch.Tensor, q: torch.Tensor, baseline: str = "none") -> torch.Tensor:
    """-sum_{b,t} log p(y_t | y_<t) * (Q(b, t) - baseline_t): a sum (the paper's estimator).
    baseline none: 0, the paper's; batch_mean: mean_b Q(b, t) over this rank's batch, which
    leaves the gradient's expectation unchanged (up to the 1/B share of a sample's own Q in
    the mean) and removes the push every sampled token gets from an all-positive reward."""
    if baseline == "batch_mean":
        q = q - q.mean(dim=0, keepdim=True)
    return -(log_probs * q).sum()


def adversarial_step(ctx: StepContext, batch) -> StepOutput:
    """G's policy-gradient loss on its steps (rollouts are its cost), D's loss always."""
    real = _ids(batch, ctx.device)
    out = StepOutput({}, {})
    if "generator" in ctx.trains:
        fake = ctx.module("generator").sample(real.shape[0], real.shape[1])
        q = rewards(ctx.module("rollout"), ctx.module("discriminator"), fake, ctx.cfg.model.seqgan_rollouts)
        log_probs = ctx.run("generator", "forward", fake)
        out.losses["generator"] = policy_gradient_loss(log_probs, q, ctx.cfg.model.seqgan_reward_baseline)
        out.stats["reward"] = q.mean()
    if "discriminator" in ctx.trains:
        out.losses["discriminator"], stats = d_loss(ctx, real)
        out.stats.update(stats)
    return out


def rollout_update(rate: float):
    """An `after_updates` hook: after each G update, rollout <- rate * rollout + (1 - rate) * G
    for the LSTM and the output layer, the embedding copied (the reference's delayed copy)."""

    def after(ctx: StepContext, trained: frozenset[str]) -> None:
        if "generator" in trained:
            follow(ctx.module("rollout"), ctx.module("generator"), rate, exact="embedding.")

    return after


@register("seqgan")
class SeqGANFamily(ModelFamily):
    network_names = ("generator", "discriminator", "rollout")  # the rollout copy has no optimizer

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        t = cfg.train
        if t.pretrain_epochs + t.pretrain_d_epochs > t.epochs:
            raise ConfigError(
                f"train.pretrain_epochs={t.pretrain_epochs} + train.pretrain_d_epochs="
                f"{t.pretrain_d_epochs} exceeds train.epochs={t.epochs}"
            )
        if cfg.curriculum.max_len < 2:
            raise ConfigError(
                f"model.name=seqgan needs sequences of at least 2 tokens (curriculum.max_len={cfg.curriculum.max_len})"
            )

    def build_representation(self):
        if self.cfg.data.representation not in REPRESENTATIONS:
            raise ConfigError(
                f"model.name=seqgan needs data.representation={' or '.join(REPRESENTATIONS)}, "
                f"got {self.cfg.data.representation!r}"
            )
        return super().build_representation()

    def build_networks(self, representation):
        m, seq_len = self.cfg.model, self.cfg.curriculum.max_len
        vocab_size = int(getattr(representation, "vocab_size", 0))
        if vocab_size < 2:
            raise ConfigError("the token vocabulary is empty: fit the representation on training songs first")
        first_id = SPECIAL if representation.name == "tokens" else 0  # never emit padding / unknown
        generator = SeqGenerator(vocab_size, m.embedding_dim, m.g_hidden, first_id=first_id)
        rollout = SeqGenerator(vocab_size, m.embedding_dim, m.g_hidden, first_id=first_id)
        rollout.load_state_dict(generator.state_dict())
        rollout.requires_grad_(False)
        try:
            discriminator = CNNDiscriminator(
                vocab_size,
                seq_len,
                m.seqgan_d_embedding,
                FILTER_TABLES[m.seqgan_d_filters],
                dropout=m.d_dropout,
                least_squares=m.seqgan_d_loss == "lsgan",
            )
        except ValueError as exc:
            raise ConfigError(f"model.seqgan_d_filters={m.seqgan_d_filters}: {exc}") from None
        return {"generator": generator, "discriminator": discriminator, "rollout": rollout}

    def phases(self) -> list[Phase]:
        t, rate = self.cfg.train, self.cfg.model.seqgan_rollout_update_rate
        g_factor = {"generator": self.cfg.model.seqgan_adversarial_lr_factor}
        return [
            Phase(
                "pretrain_g",
                t.pretrain_epochs,
                ("generator",),
                lm_step,
                after_updates=rollout_update(0.0),
                curriculum=False,
            ),
            Phase("pretrain_d", t.pretrain_d_epochs, ("discriminator",), pretrain_d_step, curriculum=False),
            Phase(
                "adversarial",
                None,
                NETWORKS,
                adversarial_step,
                trains=every({"generator": t.n_critic}, NETWORKS),
                after_updates=rollout_update(rate),
                curriculum=False,
                lr_factors=lambda ctx: g_factor,
            ),
        ]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        """(num, length, 1) int64 ids sampled from G (the trained policy, not the copy)."""
        return networks["generator"].sample(num, length).cpu().numpy()[..., None].astype(np.int64)
