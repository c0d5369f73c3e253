"""Discrete-note models of Nguyen et al. 2018 ("Generating Pokemon-Inspired Music from Neural
Networks") on the token representation (note/chord vocabulary).

note-lstm:   softmax next-token LSTM, cross-entropy. Unidirectional: every step predicts
             the next token (teacher forced, inputs shifted right behind the start id 0).
             Bidirectional (Nguyen et al.): each row predicts the token after a random prefix of
             its window (length 0 .. len-1), so generation can start from the start symbol
             and slide a window of up to curriculum.max_len tokens.
note-mlpgan: Nguyen et al.'s GAN. Representation decision: tokens, mapped to [-1, 1] by
             vocabulary id as they do ((id - V/2) / (V/2), V = vocabulary size with
             padding and unknown); generated values map back by rounding, clamped to real
             note/chord ids. The id order is by corpus frequency (TokenRepresentation), so
             the scale has no musical meaning; that is their design, kept on purpose.
             G: MLP from z ~ N(0, I_latent_dim) to curriculum.max_len values (100 in
             their code); D: 2-layer LSTM + dense head. BCE losses, D on real and fake averaged.

Config read: model.embedding_dim, g_hidden, g_layers, g_dropout, bidirectional (LSTM);
model.latent_dim, g_hidden (G widths g_hidden/4, /2, /1: 256, 512, 1024 in Nguyen et al.),
d_hidden, d_layers (GAN); curriculum.max_len (window / generated length); optim.*.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from musicgan import losses
from musicgan.errors import ConfigError
from musicgan.models.notes import (
    LSTMNoteDiscriminator,
    MLPNoteGenerator,
    NoteLSTM,
    ids_to_unit,
    unit_to_ids,
)
from musicgan.training.families import ModelFamily, register
from musicgan.training.phases import Phase, StepContext, StepOutput, in_mode


def _tokens(batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T) int64, lengths (B,)) from a token batch (B, T, 1)."""
    return batch.x.to(device)[..., 0].long(), batch.lengths.to(device)


class _TokenFamily(ModelFamily):
    def build_representation(self):
        if self.cfg.data.representation != "tokens":
            raise ConfigError(
                f"model.name={self.cfg.model.name} needs data.representation=tokens, "
                f"got {self.cfg.data.representation!r}"
            )
        return super().build_representation()

    def _vocab_size(self, representation) -> int:
        size = int(getattr(representation, "vocab_size", 0))
        if size < 3:
            raise ConfigError("the token vocabulary is empty: fit the representation on training songs first")
        self.vocab_size = size
        return size


# ---------------------------------------------------------------------------------------------
def lm_step(ctx: StepContext, batch) -> StepOutput:
    """Cross-entropy of the next token; inputs are the window shifted right behind the
    generator's start id (`start_id`: NoteLSTM's is the padding id, SeqGAN's its own token)."""
    ids, lengths = _tokens(batch, ctx.device)
    model = ctx.module("generator")
    inputs = torch.cat([torch.full_like(ids[:, :1], model.start_id), ids[:, :-1]], dim=1)  # (B, T)
    if not model.bidirectional:
        logits = ctx.run("generator", "causal_logits", inputs)  # (B, T, V)
        mask = losses.valid_steps(lengths, ids.shape[1])
        loss = F.cross_entropy(logits[mask], ids[mask])
        accuracy = (logits[mask].argmax(-1) == ids[mask]).float().mean()
    else:
        # A random prefix length c in [0, len-1] per row: read [START, x_0..x_{c-1}], predict x_c.
        cut = (torch.rand(ids.shape[0], device=ids.device) * lengths.clamp_min(1)).long()
        logits = ctx.run("generator", "next_logits", inputs, cut + 1)  # (B, V)
        target = ids.gather(1, cut[:, None])[:, 0]
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.argmax(-1) == target).float().mean()
    return StepOutput({"generator": loss}, {"token_accuracy": accuracy.detach()})


