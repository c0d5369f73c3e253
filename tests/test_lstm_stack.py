"""The hand-written LSTM stack (musicgan.models.lstm_stack) against nn.LSTM: outputs, every
gradient, dropout draws, frozen parameters, and the C-RNN-GAN discriminator and adversarial
step with the fast path on and off."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from musicgan.benchmarks import flops
from musicgan.config import apply_overrides
from musicgan.data.loader import Batch
from musicgan.distributed.ddp import DDPBackend
from musicgan.distributed.env import DistEnv
from musicgan.models.crnngan import CRNNDiscriminator, CRNNGenerator
from musicgan.models.lstm_stack import WORKSPACE, draw_dropout_masks, run_lstm_stacks
from musicgan.presets import get_preset
from musicgan.training.families.crnngan import adversarial_step
from musicgan.training.phases import StepContext

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F64 = dict(atol=1e-12, rtol=1e-10)


def _stacks(num, features, hidden, layers, dropout, training, dtype=torch.float64):
    torch.manual_seed(1)
    return [nn.LSTM(features, hidden, layers, dropout=dropout).to(dtype).train(training) for _ in range(num)]


def _outputs_and_grads(run, lstms, inputs, upstream):
    outs = run()
    wrt = [x for x in inputs if x.requires_grad] + [p for lstm in lstms for p in lstm.parameters() if p.requires_grad]
    grads = torch.autograd.grad(sum((o * u).sum() for o, u in zip(outs, upstream)), wrt)
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("batched", [True, False])
def test_stack_equals_nn_lstm_outputs_and_every_gradient(layers, training, batched):
    """Two stacks (one batched loop or one after the other) == two nn.LSTM calls, float64,
    dropout 0.4 between layers in training: same draws from the same seed."""
    steps, batch, features, hidden = 9, 4, 5, 16
    lstms = _stacks(2, features, hidden, layers, 0.4 if layers > 1 else 0.0, training)
    inputs = [torch.randn(steps, batch, features, dtype=torch.float64, requires_grad=True) for _ in lstms]
    upstream = [torch.randn(steps, batch, hidden, dtype=torch.float64) for _ in lstms]
    torch.manual_seed(5)
    ref, ref_grads = _outputs_and_grads(lambda: [l(x)[0] for l, x in zip(lstms, inputs)], lstms, inputs, upstream)
    ref_rng = torch.rand(3)
    torch.manual_seed(5)
    fast, fast_grads = _outputs_and_grads(lambda: run_lstm_stacks(lstms, inputs, batched), lstms, inputs, upstream)
    torch.testing.assert_close(torch.rand(3), ref_rng)  # the same number of draws from the RNG
    for got, want in zip(fast, ref):
        torch.testing.assert_close(got, want, **F64)
    assert len(fast_grads) == 2 + 2 * 4 * layers
    for got, want in zip(fast_grads, ref_grads):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, **F64)


def test_dropout_draw_is_atens_and_changes_the_result():
    """nn.LSTM's between-layer dropout is empty_like(out).bernoulli_(1-p).div_(1-p) on each
    non-top layer's (T, B, H) output: the drawn masks reproduce a manual layer-by-layer run."""
    (lstm,) = _stacks(1, 3, 12, 2, 0.5, True)
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    torch.manual_seed(9)
    expected, _ = lstm(x)
    torch.manual_seed(9)
    masks = draw_dropout_masks(lstm, 7, 3, x)
    assert masks.shape == (1, 7, 3, 12) and set(masks.unique().tolist()) == {0.0, 2.0}
    first = nn.LSTM(3, 12).double()
    second = nn.LSTM(12, 12).double()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(first, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0"))
        getattr(second, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l1"))
    manual, _ = second(first(x)[0] * masks[0])
    torch.testing.assert_close(manual, expected, **F64)
    torch.manual_seed(10)  # another seed: other masks, another output
    assert not torch.allclose(run_lstm_stacks([lstm], [x])[0], expected)


def test_frozen_parameters_give_input_gradients_only():
    """Parameters with requires_grad False: no weight-gradient products at all (the FLOPs of
    backward equal those of forward: one input-gradient product per forward product), and
    the input gradient equals nn.LSTM's."""
    steps, batch, features, hidden = 8, 3, 4, 20
    lstms = _stacks(2, features, hidden, 2, 0.3, True)
    for lstm in lstms:
        lstm.requires_grad_(False)
    inputs = [torch.randn(steps, batch, features, dtype=torch.float64, requires_grad=True) for _ in lstms]
    upstream = [torch.randn(steps, batch, hidden, dtype=torch.float64) for _ in lstms]
    torch.manual_seed(2)
    ref, ref_grads = _outputs_and_grads(lambda: [l(x)[0] for l, x in zip(lstms, inputs)], lstms, inputs, upstream)
    torch.manual_seed(2)
    outs = run_lstm_stacks(lstms, inputs)
    forward_flops = flops.count_with_flop_counter(lambda: run_lstm_stacks(lstms, inputs))
    loss = sum((o * u).sum() for o, u in zip(outs, upstream))
    backward_flops = flops.count_with_flop_counter(lambda: loss.backward())
    for got, want in zip([x.grad for x in inputs], ref_grads):
        torch.testing.assert_close(got, want, **F64)
    for got, want in zip(outs, ref):
        torch.testing.assert_close(got.detach(), want, **F64)
    assert all(p.grad is None for lstm in lstms for p in lstm.parameters())
    # Forward: per stack and layer the projection (T*B x F_l x 4H) and T-1 recurrent products.
    per_stack = sum(
        2 * steps * batch * f_in * 4 * hidden + 2 * (steps - 1) * batch * hidden * 4 * hidden
        for f_in in (features, hidden)
    )
    assert forward_flops == 2 * per_stack
    assert backward_flops == forward_flops


def test_pooled_buffers_survive_two_live_graphs_and_reuse():
    """Two forwards alive at once, backward of the first, then a third call reusing the
    first one's released buffer while the second graph is still intact."""
    lstms = _stacks(2, 4, 10, 2, 0.0, False)
    x = [torch.randn(6, 3, 4, dtype=torch.float64) for _ in lstms]
    upstream = torch.randn(6, 3, 10, dtype=torch.float64)
    params = [p for lstm in lstms for p in lstm.parameters()]
    want = torch.autograd.grad(sum((l(xi)[0] * upstream).sum() for l, xi in zip(lstms, x)), params)
    first = run_lstm_stacks(lstms, x)
    second = run_lstm_stacks(lstms, x)
    got = torch.autograd.grad(sum((o * upstream).sum() for o in first), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **F64)
    del first, got
    pooled = len(WORKSPACE.free)
    third = run_lstm_stacks(lstms, [xi * 2 for xi in x])
    assert len(WORKSPACE.free) < pooled  # took a released buffer
    for g, w in zip(torch.autograd.grad(sum((o * upstream).sum() for o in second), params), want):
        torch.testing.assert_close(g, w, **F64)
    torch.testing.assert_close(third[0].detach(), lstms[0](x[0] * 2)[0], **F64)


def _discriminator_run(disc, x, lengths, seed, fast):
    disc.fast_lstm = fast
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    logits, features = disc(x, lengths)
    loss = (logits * torch.linspace(-1, 1, logits.shape[1], dtype=x.dtype)).sum() + features.square().mean()
    names = [n for n, _ in disc.named_parameters()]
    grads = torch.autograd.grad(loss, [x, *disc.parameters()])
    return logits.detach(), features.detach(), dict(zip(["x", *names], grads))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("with_lengths", [True, False])
def test_discriminator_fast_path_equals_nn_lstm_path(training, with_lengths):
    """CRNNDiscriminator ("separate") with the hand-written stack == with nn.LSTM: logits,
    features, the input's and every parameter's gradient; padding, reversal within length,
    input dropout and between-layer dropout included."""
    torch.manual_seed(0)
    disc = CRNNDiscriminator(4, hidden=18, layers=2, dropout=0.3).double().train(training)
    x = torch.randn(5, 11, 4, dtype=torch.float64)
    lengths = torch.tensor([11, 7, 1, 11, 4]) if with_lengths else None
    fast = _discriminator_run(disc, x, lengths, 3, True)
    ref = _discriminator_run(disc, x, lengths, 3, False)
    for got, want in zip(fast[:2], ref[:2]):
        torch.testing.assert_close(got, want, **F64)
    for name, want in ref[2].items():
        assert want.abs().sum() > 0, name
        torch.testing.assert_close(fast[2][name], want, msg=name, **F64)


def test_discriminator_takes_the_fast_path_only_where_it_should():
    """FlopCounterMode sees the hand-written stack's products (matching the analytic count
    of the benchmarks) and nothing for nn.LSTM on CPU (oneDNN's mkldnn_rnn_layer); autocast
    and fast_lstm=False take nn.LSTM."""
    disc = CRNNDiscriminator(4, hidden=12, layers=2).eval()
    x = torch.randn(3, 8, 4)
    shape = flops.StepShape(
        g_hidden=12, g_layers=2, d_hidden=12, d_layers=2, batch_size=3, seq_len=8, num_features=4, noise_dim=4
    )
    analytic = flops.discriminator_forward_flops(shape, 3)
    h = 12  # the analytic count includes the recurrent product of step 0 (h_{-1} = 0, skipped here)
    skipped_step0 = 2 * 2 * 2 * 3 * h * 4 * h
    assert flops.count_with_flop_counter(lambda: disc(x)) == analytic - skipped_step0
    disc.fast_lstm = False
    assert flops.count_with_flop_counter(lambda: disc(x)) == 2 * 3 * 8 * 2 * h  # the classifier only
    disc.fast_lstm = True
    assert disc._fast_path(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # (oneDNN's bf16 LSTM fails on some CPUs: not run)
        assert not disc._fast_path(x)


class _Backend(DDPBackend):
    """The real single-process DDP backend (no process group: world size 1)."""

    def __init__(self, networks):
        super().__init__(DistEnv(0, 1, 0, torch.device("cpu"), False), grad_clip=5.0, max_grad_norm=0.0)
        self.setup(networks, {})


def test_adversarial_step_losses_and_gradients_equal_on_both_paths():
    """`adversarial_step` (G free-running, D on real+fake with lengths, D frozen on fake,
    feature matching, L2) gives the same losses and gradients with the fast stack and with
    nn.LSTM, float64, dropout on."""
    cfg = apply_overrides(get_preset("crnngan-paper"), ["model.g_hidden=14", "model.d_hidden=16"])
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=14, layers=2).double().train()
    discriminator = CRNNDiscriminator(4, hidden=16, layers=2, dropout=0.5).double().train()
    x = torch.rand(3, 10, 4, dtype=torch.float64)
    batch = Batch(x=x, lengths=torch.tensor([10, 6, 8]), keys=["a", "b", "c"])
    results = {}
    for fast in (True, False):
        g, d = copy.deepcopy(generator), copy.deepcopy(discriminator)
        d.fast_lstm = fast
        ctx = StepContext(cfg, _Backend({"generator": g, "discriminator": d}), torch.device("cpu"), 10)
        torch.manual_seed(4)
        out = adversarial_step(ctx, batch)
        g_grads = torch.autograd.grad(out.losses["generator"], list(g.parameters()))
        d_grads = torch.autograd.grad(out.losses["discriminator"], list(d.parameters()))
        results[fast] = ([out.losses["generator"].detach(), out.losses["discriminator"].detach()], g_grads, d_grads)
    assert cfg.train.feature_matching
    for got, want in zip(results[True], results[False]):
        for a, b in zip(got, want):
            assert b.abs().sum() > 0
            torch.testing.assert_close(a, b, **F64)


def test_float32_paper_width_matches_nn_lstm():
    """float32 at the paper's hidden width (350), short sequence: rounding differences only."""
    lstms = _stacks(2, 4, 350, 2, 0.5, True, torch.float32)
    inputs = [torch.randn(6, 4, 4, requires_grad=True) for _ in lstms]
    upstream = [torch.randn(6, 4, 350) for _ in lstms]
    torch.manual_seed(8)
    ref, ref_grads = _outputs_and_grads(lambda: [l(x)[0] for l, x in zip(lstms, inputs)], lstms, inputs, upstream)
    torch.manual_seed(8)
    fast, fast_grads = _outputs_and_grads(lambda: run_lstm_stacks(lstms, inputs), lstms, inputs, upstream)
    for got, want in zip([*fast, *fast_grads], [*ref, *ref_grads]):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("inference", [False, True])
def test_two_stacks_on_two_threads_equal_nn_lstm(inference):
    """With 2 intra-op threads the two stacks' step loops run side by side (one on a worker
    thread); results equal nn.LSTM's, under inference_mode too, and the caller's thread
    count is restored."""
    from musicgan.models import lstm_stack

    assert lstm_stack.PARALLEL_STACKS
    lstms = _stacks(2, 3, 16, 2, 0.5, not inference)
    inputs = [torch.randn(8, 3, 3, dtype=torch.float64, requires_grad=not inference) for _ in lstms]
    upstream = [torch.randn(8, 3, 16, dtype=torch.float64) for _ in lstms]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if inference:
            with torch.inference_mode():
                fast = run_lstm_stacks(lstms, inputs)
            ref = [l(x)[0] for l, x in zip(lstms, inputs)]
            for got, want in zip(fast, ref):
                torch.testing.assert_close(got, want.detach(), **F64)
        else:
            torch.manual_seed(6)
            ref, ref_grads = _outputs_and_grads(
                lambda: [l(x)[0] for l, x in zip(lstms, inputs)], lstms, inputs, upstream
            )
            torch.manual_seed(6)
            fast, fast_grads = _outputs_and_grads(lambda: run_lstm_stacks(lstms, inputs), lstms, inputs, upstream)
            for got, want in zip([*fast, *fast_grads], [*ref, *ref_grads]):
                torch.testing.assert_close(got, want, **F64)
        assert torch.get_num_threads() == 2
        # Under a dispatch mode (thread-local) both loops stay on this thread: all counted.
        counted = flops.count_with_flop_counter(lambda: run_lstm_stacks(lstms, [x.detach() for x in inputs]))
        torch.set_num_threads(1)
        assert counted == flops.count_with_flop_counter(lambda: run_lstm_stacks(lstms, [x.detach() for x in inputs]))
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("fast_draw", [True, False])
def test_both_ways_of_drawing_masks_reproduce_nn_lstm(fast_draw, monkeypatch):
    """The masks come from torch.rand(float64) < keep where that reproduces ATen's
    bernoulli_ (checked once per process; true with ATen's own CPU kernel), else from bernoulli_
    itself: either way the same masks and the same RNG state afterwards as nn.LSTM."""
    from musicgan.models import lstm_stack

    (lstm,) = _stacks(1, 3, 20, 3, 0.3, True, torch.float32)
    x = torch.randn(6, 4, 3)
    if not fast_draw:
        monkeypatch.setitem(lstm_stack._BERNOULLI_CHECKED, ("cpu", torch.float32), False)
    elif not lstm_stack._rand_reproduces_bernoulli(x):
        pytest.skip("this build's bernoulli_ draws otherwise (MKL's generator): the fallback is tested")
    torch.manual_seed(12)
    expected, _ = lstm(x)
    after = torch.rand(4)
    torch.manual_seed(12)
    (got,) = run_lstm_stacks([lstm], [x])
    torch.testing.assert_close(torch.rand(4), after, atol=0, rtol=0)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)


def test_a_gradient_penalty_through_the_hand_written_kernels_fails_in_one_line():
    """autograd.grad(create_graph=True) through either hand-written backward raises a
    UserError naming the kernel; the plain first-order backward is unchanged (the golden
    curve covers that)."""
    from musicgan.errors import UserError

    torch.manual_seed(0)
    critic = CRNNDiscriminator(3, hidden=4, layers=1, dropout=0.0, layout="separate")
    x = torch.randn(2, 5, 3, requires_grad=True)
    logits, _ = critic(x, None)
    with pytest.raises(UserError, match="LSTM stack kernel .* cannot be differentiated twice"):
        torch.autograd.grad(logits.sum(), x, create_graph=True)
    generator = CRNNGenerator(3, hidden=4, layers=1, dropout=0.0)
    out = generator(2, 5)
    with pytest.raises(UserError, match="free-running kernel"):
        torch.autograd.grad(out.sum(), next(generator.parameters()), create_graph=True)
    grads = torch.autograd.grad(critic(x, None)[0].sum(), x)  # first order still works
    assert grads[0].shape == x.shape and torch.isfinite(grads[0]).all()


def test_input_only_gradient_on_some_rows_equals_nn_lstm_and_skips_the_rest():
    """`autograd.grad(..., inputs=x)` through trainable stacks with an upstream gradient on a
    block of rows only (C-RNN-GAN's G loss on D's shared forward): x's gradient equals
    nn.LSTM's, and the backward does no weight-gradient products and only the live rows'."""
    lstms = _stacks(2, 3, 6, 2, 0.0, True)
    x = torch.rand(7, 5, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.zeros(7, 5, 6, dtype=torch.float64)
    upstream[:, 2:4] = torch.rand(7, 2, 6, dtype=torch.float64)

    def input_gradient(fast):
        outs = run_lstm_stacks(lstms, [x, x.flip(0)]) if fast else [lstms[0](x)[0], lstms[1](x.flip(0))[0]]
        loss = sum((o * upstream).sum() for o in outs)
        return torch.autograd.grad(loss, x)[0], loss

    got, loss = input_gradient(True)
    want, _ = input_gradient(False)
    torch.testing.assert_close(got, want, **F64)
    assert got[:, [0, 1, 4]].abs().sum() == 0 and got[:, 2:4].abs().sum() > 0

    def backward_flops(upstream, weights):
        outs = run_lstm_stacks(lstms, [x, x.flip(0)])
        loss = sum((o * upstream).sum() for o in outs)
        inputs = [x, *lstms[0].parameters()] if weights else [x]
        return flops.count_with_flop_counter(lambda: torch.autograd.grad(loss, inputs))

    every_row = torch.rand(7, 5, 6, dtype=torch.float64) + 0.1
    rows_2_3 = every_row * (torch.arange(5) // 2 == 1).view(1, 5, 1)
    full = backward_flops(every_row, weights=False)
    live_only = backward_flops(rows_2_3, weights=False)
    with_weights = backward_flops(rows_2_3, weights=True)
    assert 0 < live_only <= 0.45 * full, (live_only, full)  # 2 of 5 rows
    assert with_weights > 1.5 * live_only, (with_weights, live_only)  # weight products skipped without
