"""C-RNN-GAN architecture: shapes, fast loop == eager LSTMCell loop, teacher forcing,
discriminator layouts and length masking."""

from __future__ import annotations

import pytest
import torch

from musicgan.benchmarks.generator import bench_generator
from musicgan.errors import ConfigError
from musicgan.models.crnngan import (
    CRNNDiscriminator,
    CRNNGenerator,
    build_crnngan,
    reference_free_running,
    release_workspace,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run_with_grads(run, generator, upstream):
    """Output of `run()` and the gradients of sum(output * upstream) w.r.t. every parameter."""
    out = run()
    params = list(generator.parameters())
    grads = torch.autograd.grad((out * upstream).sum(), params)
    return out.detach(), dict(zip([n for n, _ in generator.named_parameters()], grads))


def _assert_fast_equals_reference(generator, batch_size, seq_len, dtype, atol, rtol, seed=7):
    upstream = torch.randn(batch_size, seq_len, generator.num_features, dtype=dtype)
    torch.manual_seed(seed)
    fast_out, fast_grads = _run_with_grads(lambda: generator(batch_size, seq_len), generator, upstream)
    torch.manual_seed(seed)
    ref_out, ref_grads = _run_with_grads(
        lambda: reference_free_running(generator, batch_size, seq_len), generator, upstream
    )
    torch.testing.assert_close(fast_out, ref_out, atol=atol, rtol=rtol)
    for name, ref_grad in ref_grads.items():
        assert ref_grad.abs().sum() > 0, f"{name} gets no gradient in the reference"
        torch.testing.assert_close(fast_grads[name], ref_grad, atol=atol, rtol=rtol, msg=name)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("num_features", "layers", "noise_dim"), [(4, 2, None), (10, 1, None), (4, 3, 6)])
def test_fast_loop_matches_eager_lstmcell_loop_float64(training, num_features, layers, noise_dim):
    torch.manual_seed(0)
    generator = CRNNGenerator(num_features, hidden=24, layers=layers, dropout=0.5, noise_dim=noise_dim).double()
    generator.train(training)
    _assert_fast_equals_reference(generator, batch_size=5, seq_len=9, dtype=torch.float64, atol=1e-10, rtol=1e-9)


def test_fast_loop_matches_eager_loop_float32_paper_width():
    torch.manual_seed(1)
    generator = CRNNGenerator(4, hidden=350, layers=2).train()
    _assert_fast_equals_reference(generator, batch_size=4, seq_len=12, dtype=torch.float32, atol=2e-5, rtol=1e-4)


def test_equivalence_check_detects_a_changed_computation():
    """The comparison above is sharp enough to see a tiny change of the math."""
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=16, layers=2).double().eval()
    torch.manual_seed(3)
    fast = generator(3, 6)
    with torch.no_grad():
        generator.lstms[1].bias_hh_l0[5] += 1e-6  # a forget-gate bias of the top layer
    torch.manual_seed(3)
    reference = reference_free_running(generator, 3, 6)
    assert not torch.allclose(fast, reference, atol=1e-10, rtol=1e-9)


def test_pooled_buffers_survive_two_live_graphs_and_reuse():
    """Two forwards alive at once, backward of the first, then reuse after release."""
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=20, layers=2).double().train()
    upstream = torch.randn(3, 8, 4, dtype=torch.float64)
    params = list(generator.parameters())
    torch.manual_seed(11)
    first = generator(3, 8)
    second = generator(3, 8)  # different draws, its own buffers
    grads_first = torch.autograd.grad((first * upstream).sum(), params)
    torch.manual_seed(11)
    expected = reference_free_running(generator, 3, 8)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), params)
    torch.testing.assert_close(first.detach(), expected)
    for got, want in zip(grads_first, expected_grads):
        torch.testing.assert_close(got, want)
    del first
    third_seed_state = torch.get_rng_state()
    third = generator(3, 8)  # reuses the first call's released buffers
    torch.autograd.grad((second * upstream).sum(), params)  # second graph still intact
    torch.set_rng_state(third_seed_state)
    torch.testing.assert_close(third.detach(), reference_free_running(generator, 3, 8).detach())
    release_workspace()


def test_generator_shapes_and_no_grad_sampling():
    generator = CRNNGenerator(7, hidden=12, layers=2, noise_dim=3)
    assert generator(2, 5).shape == (2, 5, 7)
    with torch.no_grad():
        sample = generator.eval()(4, 3)
    assert sample.shape == (4, 3, 7) and not sample.requires_grad
    assert generator.teacher_forced(torch.randn(2, 6, 7)).shape == (2, 6, 7)
    with pytest.raises(ValueError):
        generator(2, 5, noise=torch.rand(2, 5, 7))  # noise_dim is 3