@register("note-lstm")
class NoteLSTMFamily(_TokenFamily):
    network_names = ("generator",)

    def build_networks(self, representation):
        m = self.cfg.model
        return {
            "generator": NoteLSTM(
                self._vocab_size(representation),
                embedding_dim=m.embedding_dim,
                hidden=m.g_hidden,
                layers=m.g_layers,
                dropout=m.g_dropout,
                bidirectional=m.bidirectional,
                head_hidden=max(1, m.g_hidden // 2),
            )
        }

    def phases(self) -> list[Phase]:
        return [Phase("lm", None, ("generator",), lm_step, curriculum=False)]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        model = networks["generator"]
        with in_mode(model):
            ids = model.generate(num, length, window=self.cfg.curriculum.max_len)
        return ids.cpu().numpy()[..., None].astype(np.int64)  # (num, length, 1)


# ---------------------------------------------------------------------------------------------
def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def mlpgan_step(ctx: StepContext, batch) -> StepOutput:
    """One G forward; D on [real; detached fake] in one forward; G's loss through D's plain module."""
    ids, lengths = _tokens(batch, ctx.device)
    vocab_size = ctx.module("generator").vocab_size
    real = ids_to_unit(ids, vocab_size)[..., None]  # (B, T, 1)
    batch_size, seq_len = ids.shape
    fake = ctx.run("generator", "forward", batch_size)  # (B, S)
    if fake.shape[1] < seq_len:
        raise ConfigError(f"the MLP generator emits {fake.shape[1]} steps but the batch has {seq_len}")
    fake = fake[:, :seq_len, None]  # (B, T, 1)

    both = torch.cat([real, fake.detach()], dim=0)
    both_lengths = torch.cat([lengths, torch.full_like(lengths, seq_len)])
    logits = ctx.run("discriminator", "forward", both, both_lengths)  # (2B,)
    real_logits, fake_logits = logits[:batch_size], logits[batch_size:]
    d_loss = 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))

    with ctx.frozen("discriminator") as discriminator:  # gradients flow only into G
        g_loss = _bce(discriminator(fake, None), 1.0)
    stats = {
        "d_acc_real": (real_logits > 0).float().mean().detach(),
        "d_acc_fake": (fake_logits < 0).float().mean().detach(),
    }
    return StepOutput({"generator": g_loss, "discriminator": d_loss}, stats)


@register("note-mlpgan")
class NoteMLPGANFamily(_TokenFamily):
    network_names = ("generator", "discriminator")

    def build_networks(self, representation):
        m = self.cfg.model
        widths = tuple(max(1, m.g_hidden // d) for d in (4, 2, 1))
        generator = MLPNoteGenerator(seq_len=self.cfg.curriculum.max_len, latent_dim=m.latent_dim, widths=widths)
        # The step needs V to scale real ids exactly as generate() unscales them; a buffer
        # would be averaged by nothing and saved in the checkpoint, an attribute is enough.
        generator.vocab_size = self._vocab_size(representation)
        discriminator = LSTMNoteDiscriminator(
            hidden=m.d_hidden, layers=m.d_layers, dense=(m.d_hidden, max(1, m.d_hidden // 2))
        )
        return {"generator": generator, "discriminator": discriminator}

    def phases(self) -> list[Phase]:
        # G first: its loss graph holds D's weights, which D's update changes in place.
        return [Phase("adversarial", None, ("generator", "discriminator"), mlpgan_step, curriculum=False)]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        generator = networks["generator"]
        with in_mode(generator):  # BatchNorm on running statistics
            chunks, have = [], 0
            while have < length:  # the MLP emits a fixed length: concatenate independent draws
                chunks.append(generator(num))
                have += chunks[-1].shape[1]
            values = torch.cat(chunks, dim=1)[:, :length]
        return unit_to_ids(values, generator.vocab_size).cpu().numpy()[..., None].astype(np.int64)
