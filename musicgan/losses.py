"""GAN objectives and regularisers for sequence models, as small pure functions.

Conventions: logits are (B, T) per-step discriminator outputs before the sigmoid; `mask` is
a (B, T) bool tensor of valid steps (None = all valid). Every loss works on logits with
BCE-with-logits, so no log(0) can appear (the reference's epsilon clipping underflowed).

Gradient clipping is not wrapped here: the trainer calls
`torch.nn.utils.clip_grad_norm_(params, max_norm)` (global norm over all of a network's
parameters, the paper's 5.0) after backward and, under DDP, after the gradient all-reduce,
so every rank clips identically.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

FEATURE_MATCHING_MODES = ("batch_mean", "paired")


def _valid(reference: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T) float weights for a (B, T, ...) reference: 1 at valid steps, 0 elsewhere."""
    if mask is None:
        return torch.ones(reference.shape[:2], dtype=reference.dtype, device=reference.device)
    if mask.shape != reference.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match {tuple(reference.shape[:2])}")
    return mask.to(reference.dtype)


def valid_steps(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B,) lengths -> the (B, T) bool `mask` of this module: True on the steps a row really
    has, False on its zero padding (a loader batch's `lengths`, or one less for next-step
    targets)."""
    return torch.arange(seq_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of (B, T) values over valid steps (0 when no step is valid)."""
    weights = _valid(values, mask)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def sequence_probability(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's decision per sequence: mean over valid steps of sigmoid(logit). (B,)"""
    weights = _valid(logits, mask)
    return (torch.sigmoid(logits) * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    *,
    fake_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss -log D(x) - log(1 - D(G(z))) and its accuracy.

    Loss: per-step BCE-with-logits averaged over valid steps, real and fake terms summed.
    (The reference takes the decision as the mean over time of per-step probabilities;
    averaging the per-step losses instead keeps every step's gradient well scaled and is
    what its per-step sigmoid outputs are trained with.) One-sided label smoothing: the
    real target is 1 - label_smoothing, the fake target stays 0.
    `mask` marks valid steps of the real batch; `fake_mask` those of the fake batch
    (defaults to `mask`, i.e. the same windows).

    Returns (loss, stats) with detached 0-d tensors `accuracy_real` (fraction of real
    sequences whose mean per-step probability > 0.5) and `accuracy_fake` (fraction of fake
    ones with mean probability < 0.5): tensors, so the trainer can all-reduce them without a
    device sync.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    fake_mask = mask if fake_mask is None else fake_mask
    real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
    real_term = F.binary_cross_entropy_with_logits(real_logits, real_target, reduction="none")
    fake_term = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits), reduction="none")
    loss = masked_mean(real_term, mask) + masked_mean(fake_term, fake_mask)
    with torch.no_grad():
        stats = {
            "accuracy_real": (sequence_probability(real_logits, mask) > 0.5).float().mean(),
            "accuracy_fake": (sequence_probability(fake_logits, fake_mask) < 0.5).float().mean(),
        }
    return loss, stats


