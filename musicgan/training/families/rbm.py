"""RNN-RBM and LSTM-RBM (Boulanger-Lewandowski et al. 2012; the LSTM-RBM write-up, see
musicgan/models/rbm.py) as a one-phase table.

One phase, "cd", for the whole run: each step computes the CD-k surrogate of a batch of
piano-roll windows (k = model.gibbs_steps) through the generator's training wrapper, so
DDP / DeepSpeed average the CD gradient across ranks like any other loss. No
discriminator: the plain checkpoint holds an empty `discriminator`.

Config read: model.g_hidden (recurrent units, 100 in the write-up), model.rbm_hidden (150),
model.gibbs_steps (k of CD-k, 15 in the reference code), model.sample_gibbs_steps (25),
model.rbm_generation ("sample" | "top1": the write-up's keep-the-most-probable-key variant; an
optional key, "sample" when the config has none), optim.l2 (added as l2 * sum(w^2) / 2).
"""

from __future__ import annotations

import numpy as np
import torch

from musicgan import losses
from musicgan.errors import ConfigError
from musicgan.models.rbm import RecurrentRBM
from musicgan.training.families import ModelFamily, register
from musicgan.training.phases import Phase, StepContext, StepOutput, in_mode


def _with_l2(ctx: StepContext, loss: torch.Tensor) -> torch.Tensor:
    scale = ctx.cfg.optim.l2
    if scale <= 0:
        return loss
    return loss + losses.l2_penalty(ctx.module("generator").parameters(), scale)


def cd_step(ctx: StepContext, batch) -> StepOutput:
    """CD-k on a batch of binary windows (B, T, 88); padding frames are masked out."""
    v = batch.x.to(ctx.device).float()
    lengths = batch.lengths.to(ctx.device)
    loss, stats = ctx.run("generator", "forward", v, lengths, ctx.cfg.model.gibbs_steps)
    return StepOutput({"generator": _with_l2(ctx, loss)}, {k: t.detach() for k, t in stats.items()})


@register("rnnrbm")
class RNNRBMFamily(ModelFamily):
    sampling_keys = ("model.rbm_generation", "model.sample_gibbs_steps")
    network_names = ("generator",)
    cell = "rnn"

    def build_representation(self):
        if self.cfg.data.representation != "pianoroll":
            raise ConfigError(
                f"model.name={self.cfg.model.name} needs data.representation=pianoroll, "
                f"got {self.cfg.data.representation!r}"
            )
        return super().build_representation()

    def build_networks(self, representation):
        m = self.cfg.model
        return {
            "generator": RecurrentRBM(
                representation.num_features, rbm_hidden=m.rbm_hidden, rnn_hidden=m.g_hidden, cell=self.cell
            )
        }

    def phases(self) -> list[Phase]:
        # curriculum=False: windows of curriculum.max_len frames from the first step.
        return [Phase("cd", None, ("generator",), cd_step, curriculum=False)]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        model = networks["generator"]
        mode = getattr(self.cfg.model, "rbm_generation", "sample")
        with in_mode(model):
            return model.generate(num, length, k=self.cfg.model.sample_gibbs_steps, mode=mode).float().cpu().numpy()


@register("lstmrbm")
class LSTMRBMFamily(RNNRBMFamily):
    """The LSTM-RBM write-up's change: an LSTM in place of the RNN (longer memory)."""

    cell = "lstm"
