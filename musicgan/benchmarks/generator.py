"""Generator speed: the optimised free-running C-RNN-GAN loop against the plain eager
nn.LSTMCell loop with the same parameters and the same random draws.

One measurement = generator forward (training mode, dropout on) + backward of a fixed
upstream gradient, i.e. the generator's share of an adversarial G step. The two
implementations alternate (fast, reference, fast, ...) so that load drifting on a shared
machine hits both alike; the reported figures are medians after warm-up.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch

from musicgan.models.crnngan import CRNNGenerator, reference_free_running


def _time_step(run, batch_size: int, seq_len: int, grad: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for one forward + backward.

    CPU time counts only the time this process actually ran: on a machine shared with other
    work it is the steadier figure (with one thread it is the compute time itself)."""
    if grad.device.type == "cuda":
        torch.cuda.synchronize(grad.device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = run(batch_size, seq_len)
    out.backward(grad)
    if grad.device.type == "cuda":
        torch.cuda.synchronize(grad.device)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_generator(
    batch_sizes: tuple[int, ...] = (20, 64),
    seq_len: int = 100,
    hidden: int = 350,
    layers: int = 2,
    num_features: int = 4,
    repeats: int = 7,
    warmup: int = 2,
    threads: int | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> dict:
    """Forward+backward time of the free-running generator, optimised vs plain eager.

    Defaults are the paper preset (hidden 350, 2 layers, length 100, 4 features).
    `threads` sets torch's intra-op threads for the measurement (None: leave as configured).
    Returns a JSON-ready dict: per batch size the median seconds of each implementation,
    the median per time step, the speedup (median reference / median fast) and the median
    of the per-pair ratios, plus `generator_speedup`, the geometric mean of the per-batch
    speedups, and `generator_speedup_min`; the same from process CPU time
    (`speedup_cpu_time`, `generator_speedup_cpu_time`), steadier on a shared machine.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        generator = CRNNGenerator(num_features, hidden=hidden, layers=layers).to(device).train()
        fast = generator
        reference = lambda b, t: reference_free_running(generator, b, t)  # noqa: E731
        per_batch = {}
        for batch_size in batch_sizes:
            grad = torch.randn(batch_size, seq_len, num_features, device=device)
            for _ in range(warmup):
                _time_step(fast, batch_size, seq_len, grad)
                _time_step(reference, batch_size, seq_len, grad)
            fast_runs, reference_runs = [], []
            for _ in range(repeats):
                fast_runs.append(_time_step(fast, batch_size, seq_len, grad))
                reference_runs.append(_time_step(reference, batch_size, seq_len, grad))
                generator.zero_grad(set_to_none=True)
            fast_times = [wall for wall, _ in fast_runs]
            reference_times = [wall for wall, _ in reference_runs]
            fast_s = statistics.median(fast_times)
            reference_s = statistics.median(reference_times)
            fast_cpu_s = statistics.median(cpu for _, cpu in fast_runs)
            reference_cpu_s = statistics.median(cpu for _, cpu in reference_runs)
            per_batch[str(batch_size)] = {
                "fast_s": fast_s,
                "reference_s": reference_s,
                "fast_ms_per_timestep": 1e3 * fast_s / seq_len,
                "reference_ms_per_timestep": 1e3 * reference_s / seq_len,
                "speedup": reference_s / fast_s,
                # median of per-pair ratios: robust to load that drifts between pairs
                "speedup_paired_median": statistics.median(r / f for f, r in zip(fast_times, reference_times)),
                "fast_cpu_s": fast_cpu_s,
                "reference_cpu_s": reference_cpu_s,
                "speedup_cpu_time": reference_cpu_s / fast_cpu_s,
                "fast_all_s": fast_times,
                "reference_all_s": reference_times,
            }
        speedups = [entry["speedup"] for entry in per_batch.values()]
        cpu_speedups = [entry["speedup_cpu_time"] for entry in per_batch.values()]
        return {
            "generator_speedup": statistics.geometric_mean(speedups),
            "generator_speedup_min": min(speedups),
            "generator_speedup_cpu_time": statistics.geometric_mean(cpu_speedups),
            "per_batch": per_batch,
            "settings": {
                "seq_len": seq_len,
                "hidden": hidden,
                "layers": layers,
                "num_features": num_features,
                "repeats": repeats,
                "warmup": warmup,
                "threads": torch.get_num_threads(),
                "device": device,
                "torch": torch.__version__,
                "machine": platform.processor() or platform.machine(),
            },
            "what": "generator forward+backward (train mode) per call; optimised loop vs eager nn.LSTMCell loop",
        }
    finally:
        torch.set_num_threads(previous_threads)


if __name__ == "__main__":  # python -m musicgan.benchmarks.generator [threads]
    import json
    import sys

    result = bench_generator(threads=int(sys.argv[1]) if len(sys.argv) > 1 else None)
    for entry in result["per_batch"].values():
        entry.pop("fast_all_s")
        entry.pop("reference_all_s")
    print(json.dumps(result, indent=2))
