"""A unidirectional L-layer LSTM stack with a hand-written backward, for CPU training.

Semantics are nn.LSTM's (batch second, zero initial state, gate order i, f, g, o, dropout
on every layer's output but the last in training), and it runs on nn.LSTM's own
parameters (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}), so checkpoints,
DDP and DeepSpeed see the same tensors. Why it exists: on CPU, ATen's LSTM runs fine
forwards, but autograd then computes the gradient of W_hh as T small accumulations with
K = batch rows, and every layer's input and weight gradients per step; here

  * each layer's input projection (x W_ih^T + b) runs for all T steps as ONE product,
  * each step does only the recurrent product h_{t-1} W_hh^T and the gate arithmetic,
    written in place into preallocated arrays by a TorchScript loop,
  * backward does per step only dh_{t-1} = dgates_t W_hh; the layer's input gradient and
    its weight gradients are ONE product each over all T*B rows (and none at all when the
    weights need no gradient, e.g. a frozen discriminator in the generator's step),
  * S independent stacks of equal sizes (a bidirectional discriminator's forward and
    backward stacks, S = 2) run together: the large products are batched (bmm) over the
    stacks; the step loops of two stacks run side by side on two threads with one
    intra-op thread each when torch has >= 2 threads (see `_StackThread`), else as one
    loop of batched products.

The large per-call arrays come from `WORKSPACE`, a pool of reusable CPU buffers (shared
with the generator's free-running loop).

Shapes: S stacks, T steps, B rows, F input features, H hidden units, L layers.
"""

from __future__ import annotations

import functools
import math
import os
import queue
import threading
import warnings
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode

from musicgan.errors import UserError


class _Workspace:
    """Reusable flat CPU buffers for the hand-written loops' large per-call arrays.

    Why: a fresh 70 MB tensor costs ~60 ms of page faults here (glibc hands allocations over
    32 MB straight to mmap and returns them on free), about as much as the arithmetic it
    holds. Buffers go back to the pool only when nothing can read them any more: backward's
    scratch at the end of backward, forward's saved arrays when the autograd node that owns
    them is destroyed (see `_Lease`). CUDA has its own caching allocator, so CUDA bypasses it.
    """

    max_free = 16  # free buffers kept (a few live graphs); the smallest go first (lengths grow)

    def __init__(self) -> None:
        self.free: list[torch.Tensor] = []
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = math.prod(shape)
        if like.device.type != "cpu":
            return like.new_empty(shape)
        with self.lock:
            fits = [k for k, b in enumerate(self.free) if b.dtype == like.dtype and b.numel() >= numel]
            if fits:
                best = self.free.pop(min(fits, key=lambda k: self.free[k].numel()))
                return best[:numel].view(shape)
        return like.new_empty(numel).view(shape)

    def give(self, *tensors: torch.Tensor) -> None:
        with self.lock:
            for tensor in tensors:
                # Inference tensors (made under torch.inference_mode) cannot be written
                # outside it later, so they are not kept.
                if tensor.device.type == "cpu" and not tensor.is_inference():
                    base = tensor if tensor._base is None else tensor._base
                    self.free.append(base)
            self.free.sort(key=torch.Tensor.numel, reverse=True)
            del self.free[self.max_free :]

    def clear(self) -> None:
        with self.lock:
            self.free.clear()


WORKSPACE = _Workspace()


