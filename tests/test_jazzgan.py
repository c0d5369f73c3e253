"""JazzGAN: the torch-ops LSTM equals nn.LSTM (outputs and a gradient penalty's double
backward), network shapes, and the family: config keys, both objectives in a real run with
melody + chord samples, 2 gloo ranks resuming mid critic run = straight run per encoding."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from dist_helpers import assert_same_networks, final_weights, spawn, train_runs
from torch import nn

from musicgan import losses
from musicgan.config import apply_overrides, validate
from musicgan.data.melody_events import RHYTHM_ENCODINGS
from musicgan.errors import ConfigError
from musicgan.models.jazzgan import JazzCritic, JazzGenerator, TorchOpsLSTM, one_hot_tokens
from musicgan.presets import get_preset

VOCAB = (51, 49)  # duration encoding: pitch field, rhythm field
CHORD = 24


def twin_lstms(seed: int = 0):
    torch.manual_seed(seed)
    ours = TorchOpsLSTM(7, 5, layers=2, bidirectional=True).double()
    reference = nn.LSTM(7, 5, 2, batch_first=True, bidirectional=True).double()
    reference.load_state_dict(ours.state_dict())  # same parameter names and shapes
    return ours, reference


def test_torch_ops_lstm_equals_nn_lstm():
    ours, reference = twin_lstms()
    x = torch.randn(3, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), reference(x)[0], rtol=1e-12, atol=1e-12)


def test_gradient_penalty_double_backward_equals_nn_lstm_on_cpu():
    """nn.LSTM double-backwards on CPU (not under cuDNN): it is the reference."""
    ours, reference = twin_lstms(1)
    x_hat = torch.randn(4, 5, 7, dtype=torch.float64, requires_grad=True)
    grads = []
    for lstm in (ours, reference):
        out = lstm(x_hat)
        scores = (out[0] if isinstance(out, tuple) else out).sum(dim=(1, 2))
        penalty = losses.gradient_penalty(scores, x_hat, 10.0)
        grads.append(torch.autograd.grad(penalty, list(lstm.parameters())))
    assert any(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_generator_and_critic_shapes_and_penalty_through_the_critic():
    torch.manual_seed(0)
    generator = JazzGenerator(VOCAB, CHORD, latent_dim=8, hidden=16)
    critic = JazzCritic(sum(VOCAB) + CHORD, hidden=12)
    chords = torch.rand(3, 10, CHORD)
    logits = generator(chords)
    assert logits.shape == (3, 10, sum(VOCAB))
    soft = generator.distributions(logits)
    torch.testing.assert_close(soft.split(VOCAB, dim=2)[0].sum(dim=2), torch.ones(3, 10))
    gumbel = generator.distributions(logits, gumbel_tau=0.5)
    assert gumbel.shape == soft.shape and not torch.allclose(gumbel, soft)
    tokens = generator.tokens(logits)
    assert tokens.shape == (3, 10, 2) and int(tokens[..., 0].max()) < VOCAB[0]
    real = torch.cat([one_hot_tokens(tokens, VOCAB), chords], dim=2)
    assert torch.equal(real[..., : sum(VOCAB)].sum(dim=2), torch.full((3, 10), 2.0))
    fake = torch.cat([soft.detach(), chords], dim=2)
    x_hat = losses.interpolate(real, fake)
    scores = critic(torch.cat([real, fake, x_hat]))
    assert scores.shape == (9,)
    penalty = losses.gradient_penalty(scores[6:], x_hat, 10.0)
    penalty.backward()
    # the penalty reaches every LSTM weight and the head (a bias cannot change dD/dx̂)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in critic.lstm.parameters())
    assert critic.head_weight.grad.abs().sum() > 0
    assert critic.lstm.weight_hh_l0.grad.abs().sum() > 0


# -- the family -------------------------------------------------------------------------------


STEPS, RESUME_AT = 12, 7  # G trains at steps 5 and 10 (1-based): the resume lands in a critic run


def jazz_cfg(data: Path, *overrides: str):
    cfg = get_preset("jazzgan-debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            "log.interval=1",
            "log.tensorboard=false",
            "log.progress=false",
            "log.num_samples=2",
            "log.metric_samples=2",
            "log.metric_songs=4",
            *overrides,
        ],
    )


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return list({r["step"]: r for r in rows if r["event"] == "train"}.values())


def test_window_bars_sets_the_window_per_encoding_and_config_is_checked(tmp_path):
    from musicgan.training.families import get_family

    for encoding, rows in (("timestep", 48), ("duration", 16)):
        cfg = validate(jazz_cfg(tmp_path, f"data.rhythm_encoding={encoding}", "data.window_bars=2"))
        get_family(cfg)
        assert (cfg.curriculum.start, cfg.curriculum.max_len) == (2 * rows, 2 * rows)
    with pytest.raises(ConfigError, match="data.rhythm_encoding"):
        validate(jazz_cfg(tmp_path, "data.rhythm_encoding=bars"))
    with pytest.raises(ConfigError, match="model.jazzgan_objective"):
        validate(jazz_cfg(tmp_path, "model.jazzgan_objective=ls"))
    with pytest.raises(ConfigError, match="needs data.representation=melody_chord_events"):
        get_family(validate(jazz_cfg(tmp_path, "data.representation=pianoroll"))).build_representation()


def melody_notes(representation, steps) -> list[int]:
    return [int((representation.decode(row).track_ids == 0).sum()) for row in steps]


def test_sample_decode_writes_the_notes_argmax_drops_and_repeats_with_its_seed(bach_shards, tmp_path):
    """A toy G whose every row puts ~0.7 of its probability on onsets but its single most
    probable token on sustain (the trained runs' shape, README "JazzGAN"): argmax writes no
    melody note, sampling writes notes, and the same seed draws the same samples."""
    from musicgan.training.families import get_family

    def family_and_networks(decode: str):
        cfg = validate(jazz_cfg(bach_shards, "data.rhythm_encoding=timestep", f"model.jazzgan_decode={decode}"))
        family = get_family(cfg)
        networks = family.build_networks(family.build_representation())
        head = networks["generator"].head
        with torch.no_grad():  # logits independent of noise and chords: sustain 3, every other token 0
            head.weight.zero_()
            head.bias.zero_()
            head.bias[1] = 3.0  # TIMESTEP_SUSTAIN: p = e^3 / (e^3 + 49) = 0.29, onsets 48 / 69.1 = 0.69
        return family, networks

    def generated(decode: str, seed: int):
        family, networks = family_and_networks(decode)
        torch.manual_seed(seed)  # what `musicgan sample --seed` does before generate
        return family.generate(networks, 4, 96), family.build_representation()

    argmax, representation = generated("argmax", 0)
    assert (argmax[..., 0] == 1).all() and melody_notes(representation, argmax) == [0, 0, 0, 0]
    sampled, _ = generated("sample", 0)
    assert min(melody_notes(representation, sampled)) > 30  # ~0.69 x 96 onsets, far above 30 at any seed
    torch.testing.assert_close(argmax[..., 1:], sampled[..., 1:])  # the same held-out chords
    again, _ = generated("sample", 0)
    other, _ = generated("sample", 1)
    assert (again == sampled).all() and not (other == sampled).all()
    with pytest.raises(ConfigError, match="model.jazzgan_decode"):
        validate(jazz_cfg(bach_shards, "model.jazzgan_decode=beam"))
    with pytest.raises(ConfigError, match="model.sample_temperature"):
        validate(jazz_cfg(bach_shards, "model.sample_temperature=0"))


@pytest.mark.parametrize("objective", ["wgan-gp", "gumbel"])
def test_one_process_run_follows_its_objective_and_samples_melody_plus_chords(bach_shards, tmp_path, objective):
    from musicgan.data.midi import read_midi
    from musicgan.training.loop import train

    train(jazz_cfg(bach_shards, "train.max_steps=5", f"model.jazzgan_objective={objective}"), tmp_path / "run")
    rows = train_rows(tmp_path / "run")
    if objective == "wgan-gp":
        assert [r["updates/generator"] for r in rows] == [0, 0, 0, 0, 1] and "stats/gradient_penalty" in rows[-1]
    else:
        assert [r["updates/generator"] for r in rows] == [1, 2, 3, 4, 5] and "stats/accuracy_real" in rows[-1]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["jazzgan_objective"] == objective  # the run records which was used
    song = read_midi(min((tmp_path / "run" / "samples").rglob("*.mid")))
    assert sorted({t.name for t in song.tracks}) == ["Chords", "Melody"]
    assert (song.track_ids == 1).any()  # the held-out progression's triads


def test_two_ranks_resume_equals_straight_run_with_each_encoding(bach_shards, tmp_path):
    quiet = ("log.sample_every=0", "log.num_samples=0", "log.metric_samples=0")
    runs = [
        (f"{encoding}/{label}", [f"data.rhythm_encoding={encoding}", *quiet])
        for encoding in RHYTHM_ENCODINGS
        for label in ("straight", "resumed")
    ]
    spawn(train_runs, 2, partial(jazz_cfg, bach_shards), str(tmp_path), runs, STEPS, RESUME_AT)
    for encoding in RHYTHM_ENCODINGS:
        straight, resumed = (
            final_weights(tmp_path / encoding / "straight"),
            final_weights(tmp_path / encoding / "resumed"),
        )
        assert straight["step"] == resumed["step"] == STEPS
        assert straight["updates"] == resumed["updates"] == {"critic": 12, "generator": 2}
        assert_same_networks(straight, resumed, label=f"{encoding}: ")
