"""GANSynth: the progressive networks (shapes at every stage, the fade-in blend, the double
backward of the gradient penalty, DDP-safe graphs), the family's phase table and exact
resume inside a fade-in at 2 gloo ranks, `sample --pitches`, and the note metrics."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dist_helpers import assert_ranks_agree, assert_same_networks, final_weights, spawn, train_runs

from musicgan import losses
from musicgan.config import apply_overrides
from musicgan.models.gansynth import (
    ProgressiveCritic,
    ProgressiveGenerator,
    downscale,
    resolution,
    stage_filters,
)
from musicgan.presets import get_preset

START, STAGES, CAP, PITCHES, LATENT = (2, 2), 4, 8, 5, 6


def nets(seed: int = 0):
    torch.manual_seed(seed)
    return (ProgressiveGenerator(LATENT, PITCHES, START, STAGES, CAP), ProgressiveCritic(PITCHES, START, STAGES, CAP))


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


def test_pitch_biases_make_the_pitch_move_the_output_as_much_as_z_at_init():
    """model.pitch_conditioning=blocks: a unit-scale pitch bias at every conv, so two pitches
    at one z differ about as much as two z at one pitch (the input-only one-hot: far less)."""
    z, pitch = inputs(64)
    other_pitch, other_z = pitch.roll(1, dims=1), torch.randn_like(z)

    def spreads(generator):
        with torch.no_grad():
            base = generator(z, pitch, STAGES - 1)
            return (base - generator(z, other_pitch, STAGES - 1)).abs().mean(), (
                base - generator(other_z, pitch, STAGES - 1)
            ).abs().mean()

    torch.manual_seed(0)
    biased = ProgressiveGenerator(LATENT, PITCHES, START, STAGES, CAP, pitch_biases=True)
    between_pitches, between_z = spreads(biased)
    assert between_pitches > 0.5 * between_z
    input_only, _ = nets()
    between_pitches_input, between_z_input = spreads(input_only)
    assert between_pitches_input / between_z_input < 0.5 * between_pitches / between_z
    image = biased(z[:3], pitch[:3], 1)
    critic_score, _ = ProgressiveCritic(PITCHES, START, STAGES, CAP)(image, 1)
    critic_score.mean().backward()
    assert all(b.weight.grad.abs().sum() > 0 for b in biased.pitch_biases[1])
    assert all(b.weight.grad.abs().sum() == 0 for b in biased.pitch_biases[2])  # later stage: in graph, zero


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
    used = [critic.inputs[stage], critic.inputs[stage - 1], *critic.blocks[: stage + 1], critic.heads]
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


@pytest.mark.parametrize("on_fakes", [False, True])
def test_critic_pitch_loss_reads_the_fakes_only_when_asked(on_fakes):
    """train.aux_on_fakes adds aux_weight * CE(the fakes' pitch logits, their conditioning
    pitches) to D's loss; off, D's loss is the same whatever the fakes' pitch logits."""
    from musicgan.distributed.ddp import DDPBackend
    from musicgan.distributed.env import DistEnv
    from musicgan.training.families.gansynth import critic_loss
    from musicgan.training.phases import StepContext

    cfg = apply_overrides(get_preset("gansynth-debug"), [f"train.aux_on_fakes={str(on_fakes).lower()}"])
    generator, critic = nets()
    backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=0.0, max_grad_norm=1e9)
    backend.setup({"discriminator": critic}, {})
    ctx = StepContext(cfg, backend, torch.device("cpu"), 8)
    z, pitch = inputs(4)
    classes, stage = pitch.argmax(1), 1
    with torch.no_grad():
        fake = generator(z, pitch, stage)
    real = torch.rand_like(fake) * 2 - 1
    torch.manual_seed(3)
    loss = critic_loss(ctx, real, fake, classes, stage, 1.0, {})
    torch.manual_seed(3)
    x_hat = losses.interpolate(real, fake)
    scores, logits = critic(torch.cat([real, fake, x_hat]), stage, 1.0)
    r, f, h = scores.split(4)
    want = losses.wasserstein_d(r, f) + losses.gradient_penalty(h, x_hat, cfg.train.gp_weight)
    want = (
        want
        + losses.drift_penalty(r, cfg.train.drift_penalty)
        + cfg.train.aux_weight * F.cross_entropy(logits[:4], classes)
    )
    if on_fakes:
        want = want + cfg.train.aux_weight * F.cross_entropy(logits[4:8], classes)
    torch.testing.assert_close(loss, want)