class _Lease:
    """Holds pooled buffers for an autograd node; returns them when the node dies."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __del__(self) -> None:
        try:
            WORKSPACE.give(*self.tensors)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to reuse them
            pass


def _carve(flat: torch.Tensor, shapes: Sequence[Sequence[int]]) -> List[torch.Tensor]:
    """Consecutive views of `flat` with the given shapes (one pooled buffer, many arrays)."""
    views, offset = [], 0
    for shape in shapes:
        numel = math.prod(shape)
        views.append(flat[offset : offset + numel].view(*shape))
        offset += numel
    return views


# ---- the step loops (TorchScript-compatible) --------------------------------------------------
def _forward_layer_steps(
    w_hh_t: torch.Tensor,
    gates: torch.Tensor,
    cells: torch.Tensor,
    tanh_cells: torch.Tensor,
    hs: torch.Tensor,
    work: torch.Tensor,
) -> None:
    """One layer's recurrence for S stacks. On entry gates (S, T, B, 4H) holds the input
    projection x W_ih^T + b; on exit the activated gates i, f, g, o. Writes cells
    (S, T+1, B, H) (slot 0 must be zero: c_{-1}), tanh_cells (S, T, B, H) and the outputs
    hs (S, T, B, H). w_hh_t (S, H, 4H); work (S, B, 4H) is scratch."""
    seq_len = gates.shape[1]
    hidden = hs.shape[3]
    h2 = 2 * hidden
    h3 = 3 * hidden
    step_gates = gates.unbind(1)
    step_cells = cells.unbind(1)
    step_tanh = tanh_cells.unbind(1)
    step_h = hs.unbind(1)
    for t in range(seq_len):
        g = step_gates[t]  # (S, B, 4H), a strided view
        pre = g
        if t > 0:  # h_{-1} = 0: step 0 has no recurrent term
            # One batched product for all stacks into contiguous scratch (MKL's batched path).
            pre = torch.baddbmm(g, step_h[t - 1], w_hh_t, out=work)
        torch.sigmoid(pre.narrow(2, 0, h2), out=g.narrow(2, 0, h2))  # i, f
        torch.tanh(pre.narrow(2, h2, hidden), out=g.narrow(2, h2, hidden))  # g
        torch.sigmoid(pre.narrow(2, h3, hidden), out=g.narrow(2, h3, hidden))  # o
        c = step_cells[t + 1]
        torch.mul(g.narrow(2, hidden, hidden), step_cells[t], out=c)  # f * c_{t-1}
        c.addcmul_(g.narrow(2, 0, hidden), g.narrow(2, h2, hidden))  # + i * g
        tanh_c = torch.tanh(c, out=step_tanh[t])
        torch.mul(g.narrow(2, h3, hidden), tanh_c, out=step_h[t])  # h = o * tanh(c)


def _backward_layer_steps(
    grad_hs: torch.Tensor,
    w_hh: torch.Tensor,
    gates: torch.Tensor,
    cells: torch.Tensor,
    tanh_cells: torch.Tensor,
    grad_gates: torch.Tensor,
) -> None:
    """Backpropagation through time of one layer for S stacks. grad_hs (S, T, B, H): the
    gradient reaching each output h_t from outside the recurrence (the layer above, or the
    stack's output). Fills grad_gates (S, T, B, 4H), the gradient w.r.t. the gate
    pre-activations. w_hh (S, 4H, H)."""
    seq_len = gates.shape[1]
    hidden = tanh_cells.shape[3]
    h2 = 2 * hidden
    h3 = 3 * hidden
    step_grad_h = grad_hs.unbind(1)
    step_gates = gates.unbind(1)
    step_cells = cells.unbind(1)
    step_tanh = tanh_cells.unbind(1)
    step_grad_gates = grad_gates.unbind(1)
    shape = [grad_hs.shape[0], grad_hs.shape[2], hidden]
    grad_c = grad_hs.new_zeros(shape)  # from step t+1
    grad_h_rec = grad_hs.new_zeros(shape)  # dh_t through h_t W_hh^T at step t+1
    dh = grad_hs.new_empty(shape)
    for t in range(seq_len - 1, -1, -1):
        if t == seq_len - 1:
            dh.copy_(step_grad_h[t])
        else:
            torch.add(step_grad_h[t], grad_h_rec, out=dh)
        g = step_gates[t]
        tanh_c = step_tanh[t]
        o = g.narrow(2, h3, hidden)
        grad_c.add_(torch.ops.aten.tanh_backward(dh * o, tanh_c))  # + dh * o * tanh'(c)
        dg = step_grad_gates[t]
        torch.mul(grad_c, g.narrow(2, h2, hidden), out=dg.narrow(2, 0, hidden))  # d i
        torch.mul(grad_c, step_cells[t], out=dg.narrow(2, hidden, hidden))  # d f
        torch.mul(grad_c, g.narrow(2, 0, hidden), out=dg.narrow(2, h2, hidden))  # d g
        torch.mul(dh, tanh_c, out=dg.narrow(2, h3, hidden))  # d o
        # Through the activations, in place: s(1-s) for the sigmoids, 1-g^2 for the tanh.
        torch.ops.aten.sigmoid_backward(dg.narrow(2, 0, h2), g.narrow(2, 0, h2), grad_input=dg.narrow(2, 0, h2))
        torch.ops.aten.tanh_backward(
            dg.narrow(2, h2, hidden), g.narrow(2, h2, hidden), grad_input=dg.narrow(2, h2, hidden)
        )
        torch.ops.aten.sigmoid_backward(
            dg.narrow(2, h3, hidden), g.narrow(2, h3, hidden), grad_input=dg.narrow(2, h3, hidden)
        )
        if t > 0:
            grad_c.mul_(g.narrow(2, hidden, hidden))  # dc_{t-1} = dc_t * f_t
            torch.bmm(dg, w_hh, out=grad_h_rec)  # (S, B, H)


class _StackThread:
    """A persistent worker thread with ONE intra-op thread that runs the second stack's step
    loop while the calling thread, switched to one intra-op thread for the time, runs the
    first stack's.

    Why: per step each stack does one (B x H) @ (H x 4H) product and ~15 element-wise ops of
    a few ten thousand elements. Split over two OpenMP threads, every one of those ops ends
    in a barrier, and on a shared machine a preempted thread stalls each of them (measured
    here, one core taken by another job: 5-7x slower than one thread). Two single-threaded
    loops side by side share nothing until the layer ends. torch.set_num_threads sets the
    calling thread's OpenMP and MKL thread counts (thread-local), so each side really runs
    on one thread; the caller's count is restored afterwards.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks = None
        self.pid = None

    def after_fork(self) -> None:
        """A forked child has no worker thread (and maybe a lock held by another thread)."""
        self.__init__()

    def _start(self) -> None:
        tasks: queue.SimpleQueue = queue.SimpleQueue()
        ready = threading.Event()

        def serve() -> None:
            torch.set_num_threads(1)
            ready.set()
            while True:
                fn, done = tasks.get()
                try:
                    fn()
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller
                    done.error = error
                done.set()

        threading.Thread(target=serve, name="musicgan-lstm-stack", daemon=True).start()
        ready.wait()
        self.tasks, self.pid = tasks, os.getpid()

    def run_pair(self, first: Callable[[], None], second: Callable[[], None]) -> None:
        """first() here and second() on the worker, each with one intra-op thread."""
        threads = torch.get_num_threads()
        inference = torch.is_inference_mode_enabled()

        def task() -> None:  # the caller's grad / inference mode (thread-local state)
            with torch.inference_mode(inference), torch.no_grad():
                second()

        with self.lock:
            if self.tasks is None or self.pid != os.getpid():  # (a forked child has no worker)
                self._start()
                torch.set_num_threads(threads)  # the global default the worker changed
            done = threading.Event()
            done.error = None  # type: ignore[attr-defined]
            self.tasks.put((task, done))
            torch.set_num_threads(1)
            try:
                first()
            finally:
                torch.set_num_threads(threads)
                done.wait()
            if done.error is not None:  # type: ignore[attr-defined]
                raise done.error  # type: ignore[attr-defined]


_STACK_THREAD = _StackThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_STACK_THREAD.after_fork)


