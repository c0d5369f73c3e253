"""SeqGAN: the networks (shapes, the batched rollout against per-prefix rollouts, the
discriminator's width rule and heads), the family (rewards, policy gradient, the rollout
copy, the three phases, two ranks and exact resume, BLEU in evaluate) and the oracle
experiment."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from dist_helpers import assert_ranks_agree, assert_same_networks, final_weights, musicgan, spawn, train_runs

from musicgan.config import apply_overrides
from musicgan.models.seqgan import (
    SEQGAN_FILTERS,
    CNNDiscriminator,
    SeqGenerator,
    sample_inverse_cdf,
)
from musicgan.presets import get_preset

V, T, B, K = 7, 6, 3, 4


def generator(first_id: int = 0) -> SeqGenerator:
    torch.manual_seed(0)
    return SeqGenerator(V, embedding_dim=5, hidden=8, first_id=first_id, init_std=1.0)


def test_generator_shapes_and_log_probs_match_the_logits():
    g = generator()
    ids = g.sample(B, T)
    assert ids.shape == (B, T) and ids.dtype == torch.long and ((ids >= 0) & (ids < V)).all()
    logits = g.causal_logits(g._inputs(ids))
    assert logits.shape == (B, T, V)
    expected = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    assert torch.allclose(g.log_probs(ids), expected, atol=1e-6)
    assert g.embedding.num_embeddings == V + 1  # the start token has its own row


def test_sample_respects_first_id_and_its_uniforms():
    g = generator(first_id=2)
    uniform = torch.rand(50, T)
    ids = g.sample(50, T, uniform)
    assert (ids >= 2).all()
    assert torch.equal(ids, g.sample(50, T, uniform))  # a pure function of the uniforms
    assert not torch.equal(ids, g.sample(50, T, torch.rand(50, T)))


def test_inverse_cdf_picks_the_bucket_of_the_uniform():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]] * 4))
    ids = sample_inverse_cdf(logits, torch.tensor([0.1, 0.25, 0.6, 0.999]))
    assert ids.tolist() == [0, 1, 2, 2]


def _one_rollout(g: SeqGenerator, ids: torch.Tensor, t: int, uniform: torch.Tensor) -> torch.Tensor:
    """Complete ONE sequence from its prefix of length t, token by token (the reference way)."""
    seq = ids.clone()
    tokens, state = torch.tensor([g.start_id]), None
    for position in range(T):
        hidden, state = g._step(tokens, state)
        if position >= t:
            seq[position] = sample_inverse_cdf(g._policy(hidden), uniform[position : position + 1])[0]
        tokens = seq[position : position + 1]
    return seq


def test_batched_rollout_equals_per_prefix_rollouts_with_the_same_uniforms():
    g = generator(first_id=1)
    torch.manual_seed(1)
    ids = g.sample(B, T)
    uniform = torch.rand(T - 1, K, B, T)
    batched = g.rollout(ids, K, uniform)
    assert batched.shape == (T - 1, K, B, T)
    for t in range(1, T):
        for k in range(K):
            for b in range(B):
                expected = _one_rollout(g, ids[b], t, uniform[t - 1, k, b])
                assert torch.equal(batched[t - 1, k, b], expected), (t, k, b)
    assert torch.equal(batched[:, :, :, :1], ids[None, None, :, :1].expand(T - 1, K, B, 1))  # prefixes kept
    # The completions are random: different uniforms give different rollouts somewhere.
    assert not torch.equal(batched, g.rollout(ids, K, torch.rand(T - 1, K, B, T)))


def test_discriminator_drops_widths_above_the_length_and_has_two_heads():
    d = CNNDiscriminator(V, seq_len=T, embedding_dim=4)
    assert [conv.kernel_size[0] for conv in d.convs] == [1, 2, 3, 4, 5, 6]
    assert [conv.out_channels for conv in d.convs] == [count for width, count in SEQGAN_FILTERS if width <= T]
    ids = torch.randint(0, V, (B, T))
    assert d(ids).shape == (B, 2)
    p = d.real_probability(ids)
    assert p.shape == (B,) and ((p > 0) & (p < 1)).all()
    lsgan = CNNDiscriminator(V, seq_len=T, embedding_dim=4, least_squares=True)
    assert lsgan(ids).shape == (B,) and lsgan.out.out_features == 1
    assert d.output_l2().item() == pytest.approx(0.5 * (d.out.weight.square().sum() + d.out.bias.square().sum()).item())
    full = CNNDiscriminator(V, seq_len=20, embedding_dim=4)
    assert [conv.kernel_size[0] for conv in full.convs] == [w for w, _ in SEQGAN_FILTERS]
    with pytest.raises(ValueError, match="exceeds"):
        CNNDiscriminator(V, seq_len=3, filters=((5, 2),))


# -- the family: rewards, the rollout copy, the phases, two ranks and exact resume -------------
STEPS = 12  # 2 ranks, batch 6 on 35 train chorales: 3 steps an epoch; adversarial from step 7
RESUME_AT = 9  # inside the adversarial phase, between two G updates (steps 8 and 10)


def seqgan_cfg(data: Path, *overrides: str):
    cfg = get_preset("seqgan-debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            "data.batch_size=6",
            "log.interval=1",
            "log.tensorboard=false",
            "log.progress=false",
            "log.num_samples=1",
            "log.metric_samples=2",
            "log.metric_songs=4",
            *overrides,
        ],
    )


def read_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return list({r["step"]: r for r in rows if r["event"] == "train"}.values())


def _one_process_ctx(networks: dict):
    from musicgan.distributed.ddp import DDPBackend
    from musicgan.distributed.env import DistEnv
    from musicgan.training.phases import StepContext

    backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=0.0, max_grad_norm=1e6)
    backend.setup(networks, {})
    return StepContext(get_preset("seqgan-debug"), backend, torch.device("cpu"), T)


def test_rewards_average_the_rollouts_and_end_with_d_of_the_full_sequence():
    from musicgan.training.families.seqgan import rewards

    g = generator()
    torch.manual_seed(3)
    d = CNNDiscriminator(V, seq_len=T, embedding_dim=4)
    ids = g.sample(B, T)
    torch.manual_seed(4)
    q = rewards(g, d, ids, K)
    torch.manual_seed(4)  # the same draws: the rollouts rewards() made
    d.eval()
    completions = g.rollout(ids, K)
    expected = d.real_probability(completions.reshape(-1, T)).view(T - 1, K, B).mean(1).T
    assert q.shape == (B, T) and d.training is False
    torch.testing.assert_close(q[:, :-1], expected)
    torch.testing.assert_close(q[:, -1], d.real_probability(ids))


def test_policy_gradient_loss_is_a_sum_without_baseline():
    from musicgan.training.families.seqgan import policy_gradient_loss

    log_p, q = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]]), torch.tensor([[0.5, 1.0], [2.0, 4.0]])
    assert policy_gradient_loss(log_p, q).item() == pytest.approx(0.5 + 2.0 + 1.0 + 1.0)


def test_batch_mean_baseline_subtracts_each_positions_mean_reward():
    """Q - mean_b Q per position: (-0.75, -1.5) and (0.75, 1.5) here; equal rewards give no gradient."""
    from musicgan.training.families.seqgan import policy_gradient_loss

    log_p, q = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]]), torch.tensor([[0.5, 1.0], [2.0, 4.0]])
    want = -(-1.0 * -0.75 + -2.0 * -1.5 + -0.5 * 0.75 + -0.25 * 1.5)
    assert policy_gradient_loss(log_p, q, "batch_mean").item() == pytest.approx(want)
    logits = torch.randn(3, 4, requires_grad=True)
    policy_gradient_loss(logits.log_softmax(-1), torch.full((3, 4), 0.7), "batch_mean").backward()
    assert logits.grad.abs().max().item() < 1e-7


@pytest.mark.parametrize("baseline", ["none", "batch_mean"])
def test_adversarial_step_uses_the_configured_reward_baseline(baseline):
    """The family's G loss on its own samples and rewards (the same seed) is
    policy_gradient_loss with the key's baseline: the two settings give different losses."""
    from musicgan.data.loader import Batch
    from musicgan.distributed.ddp import DDPBackend
    from musicgan.distributed.env import DistEnv
    from musicgan.training.families.seqgan import adversarial_step, policy_gradient_loss, rewards
    from musicgan.training.phases import StepContext

    cfg = apply_overrides(get_preset("seqgan-debug"), [f"model.seqgan_reward_baseline={baseline}"])
    torch.manual_seed(1)
    d = CNNDiscriminator(V, T, embedding_dim=4, filters=((2, 3), (3, 3)), dropout=0.0)
    networks = {"generator": generator(), "discriminator": d, "rollout": generator()}
    backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=5.0, max_grad_norm=1e9)
    backend.setup(networks, {})
    ctx = StepContext(cfg, backend, torch.device("cpu"), T)
    ctx.trains = frozenset({"generator"})
    batch = Batch(torch.zeros(B, T, 1), torch.full((B,), T), ["s"] * B)
    torch.manual_seed(5)
    loss = adversarial_step(ctx, batch).losses["generator"]
    torch.manual_seed(5)
    fake = networks["generator"].sample(B, T)
    q = rewards(networks["rollout"], d, fake, cfg.model.seqgan_rollouts)
    log_p = networks["generator"](fake)
    torch.testing.assert_close(loss, policy_gradient_loss(log_p, q, baseline))
    other = "none" if baseline == "batch_mean" else "batch_mean"
    assert not torch.allclose(loss, policy_gradient_loss(log_p, q, other))