@pytest.mark.parametrize("training", [True, False])
def test_teacher_forcing_on_own_output_reproduces_free_running(training):
    """Fed its own free-running output as the real sequence, teacher forcing predicts the
    same outputs (same noise, same initial input, same dropout masks from the same seed)."""
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=16, layers=2).double().train(training)
    noise = torch.rand(3, 10, 4, dtype=torch.float64)
    initial = torch.rand(3, 4, dtype=torch.float64)
    torch.manual_seed(5)
    free = generator(3, 10, noise=noise, initial=initial)
    torch.manual_seed(5)
    forced = generator.teacher_forced(free.detach(), noise=noise, initial=initial)
    torch.testing.assert_close(forced, free, atol=1e-10, rtol=1e-9)


def test_every_generator_parameter_gets_gradient_in_both_modes():
    """DDP requires every parameter to be used by every forward."""
    generator = CRNNGenerator(4, hidden=8, layers=2)
    generator(2, 3).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    generator.zero_grad(set_to_none=True)
    generator.teacher_forced(torch.randn(2, 3, 4)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())


def test_generator_under_autocast_uses_eager_path():
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=8, layers=2).eval()
    torch.manual_seed(2)
    plain = generator(2, 4)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = generator(2, 4)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), plain, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("layout", ["separate", "interleaved"])
def test_discriminator_shapes(layout):
    disc = CRNNDiscriminator(10, hidden=12, layers=2, layout=layout)
    logits, features = disc(torch.randn(3, 7, 10))
    assert logits.shape == (3, 7) and features.shape == (3, 7, 24)


@pytest.mark.parametrize("layout", ["separate", "interleaved"])
def test_discriminator_padding_never_reaches_valid_steps(layout):
    torch.manual_seed(0)
    disc = CRNNDiscriminator(4, hidden=10, layers=2, layout=layout).double().eval()
    lengths = torch.tensor([6, 3, 1])
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    garbage = x.clone()
    for row, length in enumerate(lengths):
        garbage[row, length:] = 1e3 * torch.randn(6 - length, 4, dtype=torch.float64)
    logits_a, features_a = disc(x, lengths)
    logits_b, features_b = disc(garbage, lengths)
    torch.testing.assert_close(logits_a, logits_b)
    torch.testing.assert_close(features_a, features_b)
    for row, length in enumerate(lengths.tolist()):
        alone_logits, alone_features = disc(x[row : row + 1, :length])
        torch.testing.assert_close(logits_a[row, :length], alone_logits[0])
        torch.testing.assert_close(features_a[row, :length], alone_features[0])
        assert torch.all(logits_a[row, length:] == 0)


def test_separate_layout_is_two_independent_stacks():
    """fw half = forward stack on x; bw half = backward stack on x reversed within length."""
    torch.manual_seed(0)
    disc = CRNNDiscriminator(4, hidden=6, layers=2, layout="separate").double().eval()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    _, features = disc(x, lengths)
    for row, length in enumerate(lengths.tolist()):
        seq = x[row : row + 1, :length]
        fw, _ = disc.forward_stack(seq)
        bw, _ = disc.backward_stack(seq.flip(1))
        torch.testing.assert_close(features[row, :length, :6], fw[0])
        torch.testing.assert_close(features[row, :length, 6:], bw[0].flip(0))


def test_per_step_logits_come_from_one_shared_linear():
    torch.manual_seed(0)
    disc = CRNNDiscriminator(4, hidden=6, layers=1, layout="interleaved").eval()
    logits, features = disc(torch.randn(2, 5, 4))
    expected = features @ disc.classifier.weight[0] + disc.classifier.bias[0]
    torch.testing.assert_close(logits, expected)


def test_discriminator_trains_through_both_layouts_with_lengths():
    for layout in ("separate", "interleaved"):
        disc = CRNNDiscriminator(4, hidden=6, layers=2, layout=layout).train()
        logits, features = disc(torch.randn(3, 5, 4), torch.tensor([5, 2, 4]))
        (logits.sum() + features.sum()).backward()
        assert all(p.grad is not None for p in disc.parameters())


def test_build_crnngan_and_config_errors():
    generator, disc = build_crnngan(10, 16, 2, 0.5, 12, 2, 0.3, "interleaved")
    assert generator.hidden == 16 and generator.num_features == 10
    assert disc.hidden == 12 and disc.layout == "interleaved" and disc.dropout == 0.3
    with pytest.raises(ConfigError, match="layout"):
        CRNNDiscriminator(4, layout="zigzag")
    with pytest.raises(ConfigError):
        CRNNGenerator(4, dropout=1.0)


