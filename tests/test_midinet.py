"""MidiNet: network shapes, the split batch norm, the family's losses and schedule, generation."""

from __future__ import annotations

import pytest
import torch

from musicgan.errors import ConfigError
from musicgan.models.midinet import CHORD_DIM, NUM_PITCHES, MidiNetDiscriminator, MidiNetGenerator


def _bars(batch: int, steps: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    bar = (torch.rand(batch, 1, steps, NUM_PITCHES, generator=g) > 0.97).float()
    chord = torch.zeros(batch, CHORD_DIM)
    chord[torch.arange(batch), torch.randint(0, 12, (batch,), generator=g)] = 1.0
    return bar, chord


@pytest.mark.parametrize("steps", [16, 8])
def test_generator_and_discriminator_shapes(steps):
    torch.manual_seed(0)
    generator, discriminator = MidiNetGenerator(steps, latent_dim=10, hidden=32, channels=8), MidiNetDiscriminator(steps)
    previous, chord = _bars(3, steps)
    fake = generator(generator.noise(3), chord, previous)
    assert fake.shape == (3, 1, steps, NUM_PITCHES) and 0 < fake.min() and fake.max() < 1
    logits, features = discriminator(fake, chord)
    assert logits.shape == (3,) and features.shape == (3, (1 + CHORD_DIM) * steps // 2)


def test_the_generator_reads_the_previous_bar_and_the_chord():
    torch.manual_seed(0)
    generator = MidiNetGenerator(16, latent_dim=10, hidden=32, channels=8).eval()
    previous, chord = _bars(2)
    z = generator.noise(2)
    base = generator(z, chord, previous)
    assert not torch.allclose(base, generator(z, chord, torch.zeros_like(previous)))
    assert not torch.allclose(base, generator(z, chord.roll(1, dims=1), previous))


def test_weights_are_normal_002():
    weight = MidiNetDiscriminator(16).dense.weight
    assert abs(weight.std().item() - 0.02) < 1e-3 and abs(weight.mean().item()) < 1e-3


def test_bar_must_halve_three_times():
    with pytest.raises(ConfigError, match="multiple of 8"):
        MidiNetGenerator(12)


def test_split_batch_norm_equals_separate_calls():
    """[real ; fake] in one forward with splits=2 = D(real) and D(fake) called apart, in
    outputs, gradients and running statistics; one batch statistic over both differs."""
    torch.manual_seed(0)
    together, apart = MidiNetDiscriminator(16), MidiNetDiscriminator(16)
    apart.load_state_dict(together.state_dict())
    real, chord_r = _bars(4, seed=1)
    fake, chord_f = torch.rand(4, 1, 16, NUM_PITCHES), _bars(4, seed=2)[1]
    logits, _ = together(torch.cat([real, fake]), torch.cat([chord_r, chord_f]), splits=2)
    separate = torch.cat([apart(real, chord_r)[0], apart(fake, chord_f)[0]])
    torch.testing.assert_close(logits, separate, rtol=1e-6, atol=1e-6)
    logits.square().sum().backward()
    separate.square().sum().backward()
    for (name, a), b in zip(together.named_parameters(), apart.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)  # a bias before batch norm: grad ~ 0
    for (name, a), b in zip(together.named_buffers(), apart.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    mixed, _ = apart(torch.cat([real, fake]), torch.cat([chord_r, chord_f]))
    assert not torch.allclose(mixed, separate, atol=1e-3)


def test_eval_mode_uses_running_statistics():
    torch.manual_seed(0)
    generator = MidiNetGenerator(16, latent_dim=10, hidden=32, channels=8)
    previous, chord = _bars(4)
    z = generator.noise(4)
    generator.train()(z, chord, previous)  # moves the running statistics once
    generator.eval()
    alone = generator(z[:1], chord[:1], previous[:1])
    torch.testing.assert_close(alone, generator(z, chord, previous)[:1])  # no batch coupling