def generator_loss(fake_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Non-saturating G loss: -log D(G(z)) per step, averaged over valid steps."""
    target = torch.ones_like(fake_logits)
    return masked_mean(F.binary_cross_entropy_with_logits(fake_logits, target, reduction="none"), mask)


def feature_matching_loss(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    mask: torch.Tensor | None = None,
    mode: str = "batch_mean",
) -> torch.Tensor:
    """Distance between D's last hidden layer on real and generated batches, (B, T, D) each.

    "batch_mean" (Salimans et al., default): per step, the squared Euclidean distance
    between the batch means of the features (means over the rows valid at that step), then
    the mean over steps valid in at least one row.
    "paired" (the reference): sum over valid steps, rows and features of
    (real[i] - fake[i])^2, pairing sample i with sample i.
    `mask` (B, T) applies to both batches. Detach `real_features` if D is being trained.
    """
    if real_features.shape != fake_features.shape:
        raise ValueError(f"feature shapes differ: {tuple(real_features.shape)} vs {tuple(fake_features.shape)}")
    weights = _valid(real_features, mask).unsqueeze(-1)  # (B, T, 1)
    if mode == "paired":
        return ((real_features - fake_features).square() * weights).sum()
    if mode != "batch_mean":
        raise ValueError(f"feature matching mode must be one of {FEATURE_MATCHING_MODES}, got {mode!r}")
    rows = weights.sum(0)  # (T, 1) valid rows per step
    real_mean = (real_features * weights).sum(0) / rows.clamp_min(1.0)  # (T, D)
    fake_mean = (fake_features * weights).sum(0) / rows.clamp_min(1.0)
    per_step = (real_mean - fake_mean).square().sum(-1)  # (T,)
    steps = (rows.squeeze(-1) > 0).to(per_step.dtype)
    return (per_step * steps).sum() / steps.sum().clamp_min(1.0)


def batch_mean_distance(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """||mean_batch(real) - mean_batch(fake)||^2 / 2 over (B, D) rows: MidiNet's feature and
    mean matching (feature_matching_loss's batch_mean on one step, halved)."""
    return 0.5 * feature_matching_loss(real[:, None], fake[:, None])


def instance_noise_std(initial: float, progress: float) -> float:
    """Instance noise (Sonderby et al. 2016): std `initial` at the run's start, linearly to 0
    at its end (`progress` in [0, 1]: the step context's, the same on every rank and on a resume)."""
    return initial * max(0.0, 1.0 - progress)


def instance_noise(like: torch.Tensor, std: float) -> torch.Tensor | None:
    """N(0, std^2) shaped like D's input, drawn from the global torch RNG that the trainer
    reseeds from (seed, rank, step), so a resumed step draws the same noise; None at std 0,
    which draws nothing: the step and every later draw in it (D's dropout) are bitwise those
    of a run without the option."""
    if std <= 0:
        return None
    return std * torch.randn_like(like)


def mle_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error of next-event prediction: mean over valid steps and features. (B, T, F)"""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    weights = _valid(pred, mask).unsqueeze(-1)
    count = weights.sum() * pred.shape[-1]
    return ((pred - target).square() * weights).sum() / count.clamp_min(1.0)


def l2_penalty(parameters: Iterable[torch.Tensor], scale: float) -> torch.Tensor:
    """scale * sum(w^2) / 2 over all parameters (TensorFlow's l2_loss; the paper's scale 0.1)."""
    params = [p for p in parameters]
    if not params:
        return torch.zeros(())
    total = torch.stack([p.square().sum() for p in params]).sum()
    return scale * total / 2


def all_finite(*tensors: torch.Tensor) -> bool:
    """True when every element of every tensor is finite (one device sync for all)."""
    if not tensors:
        return True
    flags = torch.stack([torch.isfinite(t.detach()).all().to(tensors[0].device) for t in tensors])
    return bool(flags.all())


# -- Wasserstein objective with gradient penalty (Gulrajani et al. 2017, "Improved Training
# of Wasserstein GANs"); scores are unbounded critic outputs, one per sample (B,).
def wasserstein_d(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic's loss: mean D(fake) - mean D(real)."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_g(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's loss: -mean D(fake)."""
    return -fake_scores.mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """x̂ = real + α (fake - real), α ~ U(0, 1) per sample, as a leaf that requires grad."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    return (real + alpha * (fake - real)).detach().requires_grad_(True)


def input_gradient_norms(scores: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """(B,) ||dD/dx|| per sample, the norm over ALL non-batch axes: the critic's local
    slope (a 1-Lipschitz critic has <= 1). create_graph=True: a penalty on these norms
    reaches the critic's weights (double backward), so every layer of the critic must be
    twice differentiable."""
    (grads,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return grads.flatten(1).norm(2, dim=1)


def gradient_penalty(scores_hat: torch.Tensor, x_hat: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """weight * mean((||dD/dx̂|| - 1)^2), one norm per sample (`input_gradient_norms`)."""
    return penalty_of_norms(input_gradient_norms(scores_hat, x_hat), weight)


def penalty_of_norms(norms: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """weight * mean((norm - 1)^2). The penalty is soft: against a Wasserstein term whose
    real and fake batches lie a distance d apart, the critic's best slope is 1 + d / (2
    weight), not 1 (for a linear critic exactly), so its estimate grows like d^2 / (2
    weight) while G is far from the data (docs/musegan.md)."""
    return weight * ((norms - 1.0) ** 2).mean()


def batch_distance(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Mean per-sample L2 distance ||real_i - fake_i|| over ALL non-batch axes: what a
    1-Lipschitz critic's Wasserstein estimate of the pair can be at most."""
    return (real - fake).flatten(1).norm(2, dim=1).mean()


def drift_penalty(real_scores: torch.Tensor, epsilon: float) -> torch.Tensor:
    """epsilon * mean(D(real)^2): keeps the critic's scores near 0 (Karras et al. 2018)."""
    return epsilon * (real_scores**2).mean()