@pytest.mark.parametrize("rate", [0.0, 0.8])
def test_rollout_update_delays_all_but_the_embedding(rate):
    from musicgan.training.families.seqgan import rollout_update

    g, rollout = generator(), generator()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in rollout.state_dict().items()}
    ctx = _one_process_ctx({"generator": g, "rollout": rollout})
    rollout_update(rate)(ctx, frozenset({"discriminator"}))  # no G update: nothing moves
    assert all(torch.equal(before[k], v) for k, v in rollout.state_dict().items())
    rollout_update(rate)(ctx, frozenset({"generator"}))
    for name, value in rollout.state_dict().items():
        source = g.state_dict()[name]
        expected = source if name.startswith("embedding.") else rate * before[name] + (1 - rate) * source
        torch.testing.assert_close(value, expected, msg=name)


def test_family_rejects_bad_config():
    from musicgan.errors import ConfigError
    from musicgan.training.families import get_family

    with pytest.raises(ConfigError, match="pretrain_d_epochs"):
        get_family(apply_overrides(get_preset("seqgan-debug"), ["train.pretrain_d_epochs=9"]))
    with pytest.raises(ConfigError, match="melody_grid or tokens"):
        get_family(
            apply_overrides(get_preset("seqgan-debug"), ["data.representation=pianoroll"])
        ).build_representation()
    from musicgan.config import validate

    with pytest.raises(ConfigError, match="seqgan_d_loss"):
        validate(apply_overrides(get_preset("seqgan-debug"), ["model.seqgan_d_loss=wgan"]))


