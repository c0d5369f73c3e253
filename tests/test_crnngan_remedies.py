"""C-RNN-GAN remedies (issue 24): minibatch discrimination on D's time-pooled features
(`model.minibatch_features`) and instance noise on D's inputs (`train.instance_noise`),
through the family's real adversarial step and the trainer (two ranks, exact resume)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from dist_helpers import assert_same_weights, final_weights, init_rank, spawn

from musicgan.config import apply_overrides
from musicgan.data.loader import Batch
from musicgan.distributed.ddp import DDPBackend
from musicgan.distributed.env import DistEnv
from musicgan.losses import instance_noise_std
from musicgan.models.crnngan import CRNNDiscriminator, CRNNGenerator
from musicgan.models.minibatch import MinibatchFeatures
from musicgan.presets import get_preset
from musicgan.training.families.crnngan import adversarial_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = ("generator", "discriminator")
B, T, F = 6, 9, 4


def _cfg(*overrides: str):
    base = ["model.g_hidden=12", "model.d_hidden=10", "model.d_dropout=0", "optim.l2=0"]
    return apply_overrides(get_preset("crnngan-paper"), base + list(overrides))


def _networks(minibatch: int = 0):
    torch.manual_seed(0)
    generator = CRNNGenerator(F, hidden=12, layers=2, dropout=0.5).double().train()
    discriminator = CRNNDiscriminator(F, hidden=10, layers=2, dropout=0.0, minibatch_features=minibatch)
    return {"generator": generator, "discriminator": discriminator.double().train()}


def _batch(seed: int = 1, rows: int = B, steps: int = T):
    torch.manual_seed(seed)
    x = torch.rand(rows, steps, F, dtype=torch.float64)
    lengths = torch.tensor([steps - (i % 4) for i in range(rows)])
    return Batch(x=x, lengths=lengths, keys=[str(i) for i in range(rows)])


def _context(cfg, networks, seq_len: int = T, progress: float = 0.0):
    from musicgan.training.phases import StepContext

    backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=5.0, max_grad_norm=1e9)
    backend.setup(networks, {})
    ctx = StepContext(cfg, backend, torch.device("cpu"), seq_len, progress=progress)
    ctx.trains = frozenset(NAMES)
    return ctx


def _step(cfg, networks, batch, progress: float = 0.0, record_inputs: list | None = None):
    """One adversarial step at seed 4: (losses, {name: gradients}); D's inputs appended to
    `record_inputs` (every D forward, in order) when given."""
    networks = copy.deepcopy(networks)
    hook = None
    if record_inputs is not None:
        hook = networks["discriminator"].register_forward_pre_hook(
            lambda module, args: record_inputs.append(args[0].detach().clone())
        )
    ctx = _context(cfg, networks, batch.x.shape[1], progress)
    torch.manual_seed(4)
    out = adversarial_step(ctx, batch)
    if hook is not None:
        hook.remove()
    grads = {}
    for name in NAMES:
        params = list(networks[name].parameters())
        grads[name] = torch.autograd.grad(out.losses[name], params, retain_graph=True, allow_unused=True)
    return {k: v.detach() for k, v in out.losses.items()}, grads


# -- minibatch features -----------------------------------------------------------------------
def test_minibatch_features_shapes_and_off_adds_no_parameter():
    layer = MinibatchFeatures(20, kernels=3, kernel_dim=4)
    assert layer.tensor.shape == (20, 12)
    assert layer(torch.randn(7, 20)).shape == (7, 3)
    on = CRNNDiscriminator(F, hidden=10, layers=2, minibatch_features=3, minibatch_kernel_dim=4)
    logits, features = on(torch.rand(5, T, F), torch.tensor([9, 4, 7, 9, 2]))
    assert logits.shape == (5, T) and features.shape == (5, T, 20)  # features: the LSTM's, for feature matching
    assert on.classifier.in_features == 20 + 3
    assert (logits[1, 4:] == 0).all() and (features[4, 2:] == 0).all()  # padding stays zero
    off = CRNNDiscriminator(F, hidden=10, layers=2)
    assert off.minibatch is None and off.classifier.in_features == 20
    assert not any("minibatch" in key for key in off.state_dict())  # old checkpoints still load


def test_minibatch_feature_is_the_sum_of_exp_minus_l1_over_the_other_rows_of_the_group():
    torch.manual_seed(3)
    layer = MinibatchFeatures(6, kernels=2, kernel_dim=3).double()
    rows = torch.randn(5, 6, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1, 1])
    m = (rows @ layer.tensor).view(5, 2, 3)
    want = torch.zeros(5, 2, dtype=torch.float64)
    for i in range(5):
        for j in range(5):
            if i != j and groups[i] == groups[j]:
                want[i] += torch.exp(-(m[i] - m[j]).abs().sum(dim=-1))
    torch.testing.assert_close(layer(rows, groups), want, rtol=1e-12, atol=1e-12)


def _logits_after_changing_row(discriminator, x, lengths, groups, row: int):
    changed = x.clone()
    changed[row] = changed[row] + 0.5
    with torch.no_grad():
        return discriminator(x, lengths, groups)[0], discriminator(changed, lengths, groups)[0]


@pytest.mark.parametrize("changed_row", [1, B + 2], ids=["a real row", "a fake row"])
def test_minibatch_features_make_d_depend_on_other_rows_of_its_own_half_only(changed_row):
    discriminator = _networks(minibatch=4)["discriminator"].eval()
    x = torch.rand(2 * B, T, F, dtype=torch.float64)
    lengths = torch.tensor([T] * (2 * B))
    halves = torch.arange(2 * B) // B
    before, after = _logits_after_changing_row(discriminator, x, lengths, halves, changed_row)
    own = range(B) if changed_row < B else range(B, 2 * B)
    for row in range(2 * B):
        if row == changed_row:
            continue
        if row in own:  # the other rows of its half see it through the minibatch features
            assert not torch.equal(before[row], after[row]), row
        else:  # the other half is bitwise untouched
            assert torch.equal(before[row], after[row]), row
    # Without the feature, no other row moves at all (the dependence above is the feature's).
    plain = _networks(minibatch=0)["discriminator"].eval()
    before, after = _logits_after_changing_row(plain, x, lengths, halves, changed_row)
    others = [r for r in range(2 * B) if r != changed_row]
    assert torch.equal(before[others], after[others])


def test_the_shared_forward_keeps_fakes_apart_from_the_real_batch():
    """Through the family's step (D's one forward on [real, fake]): D's logits on the fakes do
    not change when the real batch does, with minibatch features on; mixing the halves would
    (checked on the same inputs, so the test can tell)."""
    networks = _networks(minibatch=4)
    cfg = _cfg("model.minibatch_features=4", "train.feature_matching=false")
    seen = []
    for seed in (1, 2):
        inputs: list = []
        _step(cfg, networks, _batch(seed), record_inputs=inputs)
        seen.append(inputs[0])  # [real, fake]: G draws first, so the fakes are the same
    assert torch.equal(seen[0][B:], seen[1][B:]) and not torch.equal(seen[0][:B], seen[1][:B])
    discriminator = networks["discriminator"].eval()
    halves = torch.arange(2 * B) // B
    with torch.no_grad():
        apart = [discriminator(x, None, halves)[0][B:] for x in seen]
        mixed = [discriminator(x, None, None)[0][B:] for x in seen]
    assert torch.equal(apart[0], apart[1])
    assert not torch.equal(mixed[0], mixed[1])


@pytest.mark.parametrize("feature_matching", [False, True])
def test_minibatch_features_give_the_same_gradients_on_the_shared_and_two_forward_paths(feature_matching):
    """The two-forward path runs D on the fakes alone, so its minibatch features compare fakes
    with fakes: the shared forward's fake half must give G the same loss and gradients."""
    networks = _networks(minibatch=4)
    fm = f"train.feature_matching={str(feature_matching).lower()}"
    results = {
        shared: _step(
            _cfg("model.minibatch_features=4", fm, f"model.crnngan_shared_d_forward={shared}"), networks, _batch()
        )
        for shared in ("true", "false")
    }
    (losses, grads), (losses_2, grads_2) = results["true"], results["false"]
    for name in NAMES:
        torch.testing.assert_close(losses[name], losses_2[name], rtol=1e-10, atol=1e-12)
        used = [g for g in grads[name] if g is not None]
        assert used and any(g.abs().sum() > 0 for g in used), name
        for a, b in zip(grads[name], grads_2[name]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=name)
    tensor_grad = grads["discriminator"][
        [n for n, _ in networks["discriminator"].named_parameters()].index("minibatch.tensor")
    ]
    assert tensor_grad.abs().sum() > 0  # D learns its minibatch kernels