def test_bench_generator_reports_both_implementations():
    result = bench_generator(batch_sizes=(2, 3), seq_len=4, hidden=8, repeats=2, warmup=1, threads=1)
    assert set(result["per_batch"]) == {"2", "3"}
    for entry in result["per_batch"].values():
        assert entry["fast_s"] > 0 and entry["reference_s"] > 0
        assert entry["speedup"] == pytest.approx(entry["reference_s"] / entry["fast_s"])
    assert result["generator_speedup"] > 0 and result["generator_speedup_cpu_time"] > 0
    assert result["settings"]["threads"] == 1


def test_forward_with_teacher_is_teacher_forcing():
    """DDP only syncs passes made through forward, so teacher forcing is reachable there."""
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=8, layers=2).train()
    x = torch.randn(3, 5, 4)
    torch.manual_seed(1)
    via_forward = generator(teacher=x)
    torch.manual_seed(1)
    torch.testing.assert_close(via_forward, generator.teacher_forced(x))
    with pytest.raises(ValueError):
        generator(2, 5, teacher=x)
    with pytest.raises(ValueError):
        generator(3)


def _ddp_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import datetime

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:
        torch.manual_seed(0)
        generator = CRNNGenerator(4, hidden=12, layers=2).double().train()
        ddp = DistributedDataParallel(generator, broadcast_buffers=False)
        torch.manual_seed(100 + rank)
        upstream = torch.randn(3, 6, 4, dtype=torch.float64)
        (ddp(3, 6) * upstream).sum().backward()  # free-running step
        free = [p.grad.clone() for p in generator.parameters()]
        generator.zero_grad(set_to_none=True)
        torch.manual_seed(200 + rank)
        real = torch.randn(3, 6, 4, dtype=torch.float64)
        (ddp(teacher=real) - real).square().sum().backward()  # MLE step
        forced = [p.grad.clone() for p in generator.parameters()]
        torch.save({"free": free, "forced": forced}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_generator_gradients_average_under_two_rank_gloo_ddp(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=12, layers=2).double().train()
    params = list(generator.parameters())
    expected_free, expected_forced = [], []
    for rank in range(2):
        torch.manual_seed(100 + rank)
        upstream = torch.randn(3, 6, 4, dtype=torch.float64)
        out = reference_free_running(generator, 3, 6)
        expected_free.append(torch.autograd.grad((out * upstream).sum(), params))
        torch.manual_seed(200 + rank)
        real = torch.randn(3, 6, 4, dtype=torch.float64)
        expected_forced.append(torch.autograd.grad((generator(teacher=real) - real).square().sum(), params))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for key, expected in (("free", expected_free), ("forced", expected_forced)):
            for grad, a, b in zip(got[key], *expected):
                torch.testing.assert_close(grad, (a + b) / 2, atol=1e-10, rtol=1e-9)


def test_training_steps_reach_the_same_weights_as_the_eager_loop():
    """Speed-ups keep the model's results: same losses and weights after several SGD steps
    (with clipping and dropout) as the plain eager implementation."""
    import copy

    torch.manual_seed(0)
    fast = CRNNGenerator(4, hidden=16, layers=2).double().train()
    plain = copy.deepcopy(fast)
    target = torch.randn(3, 7, 4, dtype=torch.float64)
    runs = {}
    for name, generator, run in (
        ("fast", fast, lambda: fast(3, 7)),
        ("plain", plain, lambda: reference_free_running(plain, 3, 7)),
    ):
        optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
        torch.manual_seed(42)
        step_losses = []
        for _ in range(4):
            optimizer.zero_grad()
            loss = (run() - target).square().mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(generator.parameters(), 5.0)
            optimizer.step()
            step_losses.append(loss.item())
        runs[name] = step_losses
    assert runs["fast"] == pytest.approx(runs["plain"], rel=1e-10)
    assert runs["fast"][-1] < runs["fast"][0]
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=name)


def test_sampling_under_inference_mode_then_training_still_works():
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=8, layers=2)
    with torch.inference_mode():
        sample = generator.eval()(2, 5)
    assert torch.isfinite(sample).all()
    generator.train()
    torch.manual_seed(4)
    out = generator(2, 5)
    out.sum().backward()
    torch.manual_seed(4)
    torch.testing.assert_close(out.detach(), reference_free_running(generator, 2, 5).detach())
