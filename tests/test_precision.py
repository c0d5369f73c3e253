"""dist.precision=bf16: forwards of trained networks under bf16 autocast, fp32 everywhere
else, one rule for both backends (musicgan/distributed/dispatch.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from musicgan.distributed.ddp import DDPBackend
from musicgan.distributed.dispatch import MethodDispatch, bf16_autocast_supported
from musicgan.distributed.env import DistEnv
from musicgan.models.crnngan import CRNNGenerator


def _cpu_env() -> DistEnv:
    return DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), initialized_here=False)


def _generator_grads(autocast_dtype):
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=24, layers=2, dropout=0.0)
    wrapper = MethodDispatch(generator, autocast_dtype)
    torch.manual_seed(1)
    fake = wrapper("forward", 3, 9)  # (B, T, F)
    loss = (fake.float() ** 2).mean()
    loss.backward()
    return fake, loss.detach(), {n: p.grad for n, p in generator.named_parameters()}


def test_bf16_dispatch_runs_the_forward_in_bf16_and_keeps_fp32_weights_and_gradients():
    fake32, loss32, grads32 = _generator_grads(None)
    fake16, loss16, grads16 = _generator_grads(torch.bfloat16)
    assert fake32.dtype == torch.float32
    assert fake16.dtype == torch.bfloat16  # the products really ran in bf16
    assert set(grads16) == set(grads32)
    for name, grad in grads16.items():
        assert grad.dtype == torch.float32, name  # master weights and gradients stay fp32
        assert torch.isfinite(grad).all(), name
        # bf16 keeps 8 bits of mantissa: the gradients agree with fp32's to about 1e-2.
        scale = grads32[name].abs().max().clamp_min(1e-6)
        assert (grad - grads32[name]).abs().max() / scale < 0.1, name
    assert abs(float(loss16) - float(loss32)) / float(loss32) < 0.05
    assert not torch.equal(fake16.float(), fake32)  # bf16 rounding is visible: it did change precision


def test_bf16_is_refused_on_cpu_with_a_warning_and_trains_in_fp32(caplog):
    assert not bf16_autocast_supported(torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="musicgan"):
        backend = DDPBackend(_cpu_env(), grad_clip=5.0, max_grad_norm=1e6, precision="bf16")
    assert backend.autocast_dtype is None
    assert "not supported on cpu" in caplog.text
    backend.setup(
        {"generator": CRNNGenerator(4, hidden=8, layers=1, dropout=0.0)},
        {"generator": lambda params: torch.optim.SGD(params, lr=0.1)},
    )
    assert backend.train_module("generator").autocast_dtype is None
    assert backend.train_module("generator")("forward", 2, 3).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available() or not torch.cuda.is_bf16_supported(), reason="needs a bf16 CUDA GPU")
def test_bf16_autocast_on_a_cuda_gpu():
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cuda", 0), initialized_here=False)
    backend = DDPBackend(env, grad_clip=5.0, max_grad_norm=1e6, precision="bf16")
    assert backend.autocast_dtype == torch.bfloat16
    backend.setup(
        {"generator": CRNNGenerator(4, hidden=8, layers=1, dropout=0.0)},
        {"generator": lambda params: torch.optim.SGD(params, lr=0.1)},
    )
    out = backend.train_module("generator")("teacher_forced", torch.rand(2, 5, 4, device="cuda"))
    assert out.dtype == torch.bfloat16
