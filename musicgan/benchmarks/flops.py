"""FLOP counts of one C-RNN-GAN training step, and the machine's measured matmul FLOP/s.

Why an analytic count: `torch.utils.flop_counter.FlopCounterMode` only sees products that
run as ordinary aten matmuls. It does see the generator's hand-written loop and, on CPU in
fp32/fp64 without autocast, the discriminator's hand-written LSTM stack
(`musicgan.models.lstm_stack`, layout "separate": bmm/baddbmm products); it counts nothing
for `nn.LSTM` (on CPU one fused oneDNN op, `mkldnn_rnn_layer`, without a formula; on CUDA
cuDNN), i.e. it misses the discriminator wherever D runs nn.LSTM (CUDA, autocast, layout
"interleaved", `CRNNDiscriminator.fast_lstm = False`). The suite therefore counts the
products of the LSTM and linear layers by hand (2 m k n per (m x k) @ (k x n) product;
element-wise work is not counted, as usual) and reports FlopCounterMode's figure next to
it. Where both see the same work they differ by ~1 %: the discriminator's stack skips the
recurrent products of step 0 (h_{-1} = 0) and their gradients, which the analytic count
includes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepShape:
    """Sizes of one adversarial C-RNN-GAN step (the paper: 350, 2, 350, 2, 20, 100, 4)."""

    g_hidden: int
    g_layers: int
    d_hidden: int
    d_layers: int
    batch_size: int
    seq_len: int
    num_features: int
    noise_dim: int
    d_stacks: int = 2  # "separate" layout: a forward and a backward stack; "interleaved" is counted alike
    shared_d_forward: bool = True  # model.crnngan_shared_d_forward: G's loss reuses D's forward on the fakes


def generator_forward_flops(s: StepShape) -> float:
    """Free-running G: dense(noise, previous) -> L LSTM layers (input and recurrent products)
    -> output layer, for T steps of B rows."""
    h, rows = s.g_hidden, s.batch_size * s.seq_len
    dense = 2 * rows * (s.noise_dim + s.num_features) * h
    lstm = s.g_layers * 2 * rows * (2 * h) * (4 * h)
    output = 2 * rows * h * s.num_features
    return float(dense + lstm + output)


def discriminator_forward_flops(s: StepShape, batch_size: int) -> float:
    """Bidirectional D on `batch_size` sequences: per direction L LSTM layers (layer 0 reads
    F features, layer l > 0 reads H), then the per-step classifier on 2H features."""
    h, rows = s.d_hidden, batch_size * s.seq_len
    per_stack = 0
    for layer in range(s.d_layers):
        inputs = s.num_features if layer == 0 else h
        per_stack += 2 * rows * (inputs + h) * (4 * h)
    classifier = 2 * rows * (2 * h) * 1
    return float(s.d_stacks * per_stack + classifier)


def training_step_flops(s: StepShape) -> dict[str, float]:
    """Products of one adversarial step (D on real+fake with its update, G's loss through D
    on the fakes, G's update). Backward of a product = 2 products (input and weight
    gradients); for G's loss only input gradients flow back through D (1 product), on the
    fake rows only. With the shared forward (the default) G's loss reuses D's forward on
    the fakes: no second D forward is done, so none is counted."""
    g_forward = generator_forward_flops(s)
    # Backward: input and weight gradients of every product, except the noise's input gradient.
    g_backward = 2 * g_forward - 2.0 * s.batch_size * s.seq_len * s.noise_dim * s.g_hidden
    d_forward_both = discriminator_forward_flops(s, 2 * s.batch_size)  # real + fake in one batch
    d_forward_fake = discriminator_forward_flops(s, s.batch_size)
    parts = {
        "generator_forward": g_forward,
        "generator_backward": g_backward,
        "discriminator_forward_real_fake": d_forward_both,
        "discriminator_backward_real_fake": 2 * d_forward_both,
        "discriminator_forward_frozen_fake": 0.0 if s.shared_d_forward else d_forward_fake,
        "discriminator_backward_frozen_fake": d_forward_fake,
    }
    parts["total"] = sum(parts.values())
    return parts


def count_with_flop_counter(fn) -> float:
    """FLOPs torch's FlopCounterMode sees while `fn()` runs (blind to nn.LSTM: see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


class MatmulLoop:
    """A callable running (m x k) @ (k x n) `loops` times; `loops` calibrated so one call
    lasts about `target_s` (small products: enough of them to dwarf clock and call costs)."""

    def __init__(self, shape: tuple[int, int, int], device: torch.device, target_s: float = 0.2) -> None:
        import time

        m, k, n = shape
        self.a = torch.randn(m, k, device=device)
        self.b = torch.randn(k, n, device=device)
        self.out = torch.empty(m, n, device=device)
        self.device = device
        self.loops = 1
        self()  # warm
        probe = 4
        self.loops = probe
        start = time.perf_counter()
        self()
        per_product = (time.perf_counter() - start) / probe
        self.loops = max(1, int(target_s / max(per_product, 1e-7)))
        self.flops_per_call = 2.0 * m * k * n * self.loops

    def __call__(self) -> None:
        for _ in range(self.loops):
            torch.mm(self.a, self.b, out=self.out)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