# -- instance noise ---------------------------------------------------------------------------
def test_instance_noise_std_is_linear_to_zero_over_the_run():
    assert instance_noise_std(0.1, 0.0) == 0.1
    assert instance_noise_std(0.1, 0.25) == pytest.approx(0.075)
    assert instance_noise_std(0.1, 1.0) == 0.0
    assert instance_noise_std(0.0, 0.3) == 0.0


@pytest.mark.parametrize("shared", ["true", "false"])
def test_instance_noise_off_is_bitwise_the_step_without_it(shared):
    """Off (0), or at the run's end (std 0), the step draws nothing: losses, gradients and the
    RNG stream after it equal those of a config without the option; on, they differ."""
    networks = _networks()
    forward = f"model.crnngan_shared_d_forward={shared}"
    base = _step(_cfg(forward), networks, _batch(), progress=0.3)
    after_base = torch.rand(3)
    for overrides, progress in ((["train.instance_noise=0"], 0.3), (["train.instance_noise=0.1"], 1.0)):
        losses, grads = _step(_cfg(forward, *overrides), networks, _batch(), progress=progress)
        assert torch.equal(torch.rand(3), after_base)
        for name in NAMES:
            assert torch.equal(losses[name], base[0][name]), name
            for a, b in zip(grads[name], base[1][name]):
                assert (a is None and b is None) or torch.equal(a, b), name
    noisy, _ = _step(_cfg(forward, "train.instance_noise=0.1"), networks, _batch(), progress=0.3)
    assert not torch.equal(noisy["discriminator"], base[0]["discriminator"])


