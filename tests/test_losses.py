"""GAN objectives against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from musicgan.losses import (
    all_finite,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    l2_penalty,
    mle_loss,
    sequence_probability,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_discriminator_loss_hand_computed_with_mask():
    real = torch.tensor([[2.0, -1.0, 5.0], [0.5, 0.0, 0.0]])
    fake = torch.tensor([[-3.0, 1.0, 0.0], [0.0, 2.0, -2.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss, stats = discriminator_loss(real, fake, mask)
    real_terms = [-math.log(_sig(2.0)), -math.log(_sig(-1.0)), -math.log(_sig(0.5))]
    fake_terms = [-math.log(1 - _sig(-3.0)), -math.log(1 - _sig(1.0)), -math.log(1 - _sig(0.0))]
    assert loss.item() == pytest.approx(sum(real_terms) / 3 + sum(fake_terms) / 3, rel=1e-6)
    # decisions: row means of per-step probabilities over valid steps
    real_means = [(_sig(2.0) + _sig(-1.0)) / 2, _sig(0.5)]  # 0.6 and 0.62: both judged real
    fake_means = [(_sig(-3.0) + _sig(1.0)) / 2, _sig(0.0)]  # 0.39 (fake) and 0.5 (not < 0.5)
    assert all(m > 0.5 for m in real_means) and fake_means[0] < 0.5 and fake_means[1] == 0.5
    assert stats["accuracy_real"].item() == 1.0
    assert stats["accuracy_fake"].item() == 0.5
    torch.testing.assert_close(sequence_probability(real, mask), torch.tensor(real_means))


def test_discriminator_loss_without_mask_and_separate_fake_mask():
    real = torch.tensor([[1.0, 2.0]])
    fake = torch.tensor([[0.0, 3.0]])
    loss, _ = discriminator_loss(real, fake)
    expected = (-math.log(_sig(1.0)) - math.log(_sig(2.0))) / 2 + (
        -math.log(1 - _sig(0.0)) - math.log(1 - _sig(3.0))
    ) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss_fm, _ = discriminator_loss(real, fake, torch.tensor([[True, False]]), fake_mask=torch.tensor([[False, True]]))
    assert loss_fm.item() == pytest.approx(-math.log(_sig(1.0)) - math.log(1 - _sig(3.0)), rel=1e-6)


def test_one_sided_label_smoothing():
    real = torch.tensor([[1.5]])
    fake = torch.tensor([[-0.5]])
    loss, _ = discriminator_loss(real, fake, label_smoothing=0.1)
    p = _sig(1.5)
    real_term = -(0.9 * math.log(p) + 0.1 * math.log(1 - p))
    fake_term = -math.log(1 - _sig(-0.5))  # fake target stays exactly 0
    assert loss.item() == pytest.approx(real_term + fake_term, rel=1e-6)
    with pytest.raises(ValueError):
        discriminator_loss(real, fake, label_smoothing=1.0)


def test_generator_loss_is_non_saturating():
    fake = torch.tensor([[-2.0, 0.0], [1.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    loss = generator_loss(fake, mask)
    expected = -(math.log(_sig(-2.0)) + math.log(_sig(0.0)) + math.log(_sig(1.0))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # -log D has a strong gradient where D rejects the sample (the point of non-saturating)
    assert fake.grad[0, 0].item() == pytest.approx(-(1 - _sig(-2.0)) / 3, rel=1e-6)
    assert fake.grad[1, 1].item() == 0.0


def test_extreme_logits_give_finite_losses_and_gradients():
    real = torch.tensor([[1e4, -1e4]], requires_grad=True)
    fake = torch.tensor([[-1e4, 1e4]], requires_grad=True)
    d_loss, stats = discriminator_loss(real, fake, label_smoothing=0.2)
    g_loss = generator_loss(fake)
    (d_loss + g_loss).backward()
    assert all_finite(d_loss, g_loss, real.grad, fake.grad)
    assert d_loss.item() == pytest.approx((0.8 * 1e4 + 0.2 * 1e4) / 2 + 1e4 / 2, rel=1e-4)
    assert g_loss.item() == pytest.approx(1e4 / 2, rel=1e-4)
    assert stats["accuracy_real"].item() == 0.0  # mean probability exactly 0.5


def test_feature_matching_batch_mean_hand_computed():
    # B=2, T=2, D=2
    real = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 4.0], [2.0, 2.0]]])
    fake = torch.tensor([[[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0], [1.0, 3.0]]])
    # step 0: real mean (2, 3), fake mean (0.5, 0.5): 2.25 + 6.25 = 8.5
    # step 1: real mean (1, 1), fake mean (3, 4): 4 + 9 = 13
    assert feature_matching_loss(real, fake).item() == pytest.approx((8.5 + 13) / 2)
    # row 0's step 1 padded: step 1 compares row 1 only: (2,2) vs (1,3): 1 + 1 = 2
    mask = torch.tensor([[True, False], [True, True]])
    assert feature_matching_loss(real, fake, mask).item() == pytest.approx((8.5 + 2) / 2)


def test_feature_matching_paired_hand_computed():
    real = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 4.0], [2.0, 2.0]]])
    fake = torch.tensor([[[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0], [1.0, 3.0]]])
    # (1+4) + (25+25) + (4+9) + (1+1) = 70
    assert feature_matching_loss(real, fake, mode="paired").item() == pytest.approx(70.0)
    mask = torch.tensor([[True, False], [True, True]])
    assert feature_matching_loss(real, fake, mask, mode="paired").item() == pytest.approx(20.0)
    with pytest.raises(ValueError):
        feature_matching_loss(real, fake, mode="median")


def test_feature_matching_gradient_reaches_fake_features():
    real = torch.randn(3, 4, 5)
    fake = torch.randn(3, 4, 5, requires_grad=True)
    feature_matching_loss(real, fake).backward()
    # d/dfake of ||mean_r - mean_f||^2 / T = -2 (mean_r - mean_f) / (B T)
    expected = (-2 * (real.mean(0) - fake.detach().mean(0)) / (3 * 4)).expand(3, 4, 5)
    torch.testing.assert_close(fake.grad, expected)


def test_mle_loss_hand_computed():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[[0.0, 2.0], [1.0, 1.0]]])
    assert mle_loss(pred, target).item() == pytest.approx((1 + 0 + 4 + 9) / 4)
    mask = torch.tensor([[True, False]])
    assert mle_loss(pred, target, mask).item() == pytest.approx(0.5)


def test_l2_penalty_hand_computed():
    weights = [torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])]
    assert l2_penalty(weights, 0.1).item() == pytest.approx(0.1 * (1 + 4 + 9) / 2)
    layer = torch.nn.Linear(3, 2)
    penalty = l2_penalty(layer.parameters(), 0.1)
    penalty.backward()
    torch.testing.assert_close(layer.weight.grad, 0.1 * layer.weight.detach())


def test_all_finite():
    assert all_finite(torch.zeros(3), torch.ones(2, 2))
    assert not all_finite(torch.zeros(3), torch.tensor([1.0, float("nan")]))
    assert not all_finite(torch.tensor(float("inf")))
    assert all_finite()