def run_on_two_threads(first: Callable[[], None], second: Callable[[], None]) -> None:
    """first() on the calling thread and second() on the persistent worker, one intra-op
    thread each (the worker runs without autograd): the one two-thread runner of the package."""
    _STACK_THREAD.run_pair(first, second)


# Two stacks with >= 2 intra-op threads: their step loops run side by side on two threads
# (see _StackThread); False: one loop of batched products for both (also with 1 thread).
PARALLEL_STACKS = True


def _per_stack(loop: Callable, *arrays: torch.Tensor) -> None:
    """loop(*arrays) over all S stacks (dim 0 of every array), or, for two stacks and >= 2
    intra-op threads, each stack's slice on its own thread."""
    if (
        not PARALLEL_STACKS
        or arrays[0].shape[0] != 2
        or torch.get_num_threads() < 2
        # Dispatch modes (FlopCounterMode, FakeTensorMode, ...) are thread-local: the worker
        # thread would run outside them.
        or _get_current_dispatch_mode() is not None
    ):
        loop(*arrays)
        return
    first = [a[0:1] for a in arrays]
    second = [a[1:2] for a in arrays]
    run_on_two_threads(lambda: loop(*first), lambda: loop(*second))


def script_or_plain(plain: Callable) -> Callable:
    """`plain` scripted with TorchScript (it removes most of the per-op Python cost of a
    step loop's small ops), or `plain` itself where scripting fails or is disabled with
    MUSICGAN_NO_TORCHSCRIPT=1. Shared by this stack and the generator's free-running loop;
    callers cache the result (scripting costs ~0.5 s)."""
    if os.environ.get("MUSICGAN_NO_TORCHSCRIPT", "") in ("1", "true"):
        return plain
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # scripting is still supported
            return torch.jit.script(plain)
    except Exception:  # noqa: BLE001 - any scripting failure: keep the plain loop
        return plain