def he_layers(module):
    """(layer, expected He gain) of every conv / linear: sqrt(2) before a leaky ReLU, 1 for
    the linear output layers (G's per-stage image layers, D's score + pitch head)."""
    outputs = {id(m) for m in [*getattr(module, "outputs", []), getattr(module, "heads", None)]}
    layers = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return [(m, 1.0 if id(m) in outputs else 2**0.5) for m in layers]


def test_weights_are_stored_unit_normal_and_scaled_at_runtime_by_he_constant():
    generator, critic = nets()
    for network in (generator, critic):
        layers = he_layers(network)
        assert len(layers) == sum(p.dim() > 1 for p in network.parameters())
        for layer, gain in layers:
            assert layer.bias.abs().sum() == 0
            if layer.weight.numel() >= 500:  # large enough for the sample std to be near 1
                assert 0.9 < layer.weight.std().item() < 1.1
            fan_in = layer.weight[0].numel()
            if isinstance(layer, torch.nn.Linear):
                x = torch.randn(3, layer.in_features)
                want = F.linear(x, layer.weight * gain / fan_in**0.5, layer.bias)
            else:
                x = torch.randn(3, layer.in_channels, 4, 4)
                want = F.conv2d(x, layer.weight * gain / fan_in**0.5, layer.bias, padding=layer.padding)
            assert torch.allclose(layer(x), want, atol=1e-5)


def test_critic_pitch_logits_depend_on_the_note_at_init(note_shards):
    """With PyTorch's default init the signal shrinks at every layer of the 6-stage critic and
    the logits are its biases: the same for every input (the pitch head then cannot learn)."""
    from musicgan.benchmarks.gansynth_pitch_head import use_default_init
    from musicgan.data.loader import iter_songs
    from musicgan.data.shards import split_urls
    from musicgan.training.families import get_family
    from musicgan.training.note_sampling import note_images

    cfg = apply_overrides(get_preset("gansynth-small"), ["model.filter_cap=8", f"data.path={note_shards}"])
    family = get_family(cfg)
    representation = family.build_representation()
    urls = split_urls(str(note_shards), "train")
    representation.fit(iter_songs(urls))
    images, classes = note_images(family, representation, urls)
    low, high = images[classes.argmin()], images[classes.argmax()]
    assert classes.min() != classes.max()

    def spread(critic) -> float:
        _, logits = critic(torch.stack([low, high]), cfg.model.stages - 1)
        return ((logits[0] - logits[1]).norm() / logits.norm(dim=1).mean()).item()

    torch.manual_seed(0)
    critic = family.build_networks(representation)["discriminator"]
    assert spread(critic) > 0.1, f"pitch logits of two notes differ by {spread(critic):.2e} of their norm"
    # The probe's "default" variant (musicgan.benchmarks.gansynth_pitch_head) is the old code's.
    use_default_init(critic)
    assert spread(critic) < 1e-3


# -- the family: phase table, fade-in, training at 2 ranks, exact resume inside a fade-in ---------

STEPS = 10
RESUME_AT = 6  # inside the fade-in of steps 5..8 (1-based): 2 steps per epoch, 2 epochs per stage


def gansynth_cfg(data: Path, *overrides: str):
    cfg = get_preset("gansynth-debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            "log.interval=1",
            "log.tensorboard=false",
            "log.progress=false",
            "train.stage_epochs=2",
            "model.min_pitch=48",
            "model.num_pitches=6",
            *overrides,
        ],
    )


def read_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return list({r["step"]: r for r in rows if r["event"] == "train"}.values())


