"""G's per-step recurrent products on one or two threads: is splitting them worth it?

The generator's free-running loop (musicgan.models.free_running) does, per layer and step,
one product [x_t | h_{t-1}] (B x 2H) @ [W_ih | W_hh]^T (2H x 4H) and the LSTM cell's
element-wise work; the next layer-step needs the whole h. This module times that forward
recurrence (L layers, T steps, B rows; the paper's 2, 100, 20 at H = 350) in these ways:

  one_1t        one product per layer-step, 1 intra-op thread
  one_2t        one product per layer-step, 2 intra-op threads (OpenMP splits each op)
  split_hidden  the caller and lstm_stack's persistent worker thread, one intra-op thread each; each owns half of
                the hidden units (its rows of W: a (2H x 2H) product) and their cell update,
                with one threading.Barrier per layer-step (torch releases the GIL inside
                its ops, the Python between them does not)
  split_batch   the same two threads, each the whole recurrence for half of the
                batch rows (rows never mix in G's forward: no barrier until the end)

and, for each, `products` alone (the product and a copy of the new h: the products' rate
without the cell's element-wise ops) and `cell` (the product and the real cell update).
Layer 0's x_t is a fixed input here (G computes it from the previous output: two tiny
products, left out). Forward only: G's backward has the transposed products
((B x 4H) @ (4H x 2H)) and would split the same way.

Variants run in alternation (one_1t, one_2t, split_hidden, split_batch, one_1t, ...),
medians of wall and process CPU seconds after warm-up.
Run: python -m musicgan.benchmarks.split_product [repeats] [hidden] [batch] [steps]
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import torch

from musicgan.benchmarks.timing import machine_load, median
from musicgan.models.lstm_stack import run_on_two_threads

VARIANTS = ("one_1t", "one_2t", "split_hidden", "split_batch")
KINDS = ("products", "cell")


class Recurrence:
    """Buffers and weights of an L-layer LSTM forward over T steps, laid out as G's loop
    keeps them: inputs[l][t] = [x_{l,t} | h_{l,t-1}] (B, 2H), gates (i, f, o, g) per unit."""

    def __init__(self, batch: int, hidden: int, layers: int, steps: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        scale = hidden**-0.5
        self.hidden, self.layers, self.steps = hidden, layers, steps
        self.weights_t = [
            (torch.rand(4 * hidden, 2 * hidden, generator=generator) * 2 - 1).mul_(scale).t() for _ in range(layers)
        ]
        self.biases = [torch.zeros(4 * hidden) for _ in range(layers)]
        self.first_x = torch.rand(steps, batch, hidden, generator=generator)
        self.inputs = torch.zeros(layers, steps + 1, batch, 2 * hidden)
        self.top = torch.zeros(steps, batch, hidden)
        self.cells = torch.zeros(layers, steps + 1, batch, hidden)
        self.gates = torch.zeros(layers, steps, batch, 4 * hidden)

    def reset(self) -> None:
        self.inputs.zero_()
        self.inputs[0, : self.steps, :, : self.hidden] = self.first_x
        self.cells.zero_()


def _units(hidden: int, part: int, parts: int) -> slice:
    width = hidden // parts
    return slice(part * width, hidden if part == parts - 1 else (part + 1) * width)


def _gate_rows(hidden: int, units: slice) -> torch.Tensor:
    """Rows of W (gates i, f, o, g stacked) that feed `units`: four blocks of the same units."""
    return torch.cat([torch.arange(g * hidden + units.start, g * hidden + units.stop) for g in range(4)])


class HalfStep:
    """One thread's share of every layer-step: the gates of its hidden units (or all of
    them) for its rows, and what it writes where the next layer-step reads."""

    def __init__(self, r: Recurrence, units: slice, rows: slice, cell: bool) -> None:
        self.r, self.units, self.rows, self.cell = r, units, rows, cell
        rows_w = _gate_rows(r.hidden, units)
        self.weights_t = [w[:, rows_w].contiguous() for w in r.weights_t]
        self.biases = [b[rows_w].contiguous() for b in r.biases]
        width = units.stop - units.start
        self.gates = torch.zeros(r.layers, r.steps, rows.stop - rows.start, 4 * width)

    def layer_step(self, layer: int, t: int) -> None:
        r, u, rows = self.r, self.units, self.rows
        h = r.hidden
        width = u.stop - u.start
        g = self.gates[layer, t]
        torch.addmm(self.biases[layer], r.inputs[layer, t, rows], self.weights_t[layer], out=g)
        new_h = r.inputs[layer, t + 1, rows, h + u.start : h + u.stop]
        if self.cell:
            torch.sigmoid(g[:, : 3 * width], out=g[:, : 3 * width])
            torch.tanh(g[:, 3 * width :], out=g[:, 3 * width :])
            c = r.cells[layer, t + 1, rows, u]
            torch.mul(g[:, width : 2 * width], r.cells[layer, t, rows, u], out=c)
            c.addcmul_(g[:, :width], g[:, 3 * width :])
            torch.mul(g[:, 2 * width : 3 * width], torch.tanh(c), out=new_h)
        else:
            new_h.copy_(g[:, :width])
        above = r.inputs[layer + 1, t, rows, u] if layer + 1 < r.layers else r.top[t, rows, u]
        above.copy_(new_h)


def run_one(r: Recurrence, cell: bool) -> Callable[[], None]:
    """The whole recurrence as one product per layer-step (threads: the caller's setting)."""
    whole = HalfStep(r, slice(0, r.hidden), slice(0, r.inputs.shape[2]), cell)

    def run() -> None:
        for t in range(r.steps):
            for layer in range(r.layers):
                whole.layer_step(layer, t)

    return run


def run_split_hidden(r: Recurrence, cell: bool) -> Callable[[], None]:
    """Each thread its half of the hidden units for all rows; one barrier per layer-step
    (the next one reads the whole h)."""
    rows = slice(0, r.inputs.shape[2])
    halves = [HalfStep(r, _units(r.hidden, k, 2), rows, cell) for k in range(2)]
    barrier = threading.Barrier(2)

    def loop(half: HalfStep) -> Callable[[], None]:
        def run() -> None:
            for t in range(r.steps):
                for layer in range(r.layers):
                    half.layer_step(layer, t)
                    barrier.wait()

        return run

    return lambda: run_on_two_threads(loop(halves[0]), loop(halves[1]))


def run_split_batch(r: Recurrence, cell: bool) -> Callable[[], None]:
    """Each thread the whole recurrence for half of the rows; no barrier until the end."""
    batch = r.inputs.shape[2]
    halves = [HalfStep(r, slice(0, r.hidden), _units(batch, k, 2), cell) for k in range(2)]

    def loop(half: HalfStep) -> Callable[[], None]:
        def run() -> None:
            for t in range(r.steps):
                for layer in range(r.layers):
                    half.layer_step(layer, t)

        return run

    return lambda: run_on_two_threads(loop(halves[0]), loop(halves[1]))


def variant_calls(r: Recurrence, cell: bool) -> dict[str, tuple[int, Callable[[], None]]]:
    """{variant: (intra-op threads of the calling thread, call)}."""
    one = run_one(r, cell)
    return {
        "one_1t": (1, one),
        "one_2t": (2, one),
        "split_hidden": (1, run_split_hidden(r, cell)),
        "split_batch": (1, run_split_batch(r, cell)),
    }


def result_of(r: Recurrence, call: Callable[[], None], threads: int) -> torch.Tensor:
    """The top layer's outputs of one run (what the variants must agree on)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        r.reset()
        call()
    finally:
        torch.set_num_threads(previous)
    return r.top.clone()


def product_flops(batch: int, hidden: int, layers: int, steps: int) -> float:
    return float(layers * steps * 2 * batch * (2 * hidden) * (4 * hidden))


def bench_split_product(
    repeats: int = 15, warmup: int = 3, hidden: int = 350, batch: int = 20, layers: int = 2, steps: int = 100
) -> dict:
    """Median seconds (wall and process CPU) per variant and kind, alternated; GFLOP/s of
    the products; each variant's speed-up over one_1t."""
    previous = torch.get_num_threads()
    load_start = machine_load()
    results: dict = {}
    try:
        for kind in KINDS:
            r = Recurrence(batch, hidden, layers, steps)
            calls = variant_calls(r, kind == "cell")
            wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
            cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for rep in range(warmup + repeats):
                for variant in VARIANTS:
                    threads, call = calls[variant]
                    torch.set_num_threads(threads)
                    r.reset()
                    start, cpu_start = time.perf_counter(), time.process_time()
                    call()
                    if rep >= warmup:
                        wall[variant].append(time.perf_counter() - start)
                        cpu[variant].append(time.process_time() - cpu_start)
            torch.set_num_threads(previous)
            work = product_flops(batch, hidden, layers, steps)
            entry: dict = {}
            for variant in VARIANTS:
                wall_s, cpu_s = median(wall[variant]), median(cpu[variant])
                entry[variant] = {
                    "wall_s": wall_s,
                    "cpu_s": cpu_s,
                    "product_gflop_per_s": work / wall_s / 1e9,
                    "product_gflop_per_cpu_s": work / cpu_s / 1e9,  # both threads' CPU where two run
                    "speedup_vs_one_1t": median(wall["one_1t"]) / wall_s,
                    "all_wall_s": wall[variant],
                }
            results[kind] = entry
    finally:
        torch.set_num_threads(previous)
    results["settings"] = {
        "batch": batch,
        "hidden": hidden,
        "layers": layers,
        "steps": steps,
        "repeats": repeats,
        "warmup": warmup,
        "product_gflop": product_flops(batch, hidden, layers, steps) / 1e9,
        "torch": torch.__version__,
        "load_average_start": load_start,
        "load_average_end": machine_load(),
    }
    return results


if __name__ == "__main__":  # python -m musicgan.benchmarks.split_product [repeats] [hidden] [batch] [steps]
    import json
    import sys

    arguments = [int(a) for a in sys.argv[1:]]
    names = ("repeats", "hidden", "batch", "steps")
    result = bench_split_product(**dict(zip(names, arguments)))
    for kind in KINDS:
        for variant in VARIANTS:
            result[kind][variant].pop("all_wall_s")
    print(json.dumps(result, indent=2))