_compiled: dict[str, Callable] = {}


def _steps(name: str) -> Callable:
    """This stack's step loop `name` ("forward" | "backward"), scripted once per process."""
    if name not in _compiled:
        _compiled[name] = script_or_plain({"forward": _forward_layer_steps, "backward": _backward_layer_steps}[name])
    return _compiled[name]


def first_order_only(what: str):
    """For a hand-written `backward`: a double backward through it (a gradient penalty's
    `autograd.grad(create_graph=True)`) fails at once, in one line naming `what`. Without
    this the second derivative would silently miss the kernel's part of the graph; torch's
    `once_differentiable` alone fails only at the second backward, naming no model."""

    def wrap(backward):
        first_order = once_differentiable(backward)

        @functools.wraps(backward)
        def checked(ctx, *grads):
            if torch.is_grad_enabled():  # create_graph=True
                raise UserError(
                    f"{what} has a hand-written backward that cannot be differentiated twice "
                    "(no gradient penalty through it): give such a network torch layers"
                )
            return first_order(ctx, *grads)

        return checked

    return wrap


class _LSTMStackFunction(torch.autograd.Function):
    """S stacks of L LSTM layers over (S, T, B, F) inputs with a hand-written backward.

    Inputs: x (S, T, B, F); masks: None or (S, L-1, T, B, H) dropout multipliers (already
    scaled by 1/(1-p)) applied to the outputs of layers 0..L-2; then per layer
    w_ih (S, 4H, F_l), w_hh (S, 4H, H), bias (S, 4H) = b_ih + b_hh.
    Output: the top layer's h, (S, T, B, H).
    """

    @staticmethod
    def forward(ctx, x, masks, *layer_params):
        stacks, seq_len, batch, _ = x.shape
        num_layers = len(layer_params) // 3
        hidden = layer_params[1].shape[2]
        rows = seq_len * batch
        # Saved arrays, per layer: activated gates, cells (slot 0 = c_{-1} = 0), tanh of
        # cells, outputs h (all but the top: the top's is the returned tensor), and the
        # dropped-out outputs that feed the layer above. One pooled buffer for all of them.
        gate_shape, cell_shape = (stacks, seq_len, batch, 4 * hidden), (stacks, seq_len + 1, batch, hidden)
        h_shape = (stacks, seq_len, batch, hidden)
        shapes = [gate_shape, cell_shape, h_shape] * num_layers + [h_shape] * (num_layers - 1)
        if masks is not None:
            shapes += [h_shape] * (num_layers - 1)
        shapes.append((stacks, batch, 4 * hidden))  # per-step scratch
        flat = WORKSPACE.take((sum(math.prod(s) for s in shapes),), x)
        views = _carve(flat, shapes)
        work = views.pop()
        gates = views[0 : 3 * num_layers : 3]
        cells = views[1 : 3 * num_layers : 3]
        tanh_cells = views[2 : 3 * num_layers : 3]
        rest = views[3 * num_layers :]
        output = x.new_empty(h_shape)
        hs = rest[: num_layers - 1] + [output]
        layer_inputs = [x]
        for layer in range(num_layers):
            w_ih, w_hh, bias = layer_params[3 * layer : 3 * layer + 3]
            inputs = layer_inputs[layer]
            # The input projection of all T steps in one product: (S, T*B, F_l) @ (S, F_l, 4H).
            torch.baddbmm(
                bias.unsqueeze(1), inputs.reshape(stacks, rows, -1), w_ih.transpose(1, 2),
                out=gates[layer].view(stacks, rows, 4 * hidden),
            )  # fmt: skip
            cells[layer][:, 0].zero_()
            _per_stack(
                _steps("forward"), w_hh.detach().transpose(1, 2), gates[layer], cells[layer], tanh_cells[layer],
                hs[layer], work,
            )  # fmt: skip
            if layer + 1 < num_layers:
                if masks is not None:
                    dropped = rest[num_layers - 1 + layer]
                    torch.mul(hs[layer], masks[:, layer], out=dropped)
                    layer_inputs.append(dropped)
                else:
                    layer_inputs.append(hs[layer])
        ctx.save_for_backward(x, masks, output, *layer_params)
        # Pooled arrays live as long as this node (plain attributes: the node owns them).
        ctx.arrays = (gates, cells, tanh_cells, hs[:-1], layer_inputs[1:])
        ctx.lease = _Lease(flat)
        return output

    @staticmethod
    @first_order_only("the LSTM stack kernel (models/lstm_stack.py)")
    def backward(ctx, grad_output):
        x, masks, output, *layer_params = ctx.saved_tensors
        gates, cells, tanh_cells, lower_hs, upper_inputs = ctx.arrays
        hs = list(lower_hs) + [output]
        layer_inputs = [x] + list(upper_inputs)
        num_layers = len(layer_params) // 3
        full_batch = output.shape[2]
        first, stop = _live_rows(grad_output)
        if (first, stop) != (0, full_batch):
            # Rows outside [first, stop) get no gradient from above, hence none at all (the
            # rows of an LSTM never mix): backpropagate through the live rows only. C-RNN-GAN's
            # G loss on D's shared [real, fake] forward reaches the fake half only.
            def live(arrays):
                return [a.narrow(2, first, stop - first) for a in arrays]

            gates, cells, tanh_cells, hs, layer_inputs = map(live, (gates, cells, tanh_cells, hs, layer_inputs))
            masks = None if masks is None else masks.narrow(3, first, stop - first)
            grad_output = grad_output.narrow(2, first, stop - first)
        stacks, seq_len, batch, hidden = grad_output.shape
        rows = seq_len * batch
        needs = _wanted_gradients(ctx)
        # Scratch: the gate gradients (reused layer after layer), the gradient reaching the
        # outputs of the layer below.
        h_shape = (stacks, seq_len, batch, hidden)
        scratch = WORKSPACE.take((stacks * rows * 5 * hidden,), output)
        grad_gates, grad_below = _carve(scratch, [(stacks, seq_len, batch, 4 * hidden), h_shape])
        grad_hs = grad_output.contiguous()
        grads: list[Optional[torch.Tensor]] = [None] * len(layer_params)
        grad_x = None
        for layer in range(num_layers - 1, -1, -1):
            w_ih, w_hh, _ = layer_params[3 * layer : 3 * layer + 3]
            _per_stack(
                _steps("backward"), grad_hs, w_hh.detach(), gates[layer], cells[layer], tanh_cells[layer], grad_gates
            )  # fmt: skip
            flat_grad_gates = grad_gates.view(stacks, rows, 4 * hidden)
            inputs = layer_inputs[layer].reshape(stacks, rows, -1)
            # Weight gradients, one product over all T*B rows each (skipped when frozen).
            # (X^T G)^T rather than G^T X: the wide output runs faster in MKL (see crnngan).
            if needs[2 + 3 * layer]:
                grads[3 * layer] = torch.bmm(inputs.transpose(1, 2), flat_grad_gates).transpose(1, 2)
            if needs[3 + 3 * layer] and seq_len > 1:
                previous_h = hs[layer][:, : seq_len - 1].reshape(stacks, (seq_len - 1) * batch, hidden)
                later_gates = grad_gates[:, 1:].reshape(stacks, (seq_len - 1) * batch, 4 * hidden)
                grads[3 * layer + 1] = torch.bmm(previous_h.transpose(1, 2), later_gates).transpose(1, 2)
            elif needs[3 + 3 * layer]:
                grads[3 * layer + 1] = torch.zeros_like(w_hh)
            if needs[4 + 3 * layer]:
                grads[3 * layer + 2] = flat_grad_gates.sum(dim=1)
            # The input gradient, one product over all T*B rows: (S, T*B, 4H) @ (S, 4H, F_l).
            if layer > 0:
                torch.bmm(flat_grad_gates, w_ih, out=grad_below.view(stacks, rows, hidden))
                if masks is not None:
                    grad_below.mul_(masks[:, layer - 1])
                grad_hs = grad_below
            elif needs[0]:
                grad_x = torch.bmm(flat_grad_gates, w_ih).view(stacks, seq_len, batch, -1)
                if batch != full_batch:
                    live_grad_x, grad_x = grad_x, x.new_zeros(x.shape)
                    grad_x.narrow(2, first, batch).copy_(live_grad_x)
        WORKSPACE.give(scratch)
        return grad_x, None, *grads


