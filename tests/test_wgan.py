"""WGAN-GP: the losses, the n_critic schedule, the EMA network without optimizer, and parity
with the gradient penalty (double backward): one process = 2 gloo ranks (equal global
batch) = DeepSpeed ZeRO 0/1/2, stop/resume in the middle of a critic run included."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from dist_helpers import assert_ranks_agree, assert_same_networks, final_weights, init_rank, spawn, train_runs

from musicgan import losses
from musicgan.config import apply_overrides
from musicgan.presets import get_preset

STEPS = 12
RESUME_AT = 7  # critic-only steps 5..8 of the run 5..9; G trains at steps 5 and 10 (1-based)


def wgan_cfg(data: Path, *overrides: str):
    cfg = get_preset("wgan-gp-debug")
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


def read_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return list({r["step"]: r for r in rows if r["event"] == "train"}.values())


def test_losses_on_a_linear_critic():
    """D(x) = w . x: dD/dx = w for every sample, so GP = λ (|w| - 1)^2 exactly."""
    weight = torch.tensor([3.0, 4.0], requires_grad=True)  # |w| = 5
    real, fake = torch.ones(4, 2), torch.zeros(4, 2)
    x_hat = losses.interpolate(real, fake)
    assert x_hat.requires_grad and ((x_hat >= 0) & (x_hat <= 1)).all()
    penalty = losses.gradient_penalty(x_hat @ weight, x_hat, weight=10.0)
    assert penalty.item() == pytest.approx(10.0 * 16.0)
    (grad,) = torch.autograd.grad(penalty, weight)  # double backward reaches the weights
    assert torch.allclose(grad, 10.0 * 2 * (5.0 - 1.0) * weight.detach() / 5.0)
    assert losses.wasserstein_d(real @ weight, fake @ weight).item() == pytest.approx(-7.0)
    assert losses.wasserstein_g(real @ weight).item() == pytest.approx(-7.0)
    assert losses.drift_penalty(torch.tensor([1.0, 3.0]), 0.1).item() == pytest.approx(0.5)
    # Per-sample norm over ALL non-batch axes: a (B, T, K) input gives one norm per sample.
    x = torch.ones(3, 2, 2, requires_grad=True)
    assert losses.gradient_penalty(x.sum(dim=(1, 2)), x, weight=1.0).item() == pytest.approx(1.0)  # |grad| = 2
    assert losses.input_gradient_norms(x.sum(dim=(1, 2)), x).tolist() == pytest.approx([2.0] * 3)
    assert losses.batch_distance(torch.ones(3, 2, 2), torch.zeros(3, 2, 2)).item() == pytest.approx(2.0)
    # The soft penalty's optimum for a linear critic: slope 1 + d / (2 λ), not 1.
    d, lam = 5.0, 10.0
    slope = torch.tensor(1.0, requires_grad=True)
    optimizer = torch.optim.SGD([slope], lr=0.01)
    for _ in range(2000):
        optimizer.zero_grad()
        (-slope * d + losses.penalty_of_norms(slope[None], lam)).backward()
        optimizer.step()
    assert slope.item() == pytest.approx(1.0 + d / (2 * lam), abs=1e-3)


def test_one_process_run_trains_five_critic_steps_per_generator_step(bach_shards, tmp_path):
    from musicgan.training.loop import train

    result = train(wgan_cfg(bach_shards, "train.max_steps=10"), tmp_path / "run")
    rows = read_rows(tmp_path / "run")
    assert [r["updates/generator"] for r in rows] == [0] * 4 + [1] * 5 + [2]
    assert [r["updates/critic"] for r in rows] == list(range(1, 11))
    assert [("loss/generator" in r) for r in rows] == [s % 5 == 0 for s in range(1, 11)]
    state = torch.load(result.checkpoint, weights_only=True)
    assert sorted(state["networks"]) == ["critic", "generator", "generator_ema"]
    assert state["generator"] and state["discriminator"] == {}  # the alias; this family has no D
    assert sorted(state["optimizers"]) == ["critic", "generator"]  # the EMA has none
    ema, gen = state["networks"]["generator_ema"], state["networks"]["generator"]
    assert any(not torch.equal(ema[k], gen[k]) for k in ema)  # an average, not a copy


def _train_runs(data: Path, root: Path, runs) -> None:
    """Each run of `runs` on 2 gloo ranks; every rank keeps its generator EMA."""
    spawn(train_runs, 2, partial(wgan_cfg, data), str(root), runs, STEPS, RESUME_AT, "generator_ema")


def test_two_ranks_resume_in_a_critic_run_equals_straight_run(bach_shards, tmp_path):
    _train_runs(bach_shards, tmp_path, [("ddp", []), ("ddp-resumed", [])])
    straight, resumed = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "ddp-resumed")
    assert straight["step"] == resumed["step"] == STEPS and straight["updates"] == {"critic": 12, "generator": 2}
    assert resumed["updates"] == straight["updates"]
    assert_same_networks(straight, resumed)
    assert any(r["step"] == RESUME_AT + 1 for r in read_rows(tmp_path / "ddp-resumed"))
    for label in ("ddp", "ddp-resumed"):
        assert_ranks_agree(tmp_path / label, "generator_ema")


@pytest.mark.slow
def test_deepspeed_zero_0_1_2_with_the_penalty_match_ddp(bach_shards, tmp_path):
    """Measured: ZeRO 0, 1 and 2 reproduce DDP's weights bit for bit here (fp32, Adam, the
    penalty through `engine.module`), so the comparison is exact; a resumed ZeRO-1 run too."""
    runs = [("ddp", [])] + [(f"zero{s}", ["dist.backend=deepspeed", f"dist.zero_stage={s}"]) for s in (0, 1, 2)]
    runs.append(("zero1-resumed", ["dist.backend=deepspeed", "dist.zero_stage=1"]))
    _train_runs(bach_shards, tmp_path, runs)
    reference = final_weights(tmp_path / "ddp")
    for label, _ in runs[1:]:
        state = final_weights(tmp_path / label)
        assert state["backend"] == "deepspeed" and state["updates"] == reference["updates"], label
        assert_same_networks(reference, state)
        assert_ranks_agree(tmp_path / label, "generator_ema")


# -- one process = two ranks on an equal global batch, at the step level ---------------------------
PARITY_STEPS = 4
HALF = 3


def _parity_networks():
    from musicgan.models.wgan import RollCritic, RollGenerator

    torch.manual_seed(0)
    return {"generator": RollGenerator(88, 8, 4, 8), "critic": RollCritic(88, 8)}


def _parity_half(step: int, rank: int):
    """Rank `rank`'s half of step `step`'s global batch of binary rolls (2 * HALF, 8, 88)."""
    from musicgan.data.loader import Batch

    full = (torch.rand(2 * HALF, 8, 88, generator=torch.Generator().manual_seed(step)) > 0.8).float()
    return Batch(full[rank * HALF : (rank + 1) * HALF], torch.full((HALF,), 8), [f"song-{step}"] * HALF)


def _parity_phase():
    from musicgan.training.families.wgan import NETWORKS, wgan_gp_step
    from musicgan.training.phases import Phase, every

    return Phase("adversarial", None, NETWORKS, wgan_gp_step, trains=every({"generator": 2}, NETWORKS))


def _parity_cfg():
    # SGD: Adam divides by sqrt(v), so on components whose true gradient is ~0 (the critic's
    # output bias: the Wasserstein terms cancel it, the penalty ignores it) it turns float
    # noise into full-size steps; measured with Adam here: 2e-3 relative on those two biases,
    # < 2e-8 on every other tensor (the floor docs/distributed-pitfalls.md describes).
    return apply_overrides(get_preset("wgan-gp-debug"), ["optim.optimizer=sgd", "optim.g_lr=0.05", "optim.d_lr=0.05"])


def _backend(env, networks):
    from musicgan.distributed.ddp import DDPBackend
    from musicgan.training.families.wgan import WGANGPFamily

    family = WGANGPFamily(_parity_cfg())
    backend = DDPBackend(env, grad_clip=0.0, max_grad_norm=1e6)
    backend.setup(networks, {n: f for n, f in family.optimizers().items() if n in networks})
    return backend


def _parity_rank(rank, world_size, port, out_dir):
    """Each rank: its half of every batch, its own noise seed, the engine and DDP."""
    init_rank(rank, world_size, port)
    from musicgan.distributed.env import init_distributed, teardown
    from musicgan.training import engine
    from musicgan.training.phases import StepContext

    env = init_distributed(timeout_s=60)
    networks = _parity_networks()
    backend = _backend(env, networks)
    phase, ctx = _parity_phase(), StepContext(_parity_cfg(), backend, torch.device("cpu"), 8)
    try:
        for step in range(PARITY_STEPS):
            torch.manual_seed(1000 * step + rank)
            plan = engine.StepPlan.at(phase, step)
            out = engine.forward(plan, ctx, _parity_half(step, rank))
            reduced = engine.reduce(out, stop=False, budget_spent=False, what="parity")
            engine.update(backend, plan, out, reduced, boundary=True, redo=None)
        if rank == 0:
            torch.save({n: net.state_dict() for n, net in networks.items()}, Path(out_dir) / "two-ranks.pt")
    finally:
        teardown(env)


def test_two_ranks_equal_one_process_averaging_the_halves(tmp_path):
    """The reference, in one process: per step, the step function on each half with that
    rank's noise seed, the two losses averaged, ONE backward and update per network. DDP's
    all-reduce of the per-rank double-backward gradients must give the same weights."""
    from musicgan.distributed.env import DistEnv
    from musicgan.training import engine
    from musicgan.training.phases import StepContext

    spawn(_parity_rank, 2, str(tmp_path))
    networks = _parity_networks()
    backend = _backend(
        DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), initialized_here=False), networks
    )
    phase, ctx = _parity_phase(), StepContext(_parity_cfg(), backend, torch.device("cpu"), 8)
    trained = 0
    for step in range(PARITY_STEPS):
        plan = engine.StepPlan.at(phase, step)
        halves = []
        for rank in range(2):
            torch.manual_seed(1000 * step + rank)
            halves.append(engine.forward(plan, ctx, _parity_half(step, rank)))
        for name in phase.networks:
            if name in plan.trains:
                backend.update(name, (halves[0].losses[name] + halves[1].losses[name]) / 2)
                trained += 1
    assert trained == PARITY_STEPS + PARITY_STEPS // 2
    two_ranks = torch.load(tmp_path / "two-ranks.pt", weights_only=True)
    for name, net in networks.items():
        for key, value in net.state_dict().items():
            # Float summation order differs (two half-batch means averaged vs one all-reduce).
            torch.testing.assert_close(two_ranks[name][key], value, rtol=1e-5, atol=1e-7, msg=f"{name}.{key}")
