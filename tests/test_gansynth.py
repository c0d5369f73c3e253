"""GANSynth: the progressive networks (shapes at every stage, the fade-in blend, the double
backward of the gradient penalty, DDP-safe graphs)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from musicgan import losses
from musicgan.models.gansynth import (ProgressiveCritic, ProgressiveGenerator, downscale, resolution,
                                      stage_filters)

START, STAGES, CAP, PITCHES, LATENT = (2, 2), 4, 8, 5, 6


def nets(seed: int = 0):
    torch.manual_seed(seed)
    return (ProgressiveGenerator(LATENT, PITCHES, START, STAGES, CAP),
            ProgressiveCritic(PITCHES, START, STAGES, CAP))


def inputs(batch: int = 3):
    return torch.randn(batch, LATENT), F.one_hot(torch.arange(batch) % PITCHES, PITCHES).float()


def test_filters_follow_the_paper_rule():
    assert [stage_filters(s, 256) for s in range(7)] == [256, 256, 256, 256, 128, 64, 32]
    assert [stage_filters(s, 64) for s in range(6)] == [64] * 6


@pytest.mark.parametrize("stage", range(STAGES))
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_shapes_at_every_stage_and_alpha(stage, alpha):
    generator, critic = nets()
    image = generator(*inputs(), stage, alpha)
    assert image.shape == (3, 2, *resolution(START, stage))
    assert image.abs().max() <= 1.0
    score, logits = critic(image, stage, alpha)
    assert score.shape == (3,) and logits.shape == (3, PITCHES)


def test_alpha_zero_is_the_previous_stage_and_one_the_new_block():
    generator, critic = nets()
    z, pitch = inputs()
    old = generator(z, pitch, 1)
    assert torch.allclose(generator(z, pitch, 2, 0.0), F.interpolate(old, scale_factor=2), atol=1e-6)
    new = generator(z, pitch, 2, 1.0)
    assert not torch.allclose(new, F.interpolate(old, scale_factor=2), atol=1e-3)
    halfway = generator(z, pitch, 2, 0.5)
    assert torch.allclose(halfway, 0.5 * (new + F.interpolate(old, scale_factor=2)), atol=1e-6)
    image = torch.rand(3, 2, *resolution(START, 2))
    for got, want in zip(critic(image, 2, 0.0), critic(F.avg_pool2d(image, 2), 1)):
        assert torch.allclose(got, want, atol=1e-6)


def test_real_images_are_pooled_like_the_generator_blends():
    full = torch.rand(2, 2, *resolution(START, STAGES - 1))
    assert downscale(full, STAGES - 1, STAGES).equal(full)
    low = downscale(full, 1, STAGES)
    assert low.shape == (2, 2, *resolution(START, 1))
    assert torch.allclose(low, F.avg_pool2d(full, 4))
    faded = downscale(full, 1, STAGES, 0.0)
    assert torch.allclose(faded, F.interpolate(downscale(full, 0, STAGES), scale_factor=2), atol=1e-6)


def test_pitch_conditioning_changes_the_output():
    generator, _ = nets()
    z, pitch = inputs()
    other = pitch.roll(1, dims=1)
    assert not torch.allclose(generator(z, pitch, 1), generator(z, other, 1), atol=1e-4)


def test_gradient_penalty_double_backward_reaches_every_used_critic_weight():
    generator, critic = nets()
    stage = 2
    with torch.no_grad():
        fake = generator(*inputs(), stage, 0.5)
    x_hat = losses.interpolate(torch.rand_like(fake), fake)
    scores, _ = critic(x_hat, stage, 0.5)
    # The step's loss shape (distance + penalty); the distance is zeroed, so every nonzero
    # weight gradient below comes from the penalty's double backward.
    (scores.mean() * 0 + losses.gradient_penalty(scores, x_hat, 10.0)).backward()
    used = [critic.inputs[stage], critic.inputs[stage - 1], *critic.blocks[:stage + 1], critic.score]
    # Weights only: the critic is piecewise linear, so dD/dx̂ (hence the penalty) does not
    # depend on its biases.
    for module in used:
        for p in module.parameters():
            assert p.grad is not None and (p.dim() == 1 or p.grad.abs().sum() > 0)
    # Later stages are in the graph (DDP needs every parameter) with exactly zero gradient.
    for p in critic.inputs[stage + 1].parameters():
        assert p.grad is not None and p.grad.abs().sum() == 0


def test_every_generator_parameter_gets_a_gradient_tensor():
    generator, critic = nets()
    image = generator(*inputs(), 0)
    score, _ = critic(image, 0)
    score.mean().backward()
    assert all(p.grad is not None for p in generator.parameters())
    assert generator.outputs[STAGES - 1].weight.grad.abs().sum() == 0
