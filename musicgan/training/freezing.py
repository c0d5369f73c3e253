"""Freezing (Mogren 2016): a network skips its update while it is far ahead of the other.

Decided from losses already all-reduced across ranks, so every rank takes the same branch
(a per-rank decision hangs or crashes gloo/NCCL). Unlike the reference code, G is not
frozen unconditionally inside the "losses < 2" branch (an indentation bug there), and the
rule applies at any loss level.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FreezeDecision:
    freeze_discriminator: bool
    freeze_generator: bool


def decide_freezing(d_loss: float, g_loss: float, theta_d: float, theta_g: float) -> FreezeDecision:
    """D skips while d_loss < θ_D · g_loss; G skips while g_loss < θ_G · d_loss (θ = 0: never)."""
    return FreezeDecision(
        freeze_discriminator=theta_d > 0 and d_loss < theta_d * g_loss,
        freeze_generator=theta_g > 0 and g_loss < theta_g * d_loss,
    )