def test_the_phase_table_has_a_stable_and_a_fade_in_stage_per_resolution():
    from musicgan.training.families import get_family
    from musicgan.training.families.gansynth import fade_alpha

    cfg = apply_overrides(get_preset("gansynth-small"), ["train.stage_epochs=3"])
    table = get_family(cfg).phases()
    assert [p.name for p in table] == ["stable-4x4"] + [
        f"{kind}-{4 * 2**s}x{4 * 2**s}" for s in range(1, 6) for kind in ("fade", "stable")
    ]
    assert [p.epochs for p in table] == [3] * 10 + [None]
    assert [fade_alpha(s, 4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_note_and_network_sizes_must_agree():
    from musicgan.errors import ConfigError
    from musicgan.training.families import get_family

    family = get_family(apply_overrides(get_preset("gansynth-debug"), ["model.start_bins=16"]))
    with pytest.raises(ConfigError, match="is 64x32, but a note is curriculum.max_len=64 frames x 128 bins"):
        family.build_networks(family.build_representation())


def test_two_ranks_grow_through_a_fade_in_and_resume_inside_it_exactly(note_shards, tmp_path):
    runs = [("straight", []), ("resumed", [])]
    spawn(train_runs, 2, partial(gansynth_cfg, note_shards), str(tmp_path), runs, STEPS, RESUME_AT, "generator_ema")
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    rows = read_rows(tmp_path / "straight")
    assert [r["phase"] for r in rows] == ["stable-32x64"] * 4 + ["fade-64x128"] * 4 + ["stable-64x128"] * 2
    assert [r["stats/alpha"] for r in rows] == [1.0] * 4 + [0.0, 0.25, 0.5, 0.75] + [1.0] * 2
    assert straight["updates"] == resumed["updates"] == {"generator": STEPS, "discriminator": STEPS}
    assert sorted(straight["networks"]) == ["discriminator", "generator", "generator_ema"]
    assert_same_networks(straight, resumed)
    resumed_rows = read_rows(tmp_path / "resumed")
    assert [r["stats/alpha"] for r in resumed_rows if r["step"] > RESUME_AT] == [0.5, 0.75, 1.0, 1.0]
    # The last stage's blocks trained (they were zero-gradient passengers in stage 0).
    grown = "outputs.1.weight"
    first = torch.load(min((tmp_path / "straight" / "checkpoints").glob("*.pt")), weights_only=True)
    assert not torch.equal(first["networks"]["generator"][grown], straight["networks"]["generator"][grown])
    assert_ranks_agree(tmp_path / "straight", "generator_ema")


# -- sampling: notes of chosen pitches, timbre morphing ------------------------------------------
def test_latent_line_runs_from_one_draw_to_the_other():
    from musicgan.training.note_sampling import line_latents

    start, end = torch.zeros(4), torch.ones(4) * 2
    line = line_latents(start, end, 3)
    assert torch.equal(line[0], start) and torch.equal(line[2], end) and torch.equal(line[1], torch.ones(4))
    assert torch.equal(line_latents(start, end, 1), start.unsqueeze(0))


def test_sample_writes_wavs_of_the_asked_pitches(note_shards, tmp_path, one_torch_thread, monkeypatch):
    import wave

    from dist_helpers import musicgan

    from musicgan.training.loop import train
    from musicgan.training.sampling import load_run

    run = tmp_path / "run"
    train(gansynth_cfg(note_shards, "train.max_steps=3", "log.num_samples=1", "log.metric_samples=1"), run)
    out = tmp_path / "notes"
    musicgan(["sample", "--run", str(run), "--pitches", "48,50", "--num", "2", "--out", str(out)], timeout=120)
    assert sorted(p.name for p in out.iterdir()) == [
        f"pitch0{p}-00{i}.{ext}" for p in (48, 50) for i in (0, 1) for ext in ("png", "wav")
    ]
    with wave.open(str(out / "pitch048-000.wav")) as wav:
        assert wav.getframerate() == 8000 and wav.getnframes() > 4000  # 64 frames x hop 128
    morph = tmp_path / "morph"
    musicgan(
        ["sample", "--run", str(run), "--pitches", "53", "--num", "3", "--interpolate", "--out", str(morph)],
        timeout=120,
    )
    assert len(list(morph.glob("morph-pitch053-*.wav"))) == 3
    failed = musicgan(["sample", "--run", str(run), "--pitches", "47", "--out", str(out)], check=False)
    assert (
        failed.returncode == 2 and failed.stderr.strip() == "error: pitches [47] are outside the model's range 48..53"
    )
    monkeypatch.setenv("MUSICGAN_CACHE", str(tmp_path / "cache"))
    one_note = musicgan(
        [
            "evaluate",
            "--run",
            str(run),
            "--reference",
            str(note_shards),
            "--split",
            "test",
            "--out",
            str(tmp_path / "eval"),
        ],
        check=False,
    )
    assert one_note.returncode == 2 and "has 1 note(s)" in one_note.stderr
    musicgan(
        [
            "evaluate",
            "--run",
            str(run),
            "--reference",
            str(note_shards),
            "--split",
            "train",
            "--out",
            str(tmp_path / "eval"),
        ],
        timeout=240,
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert sorted(metrics) == ["generated", "noise", "real held-out"]
    assert sorted(metrics["noise"]) == ["frechet", "ndb", "pitch_accuracy", "pitch_entropy"]
    cfg, family, _, networks, _ = load_run(run)
    z = torch.randn(1, cfg.model.latent_dim)
    assert not np.array_equal(family.generate_notes(networks, [48], z), family.generate_notes(networks, [53], z))
    # The conditioning probe's --run mode reads the same checkpoint: both generators, the last step.
    from musicgan.benchmarks.gansynth_conditioning import probe_run

    rows = list(probe_run(str(run), 32, 0))
    assert [r["generator"] for r in rows] == ["generator", "generator_ema"]
    assert all(r["checkpoint"].endswith("step-00000003.pt") and r["chance_ce"] == round(np.log(6), 3) for r in rows)
    assert all(r["critic_ce_on_fakes"] > 0 and 0 <= r["critic_accuracy_on_fakes"] <= 1 for r in rows)
    assert all(r["between_pitches"] > 0 and r["between_z"] > 0 for r in rows)


# -- metrics: pitch classifier (cached), pitch accuracy / entropy, Frechet, NDB ------------------
def test_ndb_is_zero_for_the_same_notes_and_counts_the_bins_a_set_misses():
    from musicgan.metrics.notes import ndb

    rng = np.random.default_rng(0)
    centroids = np.array([[0.0, 0.0], [10.0, 10.0]])
    real = np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))])
    assert ndb(centroids, real, real) == 0.0
    assert ndb(centroids, real, rng.normal(0, 1, (100, 2))) == 1.0  # both bins' shares differ


