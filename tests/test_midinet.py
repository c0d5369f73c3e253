"""MidiNet: network shapes, the split batch norm, the family's losses and schedule, generation."""

from __future__ import annotations

import copy
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dist_helpers import assert_ranks_agree, assert_same_networks, final_weights, rank_states, spawn, train_runs

from musicgan.config import apply_overrides
from musicgan.errors import ConfigError, UserError
from musicgan.models.midinet import CHORD_DIM, NUM_PITCHES, MidiNetDiscriminator, MidiNetGenerator
from musicgan.presets import get_preset


def _bars(batch: int, steps: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    bar = (torch.rand(batch, 1, steps, NUM_PITCHES, generator=g) > 0.97).float()
    chord = torch.zeros(batch, CHORD_DIM)
    chord[torch.arange(batch), torch.randint(0, 12, (batch,), generator=g)] = 1.0
    return bar, chord


@pytest.mark.parametrize("steps", [16, 8])
def test_generator_and_discriminator_shapes(steps):
    torch.manual_seed(0)
    generator, discriminator = (
        MidiNetGenerator(steps, latent_dim=10, hidden=32, channels=8),
        MidiNetDiscriminator(steps),
    )
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


@pytest.mark.parametrize("kernels", [0, 4])
def test_minibatch_features_couple_rows_within_their_half_only(kernels):
    """Eval mode (running statistics: no batch-norm coupling), [real ; fake] with splits=2:
    with minibatch features a change to one real bar moves the other real bars' logits and no
    fake bar's; without them it moves no other row, and D has no minibatch parameter."""
    torch.manual_seed(0)
    d = MidiNetDiscriminator(16, minibatch_features=kernels).eval()
    bars, chord = _bars(8, seed=1)
    changed = bars.clone()
    changed[1] = torch.rand_like(changed[1])
    with torch.no_grad():
        before, after = d(bars, chord, splits=2)[0], d(changed, chord, splits=2)[0]
    moved = (after - before).abs() > 1e-9
    assert moved[1]
    assert moved[[0, 2, 3]].all() if kernels else not moved[[0, 2, 3]].any()
    assert not moved[4:].any()
    assert (d.out.in_features == 1024 + kernels + CHORD_DIM) and any("minibatch" in k for k in d.state_dict()) == bool(
        kernels
    )


def test_eval_mode_uses_running_statistics():
    torch.manual_seed(0)
    generator = MidiNetGenerator(16, latent_dim=10, hidden=32, channels=8)
    previous, chord = _bars(4)
    z = generator.noise(4)
    generator.train()(z, chord, previous)  # moves the running statistics once
    generator.eval()
    alone = generator(z[:1], chord[:1], previous[:1])
    torch.testing.assert_close(alone, generator(z, chord, previous)[:1])  # no batch coupling


# -- the family: losses, schedule, runs, generation -------------------------------------------
STEPS = 10
RESUME_AT = 6


def midinet_cfg(data: Path, *overrides: str):
    cfg = get_preset("midinet-debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            "log.interval=1",
            "log.tensorboard=false",
            "log.progress=false",
            "log.num_samples=1",
            "log.metric_samples=2",
            "log.metric_songs=4",
            *overrides,
        ],
    )


def _one_process(cfg):
    from musicgan.distributed.ddp import DDPBackend
    from musicgan.distributed.env import DistEnv
    from musicgan.training.families import get_family
    from musicgan.training.phases import StepContext

    family = get_family(cfg)
    torch.manual_seed(0)
    networks = family.build_networks(family.build_representation())
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), initialized_here=False)
    backend = DDPBackend(env, grad_clip=0.0, max_grad_norm=1e6)
    backend.setup(networks, family.optimizers())
    return family, networks, StepContext(cfg, backend, torch.device("cpu"), 32)


def _window_batch(batch: int = 5):
    """Two-bar melody_chord windows: a previous bar, a current bar, the current bar's chord."""
    from musicgan.data.loader import Batch

    window = torch.zeros(batch, 32, NUM_PITCHES + CHORD_DIM)
    previous, chord = _bars(batch, seed=3)
    current, _ = _bars(batch, seed=4)
    window[:, :16, :NUM_PITCHES], window[:, 16:, :NUM_PITCHES] = previous[:, 0], current[:, 0]
    window[:, 16:, NUM_PITCHES:] = chord[:, None]
    return Batch(window, torch.full((batch,), 32), ["song"] * batch)


