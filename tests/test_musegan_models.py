"""MuseGAN architectures: shapes of every arch x mode, the latent layouts (which latent
reaches which track), bar-ordered critic features, no cross-sample coupling in the critics,
the gradient penalty's double backward, geometry errors and the track order in state dicts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from musicgan.errors import ConfigError
from musicgan.models.musegan import (
    ARCHS,
    MODES,
    MuseGANGeometry,
    PaperCritic,
    PatchConv3d,
    PatchConvTranspose3d,
    V3Critic,
    WindowCritic,
    WindowGenerator,
    build_musegan,
    draw_latent,
    interleave_groups,
    latent_layout,
    phrases_from_steps,
    split_latent,
    steps_from_phrases,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Toy phrases: 2 tracks x 2 bars; v3 12 steps (3 per beat) x 24 pitches; paper 48 x 24.
TOY = {
    "v3": MuseGANGeometry(
        num_tracks=2,
        num_bars=2,
        steps_per_bar=12,
        num_pitches=24,
        lowest_pitch=36,
        width_scale=1 / 16,
        v3_time_factors=(2, 2, 3),
        v3_pitch_layers=((1, 1), (2, 2)),
    ),
    "paper": MuseGANGeometry(
        num_tracks=2,
        num_bars=2,
        steps_per_bar=48,
        num_pitches=24,
        lowest_pitch=36,
        width_scale=1 / 16,
        paper_time_factors=(2, 2, 2, 3),
        paper_pitch_factors=(2, 12),
    ),
}
# The spec's small config (chorales) and both published configs must build.
SMALL_V3 = MuseGANGeometry(
    num_tracks=4,
    num_bars=4,
    steps_per_bar=48,
    num_pitches=48,
    lowest_pitch=36,
    width_scale=0.25,
    v3_pitch_layers=((2, 2), (2, 2)),
)
PAPER_V1 = MuseGANGeometry(steps_per_bar=96)


def _toy(arch, mode, dtype=torch.float32):
    torch.manual_seed(0)
    generator, critic = build_musegan(TOY[arch], arch, mode)
    return generator.to(dtype), critic.to(dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_and_mode_maps_latents_to_phrases_and_phrases_to_scores(arch, mode):
    generator, critic = _toy(arch, mode)
    phrase = generator(torch.randn(3, generator.latent_dim))
    assert phrase.shape == (3, *TOY[arch].phrase_shape)
    assert phrase.abs().max() <= 1 and phrase.min() < 0 < phrase.max()  # tanh
    assert critic(phrase).shape == (3,)


@pytest.mark.parametrize(("geometry", "arch"), [(SMALL_V3, "v3"), (MuseGANGeometry(), "v3"), (PAPER_V1, "paper")])
def test_small_and_published_configs_build_with_their_shapes(geometry, arch):
    generator, critic = build_musegan(geometry, arch, "hybrid")
    generator.eval()
    with torch.no_grad():
        phrase = generator(torch.randn(1, generator.latent_dim))
        assert phrase.shape == (1, *geometry.phrase_shape)
        assert critic(phrase).shape == (1,)


def test_latent_sizes_follow_the_paper():
    # Paper Fig. 3: hybrid [32 inter, 32 inter temporal] + per track [32, 32]; jamming
    # per track 64 + 64; composer 64 + 64; every bar generator reads 128 per bar.
    hybrid, jamming, composer = (latent_layout("paper", m, 5) for m in ("hybrid", "jamming", "composer"))
    assert (hybrid.latent_dim, jamming.latent_dim, composer.latent_dim) == (64 + 5 * 64, 5 * 128, 128)
    assert hybrid.bar_input_dim == jamming.bar_input_dim == composer.bar_input_dim == 128
    assert (hybrid.num_generators, jamming.num_generators, composer.num_generators) == (5, 5, 1)
    assert latent_layout("v3", "composer", 5).latent_dim == 128


def _track_dependence(generator, z):
    """(tracks, latent_dim) bool: does track k's output depend on latent entry j?"""
    # Training-mode batch norm couples the samples of a batch, never the channels, so the
    # grouped (per-track) channels stay independent, and nothing saturates the tanh.
    z = z.clone().requires_grad_(True)
    phrase = generator(z)
    rows = [
        torch.autograd.grad(phrase[:, k].sum(), z, retain_graph=True)[0].abs().sum(0) > 0
        for k in range(phrase.shape[1])
    ]
    return torch.stack(rows)


