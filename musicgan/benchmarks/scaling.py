"""Data-parallel scaling: samples/s of the real training step with W processes (gloo on CPU,
NCCL on GPUs), one intra-op thread per process on CPU, against one process.

Each process is a real rank spawned with torch.multiprocessing; it builds the real Trainer
(the DDP backend wraps both networks at W > 1), replays one real batch of its own, and times
the training loop step by step. Next to it, the same rank times the bare hand-written step
on DDP-wrapped copies of the networks, so the JSON also holds the trainer's overhead under
real DDP (`trainer_overhead_ratio` at W = 2).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from musicgan.benchmarks.timing import median


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _env(**values: str):
    """Set environment variables for the spawned ranks (they inherit them), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _rank_main(
    rank: int,
    world_size: int,
    port: int,
    data_dir: str,
    overrides: list[str],
    steps: int,
    warmup: int,
    threads: int | None,
    out_dir: str,
) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    if threads is not None:
        torch.set_num_threads(threads)
    from musicgan.benchmarks.timing import sync
    from musicgan.benchmarks.trainer_step import bare_copies, bare_step, build_trainer, first_batch, run_trainer_steps
    from musicgan.benchmarks.workload import bench_config
    from musicgan.distributed.env import exit_now, init_distributed, teardown

    cfg = bench_config(data_dir, overrides)
    env = init_distributed(timeout_s=300.0)
    try:
        trainer = build_trainer(cfg, Path(out_dir) / "run", env)
        batch = first_batch(trainer, cfg.curriculum.max_len)
        nets = bare_copies(trainer, distributed=env.world_size > 1)
        bare_s, bare_cpu_s = [], []

        def timed_bare_step():  # runs between two trainer steps, so both see the same load
            sync(env.device)
            start, cpu_start = time.perf_counter(), time.process_time()
            bare_step(nets, batch, cfg, env.device)
            sync(env.device)
            bare_s.append(time.perf_counter() - start)
            bare_cpu_s.append(time.process_time() - cpu_start)

        # All steps in ONE pass of the real loop (per-epoch work such as the skipped-sample
        # all-reduce happens once, as in training); the last step is not timed.
        trainer_s, trainer_cpu_s = run_trainer_steps(trainer, batch, warmup + steps + 1, between=timed_bare_step)
        trainer_s, trainer_cpu_s = trainer_s[warmup:], trainer_cpu_s[warmup:]
        bare_s, bare_cpu_s = bare_s[warmup:], bare_cpu_s[warmup:]
        trainer.logger.close()
        if env.is_main:
            result = {
                "world_size": env.world_size,
                "threads": torch.get_num_threads(),
                "trainer_s": trainer_s,
                "bare_s": bare_s,
                "trainer_cpu_s": trainer_cpu_s,
                "bare_cpu_s": bare_cpu_s,
                "batch_size": cfg.data.batch_size,
                "seq_len": cfg.curriculum.max_len,
                "backend": "nccl" if env.device.type == "cuda" else ("gloo" if env.world_size > 1 else "none"),
                "ddp_wrapped": env.world_size > 1,
            }
            (Path(out_dir) / "result.json").write_text(json.dumps(result))
    finally:
        teardown(env)
    exit_now(0)  # results written and group torn down: skip finalisation (see exit_now)


def run_ranks(
    world_size: int, data_dir: str, overrides: list[str], *, steps: int, warmup: int, threads: int | None
) -> dict:
    """Spawn `world_size` real ranks; rank 0's timings (seconds per step) come back."""
    with tempfile.TemporaryDirectory(prefix="musicgan-bench-ranks-") as out_dir:
        env = {"OMP_NUM_THREADS": str(threads)} if threads is not None else {}
        with _env(**env):
            torch.multiprocessing.spawn(
                _rank_main,
                args=(world_size, free_port(), data_dir, overrides, steps, warmup, threads, out_dir),
                nprocs=world_size,
                join=True,
            )
        return json.loads((Path(out_dir) / "result.json").read_text())


def bench_scaling(
    data_dir: str, overrides: list[str], *, steps: int, warmup: int, world_size: int = 2, device: torch.device
) -> dict:
    """samples/s at W ranks over samples/s at 1 rank, each rank one thread on CPU."""
    threads = 1 if device.type == "cpu" else None
    if device.type == "cuda" and torch.cuda.device_count() < world_size:
        return {"skipped": f"{torch.cuda.device_count()} GPU(s) < {world_size} ranks"}
    single = run_ranks(1, data_dir, overrides, steps=steps, warmup=warmup, threads=threads)
    multi = run_ranks(world_size, data_dir, overrides, steps=steps, warmup=warmup, threads=threads)
    batch = single["batch_size"]
    single_rate = batch / median(single["trainer_s"])
    multi_rate = world_size * batch / median(multi["trainer_s"])
    return {
        "ddp_scaling_ratio": multi_rate / single_rate,
        "samples_per_s_1": single_rate,
        f"samples_per_s_{world_size}": multi_rate,
        "ideal_ratio": float(world_size),
        # The trainer against a bare step of DDP-wrapped copies, measured in the W-rank run.
        "trainer_overhead_ratio_ddp": median(multi["bare_s"]) / median(multi["trainer_s"]),
        "trainer_overhead_ratio_single": median(single["bare_s"]) / median(single["trainer_s"]),
        # From CPU time (one thread per rank: little affected by other jobs; includes gloo waits).
        "trainer_overhead_ratio_ddp_cpu_time": median(multi["bare_cpu_s"]) / median(multi["trainer_cpu_s"]),
        "single_rank_cpu_s_per_step": median(single["trainer_cpu_s"]),
        # Upper estimate for when each rank owns a core: W x (CPU s/step at 1 rank) / (CPU
        # s/step at W ranks). Excludes time spent blocked in collectives: not a measurement
        # of scaling, a check of whether a low wall-time ratio comes from lost CPU share.
        "ddp_scaling_cpu_time_bound": world_size * median(single["trainer_cpu_s"]) / median(multi["trainer_cpu_s"]),
        "single": single,
        "multi": multi,
        "threads_per_rank": threads,
    }
