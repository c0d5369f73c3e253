"""The C-RNN-GAN generator's free-running recurrence with a hand-written forward/backward (BPTT).

`CRNNGenerator.forward` (musicgan/models/crnngan.py) runs its loop through `FreeRunningLoop`,
on the generator's own parameters and random draws; `crnngan.reference_free_running` is the
plain eager nn.LSTMCell loop, and tests hold the two equal in outputs and gradients. The loop
is the hot path of every adversarial step, so instead of autograd over ~40 small ops per
step it
  * computes the noise half of the dense layer for all steps in one matrix product,
  * fuses each layer's input and recurrent gate products into one [x, h] @ W^T product,
  * writes every per-step result straight into preallocated buffers (no autograd graph of
    ~40 nodes per step, no torch.cat per step),
  * computes all weight gradients after the loop as one large product over T*B rows
    instead of T small accumulations (large GEMMs run near the machine's peak),
  * runs both step loops as TorchScript functions (~40 small ops per step; the Python
    dispatch of each costs about as much as the op) and reuses its large CPU arrays
    across calls (fresh arrays of paper size cost tens of ms of page faults per call).
The products themselves are the same FLOPs as the eager loop's; what is left at large
batches is mostly matrix-multiply time. What it buys: BENCHMARKS.md ("Generator speed",
`python -m musicgan.benchmarks.generator 1`).

The pooled CPU buffers (`lstm_stack.WORKSPACE`) are shared with the discriminator's LSTM stack.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import torch

from musicgan.models.lstm_stack import WORKSPACE, _Lease, first_order_only, script_or_plain


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
    `FreeRunningLoop.forward`). TorchScript-compatible: scripted when available."""
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


class FreeRunningLoop(torch.autograd.Function):
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
        inputs = WORKSPACE.take((num_layers, seq_len + 1, batch_size, 2 * hidden), pre_noise)
        inputs[:, 0, :, hidden:] = 0
        gates = WORKSPACE.take((num_layers, seq_len, batch_size, 4 * hidden), pre_noise)  # activated
        cells = WORKSPACE.take((num_layers, seq_len + 1, batch_size, hidden), pre_noise)  # [t+1] = c_t
        cells[:, 0] = 0
        tanh_cells = WORKSPACE.take((num_layers, seq_len, batch_size, hidden), pre_noise)
        top = WORKSPACE.take((seq_len, batch_size, hidden), pre_noise)  # last layer's output after dropout
        pre_relu = WORKSPACE.take((seq_len, batch_size, hidden), pre_noise)
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
    @first_order_only("the C-RNN-GAN generator's free-running kernel (models/free_running.py)")
    def backward(ctx, grad_outputs):
        initial, masks, prev_weight, out_weight, outputs, *weights = ctx.saved_tensors
        inputs, gates, cells, tanh_cells, top, pre_relu = ctx.arrays
        seq_len, batch_size, hidden = pre_relu.shape
        grad_outputs = grad_outputs.contiguous()
        grad_pre_relu = torch.empty_like(pre_relu)  # returned: the gradient of pre_noise
        grad_gates = WORKSPACE.take(tuple(gates.shape), gates)  # w.r.t. gate pre-activations
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
        WORKSPACE.give(grad_gates)
        grad_initial = grad_initial if ctx.needs_input_grad[1] else None
        return grad_pre_relu, grad_initial, None, grad_prev_weight, grad_out_weight, grad_out_bias, *layer_grads