def test_one_process_run_walks_the_three_phases(bach_shards, tmp_path):
    from musicgan.training.loop import train

    # One process, batch 6: 6 steps an epoch; G updates at adversarial steps 2, 4 (n_critic 2).
    cfg = seqgan_cfg(
        bach_shards, "train.max_steps=16", "model.seqgan_d_loss=lsgan", "model.seqgan_adversarial_lr_factor=0.25"
    )
    result = train(cfg, tmp_path / "run")
    rows = read_rows(tmp_path / "run")
    assert [r["phase"] for r in rows] == ["pretrain_g"] * 6 + ["pretrain_d"] * 6 + ["adversarial"] * 4
    assert [r["updates/generator"] for r in rows] == list(range(1, 7)) + [6] * 6 + [6, 7, 7, 8]
    assert [r["updates/discriminator"] for r in rows] == [0] * 6 + list(range(1, 11))
    assert [("stats/reward" in r) for r in rows[12:]] == [False, True, False, True]
    state = torch.load(result.checkpoint, weights_only=True)
    assert sorted(state["networks"]) == ["discriminator", "generator", "rollout"]
    assert sorted(state["optimizers"]) == ["discriminator", "generator"]  # the rollout copy has none
    rates = {name: opt["param_groups"][0]["lr"] for name, opt in state["optimizers"].items()}
    # G's adversarial rate: optim.g_lr x the phase's factor; D keeps optim.d_lr
    assert rates == {"generator": pytest.approx(cfg.optim.g_lr * 0.25), "discriminator": cfg.optim.d_lr}
    rollout, gen = state["networks"]["rollout"], state["networks"]["generator"]
    assert torch.equal(rollout["embedding.weight"], gen["embedding.weight"])
    assert not torch.equal(rollout["head.weight"], gen["head.weight"])  # delayed, not a copy

    from musicgan.metrics.evaluate import run_evaluate

    result = run_evaluate(
        run=str(tmp_path / "run"),
        reference=str(bach_shards),
        out=str(tmp_path / "eval"),
        calibrate=False,
        report=False,
        audio=0,
        echo=lambda line: None,
    )
    (summary,) = result["summary"].values()
    assert 0.0 < summary["bleu4"] <= summary["bleu3"] <= summary["bleu2"] <= 1.0


