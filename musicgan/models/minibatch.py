"""Minibatch discrimination (Salimans et al. 2016), a layer a discriminator appends to its
features: C-RNN-GAN's D on its time-pooled features, MidiNet's on its dense features."""

from __future__ import annotations

import torch
from torch import nn


class MinibatchFeatures(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, section 3.2): rows f (B, A) -> M = f T
    (B, K, C); o_k(i) = sum over rows j != i of i's group of exp(-||M_i,k - M_j,k||_1).

    Costs B^2 K C per forward (B = 80 rows of 5 x 8 kernels: ~0.3 M elements). T starts at
    N(0, `init_std`^2); the default 0.05 is the reference implementation's scale: with
    features in [-1, 1] the L1 distances start near 1, where exp(-d) still varies. Wider or
    larger features want a smaller one."""

    def __init__(self, in_features: int, kernels: int, kernel_dim: int, init_std: float = 0.05) -> None:
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.tensor = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * init_std)

    def forward(self, pooled: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        rows = pooled.shape[0]
        m = (pooled @ self.tensor).view(rows, self.kernels, self.kernel_dim)
        distance = (m.unsqueeze(1) - m.unsqueeze(0)).abs().sum(dim=-1)  # (B, B, K)
        others = ~torch.eye(rows, dtype=torch.bool, device=pooled.device)
        if groups is not None:
            groups = groups.to(pooled.device)
            others = others & (groups.unsqueeze(1) == groups.unsqueeze(0))
        return (torch.exp(-distance) * others.unsqueeze(-1)).sum(dim=1)


def halves_of(rows: int, parts: int, device=None) -> torch.Tensor:
    """(rows,) group labels of `parts` equal consecutive parts ([real ; fake]: 0 ... 0 1 ... 1)."""
    return torch.arange(rows, device=device) // max(1, rows // parts)
