"""C-RNN-GAN (Mogren 2016), C-RNN-GAN-K and its MLE baseline as phase tables.

crnngan: MLE pretraining of G (teacher forced) for `train.pretrain_epochs`, then
adversarial training with freezing and (optionally) feature matching.
mle:     the paper's baseline, the same generator trained only on next-event squared error.
"""

from __future__ import annotations

import numpy as np
import torch

from musicgan import losses
from musicgan.models.crnngan import CRNNDiscriminator, CRNNGenerator
from musicgan.models.minibatch import halves_of
from musicgan.training.families import ModelFamily, register
from musicgan.training.freezing import decide_freezing
from musicgan.training.phases import Phase, StepContext, StepOutput, in_mode


def with_l2(ctx: StepContext, name: str, loss: torch.Tensor) -> torch.Tensor:
    """The paper adds l2 * sum(w^2) / 2 of the updated network to each loss."""
    scale = ctx.cfg.optim.l2
    if scale <= 0:
        return loss
    return loss + losses.l2_penalty(ctx.module(name).parameters(), scale)


def mle_step(ctx: StepContext, batch) -> StepOutput:
    """Teacher-forced next-event prediction (pretraining, and the whole MLE baseline)."""
    x = batch.x.to(ctx.device)  # (B, T, F)
    mask = losses.valid_steps(batch.lengths.to(ctx.device), x.shape[1])
    pred = ctx.run("generator", "teacher_forced", x)  # (B, T, F): prediction of x[:, t]
    loss = losses.mle_loss(pred, x, mask)
    return StepOutput({"generator": with_l2(ctx, "generator", loss)}, {"mle": loss.detach()})


class _LossThroughSharedForward(torch.autograd.Function):
    """G's loss, computed from D's shared forward on a detached copy of the fakes (a leaf),
    as a node of G's graph: forward returns the loss's value; backward (run only when G's
    update runs, so a G held by freezing costs nothing) takes the loss's gradient w.r.t. that
    leaf with `torch.autograd.grad(..., inputs=leaf, retain_graph=True)` and hands it to the
    fakes, from where G's own backward carries on.

    Input gradients only: no AccumulateGrad node of D runs, so D's DDP reducer does not see
    this pass, and D's DeepSpeed engine neither: the forward ran through `engine.module`
    (docs/distributed-pitfalls.md). D's graph is kept for D's own backward, which the phase
    runs after G's."""

    @staticmethod
    def forward(ctx, fake, shared):  # shared = (loss, leaf): hidden from autograd on purpose
        ctx.shared = shared
        return shared[0].detach().clone()

    @staticmethod
    def backward(ctx, grad):
        loss, leaf = ctx.shared
        (leaf_grad,) = torch.autograd.grad(loss, leaf, retain_graph=True)
        return grad * leaf_grad, None


def adversarial_step(ctx: StepContext, batch) -> StepOutput:
    """One G forward; D on real and fake in one batch through D's wrapper; G's loss from that
    same forward (`model.crnngan_shared_d_forward`, the default) or from a second forward of
    D's plain module, frozen, on the fakes (false: how the README's results were measured)."""
    cfg = ctx.cfg.train
    shared = ctx.cfg.model.crnngan_shared_d_forward
    real = batch.x.to(ctx.device)  # (B, T, F)
    batch_size, seq_len = real.shape[0], real.shape[1]
    real_mask = losses.valid_steps(batch.lengths.to(ctx.device), seq_len)
    fake_mask = torch.ones_like(real_mask)

    fake = ctx.run("generator", "forward", batch_size, seq_len)  # (B, T, F)

    # D's loss: real and (detached) fake through the DDP wrapper in ONE forward, so DDP sees
    # one forward per backward and the sequences share the kernels. With the shared forward
    # the detached fakes are a leaf that wants a gradient: G's loss reads it.
    fake_leaf = fake.detach().requires_grad_(shared)
    both = torch.cat([real, fake_leaf], dim=0)
    noise = losses.instance_noise(both, losses.instance_noise_std(cfg.instance_noise, ctx.progress))
    if noise is not None:  # real and fake alike: hides the real notes' grid (semitones, a constant velocity)
        both = both + noise
    lengths = torch.cat([batch.lengths.to(ctx.device), torch.full_like(batch.lengths.to(ctx.device), seq_len)])
    # Minibatch features compare real rows with real rows and fakes with fakes: mixed, a
    # fake's closeness to the real rows would leak the batch's composition into its logit,
    # and D would be judging a half-real batch it never meets at sampling time.
    # (G's loss from a second D forward on the fakes alone compares them with each other too.)
    halves = halves_of(2 * batch_size, 2, ctx.device)  # 0 real, 1 fake
    # Shared: two backward passes read this graph (G's input-only one, then D's), so it is
    # run through the forward each backend keeps for graphs differentiated more than once:
    # DDP's wrapper, but DeepSpeed's engine.module, since a backward through the engine's
    # own forward runs the engine's gradient reduction (an IndexError at ZeRO 1/2).
    run_d = ctx.run_for_penalty if shared else ctx.run
    logits, features = run_d("discriminator", "forward", both, lengths, halves)  # (2B, T), (2B, T, H)
    real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
    d_loss, d_stats = losses.discriminator_loss(
        real_logits, fake_logits, real_mask, cfg.label_smoothing, fake_mask=fake_mask
    )

    if shared:
        # The same logits and features, so D's dropout masks on the fakes are ONE draw for
        # both losses (the two-forward path draws a second set for G's; docs/training-engine.md).
        g_logits, g_features = fake_logits, features[batch_size:]
    else:
        # D's plain module with its parameters frozen (never D's DDP wrapper / engine inside
        # G's step: see docs/distributed-pitfalls.md), gradients flow only into G.
        # The fakes with the same instance noise D's forward gave them (no second draw).
        seen_fake = fake if noise is None else fake + noise[batch_size:]
        with ctx.frozen("discriminator") as discriminator:
            g_logits, g_features = discriminator(seen_fake, None)
    g_adversarial = losses.generator_loss(g_logits, fake_mask)
    if cfg.feature_matching:
        # Compared on the steps the real rows have (padding carries no features).
        g_loss = losses.feature_matching_loss(
            features[:batch_size].detach(), g_features, real_mask, mode=cfg.feature_matching_mode
        )
    else:
        g_loss = g_adversarial
    if shared:
        g_loss = _LossThroughSharedForward.apply(fake, (g_loss, fake_leaf))

    # The freezing rule compares D's log-loss with G's ADVERSARIAL loss (feature matching
    # trains G on a distance whose scale has nothing to do with D's), both without l2.
    stats = {
        "d_acc_real": d_stats["accuracy_real"],
        "d_acc_fake": d_stats["accuracy_fake"],
        "g_adversarial": g_adversarial.detach(),
        "freeze_on/generator": g_adversarial.detach(),
        "freeze_on/discriminator": d_loss.detach(),
    }
    return StepOutput(
        {"generator": with_l2(ctx, "generator", g_loss), "discriminator": with_l2(ctx, "discriminator", d_loss)},
        stats,
    )