def test_two_ranks_agree_on_the_rollout_copy_and_resume_exactly(bach_shards, tmp_path):
    runs = [("straight", []), ("resumed", [])]
    spawn(train_runs, 2, partial(seqgan_cfg, bach_shards), str(tmp_path), runs, STEPS, RESUME_AT, "rollout")
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert straight["step"] == resumed["step"] == STEPS
    assert straight["updates"] == resumed["updates"] == {"generator": 6, "discriminator": 9}
    assert sorted(straight["networks"]) == ["discriminator", "generator", "rollout"]
    assert_same_networks(straight, resumed)
    for label in ("straight", "resumed"):
        assert_ranks_agree(tmp_path / label, "rollout")  # the rollout copy is the same on both ranks
    phases = [r["phase"] for r in read_rows(tmp_path / "straight")]
    assert phases == ["pretrain_g"] * 3 + ["pretrain_d"] * 3 + ["adversarial"] * 6


# -- the oracle experiment -----------------------------------------------------------------------
def test_oracle_experiment_scores_trained_generators_below_the_random_floor():
    from musicgan.training.oracle import make_oracle, oracle_nll, run_oracle

    cfg = get_preset("seqgan-oracle-debug")
    lines: list[str] = []
    (scores,) = run_oracle(cfg, [0], echo=lines.append).values()
    assert scores["mle"] < scores["random"] and scores["seqgan"] < scores["random"]
    assert lines[1].split() == ["0", *(f"{scores[k]:.3f}" for k in ("random", "mle", "seqgan"))]
    oracle = make_oracle(cfg, 0)
    # The oracle's own samples score its entropy rate: below anything trained on 128 of them.
    assert oracle_nll(oracle, oracle, 512, cfg.curriculum.max_len) < scores["mle"]


def test_oracle_cli_refuses_bad_input():
    proc = musicgan(["oracle", "--preset", "seqgan-oracle-debug", "--seeds", "0,x"], check=False)
    assert proc.returncode == 2 and "comma-separated integers" in proc.stderr
    proc = musicgan(["oracle", "--preset", "debug", "--seeds", "0"], check=False)
    assert proc.returncode == 2 and "model.name=seqgan" in proc.stderr.splitlines()[-1]
