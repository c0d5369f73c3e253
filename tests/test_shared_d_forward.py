"""C-RNN-GAN's shared discriminator forward (`model.crnngan_shared_d_forward`, default true):
G's loss from D's one forward on [real, fake] gives the gradients of the two-forward path
(D on [real, fake.detach()], then D frozen on fake) whenever D's dropout draws nothing, for
the adversarial loss and for feature matching, through the real engine and DDP backend,
with D or G held by freezing; and G's pass leaves D's weights and D's backward alone."""

from __future__ import annotations

import copy

import pytest
import torch

from musicgan.config import apply_overrides
from musicgan.data.loader import Batch
from musicgan.distributed.ddp import DDPBackend
from musicgan.distributed.env import DistEnv
from musicgan.models.crnngan import CRNNDiscriminator, CRNNGenerator
from musicgan.presets import get_preset
from musicgan.training import engine
from musicgan.training.families.crnngan import adversarial_step
from musicgan.training.phases import Phase, StepContext

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = ("generator", "discriminator")


def _cfg(shared: bool, feature_matching: bool):
    return apply_overrides(
        get_preset("crnngan-paper"),
        [
            "model.g_hidden=12",
            "model.d_hidden=10",
            "model.d_dropout=0",
            "optim.l2=0.1",
            f"train.feature_matching={str(feature_matching).lower()}",
            f"model.crnngan_shared_d_forward={str(shared).lower()}",
        ],
    )


def _networks(d_dropout: float = 0.0):
    torch.manual_seed(0)
    # G's dropout stays on: G draws before D in both paths, so its masks are the same.
    generator = CRNNGenerator(4, hidden=12, layers=2, dropout=0.5).double().train()
    discriminator = CRNNDiscriminator(4, hidden=10, layers=2, dropout=d_dropout).double().train()
    return {"generator": generator, "discriminator": discriminator}


def _batch():
    torch.manual_seed(1)
    x = torch.rand(3, 9, 4, dtype=torch.float64)
    return Batch(x=x, lengths=torch.tensor([9, 5, 7]), keys=["a", "b", "c"])


def _one_step(shared: bool, feature_matching: bool, held: frozenset[str], networks: dict):
    """One adversarial step through the engine's update on the single-process DDP backend
    (SGD, clip 5); returns the gradients each network's update used (None: no update) and
    the weights after it."""
    cfg = _cfg(shared, feature_matching)
    networks = copy.deepcopy(networks)
    backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=5.0, max_grad_norm=1e9)
    backend.setup(networks, {n: (lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9)) for n in NAMES})
    ctx = StepContext(cfg, backend, torch.device("cpu"), 9)
    phase = Phase("adversarial", None, NAMES, adversarial_step, hold=lambda values: held)
    plan = engine.StepPlan.at(phase, 0)
    torch.manual_seed(4)
    out = engine.forward(plan, ctx, _batch())
    reduced = engine.reduce(out, stop=False, budget_spent=False, what="test")
    grads = {}
    for name in NAMES:  # the gradients each update will use, read right after its backward
        optimizer = backend.optimizers[name]
        step = optimizer.step

        def recording_step(*args, name=name, step=step, **kwargs):
            grads[name] = [p.grad.clone() for p in networks[name].parameters()]
            return step(*args, **kwargs)

        optimizer.step = recording_step
    report = engine.update(backend, plan, out, reduced, boundary=True, redo=None)
    weights = {n: [p.detach().clone() for p in networks[n].parameters()] for n in NAMES}
    return reduced.values, grads, weights, report


@pytest.mark.parametrize("feature_matching", [False, True])
@pytest.mark.parametrize(
    "held", [frozenset(), frozenset({"discriminator"}), frozenset({"generator"})], ids=["none", "D", "G"]
)
def test_shared_forward_gives_the_two_forward_gradients(feature_matching, held):
    networks = _networks()
    results = {shared: _one_step(shared, feature_matching, held, networks) for shared in (True, False)}
    (values, grads, weights, report), (values_2, grads_2, weights_2, _) = results[True], results[False]
    assert sorted(report.updated) == sorted(set(NAMES) - held)
    for key in values:  # losses (the value of G's loss, not of a surrogate) and stats
        assert values[key] == pytest.approx(values_2[key], rel=1e-9, abs=1e-12), key
    for name in NAMES:
        if name in held:
            assert name not in grads and name not in grads_2
            for a, b in zip(weights[name], networks[name].parameters()):
                assert torch.equal(a, b), f"{name} moved while held"
            continue
        assert any(g.abs().sum() > 0 for g in grads[name]), name
        for a, b in zip(grads[name], grads_2[name]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
        for a, b in zip(weights[name], weights_2[name]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


def test_g_loss_backward_touches_no_discriminator_weight_and_keeps_its_graph():
    """G's backward alone (D held) gives D no gradient at all, and D's backward afterwards
    gives the same D gradients as D's backward alone (the graph was kept, not consumed)."""
    networks = _networks()
    cfg = _cfg(True, True)
    backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=5.0, max_grad_norm=1e9)
    backend.setup(networks, {})
    ctx = StepContext(cfg, backend, torch.device("cpu"), 9)
    ctx.trains = frozenset(NAMES)
    torch.manual_seed(4)
    out = adversarial_step(ctx, _batch())
    discriminator = networks["discriminator"]
    g_params = list(networks["generator"].parameters())
    out.losses["generator"].backward(inputs=g_params)  # inputs= so D could not receive any by mistake
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g_params)
    assert all(p.grad is None for p in discriminator.parameters())
    d_after_g = torch.autograd.grad(out.losses["discriminator"], list(discriminator.parameters()))

    torch.manual_seed(4)
    out = adversarial_step(ctx, _batch())
    d_alone = torch.autograd.grad(out.losses["discriminator"], list(discriminator.parameters()))
    for a, b in zip(d_after_g, d_alone):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_discriminator_dropout_is_one_draw_with_the_shared_forward():
    """With D's dropout on, the two paths differ (the shared one reuses the fakes' masks),
    and the shared path draws fewer random numbers: the documented change of draws."""
    networks = _networks(d_dropout=0.5)
    states = {}
    for shared in (True, False):
        cfg = apply_overrides(_cfg(shared, True), ["model.d_dropout=0.5"])
        backend = DDPBackend(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=5.0, max_grad_norm=1e9)
        backend.setup(copy.deepcopy(networks), {})
        ctx = StepContext(cfg, backend, torch.device("cpu"), 9)
        ctx.trains = frozenset(NAMES)
        torch.manual_seed(4)
        out = adversarial_step(ctx, _batch())
        states[shared] = (float(out.losses["generator"].detach()), torch.rand(1).item())
    assert states[True][0] != states[False][0]
    assert states[True][1] != states[False][1]  # the RNG stream moved on differently


def test_shared_forward_is_the_default_and_crnngan_bach_pins_two_forwards():
    assert get_preset("crnngan-paper").model.crnngan_shared_d_forward is True
    assert get_preset("debug").model.crnngan_shared_d_forward is True
    assert get_preset("crnngan-bach").model.crnngan_shared_d_forward is False