def freezing_hold(cfg):
    """The phase's `hold`: Mogren's freezing from the all-reduced losses (freezing.py)."""
    theta_d, theta_g = cfg.train.freeze_d_threshold, cfg.train.freeze_g_threshold

    def hold(values: dict[str, float]) -> set[str]:
        decision = decide_freezing(values["freeze_on/discriminator"], values["freeze_on/generator"], theta_d, theta_g)
        return {
            name
            for name, frozen in (
                ("discriminator", decision.freeze_discriminator),
                ("generator", decision.freeze_generator),
            )
            if frozen
        }

    return hold


@register("crnngan")
class CRNNGAN(ModelFamily):
    sampling_keys = ("model.sample_dropout",)
    network_names = ("generator", "discriminator")
    freezing_keys = ("train.freeze_d_threshold", "train.freeze_g_threshold")

    def build_networks(self, representation):
        m = self.cfg.model
        features = representation.num_features
        return {
            "generator": CRNNGenerator(features, hidden=m.g_hidden, layers=m.g_layers, dropout=m.g_dropout),
            "discriminator": CRNNDiscriminator(
                features,
                hidden=m.d_hidden,
                layers=m.d_layers,
                dropout=m.d_dropout,
                layout=m.d_layout,
                minibatch_features=m.minibatch_features,
                minibatch_kernel_dim=m.minibatch_kernel_dim,
            ),
        }

    def phases(self) -> list[Phase]:
        table = []
        if self.cfg.train.pretrain_epochs > 0:
            table.append(Phase("pretrain", self.cfg.train.pretrain_epochs, ("generator",), mle_step))
        table.append(
            Phase(
                "adversarial",
                None,
                # G first: its loss graph holds D's weights, which D's step changes in place.
                ("generator", "discriminator"),
                adversarial_step,
                hold=freezing_hold(self.cfg),
                curriculum=self.cfg.curriculum.continue_adversarial,
            )
        )
        return table

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        """(num, length, F) free-running samples, drawn with the generator's dropout ACTIVE
        (`model.sample_dropout`, default true; false samples in eval mode).

        Why: the generator's only other randomness is z ~ U[0,1) at each step, and both MLE
        pretraining (z carries no information about the next event) and feature matching
        teach it to ignore z; its variety comes from the dropout masks (p = 0.5 on every
        layer), which are part of what D was trained against: in eval mode the samples
        collapse to a few pitches (README.md, "Results so far", has the figures). The
        reference code samples the same way: its `sample(session, m)` runs the
        is_training=True graph, dropout included. Reproducible: masks come from the seeded
        torch RNG. The MLE baseline inherits this, so both are sampled alike.
        """
        generator = networks["generator"]
        with in_mode(generator, training=self.cfg.model.sample_dropout):
            return generator(num, length).float().cpu().numpy()


@register("mle")
class MLEBaseline(CRNNGAN):
    """The paper's baseline: the generator alone, next-event squared error throughout."""

    network_names = ("generator",)

    def build_networks(self, representation):
        return {"generator": super().build_networks(representation)["generator"]}

    def phases(self) -> list[Phase]:
        return [Phase("mle", None, ("generator",), mle_step)]