def _live_rows(grad_output: torch.Tensor) -> tuple[int, int]:
    """[first, stop) of the batch rows (dim 2 of (S, T, B, H)) whose upstream gradient is not
    all zero; the whole batch when every row (or none) is live. One pass over the gradient."""
    live = grad_output.ne(0).any(dim=3).any(dim=1).any(dim=0).nonzero()
    if live.numel() == 0:
        return 0, grad_output.shape[2]
    return int(live[0]), int(live[-1]) + 1


def _wanted_gradients(ctx) -> list[bool]:
    """`ctx.needs_input_grad`, less the inputs whose gradient this backward pass drops: a
    `torch.autograd.grad(..., inputs=x)` through trainable weights (C-RNN-GAN's G loss on
    D's shared forward) asks for x's gradient only, and each weight gradient would cost a
    product over all T*B rows for nothing. Asks the autograd engine which nodes it will run
    (`torch._C._will_engine_execute_node`, what torch's own graph hooks use); where that is
    unavailable, computes every gradient (correct, slower)."""
    needs = list(ctx.needs_input_grad)
    try:
        for index, (node, _) in enumerate(ctx.next_functions):
            if needs[index] and node is not None and not torch._C._will_engine_execute_node(node):
                needs[index] = False
    except (AttributeError, RuntimeError):
        pass
    return needs