def _latent_owner(layout, num_tracks):
    """(latent_dim,) owner of each latent entry: -1 shared, else its generator's index."""
    shared = layout.shared_static + layout.shared_temporal
    private = layout.private_static + layout.private_temporal
    owners = [-1] * shared + [g for g in range(layout.num_generators) for _ in range(private)]
    return torch.tensor(owners)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arch", ARCHS)
def test_which_latent_reaches_which_track(arch, mode):
    generator, _ = _toy(arch, mode)
    depends = _track_dependence(generator, torch.randn(4, generator.latent_dim))
    owner = _latent_owner(generator.layout, TOY[arch].num_tracks)
    for track in range(TOY[arch].num_tracks):
        expected = (
            (owner == -1) | (owner == track)
            if generator.layout.num_generators > 1
            else torch.ones_like(owner, dtype=torch.bool)
        )
        assert torch.equal(depends[track], expected), (mode, track)


def test_paper_generator_static_latents_repeat_per_bar_and_temporal_ones_vary():
    generator, _ = _toy("paper", "hybrid")
    generator.eval()
    inputs = generator.bar_inputs(torch.randn(2, generator.latent_dim))  # (B, N, G, 128)
    layout = generator.layout
    static = torch.cat([inputs[..., : layout.shared_static], inputs[..., 64 : 64 + layout.private_static]], -1)
    temporal = torch.cat([inputs[..., 32:64], inputs[..., 96:]], -1)
    assert torch.equal(static[:, 0], static[:, 1])
    assert not torch.allclose(temporal[:, 0], temporal[:, 1])
    assert torch.equal(inputs[:, :, 0, :64], inputs[:, :, 1, :64])  # shared parts: same for every track


def test_split_latent_checks_the_size():
    layout = latent_layout("v3", "hybrid", 2)
    with pytest.raises(ValueError, match="latent must be"):
        split_latent(torch.zeros(2, layout.latent_dim + 1), layout)


def test_interleave_groups_pairs_each_groups_streams():
    a = torch.arange(4.0).reshape(1, 4, 1)  # groups of 2 channels: [0, 1], [2, 3]
    b = 10 + a
    assert interleave_groups(a, b, 2).flatten().tolist() == [0, 1, 10, 11, 2, 3, 12, 13]


def test_paper_critic_features_follow_bars():
    # The phrase head must read one vector per bar, in order: bar j's features depend on
    # bar j of the input and on nothing else (the reference's reshape mixed bars).
    _, critic = _toy("paper", "hybrid", torch.float64)
    x = torch.rand(1, *TOY["paper"].phrase_shape, dtype=torch.float64) * 2 - 1
    changed = x.clone()
    changed[:, :, 1] = -changed[:, :, 1]
    before, after = critic.bar_features(x), critic.bar_features(changed)
    torch.testing.assert_close(before[:, 0], after[:, 0])
    assert not torch.allclose(before[:, 1], after[:, 1])