@pytest.mark.parametrize("shared", ["true", "false"])
def test_instance_noise_on_d_inputs_follows_the_schedule(shared):
    """D's inputs minus the clean ones: the same draw scaled by std x (1 - progress), real and
    fake rows alike, std 0.1 at the start; the two-forward path shows G's D forward the very
    same noisy fakes."""
    networks = _networks()
    rows, steps = 32, 20
    batch = _batch(rows=rows, steps=steps)
    forward = f"model.crnngan_shared_d_forward={shared}"
    clean: list = []
    _step(_cfg(forward), networks, batch, record_inputs=clean)
    noise = {}
    for progress in (0.0, 0.5, 0.75):
        inputs: list = []
        _step(_cfg(forward, "train.instance_noise=0.1"), networks, batch, progress=progress, record_inputs=inputs)
        noise[progress] = inputs[0] - clean[0]
        if shared == "false":
            torch.testing.assert_close(inputs[1], inputs[0][rows:], rtol=0, atol=1e-15)
    start = noise[0.0]
    for half in (start[:rows], start[rows:]):
        assert half.std().item() == pytest.approx(0.1, rel=0.06)
        assert abs(half.mean().item()) < 0.01
    torch.testing.assert_close(noise[0.5], 0.5 * start, rtol=0, atol=1e-12)
    torch.testing.assert_close(noise[0.75], 0.25 * start, rtol=0, atol=1e-12)


# -- the trainer: two ranks, resume -----------------------------------------------------------
STEPS, STOP_AT = 20, 7


def _remedies_cfg(data: Path):
    cfg = get_preset("debug")
    cfg.data.path = str(data)
    cfg.log.progress = False
    overrides = ["model.minibatch_features=4", "train.instance_noise=0.2", f"train.max_steps={STEPS}"]
    return apply_overrides(cfg, overrides)


def _resume_worker(rank, world_size, port, data, root):
    """A straight run of STEPS, and the same run stopped (asked on rank 1) after STOP_AT steps
    and resumed: one 2-rank process group for both."""
    init_rank(rank, world_size, port)
    from musicgan.distributed.env import init_distributed, teardown
    from musicgan.training.loop import Trainer

    env = init_distributed(timeout_s=60)

    def fit(run_dir, resume=False, should_stop=None):
        trainer = Trainer(_remedies_cfg(Path(data)), run_dir, env=env, should_stop=should_stop)
        try:
            trainer.fit(resume=resume)
        finally:
            trainer.backend.close()

    try:
        fit(Path(root) / "full")
        polls = iter(range(1, 10**6))
        fit(Path(root) / "split", should_stop=lambda: rank == 1 and next(polls) == STOP_AT)
        if rank == 0:
            shutil.copytree(Path(root) / "split", Path(root) / "stopped")
        fit(Path(root) / "split", resume=True)
    finally:
        teardown(env)


def test_two_ranks_stopped_and_resumed_equal_the_straight_run_with_both_remedies_on(bach_shards, tmp_path):
    """Exact resume with minibatch features and instance noise on: the noise is a function of
    (seed, rank, step) and of the run's progress, which a resume of the same run (same
    total steps) continues. Through the phase change (pretraining is the debug preset's
    first epoch)."""
    spawn(_resume_worker, 2, str(bach_shards), str(tmp_path))
    full, split, stopped = (final_weights(tmp_path / name) for name in ("full", "split", "stopped"))
    assert full["step"] == split["step"] == STEPS and stopped["step"] == STOP_AT
    assert any(k.startswith("minibatch.") for k in full["discriminator"])
    assert_same_weights(full, split)
    for net in NAMES:  # the resumed steps really trained both networks
        assert any(not torch.equal(full[net][k], stopped[net][k]) for k in full[net]), f"{net} never updated"


# -- the scale of instance noise -----------------------------------------------------------------
def test_feature_ranges_of_chorales_show_the_grid_and_the_constant_velocity(bach_shards, capsys):
    from musicgan.benchmarks.feature_ranges import main

    assert main(["--data", str(bach_shards)]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert float(lines["pitch"][lines["pitch"].index("grid") + 1]) == pytest.approx(1 / 64, abs=1e-4)  # a semitone
    assert float(lines["velocity"][lines["velocity"].index("std") + 1]) == 0.0  # one velocity in every chorale
    assert float(lines["dt"][lines["dt"].index("std") + 1]) > 0.1
