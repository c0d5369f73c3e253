"""C-RNN-GAN (Mogren 2016): a recurrent generator that feeds back its own output, and a
bidirectional recurrent discriminator with one logit per step. Architecture only.

Shapes: B batch, T steps, F features per step (4 for one tone per step, 3K+1 for K tones),
H hidden units, L stacked LSTM layers.

Generator, per step t:   in_t = concat(z_t ~ U[0,1)^noise_dim, y_{t-1})   (y_{-1} ~ U[0,1)^F)
                         x_t  = relu(dense(in_t))
                         L x LSTM(H), dropout on each layer's output (training only)
                         y_t  = linear(top output)        (no activation)

The free-running loop is the hot path of every adversarial step. `CRNNGenerator.forward`
runs it through `_FreeRunningLoop`, a hand-written forward/backward (BPTT) that
  * computes the noise half of the dense layer for all steps in one matrix product,
  * fuses each layer's input and recurrent gate products into one [x, h] @ W^T product,
  * writes every per-step result straight into preallocated buffers (no autograd graph of
    ~40 nodes per step, no torch.cat per step),
  * computes all weight gradients after the loop as one large product over T*B rows
    instead of T small accumulations (large GEMMs run near the machine's peak),
  * runs both step loops as TorchScript functions (~40 small ops per step; the Python
    dispatch of each cost about as much as the op) and reuses its large CPU arrays
    across calls (fresh 70 MB arrays cost ~60 ms of page faults on this machine).
Measured on this 2-core machine, 1 thread, paper preset, length 100, forward+backward
(process CPU time, heavily shared machine): batch 20 ~1.6x, batch 64 ~1.3x faster than
the eager loop. The products themselves are the same FLOPs in both; what is left at
batch 64 is mostly matrix-multiply time.
`reference_free_running` is the plain eager nn.LSTMCell loop with the same parameters and
the same random draws; tests hold the two equal in outputs and gradients.

The discriminator (layout "separate") runs its two LSTM stacks on CPU through
`lstm_stack.run_lstm_stacks`: the same treatment (one input projection per layer, per-step
recurrent products only, weight gradients as one product over T*B rows, none when frozen),
the two directions' step loops side by side on two threads; `CRNNDiscriminator.fast_lstm =
False` switches back to nn.LSTM (tests/test_lstm_stack.py holds the two equal). Paper preset,
this 2-core machine, quiet: D's update pass 1.10x (2 threads) / 1.10x (1 thread), its
frozen pass 1.23x / 1.34x faster than nn.LSTM (oneDNN); the whole step 1.10-1.14x.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.errors import ConfigError
from musicgan.models.lstm_stack import WORKSPACE, _Lease, first_order_only, run_lstm_stacks, script_or_plain

DISCRIMINATOR_LAYOUTS = ("separate", "interleaved")


def _check_sizes(network: str, num_features: int, hidden: int, layers: int, dropout: float) -> None:
    """The size checks both networks share; the message names the network."""
    if num_features < 1 or hidden < 1 or layers < 1:
        raise ConfigError(
            f"{network} needs num_features, hidden, layers >= 1 (got {num_features}, {hidden}, {layers})"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{network} dropout must be in [0, 1) (got {dropout})")


class CRNNGenerator(nn.Module):
    """C-RNN-GAN generator; also the MLE baseline when trained with `teacher_forced` only.

    Parameters (all created here, all used by every forward):
      dense:    Linear(noise_dim + F -> H), input order (noise, previous output)
      lstms[l]: nn.LSTM(H -> H), one layer each so dropout can follow every layer
      output:   Linear(H -> F)
    """

    def __init__(
        self,
        num_features: int,
        hidden: int = 350,
        layers: int = 2,
        dropout: float = 0.5,
        noise_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check_sizes("generator", num_features, hidden, layers, dropout)
        self.num_features = num_features
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.noise_dim = num_features if noise_dim is None else noise_dim
        self.dense = nn.Linear(self.noise_dim + num_features, hidden)
        self.lstms = nn.ModuleList(nn.LSTM(hidden, hidden, batch_first=True) for _ in range(layers))
        self.output = nn.Linear(hidden, num_features)

    # ---- randomness: one function, one order of draws, shared by every implementation ----
    def draw_randomness(
        self,
        batch_size: int,
        seq_len: int,
        noise: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Noise (B, T, noise_dim), initial "previous output" (B, F), dropout masks
        (L, T, B, H) already scaled by 1/(1-p), or None outside training.

        Drawn from the global torch RNG on the parameters' device in this order: noise,
        initial, masks. The same seed therefore gives the same draws to the fast loop, the
        reference loop and teacher forcing.
        """
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1 (got {batch_size}, {seq_len})")
        weight = self.dense.weight
        if noise is None:
            noise = torch.rand(batch_size, seq_len, self.noise_dim, device=weight.device, dtype=weight.dtype)
        elif noise.shape != (batch_size, seq_len, self.noise_dim):
            raise ValueError(f"noise must be {(batch_size, seq_len, self.noise_dim)}, got {tuple(noise.shape)}")
        if initial is None:
            initial = torch.rand(batch_size, self.num_features, device=weight.device, dtype=weight.dtype)
        elif initial.shape != (batch_size, self.num_features):
            raise ValueError(f"initial must be {(batch_size, self.num_features)}, got {tuple(initial.shape)}")
        masks = None
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            # rand + compare: 3x cheaper on CPU than bernoulli_, same distribution.
            masks = torch.rand(
                self.layers, seq_len, batch_size, self.hidden, device=weight.device, dtype=weight.dtype
            )
            masks = masks.lt_(keep).div_(keep)
        return noise, initial, masks

    def fused_lstm_parameters(self) -> list[torch.Tensor]:
        """Per layer: W = [W_ih | W_hh] (4H, 2H) and b = b_ih + b_hh (4H), gate rows reordered
        from torch's i, f, g, o to i, f, o, g. Built with autograd from the nn.LSTM
        parameters, so gradients reach those (one 4H x 2H copy per layer per call)."""
        h = self.hidden
        order = torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)])
        order = order.to(self.dense.weight.device)
        flat: list[torch.Tensor] = []
        for lstm in self.lstms:
            weight = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1)
            flat.append(weight.index_select(0, order))
            flat.append((lstm.bias_ih_l0 + lstm.bias_hh_l0).index_select(0, order))
        return flat

    def forward(
        self,
        batch_size: int | None = None,
        seq_len: int | None = None,
        *,
        noise: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Free-running generation: (B, T, F). `noise` (B, T, noise_dim) and `initial` (B, F)
        replace the random draws (tests, parity).

        `teacher=x` (B, T, F) runs `teacher_forced(x)` instead. Under DDP use this form
        (`ddp_generator(teacher=x)`) for MLE pretraining: DDP synchronises gradients only
        for passes made through the wrapper's forward."""
        if teacher is not None:
            if (batch_size, seq_len) not in ((None, None), tuple(teacher.shape[:2])):
                raise ValueError(f"batch_size/seq_len {batch_size}/{seq_len} contradict teacher {tuple(teacher.shape)}")
            return self.teacher_forced(teacher, noise=noise, initial=initial)
        if batch_size is None or seq_len is None:
            raise ValueError("free-running generation needs batch_size and seq_len")
        noise, initial, masks = self.draw_randomness(batch_size, seq_len, noise, initial)
        weight = self.dense.weight
        if torch.is_autocast_enabled(weight.device.type):
            # The hand-written loop keeps one dtype throughout; under autocast take the
            # plain autograd loop, which autocast handles op by op.
            return _eager_loop(self, noise, initial, masks)
        noise_weight = weight[:, : self.noise_dim]
        prev_weight = weight[:, self.noise_dim :]
        # Noise half of the dense layer for every step in one product: (T, B, H).
        pre_noise = F.linear(noise.transpose(0, 1), noise_weight, self.dense.bias).contiguous()
        outputs = _FreeRunningLoop.apply(
            pre_noise,
            initial,
            masks,
            prev_weight,
            self.output.weight,
            self.output.bias,
            *self.fused_lstm_parameters(),
        )  # (T, B, F)
        return outputs.transpose(0, 1)

    def teacher_forced(
        self,
        x: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MLE pretraining: step t sees the real x[:, t-1] (noise at t=0) and predicts x[:, t].

        x: (B, T, F) -> predictions (B, T, F). The inputs are known, so every LSTM layer runs
        over the whole sequence at once (cuDNN on GPU)."""
        batch_size, seq_len, _ = x.shape
        noise, initial, masks = self.draw_randomness(batch_size, seq_len, noise, initial)
        previous = torch.cat([initial.unsqueeze(1), x[:, :-1]], dim=1)  # (B, T, F)
        hidden = torch.relu(self.dense(torch.cat([noise, previous], dim=2)))  # (B, T, H)
        for layer, lstm in enumerate(self.lstms):
            hidden, _ = lstm(hidden)
            if masks is not None:
                hidden = hidden * masks[layer].transpose(0, 1)
        return self.output(hidden)


def reference_free_running(
    generator: CRNNGenerator,
    batch_size: int,
    seq_len: int,
    *,
    noise: torch.Tensor | None = None,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain eager loop: nn.LSTMCell per layer per step, sharing the generator's own
    parameters and random draws. The equivalence tests and the benchmark compare against it."""
    noise, initial, masks = generator.draw_randomness(batch_size, seq_len, noise, initial)
    return _eager_loop(generator, noise, initial, masks)


def _lstm_cells(generator: CRNNGenerator) -> list[nn.LSTMCell]:
    """nn.LSTMCell modules whose parameters ARE the generator's nn.LSTM parameters (built on
    the meta device, then pointed at the real tensors: no copy, gradients reach the originals)."""
    cells = []
    for lstm in generator.lstms:
        cell = nn.LSTMCell(generator.hidden, generator.hidden, device="meta")
        cell.weight_ih = lstm.weight_ih_l0
        cell.weight_hh = lstm.weight_hh_l0
        cell.bias_ih = lstm.bias_ih_l0
        cell.bias_hh = lstm.bias_hh_l0
        cells.append(cell)
    return cells


def _eager_loop(
    generator: CRNNGenerator,
    noise: torch.Tensor,
    initial: torch.Tensor,
    masks: torch.Tensor | None,
) -> torch.Tensor:
    cells = _lstm_cells(generator)
    batch_size, seq_len, _ = noise.shape
    zeros = noise.new_zeros(batch_size, generator.hidden)
    states = [(zeros, zeros) for _ in cells]
    previous = initial
    outputs = []
    for t in range(seq_len):
        x = torch.relu(generator.dense(torch.cat([noise[:, t], previous], dim=1)))
        for layer, cell in enumerate(cells):
            h, c = cell(x, states[layer])
            states[layer] = (h, c)
            x = h if masks is None else h * masks[layer, t]
        previous = generator.output(x)
        outputs.append(previous)
    return torch.stack(outputs, dim=1)


# The pooled CPU buffers live in lstm_stack (shared with the discriminator's LSTM stack).
_WORKSPACE = WORKSPACE


def release_workspace() -> None:
    """Drop the hand-written loops' cached CPU buffers (they are rebuilt on demand)."""
    WORKSPACE.clear()


def _forward_steps(
    pre_noise: torch.Tensor,
    initial: torch.Tensor,
    masks: Optional[torch.Tensor],
    prev_weight: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
    weights: List[torch.Tensor],
    biases: List[torch.Tensor],
    inputs: torch.Tensor,
    gates: torch.Tensor,
    cells: torch.Tensor,
    tanh_cells: torch.Tensor,
    top: torch.Tensor,
    pre_relu: torch.Tensor,
    outputs: torch.Tensor,
) -> None:
    """The forward recurrence, writing every intermediate into the given arrays (shapes in
    `_FreeRunningLoop.forward`). TorchScript-compatible: scripted when available."""
    seq_len = pre_noise.shape[0]
    hidden = pre_noise.shape[2]
    num_layers = len(weights)
    h2 = 2 * hidden
    h3 = 3 * hidden
    weights_t = [w.t() for w in weights]
    prev_weight_t = prev_weight.t()
    out_weight_t = out_weight.t()
    # Per-step views made once: indexing inside the loop costs more than the small ops.
    step_inputs = [inputs[layer].unbind(0) for layer in range(num_layers)]
    step_gates = [gates[layer].unbind(0) for layer in range(num_layers)]
    step_cells = [cells[layer].unbind(0) for layer in range(num_layers)]
    step_tanh = [tanh_cells[layer].unbind(0) for layer in range(num_layers)]
    step_masks: List[List[torch.Tensor]] = []
    if masks is not None:
        step_masks = [masks[layer].unbind(0) for layer in range(num_layers)]
    step_top = top.unbind(0)
    step_pre = pre_relu.unbind(0)
    step_noise = pre_noise.unbind(0)
    step_out = outputs.unbind(0)

    previous = initial
    for t in range(seq_len):
        torch.addmm(step_noise[t], previous, prev_weight_t, out=step_pre[t])
        torch.clamp_min(step_pre[t], 0.0, out=step_inputs[0][t][:, :hidden])
        for layer in range(num_layers):
            g = step_gates[layer][t]
            torch.addmm(biases[layer], step_inputs[layer][t], weights_t[layer], out=g)
            torch.sigmoid(g[:, :h3], out=g[:, :h3])  # i, f, o
            torch.tanh(g[:, h3:], out=g[:, h3:])  # g
            c = step_cells[layer][t + 1]
            torch.mul(g[:, hidden:h2], step_cells[layer][t], out=c)
            c.addcmul_(g[:, :hidden], g[:, h3:])
            tanh_c = torch.tanh(c, out=step_tanh[layer][t])
            h = step_inputs[layer][t + 1][:, hidden:]
            torch.mul(g[:, h2:h3], tanh_c, out=h)
            above = step_inputs[layer + 1][t][:, :hidden] if layer + 1 < num_layers else step_top[t]
            if len(step_masks) > 0:
                torch.mul(h, step_masks[layer][t], out=above)
            else:
                above.copy_(h)
        previous = torch.addmm(out_bias, step_top[t], out_weight_t, out=step_out[t])


def _backward_steps(
    grad_outputs: torch.Tensor,
    masks: Optional[torch.Tensor],
    prev_weight: torch.Tensor,
    out_weight: torch.Tensor,
    weights: List[torch.Tensor],
    inputs: torch.Tensor,
    gates: torch.Tensor,
    cells: torch.Tensor,
    tanh_cells: torch.Tensor,
    grad_gates: torch.Tensor,
    grad_y: torch.Tensor,
    grad_pre_relu: torch.Tensor,
) -> torch.Tensor:
    """Backpropagation through time for `_forward_steps`. Fills grad_gates (gradient w.r.t.
    the gate pre-activations), grad_y (total gradient of each output) and grad_pre_relu;
    returns the gradient of the initial input. TorchScript-compatible."""
    seq_len = grad_outputs.shape[0]
    batch_size = grad_outputs.shape[1]
    hidden = grad_pre_relu.shape[2]
    num_layers = len(weights)
    h2 = 2 * hidden
    h3 = 3 * hidden
    grad_h = [grad_pre_relu.new_zeros(batch_size, hidden) for _ in range(num_layers)]  # from step t+1
    grad_c = [grad_pre_relu.new_zeros(batch_size, hidden) for _ in range(num_layers)]  # from step t+1
    relu_out = [x[:, :hidden] for x in inputs[0].unbind(0)]
    step_gates = [gates[layer].unbind(0) for layer in range(num_layers)]
    step_grad_gates = [grad_gates[layer].unbind(0) for layer in range(num_layers)]
    step_cells = [cells[layer].unbind(0) for layer in range(num_layers)]
    step_tanh = [tanh_cells[layer].unbind(0) for layer in range(num_layers)]
    step_masks: List[List[torch.Tensor]] = []
    if masks is not None:
        step_masks = [masks[layer].unbind(0) for layer in range(num_layers)]
    step_grad_out = grad_outputs.unbind(0)
    step_grad_y = grad_y.unbind(0)
    step_grad_pre = grad_pre_relu.unbind(0)

    grad_previous = grad_outputs.new_zeros(batch_size, grad_outputs.shape[2])  # of y_t via step t+1
    for t in range(seq_len - 1, -1, -1):
        torch.add(step_grad_out[t], grad_previous, out=step_grad_y[t])
        grad_x = step_grad_y[t].mm(out_weight)  # (B, H): top output after dropout
        for layer in range(num_layers - 1, -1, -1):
            if len(step_masks) > 0:
                grad_x = grad_x * step_masks[layer][t]
            dh = grad_x + grad_h[layer]
            g = step_gates[layer][t]
            tanh_c = step_tanh[layer][t]
            dc = grad_c[layer]
            dc.add_(torch.ops.aten.tanh_backward(dh * g[:, h2:h3], tanh_c))  # + dh * o * tanh'(c)
            dg = step_grad_gates[layer][t]
            torch.mul(dc, g[:, h3:], out=dg[:, :hidden])  # d i (after its sigmoid)
            torch.mul(dc, step_cells[layer][t], out=dg[:, hidden:h2])  # d f
            torch.mul(dh, tanh_c, out=dg[:, h2:h3])  # d o
            torch.mul(dc, g[:, :hidden], out=dg[:, h3:])  # d g (after its tanh)
            # through the activations, in place: s(1-s) for the sigmoid block, 1-g^2 for tanh
            torch.ops.aten.sigmoid_backward(dg[:, :h3], g[:, :h3], grad_input=dg[:, :h3])
            torch.ops.aten.tanh_backward(dg[:, h3:], g[:, h3:], grad_input=dg[:, h3:])
            dc.mul_(g[:, hidden:h2])  # dc_{t-1} = dc * f
            grad_input = dg.mm(weights[layer])  # (B, 2H) = [d x_{l,t} | d h_{l,t-1}]
            grad_h[layer] = grad_input[:, hidden:]
            grad_x = grad_input[:, :hidden]
        torch.ops.aten.threshold_backward(grad_x, relu_out[t], 0.0, grad_input=step_grad_pre[t])  # relu'
        grad_previous = step_grad_pre[t].mm(prev_weight)  # (B, F)
    return grad_previous


_compiled_steps: dict[str, Callable] = {}


def _steps(name: str) -> Callable:
    """The generator's step loop `name` ("forward" | "backward"), scripted once per process
    (~40 small ops per step: TorchScript removes most of their Python dispatch cost)."""
    if name not in _compiled_steps:
        _compiled_steps[name] = script_or_plain({"forward": _forward_steps, "backward": _backward_steps}[name])
    return _compiled_steps[name]


class _FreeRunningLoop(torch.autograd.Function):
    """The generator's recurrence with a hand-written backward (see the module docstring).

    Inputs: pre_noise (T, B, H) = dense(noise half) incl. bias; initial (B, F); masks
    (L, T, B, H) or None; prev_weight (H, F) = dense weight on the previous output;
    out_weight (F, H); out_bias (F); then per layer W (4H, 2H), b (4H) with the gate rows in
    the order i, f, o, g (three sigmoids in one block, one tanh).
    Output: (T, B, F).
    """

    @staticmethod
    def forward(ctx, pre_noise, initial, masks, prev_weight, out_weight, out_bias, *layer_params):
        seq_len, batch_size, hidden = pre_noise.shape
        num_layers = len(layer_params) // 2
        weights = list(layer_params[0::2])
        biases = list(layer_params[1::2])
        outputs = pre_noise.new_empty(seq_len, batch_size, out_weight.shape[0])
        # inputs[l, t] = [x_{l,t} | h_{l,t-1}], the operand of layer l's fused gate product;
        # slot T only receives the last h, so every step writes the same way.
        inputs = _WORKSPACE.take((num_layers, seq_len + 1, batch_size, 2 * hidden), pre_noise)
        inputs[:, 0, :, hidden:] = 0
        gates = _WORKSPACE.take((num_layers, seq_len, batch_size, 4 * hidden), pre_noise)  # activated
        cells = _WORKSPACE.take((num_layers, seq_len + 1, batch_size, hidden), pre_noise)  # [t+1] = c_t
        cells[:, 0] = 0
        tanh_cells = _WORKSPACE.take((num_layers, seq_len, batch_size, hidden), pre_noise)
        top = _WORKSPACE.take((seq_len, batch_size, hidden), pre_noise)  # last layer's output after dropout
        pre_relu = _WORKSPACE.take((seq_len, batch_size, hidden), pre_noise)
        _steps("forward")(
            pre_noise, initial, masks, prev_weight, out_weight, out_bias, weights, biases,
            inputs, gates, cells, tanh_cells, top, pre_relu, outputs,
        )  # fmt: skip
        ctx.save_for_backward(initial, masks, prev_weight, out_weight, outputs, *weights)
        # Pooled arrays live as long as this node (plain attributes: the node owns them).
        ctx.arrays = (inputs, gates, cells, tanh_cells, top, pre_relu)
        ctx.lease = _Lease(*ctx.arrays)
        return outputs

    @staticmethod
    @first_order_only("the C-RNN-GAN generator's free-running kernel (models/crnngan.py)")
    def backward(ctx, grad_outputs):
        initial, masks, prev_weight, out_weight, outputs, *weights = ctx.saved_tensors
        inputs, gates, cells, tanh_cells, top, pre_relu = ctx.arrays
        seq_len, batch_size, hidden = pre_relu.shape
        grad_outputs = grad_outputs.contiguous()
        grad_pre_relu = torch.empty_like(pre_relu)  # returned: the gradient of pre_noise
        grad_gates = _WORKSPACE.take(tuple(gates.shape), gates)  # w.r.t. gate pre-activations
        grad_y = torch.empty_like(grad_outputs)  # total gradient reaching each output y_t
        grad_initial = _steps("backward")(
            grad_outputs, masks, prev_weight, out_weight, weights,
            inputs, gates, cells, tanh_cells, grad_gates, grad_y, grad_pre_relu,
        )  # fmt: skip

        # Weight gradients: one product over all T*B rows per matrix.
        rows = seq_len * batch_size
        previous_all = torch.cat([initial.unsqueeze(0), outputs[:-1]], dim=0)  # (T, B, F)
        grad_prev_weight = grad_pre_relu.view(rows, hidden).t() @ previous_all.view(rows, -1)
        grad_out_weight = grad_y.view(rows, -1).t() @ top.view(rows, hidden)
        grad_out_bias = grad_y.sum(dim=(0, 1))
        layer_grads = []
        for layer in range(len(weights)):
            g = grad_gates[layer].view(rows, 4 * hidden)
            # (X^T G)^T rather than G^T X: the wide (2H x 4H) output runs ~1.4x faster in MKL here
            layer_grads.append((inputs[layer, :seq_len].reshape(rows, 2 * hidden).t() @ g).t())
            layer_grads.append(g.sum(dim=0))
        _WORKSPACE.give(grad_gates)
        grad_initial = grad_initial if ctx.needs_input_grad[1] else None
        return grad_pre_relu, grad_initial, None, grad_prev_weight, grad_out_weight, grad_out_bias, *layer_grads


class CRNNDiscriminator(nn.Module):
    """C-RNN-GAN discriminator: dropout on the inputs, a bidirectional L-layer LSTM (H per
    direction), one logit per step from a linear layer shared across steps.

    layout "separate": the reference's arrangement, one L-layer stack reads x forwards and
    another reads it backwards; their top outputs are concatenated per step.
    layout "interleaved": torch's nn.LSTM(bidirectional=True), where layer l+1 of each
    direction sees both directions of layer l (cuDNN's native layout).
    Between stacked layers both layouts apply nn.LSTM's own dropout (same rate).

    On CPU without autocast, layout "separate" runs both stacks through
    `lstm_stack.run_lstm_stacks` (a hand-written forward/backward on the same nn.LSTM
    parameters, both directions at once, same dropout draws):
    outputs and gradients equal nn.LSTM's within float rounding. `fast_lstm = False` (on
    the class or an instance) forces nn.LSTM, the reference the tests and benchmarks
    compare with. CUDA and autocast always take nn.LSTM (cuDNN).
    """

    fast_lstm = True

    def __init__(
        self,
        num_features: int,
        hidden: int = 350,
        layers: int = 2,
        dropout: float = 0.5,
        layout: str = "separate",
    ) -> None:
        super().__init__()
        if layout not in DISCRIMINATOR_LAYOUTS:
            raise ConfigError(f"discriminator layout must be one of {DISCRIMINATOR_LAYOUTS} (got {layout!r})")
        _check_sizes("discriminator", num_features, hidden, layers, dropout)
        self.num_features = num_features
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.layout = layout
        between = dropout if layers > 1 else 0.0
        if layout == "separate":
            self.forward_stack = nn.LSTM(num_features, hidden, layers, batch_first=True, dropout=between)
            self.backward_stack = nn.LSTM(num_features, hidden, layers, batch_first=True, dropout=between)
        else:
            self.lstm = nn.LSTM(num_features, hidden, layers, batch_first=True, dropout=between, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F), lengths (B,) valid steps per row or None (all valid).
        Returns per-step logits (B, T) (no sigmoid) and the last hidden layer (B, T, 2H);
        both are zero at padded steps, which never influence valid steps."""
        batch_size, seq_len, _ = x.shape
        x = F.dropout(x, self.dropout, self.training)
        if self.layout == "separate" and self._fast_path(x):
            if lengths is None:
                reversed_x = x.flip(1)
            else:
                order = _reverse_within_length(lengths, seq_len)  # (B, T)
                reversed_x = x.gather(1, order.unsqueeze(-1).expand_as(x))
            forward_out, backward_out = run_lstm_stacks(
                [self.forward_stack, self.backward_stack], [x.transpose(0, 1), reversed_x.transpose(0, 1)]
            )  # (T, B, H) each
            forward_out, backward_out = forward_out.transpose(0, 1), backward_out.transpose(0, 1)
            if lengths is None:
                backward_out = backward_out.flip(1)
            else:
                backward_out = backward_out.gather(1, order.unsqueeze(-1).expand_as(backward_out))
            features = torch.cat([forward_out, backward_out], dim=2)
        elif self.layout == "separate":
            forward_out, _ = self.forward_stack(x)
            if lengths is None:
                backward_out, _ = self.backward_stack(x.flip(1))
                backward_out = backward_out.flip(1)
            else:
                order = _reverse_within_length(lengths, seq_len)  # (B, T)
                reversed_x = x.gather(1, order.unsqueeze(-1).expand_as(x))
                backward_out, _ = self.backward_stack(reversed_x)
                backward_out = backward_out.gather(1, order.unsqueeze(-1).expand_as(backward_out))
            features = torch.cat([forward_out, backward_out], dim=2)
        elif lengths is None:
            features, _ = self.lstm(x)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, _ = self.lstm(packed)
            features, _ = nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True, total_length=seq_len)
        logits = self.classifier(features).squeeze(-1)
        if lengths is not None:
            valid = steps_mask(lengths, seq_len)
            logits = logits * valid
            features = features * valid.unsqueeze(-1)
        return logits, features


    def _fast_path(self, x: torch.Tensor) -> bool:
        """The hand-written LSTM stack: CPU, float32/64, no autocast, not switched off."""
        return (
            self.fast_lstm
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu")
        )


def steps_mask(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask of valid steps."""
    return torch.arange(seq_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _reverse_within_length(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, T) gather index: t -> len-1-t on valid steps, t -> t on padding. Its own inverse."""
    steps = torch.arange(seq_len, device=lengths.device).unsqueeze(0)
    lengths = lengths.to(steps.device).unsqueeze(1)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def build_crnngan(
    num_features: int,
    g_hidden: int = 350,
    g_layers: int = 2,
    g_dropout: float = 0.5,
    d_hidden: int = 350,
    d_layers: int = 2,
    d_dropout: float = 0.5,
    d_layout: str = "separate",
) -> tuple[CRNNGenerator, CRNNDiscriminator]:
    """Generator and discriminator of one C-RNN-GAN (paper sizes by default)."""
    generator = CRNNGenerator(num_features, g_hidden, g_layers, g_dropout)
    discriminator = CRNNDiscriminator(num_features, d_hidden, d_layers, d_dropout, d_layout)
    return generator, discriminator