def test_pitch_metrics_tell_real_notes_from_noise_and_the_classifier_is_cached(note_shards, tmp_path):
    from musicgan.data.loader import iter_songs
    from musicgan.data.shards import split_urls
    from musicgan.metrics import notes
    from musicgan.training.families import get_family
    from musicgan.training.note_sampling import note_images

    family = get_family(gansynth_cfg(note_shards))
    representation = family.build_representation()
    urls = split_urls(str(note_shards), "train")
    representation.fit(iter_songs(urls))
    images, classes = note_images(family, representation, urls)
    assert images.shape[1:] == (2, 64, 128) and set(classes.tolist()) <= set(range(6))
    classifier = notes.cached_classifier(urls, images, classes, 6, encoding=representation.state_dict(), root=tmp_path)
    assert len(list((tmp_path / "pitch-classifier").glob("*.pt"))) == 1
    again = notes.cached_classifier(
        urls, images[:1], classes[:1], 6, encoding=representation.state_dict(), root=tmp_path
    )  # loaded, not retrained on the one note given
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))
    centroids = notes.ndb_bins(notes.log_spectra(images), 3)
    real = notes.note_metrics(classifier, images, centroids, images, classes)
    noise = notes.note_metrics(classifier, images, centroids, notes.noise_images(images), classes)
    assert real["pitch_accuracy"] >= 0.9 and real["ndb"] == 0.0 and real["frechet"] < 1e-6
    assert noise["pitch_accuracy"] < real["pitch_accuracy"] and noise["frechet"] > 1.0 and noise["ndb"] > 0
    assert real["pitch_entropy"] < noise["pitch_entropy"]


def test_pitch_conditioning_key_picks_the_generators_pitch_biases():
    from musicgan.config import validate
    from musicgan.errors import ConfigError
    from musicgan.training.families import get_family

    for mode, biased in (("input", False), ("blocks", True)):
        family = get_family(apply_overrides(get_preset("gansynth-debug"), [f"model.pitch_conditioning={mode}"]))
        networks = family.build_networks(family.build_representation())
        assert [networks[n].pitch_biases is not None for n in ("generator", "generator_ema")] == [biased, biased]
    with pytest.raises(ConfigError, match="pitch_conditioning"):
        validate(apply_overrides(get_preset("gansynth-debug"), ["model.pitch_conditioning=everywhere"]))


def test_conditioning_probe_tells_a_working_pitch_path_from_a_cut_one():
    """benchmarks.gansynth_conditioning: G trained on a frozen head's pitch loss alone gets
    far below chance through a working one-hot path (z = 0, pitch its only input), and stays
    at chance when the path is cut (the one-hot zeroed before G sees it)."""
    from musicgan.benchmarks.gansynth_conditioning import train_generator

    cfg = apply_overrides(get_preset("gansynth-small"), [f"model.latent_dim={LATENT}", f"model.num_pitches={PITCHES}"])
    final_ce = {}
    for arm in ("working", "cut"):
        generator, critic = nets()
        critic.heads.set_gain(10.0)  # a sharper frozen head than the random init's, as a trained one is
        if arm == "cut":
            forward = generator.forward
            generator.forward = lambda z, pitch, stage, alpha=1.0: forward(z, pitch * 0, stage, alpha)
        rows = train_generator(cfg, generator, critic, torch.arange(PITCHES), 1, 300, 300, 0, zero_latent=True)
        final_ce[arm] = list(rows)[-1]["g_ce"]
    chance = np.log(PITCHES)
    assert final_ce["working"] < 0.3 * chance
    assert final_ce["cut"] > 0.8 * chance
