"""JazzGAN's networks (Trieu & Keller 2018, "JazzGAN: Improvising with Generative Adversarial
Networks"): a chord-conditioned LSTM generator with one softmax head per token field, and a
bidirectional LSTM critic over [token distributions ; chord].

Token fields are given as their vocabulary sizes (e.g. (pitch classes, rhythm classes));
the networks exchange them as the concatenation of one distribution per field, (B, T, ΣV):
one-hot for real data, softmax (or Gumbel-softmax) for generated data.

The critic's LSTM is `TorchOpsLSTM`, written in plain torch ops, on CPU and CUDA alike: a
gradient penalty differentiates the critic twice, which cuDNN's fused LSTM and the
repository's hand-written CPU kernel (musicgan.models.lstm_stack, first order only) cannot.
What it costs: a few small kernels per gate op and step instead of one fused call (not
measured against cuDNN here: no GPU in this repository's test runs); the generator keeps
nn.LSTM, which is differentiated only once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TorchOpsLSTM(nn.Module):
    """nn.LSTM's equations (batch first, zero initial state, gates i, f, g, o, nn.LSTM's
    parameter names and uniform(±1/sqrt(H)) init) as plain autograd ops, so any order of
    derivative works. Outputs (B, T, H * directions) of the last layer."""

    def __init__(self, input_size: int, hidden: int, layers: int = 1, bidirectional: bool = False) -> None:
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.directions = 2 if bidirectional else 1
        bound = 1.0 / math.sqrt(hidden)
        for layer in range(layers):
            size = input_size if layer == 0 else hidden * self.directions
            for suffix in self._suffixes(layer):
                for name, shape in (
                    ("weight_ih", (4 * hidden, size)),
                    ("weight_hh", (4 * hidden, hidden)),
                    ("bias_ih", (4 * hidden,)),
                    ("bias_hh", (4 * hidden,)),
                ):
                    self.register_parameter(f"{name}{suffix}", nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.directions]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in range(self.layers):
            x = torch.cat([self._direction(x, suffix) for suffix in self._suffixes(layer)], dim=2)
        return x

    def _direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        reverse = suffix.endswith("_reverse")
        w_hh = getattr(self, f"weight_hh{suffix}")
        # the input projection of all steps as one product; only h W_hh^T runs per step
        projected = F.linear(
            x,
            getattr(self, f"weight_ih{suffix}"),
            getattr(self, f"bias_ih{suffix}") + getattr(self, f"bias_hh{suffix}"),
        )
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        outputs = []
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        for t in steps:
            i, f, g, o = (projected[:, t] + F.linear(h, w_hh)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        if reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=1)


class JazzGenerator(nn.Module):
    """[z_t ; chord_t] per step (z_t ~ N(0, I), fresh at every step) -> nn.LSTM (layers x
    hidden) -> one linear head per token field. `forward(chords)` returns the logits
    (B, T, ΣV); `distributions(logits, ...)` turns them into what the critic reads."""

    def __init__(self, vocab_sizes, chord_dim: int, latent_dim: int, hidden: int, layers: int = 2) -> None:
        super().__init__()
        self.vocab_sizes, self.latent_dim = tuple(int(v) for v in vocab_sizes), int(latent_dim)
        self.lstm = nn.LSTM(latent_dim + chord_dim, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, sum(self.vocab_sizes))

    def forward(self, chords: torch.Tensor) -> torch.Tensor:
        z = torch.randn(chords.shape[0], chords.shape[1], self.latent_dim, device=chords.device, dtype=chords.dtype)
        features, _ = self.lstm(torch.cat([z, chords], dim=2))
        return self.head(features)

    def distributions(self, logits: torch.Tensor, gumbel_tau: float = 0.0) -> torch.Tensor:
        """Softmax per field (Gumbel-softmax with temperature tau when tau > 0), concatenated."""
        fields = logits.split(self.vocab_sizes, dim=2)
        if gumbel_tau > 0:
            return torch.cat([F.gumbel_softmax(f, tau=gumbel_tau, hard=False, dim=2) for f in fields], dim=2)
        return torch.cat([torch.softmax(f, dim=2) for f in fields], dim=2)

    def tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, fields) argmax token of each field."""
        return torch.stack([f.argmax(dim=2) for f in logits.split(self.vocab_sizes, dim=2)], dim=2)


def one_hot_tokens(tokens: torch.Tensor, vocab_sizes) -> torch.Tensor:
    """(B, T, fields) integer tokens -> (B, T, ΣV) concatenated one-hot rows (float)."""
    return torch.cat([F.one_hot(tokens[..., k].long(), v) for k, v in enumerate(vocab_sizes)], dim=2).float()


class JazzCritic(nn.Module):
    """[token distributions ; chord] (B, T, ΣV + C) -> bidirectional TorchOpsLSTM -> a linear
    score per step, averaged over time: one unbounded score per sequence (B,). No batch
    norm (the gradient penalty is per sample). The head is a weight vector applied with a
    matmul rather than nn.Linear, whose weight gradient from the double backward comes
    back transposed and makes DDP's gradient buckets warn at every step."""

    def __init__(self, input_size: int, hidden: int, layers: int = 2) -> None:
        super().__init__()
        self.lstm = TorchOpsLSTM(input_size, hidden, layers, bidirectional=True)
        self.head_weight = nn.Parameter(
            torch.empty(2 * hidden).uniform_(-1.0 / math.sqrt(2 * hidden), 1.0 / math.sqrt(2 * hidden))
        )
        self.head_bias = nn.Parameter(torch.zeros(()))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return (self.lstm(rows) @ self.head_weight).mean(dim=1) + self.head_bias
