"""The step engine (musicgan/training/engine.py) on a recording backend: plan, step function,
one payload and one all-reduce, hold, updates and skips in the phase's order, repeat,
after-update hooks, accumulation windows and the divergence decision."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from musicgan.distributed import collectives
from musicgan.distributed.ddp import TrainBackend, UpdateResult
from musicgan.errors import ConfigError
from musicgan.training import engine
from musicgan.training.phases import Phase, StepContext, StepOutput, every

NETWORKS = ("generator", "critic")


class RecordingBackend(TrainBackend):
    """Real tiny networks; `update` backpropagates and records, `skip_update` records."""

    name = "recording"

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        torch.manual_seed(0)
        self.networks = {name: nn.Linear(2, 1) for name in NETWORKS}
        self.calls: list[tuple[str, str]] = []
        self.boundaries: list[bool] = []
        self.refuse = refuse
        self.rates: dict[str, float] = {}

    def set_lr(self, name, lr):
        self.rates[name] = lr

    def train_module(self, name):
        return self.networks[name]

    def module(self, name):
        return self.networks[name]

    def set_accumulation_boundary(self, boundary):
        self.boundaries.append(boundary)

    def update(self, name, loss):
        loss.backward()
        self.calls.append(("update", name))
        return UpdateResult(grad_norm=1.5, applied=name not in self.refuse)

    def skip_update(self, name):
        self.calls.append(("skip", name))
        return None


def make_step(seen: list[frozenset]):
    def step(ctx: StepContext, batch) -> StepOutput:
        seen.append(ctx.trains)
        x = batch
        losses = {name: ctx.module(name)(x).mean() for name in ctx.trains}  # only what trains
        return StepOutput(losses, {"real_mean": x.mean().detach()})

    return step


def run(phase: Phase, step: int, backend=None, *, stop=False, budget=False, boundary=True, redo=None):
    backend = backend or RecordingBackend()
    ctx = StepContext(cfg=None, backend=backend, device=torch.device("cpu"), seq_len=4)
    plan = engine.StepPlan.at(phase, step)
    out = engine.forward(plan, ctx, torch.ones(3, 2))
    reduced = engine.reduce(out, stop=stop, budget_spent=budget, what="test")
    report = engine.update(
        backend,
        plan,
        out,
        reduced,
        boundary=boundary,
        redo=redo
        or (
            lambda name: engine.forward(engine.StepPlan(phase, step, frozenset({name})), ctx, torch.ones(3, 2)).losses[
                name
            ]
        ),
    )
    engine.after_updates(plan, ctx, report)
    return backend, reduced, report


def test_n_critic_plan_trains_g_every_fifth_step_and_skips_it_otherwise():
    seen: list[frozenset] = []
    phase = Phase("adversarial", None, NETWORKS, make_step(seen), trains=every({"generator": 5}, NETWORKS))
    g_updates = []
    for step in range(10):
        backend, _, report = run(phase, step)
        assert report.updated == (["generator", "critic"] if step % 5 == 4 else ["critic"])
        if step % 5 == 4:
            g_updates.append(step)
            assert backend.calls == [("update", "generator"), ("update", "critic")]
        else:
            # The step function computed no generator loss, and the backend kept G's window aligned.
            assert backend.calls == [("skip", "generator"), ("update", "critic")]
    assert g_updates == [4, 9]
    assert seen[:5] == [frozenset({"critic"})] * 4 + [frozenset(NETWORKS)]


def test_hold_decides_from_the_reduced_values_and_skips_the_held_network():
    seen: list[frozenset] = []
    values_seen = []

    def hold(values):
        values_seen.append(values)
        return {"critic"} if values["loss/critic"] < 10 else set()

    phase = Phase("adversarial", None, NETWORKS, make_step(seen), hold=hold)
    backend, reduced, report = run(phase, 0)
    assert report.held == frozenset({"critic"})
    assert backend.calls == [("update", "generator"), ("skip", "critic")]
    assert set(values_seen[0]) == {"loss/generator", "loss/critic", "real_mean"}
    assert values_seen[0]["real_mean"] == 1.0


def test_one_payload_one_all_reduce_with_the_non_finite_flag_folded_in(monkeypatch):
    payloads = []
    original = collectives.all_reduce_mean

    def counting(values, what="values"):
        payloads.append(values.clone())
        return original(values, what)

    monkeypatch.setattr(collectives, "all_reduce_mean", counting)

    def nan_step(ctx, batch):
        return StepOutput(
            {"generator": torch.tensor(float("nan")), "critic": torch.tensor(2.0)},
            {"b": torch.tensor(3.0), "a": torch.tensor(4.0)},
        )

    out = engine.forward(
        engine.StepPlan.at(Phase("p", None, NETWORKS, nan_step), 0), StepContext(None, None, None, 1), None
    )
    reduced = engine.reduce(out, stop=True, budget_spent=False, what="test")
    assert len(payloads) == 1 and payloads[0].shape == (2 + 2 + 3,)  # losses, stats, non-finite, stop, budget
    assert payloads[0][-3:].tolist() == [1.0, 1.0, 0.0]
    assert reduced.nonfinite and reduced.stop and not reduced.budget_spent
    assert (
        reduced.values["loss/critic"] == 2.0
        and reduced.values["a"] == 4.0
        and math.isnan(reduced.values["loss/generator"])
    )
    assert reduced.nonfinite_message() == "non-finite loss generator=nan, critic=2.0"
    finite = engine.reduce(StepOutput({"critic": torch.tensor(1.0)}), stop=False, budget_spent=True, what="test")
    assert not finite.nonfinite and not finite.stop and finite.budget_spent


def test_repeat_applies_the_loss_again_on_the_same_batch():
    seen: list[frozenset] = []
    redone = []
    phase = Phase("adversarial", None, NETWORKS, make_step(seen), repeat={"generator": 2})

    def redo(name):
        redone.append(name)
        return backend.module(name)(torch.ones(3, 2)).mean()

    backend = RecordingBackend()
    backend, _, report = run(phase, 0, backend, redo=redo)
    assert backend.calls == [("update", "generator"), ("update", "generator"), ("update", "critic")]
    assert redone == ["generator"] and report.updated == ["generator", "generator", "critic"]
    with pytest.raises(ConfigError, match="dist.grad_accum=1"):
        engine.check_repeat([phase], grad_accum=2)
    engine.check_repeat([phase], grad_accum=1)


def test_after_updates_sees_the_networks_that_trained_and_refusals_are_reported():
    seen, hooks = [], []
    phase = Phase(
        "adversarial",
        None,
        NETWORKS,
        make_step(seen),
        trains=every({"generator": 2}, NETWORKS),
        after_updates=lambda ctx, trained: hooks.append(trained),
    )
    backend = RecordingBackend(refuse=frozenset({"critic"}))
    _, _, report = run(phase, 0, backend, boundary=False)
    assert hooks == [frozenset({"critic"})] and backend.boundaries == [False]
    assert report.refused == ["critic gradient norm 1.5"] and report.values["grad_norm/critic"] == 1.5
    assert "grad_norm/generator" not in report.values


def test_a_step_function_that_ignores_the_plan_is_an_internal_error():
    def greedy(ctx, batch):
        return StepOutput({name: torch.tensor(1.0) for name in NETWORKS})

    phase = Phase("p", None, NETWORKS, greedy, trains=lambda step: {"critic"})
    with pytest.raises(AssertionError, match="expected \\['critic'\\]"):
        engine.forward(engine.StepPlan.at(phase, 0), StepContext(None, None, None, 1), None)
    with pytest.raises(AssertionError, match="not in"):
        Phase("p", None, NETWORKS, greedy, trains=lambda step: {"ema"}).trained_at(0)


def test_accumulation_windows_and_divergence_decisions():
    window = dict(grad_accum=2, total_steps=10, batches_per_epoch=7, checkpoint_every=0)
    assert [engine.closes_window(s, batch_after=s, **window) for s in (1, 2, 3, 4)] == [False, True, False, True]
    assert engine.closes_window(7, batch_after=7, **window)  # epoch end
    assert engine.closes_window(9, batch_after=2, **{**window, "total_steps": 9})  # last step
    assert engine.closes_window(3, batch_after=3, **{**window, "checkpoint_every": 3})
    assert engine.closes_window(3, batch_after=3, **{**window, "grad_accum": 1})
    assert engine.divergence_action("skip", has_checkpoint=False, rolled_back_here=False) == "skip"
    assert engine.divergence_action("rollback", has_checkpoint=True, rolled_back_here=False) == "rollback"
    assert engine.divergence_action("rollback", has_checkpoint=True, rolled_back_here=True) == "skip-again"
    assert engine.divergence_action("rollback", has_checkpoint=False, rolled_back_here=False) == "stop"
    assert engine.divergence_action("stop", has_checkpoint=True, rolled_back_here=False) == "stop"


def test_learning_rates_compose_the_run_rate_the_rollback_scale_and_the_phase_factor():
    """A phase's schedule (SeqGAN's adversarial factor, MuseGAN's decay) multiplies the run's
    rate instead of replacing it, so a PBT-mutated rate and a rollback's lowered scale still
    act inside the schedule; a phase without factors gives every network the run's rate."""
    ctx = StepContext(cfg=None, backend=None, device=torch.device("cpu"), seq_len=4, global_step=6)
    run_rates = {"generator": 2e-3, "critic": 1e-3}  # e.g. g_lr as a PBT trial mutated it
    decay = Phase("s", None, NETWORKS, make_step([]), lr_factors=lambda c: {"generator": 1 - c.global_step / 8})
    rates = engine.learning_rates(decay, ctx, run_rates, scale=0.5)
    assert rates == {"generator": pytest.approx(2e-3 * 0.5 * 0.25), "critic": pytest.approx(1e-3 * 0.5)}
    plain = Phase("p", None, NETWORKS, make_step([]))
    assert engine.learning_rates(plain, ctx, run_rates, scale=1.0) == run_rates
    backend = RecordingBackend()
    engine.set_learning_rates(backend, decay, ctx, run_rates)
    assert backend.rates == {"generator": pytest.approx(5e-4), "critic": 1e-3}
    with pytest.raises(AssertionError, match="no optimizer"):
        engine.learning_rates(
            Phase("r", None, NETWORKS, make_step([]), lr_factors=lambda c: {"rollout": 2.0}), ctx, run_rates, 1.0
        )