@pytest.mark.parametrize("arch", ARCHS)
def test_critics_have_no_batch_norm_and_score_each_sample_alone(arch):
    _, critic = _toy(arch, "hybrid", torch.float64)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    x = torch.rand(3, *TOY[arch].phrase_shape, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(critic(x)[:1], critic(x[:1]))


def test_v3_chroma_folds_octaves_from_the_lowest_pitch():
    geometry = MuseGANGeometry(
        num_tracks=1,
        num_bars=2,
        steps_per_bar=12,
        num_pitches=24,
        lowest_pitch=30,
        width_scale=1 / 16,
        v3_time_factors=(2, 2, 3),
        v3_pitch_layers=((1, 1), (2, 2)),
    )
    critic = V3Critic(geometry)
    x = -torch.ones(1, *geometry.phrase_shape)
    x[0, 0, 0, 0:3, 2] = 1  # MIDI 32 (G#) for the first beat (3 steps)
    x[0, 0, 0, 3, 14] = 1  # MIDI 44 (G#) one step of the second beat
    chroma = critic.chroma_input(x)  # (B, K, N, beats, 12)
    assert chroma[0, 0, 0, 0, 8] == 3 and chroma[0, 0, 0, 1, 8] == 1
    assert chroma.sum() == 4


def test_v3_onset_input_marks_note_starts_and_ends_across_bars():
    geometry = TOY["v3"]
    x = -torch.ones(1, *geometry.phrase_shape)
    x[0, 0, 0, 10:, 5] = 1  # a note held over the bar line into bar 2, ending at step 2
    x[0, 0, 1, :2, 5] = 1
    onset = V3Critic.onset_input(x)[0, 0, :, :, 0]  # (N, S)
    assert onset[0, 10] == 1 and onset[1, 2] == -1
    assert onset.abs().sum() == 2  # no onset at the bar line


def _penalty_and_score(critic, real, fake, alpha):
    """WGAN-GP critic loss with the penalty (lambda 10), real, fake and the interpolates
    through ONE critic forward, as the trainer does it."""
    mixed = (real + alpha * (fake - real)).requires_grad_(True)
    scores = critic(torch.cat([real, fake, mixed]))
    b = real.shape[0]
    (grad,) = torch.autograd.grad(scores[2 * b :].sum(), mixed, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    return scores[b : 2 * b].mean() - scores[:b].mean() + 10 * penalty


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_penalty_double_backward_matches_finite_differences(arch):
    # The penalty's gradient w.r.t. the critic's parameters needs the second derivative
    # through every critic layer; compare it with a central difference along a random
    # direction in parameter space (float64).
    _, critic = _toy(arch, "hybrid", torch.float64)
    shape = (2, *TOY[arch].phrase_shape)
    real, fake = torch.rand(shape, dtype=torch.float64) * 2 - 1, torch.rand(shape, dtype=torch.float64) * 2 - 1
    alpha = torch.rand(2, 1, 1, 1, 1, dtype=torch.float64)
    names, params = zip(*critic.named_parameters())
    grads = torch.autograd.grad(_penalty_and_score(critic, real, fake, alpha), params)
    # Every weight gets a gradient (the score layers' biases cancel out of the loss).
    assert all(g.abs().sum() > 0 for n, g in zip(names, grads) if n.endswith("weight"))
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
    plus = _penalty_and_score(critic, real, fake, alpha).detach()
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
    minus = _penalty_and_score(critic, real, fake, alpha).detach()
    torch.testing.assert_close(analytic, (plus - minus) / (2 * eps), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("changes", "arch", "message"),
    [
        ({"v3_time_factors": (4, 4, 2)}, "v3", "v3 time factors"),
        ({"num_pitches": 72}, "v3", "v3 pitch layers"),
        ({"steps_per_bar": 50}, "v3", "not a multiple of 4 beats"),
        ({"num_bars": 1}, "v3", ">= 2 bars"),
        ({"steps_per_bar": 96, "paper_time_factors": (2, 2, 2, 2)}, "paper", "paper time factors"),
        ({"steps_per_bar": 96, "paper_pitch_factors": (6, 12)}, "paper", "paper pitch factors"),
        ({"steps_per_bar": 24, "paper_time_factors": (2, 2, 3)}, "paper", "bar critic needs more"),
    ],
)
def test_impossible_geometries_are_config_errors(changes, arch, message):
    geometry = MuseGANGeometry(**changes)
    with pytest.raises(ConfigError, match=message):
        build_musegan(geometry, arch, "hybrid")


def test_unknown_mode_and_arch_are_config_errors():
    with pytest.raises(ConfigError, match="model.musegan_mode"):
        build_musegan(TOY["v3"], "v3", "duet")
    with pytest.raises(ConfigError, match="model.musegan_arch"):
        build_musegan(TOY["v3"], "v4", "hybrid")


def test_state_dict_keeps_the_track_order():
    critic = PaperCritic(TOY["paper"], track_names=["soprano", "bass"])
    state = critic.state_dict()
    PaperCritic(TOY["paper"], track_names=["soprano", "bass"]).load_state_dict(state)
    with pytest.raises(ConfigError, match="differ"):
        PaperCritic(TOY["paper"], track_names=["bass", "soprano"]).load_state_dict(state)
    with pytest.raises(ConfigError, match="2 track names for 3 tracks"):
        PaperCritic(
            MuseGANGeometry(
                num_tracks=3,
                num_bars=2,
                steps_per_bar=48,
                num_pitches=24,
                paper_time_factors=(2, 2, 2, 3),
                paper_pitch_factors=(2, 12),
            ),
            ["a", "b"],
        )


@pytest.mark.parametrize(
    ("kernel", "stride", "groups"),
    [
        ((1, 1, 12), (1, 1, 12), 2),
        ((1, 3, 1), (1, 3, 1), 2),
        ((2, 4, 2), (2, 4, 2), 1),
        ((1, 4, 3), (1, 4, 2), 2),  # overlapping: falls back to nn.Conv3d
    ],
)
def test_patch_convolutions_equal_atens_in_values_and_gradients(kernel, stride, groups):
    torch.manual_seed(0)
    conv = PatchConv3d(2 * groups, 3 * groups, kernel, stride, groups=groups).double()
    up = PatchConvTranspose3d(2 * groups, 3 * groups, kernel, stride, groups=groups).double()
    x = torch.randn(2, 2 * groups, 4, 24, 24, dtype=torch.float64, requires_grad=True)
    for layer, reference in ((conv, F.conv3d), (up, F.conv_transpose3d)):
        ours = layer(x)
        theirs = reference(x, layer.weight, layer.bias, stride, groups=groups)
        torch.testing.assert_close(ours, theirs)
        upstream = torch.randn_like(ours)
        grads = torch.autograd.grad((ours * upstream).sum(), (x, layer.weight, layer.bias))
        expected = torch.autograd.grad((theirs * upstream).sum(), (x, layer.weight, layer.bias))
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want)


def test_phrases_and_multitrack_windows_convert_both_ways():
    geometry = TOY["v3"]
    k, n, s, p = geometry.phrase_shape
    steps = torch.randn(3, n * s, k * p)
    phrases = phrases_from_steps(steps, geometry)
    # Window step t = bar * S + step; feature f = track * P + pitch (track-major).
    assert phrases[1, 1, 1, 5, 7] == steps[1, s + 5, p + 7]
    torch.testing.assert_close(steps_from_phrases(phrases), steps)


def test_latents_are_reproducible_and_truncated_ones_stay_within_two_std():
    draws = [draw_latent(500, 8, 0.1, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    assert 0.09 < draws[0].std() < 0.11
    truncated = draw_latent(4000, 8, truncated=True, generator=torch.Generator().manual_seed(2))
    assert truncated.abs().max() <= 2.0 and truncated.abs().max() > 1.9


@pytest.mark.parametrize("arch", ARCHS)
def test_window_wrappers_speak_the_multitrack_layout(arch):
    generator, critic = _toy(arch, "composer")
    window_g, window_d = WindowGenerator(generator, 0.1), WindowCritic(critic)
    k, n, s, p = TOY[arch].phrase_shape
    torch.manual_seed(3)
    steps = window_g(2)
    assert steps.shape == (2, n * s, k * p)
    torch.manual_seed(3)
    z = draw_latent(2, generator.latent_dim, 0.1)
    torch.testing.assert_close(steps, steps_from_phrases(generator(z)))  # same draw, same phrase
    torch.testing.assert_close(window_d(steps), critic(phrases_from_steps(steps, TOY[arch])))


def test_v3_generator_starts_near_the_density_of_piano_rolls():
    # Issue 18: with batch norm's default shift the last layer starts with ~half the cells
    # on, so the critic's only early signal is "fewer notes", one gradient for all samples.
    torch.manual_seed(0)
    generator = build_musegan(SMALL_V3, "v3", "hybrid")[0]
    with torch.no_grad():
        on = (generator(draw_latent(32, generator.latent_dim, truncated=True)) > 0).float().mean().item()
        assert 0.005 < on < 0.08
        generator.start_with_on_share(0.5)  # torch's default: about half on
        half = (generator(draw_latent(32, generator.latent_dim, truncated=True)) > 0).float().mean().item()
    assert 0.3 < half < 0.7