def test_step_losses_are_the_papers_with_separate_d_calls(tmp_path):
    """The step's D loss (one forward, split batch norm) and G loss = the definitions computed
    with D called on real and fake apart: BCE(real, 0.9) + BCE(fake, 0); BCE(fake, 1) + 0.1
    ||mean f_fake - mean f_real||^2 / 2 + 0.01 ||mean G - mean x||^2 / 2."""
    from musicgan.training.families.midinet import midinet_step

    cfg = midinet_cfg(tmp_path)
    _, networks, ctx = _one_process(cfg)
    ctx.trains = frozenset({"generator", "discriminator"})
    batch = _window_batch()
    generator, discriminator = networks["generator"], copy.deepcopy(networks["discriminator"])
    torch.manual_seed(7)
    out = midinet_step(ctx, batch)
    torch.manual_seed(7)
    x = batch.x
    previous, real, chord = x[:, None, :16, :128], x[:, None, 16:, :128], x[:, 16, 128:]
    fake = generator(generator.noise(5), chord, previous)
    real_logits, real_f = discriminator(real, chord)
    fake_logits, fake_f = discriminator(fake, chord)
    d_loss = F.binary_cross_entropy_with_logits(
        real_logits, torch.full_like(real_logits, 0.9)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    g_loss = (
        F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        + 0.1 * (fake_f.mean(0) - real_f.mean(0)).square().sum() / 2
        + 0.01 * (fake.flatten(1).mean(0) - real.flatten(1).mean(0)).square().sum() / 2
    )
    torch.testing.assert_close(out.losses["discriminator"], d_loss)
    torch.testing.assert_close(out.losses["generator"], g_loss)


def _step_with_d_inputs(cfg, progress: float):
    """One G + D step at seed 7 from the same networks: (stats, the melody channel of every
    input D's first convolution saw, in call order)."""
    from musicgan.training.families.midinet import midinet_step

    _, networks, ctx = _one_process(cfg)
    ctx.progress, ctx.trains = progress, frozenset({"generator", "discriminator"})
    seen: list = []
    networks["discriminator"].conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0][:, 0].detach()))
    torch.manual_seed(7)
    out = midinet_step(ctx, _window_batch(64))
    return out.stats, seen


def test_instance_noise_reaches_every_d_input_and_anneals(tmp_path):
    """`train.instance_noise=0.3`: each D input (G's loss: fake, real; D's: [real ; fake])
    is the clean one plus N(0, (0.3 (1 - progress))^2), the same draws at every progress;
    the mean matching still compares G's bars themselves; at std 0 the step is the clean one."""
    clean_stats, clean = _step_with_d_inputs(midinet_cfg(tmp_path), 0.0)
    noisy = {p: _step_with_d_inputs(midinet_cfg(tmp_path, "train.instance_noise=0.3"), p) for p in (0.0, 0.5, 1.0)}
    assert len(clean) == len(noisy[0.0][1]) == 3
    for call, (a, b) in enumerate(zip(clean, noisy[0.0][1])):
        assert (b - a).std().item() == pytest.approx(0.3, rel=0.05), call
        torch.testing.assert_close(noisy[0.5][1][call] - a, 0.5 * (b - a), rtol=0, atol=1e-5)
        assert torch.equal(noisy[1.0][1][call], a)  # the run's end: no noise, no draw
    torch.testing.assert_close(noisy[0.0][0]["mean_matching"], clean_stats["mean_matching"])
    assert not torch.equal(noisy[0.0][0]["feature_matching"], clean_stats["feature_matching"])


def test_one_process_run_updates_g_twice_per_d_update(bach_shards, tmp_path):
    from musicgan.training.loop import train

    result = train(midinet_cfg(bach_shards, "train.max_steps=3"), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["event"] == "train"]
    assert [(r["updates/generator"], r["updates/discriminator"]) for r in rows] == [(2, 1), (4, 2), (6, 3)]
    state = torch.load(result.checkpoint, weights_only=True)
    assert sorted(state["networks"]) == ["discriminator", "generator"]
    assert "conditioner.norms.0.running_mean" in state["networks"]["generator"]


def _train_runs(data: Path, root: Path, runs) -> None:
    """Each run of `runs` on 2 gloo ranks; every rank keeps its generator (batch statistics)."""
    spawn(train_runs, 2, partial(midinet_cfg, data), str(root), runs, STEPS, RESUME_AT, "generator")


