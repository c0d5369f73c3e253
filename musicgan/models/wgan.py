"""A small WGAN-GP pair on piano-roll windows (B, T, 88): an MLP generator and a temporal
convolutional critic, written in torch layers only so the gradient penalty can
differentiate the critic twice (no hand-written backward, no batch norm in the critic:
the penalty is per sample, and batch norm would couple the samples; Gulrajani 2017)."""

from __future__ import annotations

import torch
from torch import nn


class RollGenerator(nn.Module):
    """z ~ N(0, I) (latent_dim) -> MLP -> sigmoid roll (B, seq_len, keys): values in (0, 1),
    decoded by the representation's threshold."""

    def __init__(self, keys: int, seq_len: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.keys, self.seq_len, self.latent_dim = keys, seq_len, latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, seq_len * keys),
        )

    def forward(self, batch_size: int) -> torch.Tensor:
        weight = self.net[0].weight
        z = torch.randn(batch_size, self.latent_dim, device=weight.device, dtype=weight.dtype)
        return torch.sigmoid(self.net(z)).view(batch_size, self.seq_len, self.keys)


class RollCritic(nn.Module):
    """(B, T, keys) -> one unbounded score per window (B,): two 1-D convolutions over time
    (LeakyReLU 0.2), a linear head per time step (a 1x1 convolution), mean over time. (The
    head as nn.Linear after the mean got a transposed weight gradient from the double
    backward, which DDP's gradient buckets warn about at every step.)"""

    def __init__(self, keys: int, hidden: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(keys, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden, hidden, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Conv1d(hidden, 1, 1)

    def forward(self, roll: torch.Tensor) -> torch.Tensor:
        features = self.convs(roll.transpose(1, 2))  # (B, H, T')
        return self.head(features).mean(dim=2).squeeze(1)