def lstm_parameters(lstm: nn.LSTM) -> list[list[torch.Tensor]]:
    """Per layer [w_ih (4H, F_l), w_hh (4H, H), b_ih (4H), b_hh (4H)] of a unidirectional
    nn.LSTM (no projections), the tensors themselves."""
    if lstm.bidirectional or lstm.proj_size or not lstm.bias:
        raise ValueError("lstm_stack runs unidirectional nn.LSTM with biases and no projection only")
    return [
        [getattr(lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        for layer in range(lstm.num_layers)
    ]


def draw_dropout_masks(lstm: nn.LSTM, seq_len: int, batch: int, like: torch.Tensor) -> torch.Tensor | None:
    """The dropout multipliers nn.LSTM would draw in training, in its order, from the global
    RNG: for each layer but the last, ATen's `at::dropout` on that layer's (T, B, H) output
    is `empty_like(out).bernoulli_(1 - p).div_(1 - p)`, then `out * noise`.
    Returns (L-1, T, B, H) or None (eval mode, p = 0 or one layer)."""
    p = lstm.dropout
    if not lstm.training or p == 0 or lstm.num_layers < 2:
        return None
    keep = 1 - p
    shape = (lstm.num_layers - 1, seq_len, batch, lstm.hidden_size)  # the layers' draws back to back
    if _rand_reproduces_bernoulli(like):
        uniform = WORKSPACE.take(shape, like.new_empty(0, dtype=torch.float64))  # 22 MB at the paper size
        masks = torch.rand(shape, dtype=torch.float64, out=uniform).lt(keep).to(like.dtype)
        WORKSPACE.give(uniform)
    else:
        masks = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(keep)
    return masks.div_(keep)


_BERNOULLI_CHECKED: dict[tuple[str, torch.dtype], bool] = {}


def _rand_reproduces_bernoulli(like: torch.Tensor) -> bool:
    """Whether `torch.rand(float64) < keep` draws exactly what `bernoulli_(keep)` draws.

    ATen's CPU bernoulli_(p) takes one 64-bit uniform per element and compares it with p,
    serially, as torch.rand(float64) does, but ~3x slower (22 vs 8 ms for 1.4 M elements
    here); builds that take MKL's bernoulli (some Intel CPUs) draw otherwise. Checked once per
    device type and dtype on a small draw (values and the generator state after it), the
    global RNG state restored either way."""
    key = (like.device.type, like.dtype)
    if key not in _BERNOULLI_CHECKED:
        same = False
        if like.device.type == "cpu":
            state = torch.get_rng_state()
            try:
                expected = torch.empty(4099, dtype=like.dtype).bernoulli_(0.3)
                after_expected = torch.get_rng_state()
                torch.set_rng_state(state)
                drawn = torch.rand(4099, dtype=torch.float64).lt_(0.3).to(like.dtype)
                same = torch.equal(drawn, expected) and torch.equal(torch.get_rng_state(), after_expected)
            finally:
                torch.set_rng_state(state)
        _BERNOULLI_CHECKED[key] = same
    return _BERNOULLI_CHECKED[key]


def run_lstm_stacks(
    lstms: Sequence[nn.LSTM], inputs: Sequence[torch.Tensor], batched: bool = True
) -> list[torch.Tensor]:
    """Run each unidirectional nn.LSTM of `lstms` on its (T, B, F) input (batch second, zero
    initial state) like `lstm(input)[0]`, with the same dropout draws in the same order
    (every stack's masks are drawn before any compute, stack after stack, as consecutive
    nn.LSTM calls draw them). Returns each stack's top-layer outputs (T, B, H).

    batched=True runs all stacks (same sizes required) in one loop with batched products;
    False runs them one after the other."""
    seq_len, batch = inputs[0].shape[0], inputs[0].shape[1]
    masks = [draw_dropout_masks(lstm, seq_len, batch, inputs[0]) for lstm in lstms]
    groups = [list(range(len(lstms)))] if batched else [[k] for k in range(len(lstms))]
    outputs: list[torch.Tensor] = [None] * len(lstms)  # type: ignore[list-item]
    for group in groups:
        params = [lstm_parameters(lstms[k]) for k in group]
        flat: list[torch.Tensor] = []
        for layer in range(len(params[0])):
            w_ih = [p[layer][0] for p in params]
            w_hh = [p[layer][1] for p in params]
            bias = [p[layer][2] + p[layer][3] for p in params]
            flat += [_stack(w_ih), _stack(w_hh), _stack(bias)]
        group_masks = None
        if masks[group[0]] is not None:
            group_masks = _stack([masks[k] for k in group])
        x = _stack([inputs[k] for k in group]).contiguous()
        out = _LSTMStackFunction.apply(x, group_masks, *flat)  # (S, T, B, H)
        for index, k in enumerate(group):
            outputs[k] = out[index]
    return outputs


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack, or a view (no copy) for a single tensor."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)