def test_two_ranks_resume_exactly_with_per_rank_batch_statistics(bach_shards, tmp_path):
    """2 gloo ranks: a run stopped at step 6 and resumed = the straight run, weights and
    running statistics (rank 0's) bit for bit. Batch norm is per rank: both ranks hold the
    same weights, but their running statistics differ (each saw its own half batch)."""
    _train_runs(bach_shards, tmp_path, [("ddp", []), ("ddp-resumed", [])])
    straight, resumed = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "ddp-resumed")
    assert straight["step"] == resumed["step"] == STEPS
    assert straight["updates"] == resumed["updates"] == {"generator": 2 * STEPS, "discriminator": STEPS}
    assert_same_networks(straight, resumed)
    r0, r1 = rank_states(tmp_path / "ddp", "generator")
    weights = [k for k in r0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert_ranks_agree(tmp_path / "ddp", "generator", keys=weights)
    assert not torch.equal(r0["norms.0.running_mean"], r1["norms.0.running_mean"])


@pytest.mark.slow
def test_deepspeed_zero1_matches_ddp_over_ten_steps(bach_shards, tmp_path):
    """DeepSpeed ZeRO-1 = DDP within 1e-5 over 10 steps with the split batch norm (and
    repeat: DeepSpeed's engine takes two G steps per trainer step)."""
    runs = [("ddp", []), ("zero1", ["dist.backend=deepspeed", "dist.zero_stage=1"])]
    _train_runs(bach_shards, tmp_path, runs)
    reference, zero1 = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "zero1")
    assert zero1["backend"] == "deepspeed" and zero1["updates"] == reference["updates"]
    assert_same_networks(reference, zero1, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def trained_run(bach_shards, tmp_path_factory):
    from musicgan.training.loop import train

    run_dir = tmp_path_factory.mktemp("midinet") / "run"
    train(midinet_cfg(bach_shards, "train.max_steps=2"), run_dir)
    return run_dir


def _generate(run_dir: Path, num: int = 3, chords: str | None = "C G Am F", *overrides: str):
    from musicgan.training.sampling import load_run

    _, family, representation, networks, _ = load_run(run_dir, overrides=overrides)
    torch.manual_seed(0)
    return family.generate(networks, num, 64, **({"chords": chords} if chords else {})), networks, representation


def test_generation_follows_the_given_chords_bar_by_bar(trained_run):
    from musicgan.data.chords import midinet_vectors, parse_chord

    steps, networks, representation = _generate(trained_run)
    assert not networks["generator"].training  # load_run's eval mode, restored
    from musicgan.training.sampling import load_run

    _, family, _, networks, _ = load_run(trained_run)
    networks["generator"].train()
    family.generate(networks, 2, 16, chords="C")
    assert networks["generator"].training  # the loop samples mid-run: training mode comes back
    assert steps.shape == (3, 4 * 16, NUM_PITCHES + CHORD_DIM)
    chords = midinet_vectors([parse_chord(c) for c in ("C", "G", "Am", "F")])
    np.testing.assert_array_equal(steps[:, :, NUM_PITCHES:], np.repeat(chords, 16, axis=0)[None].repeat(3, 0))
    assert set(np.unique(steps[:, :, :NUM_PITCHES])) <= {0.0, 1.0}
    assert (steps[:, :, :NUM_PITCHES].sum(axis=2) <= 1).all()  # monophonic
    song = representation.decode(steps[0])
    assert [t.name for t in song.tracks] == ["Melody", "Chords"]


def test_argmax_decode_sounds_every_step_and_a_real_prime_is_a_held_out_first_bar(trained_run):
    steps, _, _ = _generate(trained_run, 2, "C G", "model.midinet_decode=argmax")
    assert (steps[:, :, :NUM_PITCHES].sum(axis=2) == 1).all()
    primed, _, _ = _generate(trained_run, 2, None, "model.midinet_prime=real")
    from musicgan.training.sampling import load_run

    _, family, _, _, _ = load_run(trained_run)
    (song,) = family.held_out_windows(5, 1)
    np.testing.assert_array_equal(primed[0, :16], song[16:32])  # its first bar, melody and chord
    np.testing.assert_array_equal(primed[0, 16:, NUM_PITCHES:], song[32:80, NUM_PITCHES:])  # its chords


def _quiet_generator(run_dir: Path, *overrides: str):
    """The run's family and networks with G's last bias at -10: every output below 0.5, as
    the trained midinet-chorales generator's (a sigmoid per pitch with one pitch on per step)."""
    from musicgan.training.sampling import load_run

    _, family, _, networks, _ = load_run(run_dir, overrides=overrides)
    with torch.no_grad():
        networks["generator"].to_bar.bias.fill_(-10.0)
        previous, chord = _bars(4)
        generator = networks["generator"]
        assert generator(generator.noise(4), chord, previous).max() < 0.5
    return family, networks


def test_the_default_decoding_writes_notes_from_a_generator_below_one_half(trained_run):
    """The preset's decoding (argmax) writes a step's highest pitch at every step even when
    no output reaches 0.5; threshold decoding writes nothing but rests from the same G."""
    family, networks = _quiet_generator(trained_run)
    torch.manual_seed(0)
    steps = family.generate(networks, 2, 32, chords="C G")
    assert (steps[:, :, :NUM_PITCHES].sum(axis=2) == 1).all()
    family, networks = _quiet_generator(trained_run, "model.midinet_decode=threshold")
    assert family.generate(networks, 2, 32, chords="C G")[:, :, :NUM_PITCHES].sum() == 0


def test_batch_statistics_at_sampling_differ_and_keep_the_running_ones(trained_run):
    """`batch` samples through a training-mode copy (other outputs than the running
    statistics give), and the checkpoint's running statistics stay as they were."""
    from musicgan.training.sampling import load_run

    _, family, _, networks, _ = load_run(trained_run, overrides=["model.midinet_sample_bn=batch"])
    generator = networks["generator"]
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    raw = family._sampling_generator(generator, 4)
    assert raw.training and raw is not generator
    previous, chord = _bars(4)
    z = generator.noise(4)
    assert not torch.allclose(raw(z, chord, previous), generator.eval()(z, chord, previous))
    family.generate(networks, 4, 64, chords="C F G C")
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(UserError, match="at least 2"):
        _generate(trained_run, 1, "C", "model.midinet_sample_bn=batch")


def test_sample_cli_writes_eight_bar_melodies_and_rejects_bad_chords(trained_run, tmp_path, capsys):
    from musicgan.cli import main
    from musicgan.data.midi import read_midi

    assert (
        main(
            [
                "sample",
                "--run",
                str(trained_run),
                "--num",
                "2",
                "--chords",
                "C G Am F C G C C",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    files = sorted((tmp_path / "out").glob("*.mid"))
    assert len(files) == 2 and len(list((tmp_path / "out").glob("*.png"))) == 2
    song = read_midi(files[0])
    assert [t.name for t in song.tracks] == ["Melody", "Chords"]
    assert song.end_time == pytest.approx(8 * 2.0)  # 8 bars of 4/4 at 120 bpm, the chords to the end
    assert main(["sample", "--run", str(trained_run), "--chords", "C H7", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown chord 'H7'" in capsys.readouterr().err


def test_chord_names_parse_back_and_bad_ones_are_refused():
    from musicgan.data.chords import NUM_CHORDS, chord_name, parse_chord

    assert [parse_chord(chord_name(label)) for label in range(NUM_CHORDS)] == list(range(NUM_CHORDS))
    assert parse_chord("Db") == parse_chord("C#") and parse_chord("A#m") == parse_chord("Bbm")
    for bad in ("H", "Cmaj7", "m", ""):
        with pytest.raises(UserError, match="unknown chord"):
            parse_chord(bad)


def test_config_asks_the_representation_registry(tmp_path):
    from musicgan.config import validate

    assert validate(midinet_cfg(tmp_path)).data.representation == "melody_chord"
    with pytest.raises(ConfigError, match="data.representation='melody'"):
        validate(midinet_cfg(tmp_path, "data.representation=melody"))
    with pytest.raises(ConfigError, match="curriculum.max_len must be 32"):
        _one_process(midinet_cfg(tmp_path, "curriculum.max_len=48", "curriculum.start=48"))


def test_chords_are_refused_by_a_family_without_them(bach_shards, tmp_path, capsys):
    from musicgan.cli import main
    from musicgan.training.loop import train

    cfg = apply_overrides(
        get_preset("wgan-gp-debug"),
        [f"data.path={bach_shards}", "train.max_steps=1", "log.tensorboard=false", "log.progress=false"],
    )
    train(cfg, tmp_path / "wgan")
    assert main(["sample", "--run", str(tmp_path / "wgan"), "--chords", "C G", "--out", str(tmp_path / "s")]) == 2
    assert "model.name=wgan-gp takes no chords" in capsys.readouterr().err


def test_melody_table_compares_generated_real_and_random_on_the_same_chords(trained_run):
    from musicgan.benchmarks.melodies import RANDOM_HIGH, RANDOM_LOW, melody_sets, melody_table

    sets = melody_sets(str(trained_run), num=3, bars=2)
    assert {k: v.shape for k, v in sets.items()} == {k: (3, 32, NUM_PITCHES + CHORD_DIM) for k in sets}
    for name in ("generated", "random"):
        np.testing.assert_array_equal(sets[name][:, :, NUM_PITCHES:], sets["real"][:, :, NUM_PITCHES:])
    pitches = sets["random"][:, :, :NUM_PITCHES].argmax(axis=2)
    assert (sets["random"][:, :, :NUM_PITCHES].sum(axis=2) == 1).all()
    assert RANDOM_LOW <= pitches.min() and pitches.max() <= RANDOM_HIGH
    assert (pitches[:, ::4] == pitches[:, 3::4]).all()  # quarter notes
    table = melody_table(str(trained_run), num=3, bars=2).splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| generated", "| real", "| random"]
