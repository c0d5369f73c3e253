"""`musicgan bench`: the speed suite, every ratio measured in one run on this machine.

  trainer_overhead_ratio  bare hand-written step time / musicgan's full step time (>= 0.95)
  generator_speedup       eager nn.LSTMCell loop / musicgan's free-running loop, fwd+bwd (>= 1.2)
  data_headroom_ratio     shard streaming samples/s (1 worker) / trainer samples/s (>= 20)
  ddp_scaling_ratio       samples/s with 2 ranks / 1 rank, one thread each (>= 1.7)
  flops_utilisation       training step FLOP/s / measured large-matmul FLOP/s (>= 0.8)
  reference_port_ratio    musicgan's events/s / the public PyTorch port's step written in its
                          style (reference_port.py), timed in alternation (>= 2)
  families                every other family's real step vs a bare step of it (families.py;
                          a table per family, ratio real / bare throughput, >= 0.95 like the first)
  scaling_curves          last: step, prepare and evaluate cost against the sizes on a small
                          grid (curves.suite_section), fitted, four PNGs in `plots`

Figures are medians of several repetitions after warm-up; things compared in one ratio are
timed in alternation (see timing.py). Returns the results dict (with the Markdown table
under "markdown"), prints the table, and writes the JSON to `out` when given.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from musicgan.benchmarks import data_path, dataset, families, flops, scaling, trainer_step, workload
from musicgan.benchmarks.timing import machine_load, median, summary, time_call, torch_threads

TARGETS = {
    "trainer_overhead_ratio": 0.95,
    "generator_speedup": 1.2,
    "data_headroom_ratio": 20.0,
    "ddp_scaling_ratio": 1.7,
    "flops_utilisation": 0.8,
    "reference_port_ratio": 2.0,
}

# Repetitions per mode. Full: the paper preset; quick: toy sizes, just the plumbing.
SETTINGS = {
    "full": {
        "songs": 64,
        "steps_per_block": None,
        "warmup_steps": 3,
        "repeats": 3,
        "gen_repeats": 3,
        "gen_warmup": 1,
        "stream_batches": 40,
        "stream_repeats": 3,
        "bach_songs": 24,
        "scaling_steps": 6,
        "scaling_warmup": 2,
        "large_matmul": 2048,
        "family_warmup": 3,
        "family_repeats": 9,
        "port_warmup": 2,
        "port_repeats": 9,
        "threads": None,
    },
    "quick": {
        "songs": 12,
        "steps_per_block": 2,
        "warmup_steps": 2,
        "repeats": 2,
        "gen_repeats": 2,
        "gen_warmup": 1,
        "stream_batches": 8,
        "stream_repeats": 2,
        "bach_songs": 2,
        "scaling_steps": 2,
        "scaling_warmup": 1,
        "large_matmul": 512,
        "family_warmup": 1,
        "family_repeats": 2,
        "port_warmup": 1,
        "port_repeats": 2,
        "threads": 1,
    },
}


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_1min_start": machine_load(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _block_sums(values: list[float], block: int) -> list[float]:
    """Sums of consecutive runs of `block` values (a trailing partial run is dropped)."""
    return [sum(values[i : i + block]) for i in range(0, len(values) - block + 1, block)]


def _step_shape(trainer) -> flops.StepShape:
    cfg, generator = trainer.cfg, trainer.backend.module("generator")
    return flops.StepShape(
        g_hidden=cfg.model.g_hidden,
        g_layers=cfg.model.g_layers,
        d_hidden=cfg.model.d_hidden,
        d_layers=cfg.model.d_layers,
        batch_size=cfg.data.batch_size,
        seq_len=cfg.curriculum.max_len,
        num_features=trainer.representation.num_features,
        noise_dim=generator.noise_dim,
        shared_d_forward=cfg.model.crnngan_shared_d_forward,
    )


def bench_training_step(data_dir: Path, run_dir: Path, overrides: list[str], s: dict, device: torch.device) -> dict:
    """Trainer vs bare step (world 1), and the step's FLOP/s against matmul FLOP/s, all in
    the same interleaved rounds."""
    from musicgan.distributed.env import init_distributed

    cfg = workload.bench_config(str(data_dir), overrides)
    env = init_distributed(cfg.dist.timeout_s)
    with trainer_step.open_trainer(cfg, run_dir, env) as trainer:
        batch = trainer_step.first_batch(trainer, cfg.curriculum.max_len)
        nets = trainer_step.bare_copies(trainer)
        block = s["steps_per_block"] or cfg.log.interval  # every block holds exactly one log write
        warmup = s["warmup_steps"]  # allocator, pooled buffers, TorchScript profiling runs

        large = s["large_matmul"]
        lstm_shape = (cfg.data.batch_size, 2 * cfg.model.g_hidden, 4 * cfg.model.g_hidden)
        matmul = {"large": (large, large, large), "lstm_step": lstm_shape}
        matmul_calls = {name: flops.MatmulLoop(shape, env.device) for name, shape in matmul.items()}
        loops = {name: call.loops for name, call in matmul_calls.items()}

        # One pass of the real loop; after each trainer iteration (timed by the replayed
        # loader) one bare step, and after each block the matmul probes: alternation, so
        # all of them see the same machine load.
        wall: dict[str, list[float]] = {"bare": []}
        cpu: dict[str, list[float]] = {"bare": []}
        iteration = [0]

        def between():
            iteration[0] += 1
            cpu_start = time.process_time()
            seconds = time_call(lambda: trainer_step.bare_step(nets, batch, cfg, env.device), env.device)
            wall["bare"].append(seconds)
            cpu["bare"].append(time.process_time() - cpu_start)
            if iteration[0] > warmup and (iteration[0] - warmup) % block == 0:
                for name, call in matmul_calls.items():
                    cpu_start = time.process_time()
                    wall.setdefault(f"matmul_{name}", []).append(time_call(call, env.device))
                    cpu.setdefault(f"matmul_{name}", []).append(time.process_time() - cpu_start)

        total = warmup + s["repeats"] * block + 1  # the loop's last step is not timed
        wall["trainer"], cpu["trainer"] = trainer_step.run_trainer_steps(trainer, batch, total, between=between)
        times = {
            "trainer": _block_sums(wall["trainer"][warmup:], block),
            "bare": _block_sums(wall["bare"][warmup:], block),
            **{k: v for k, v in wall.items() if k.startswith("matmul_")},
        }
        cpu_blocks = {k: _block_sums(cpu[k][warmup:], block) for k in ("trainer", "bare")}
        # Headline: medians of the per-step times (robust to bursts of other jobs, which
        # can triple a few steps on this shared machine); the block figures (median of 10-step
        # sums, each with one log write) are kept beside them. Logging adds a few ms every
        # `interval` steps of ~1 s: within the noise of either.
        trainer_s = median(wall["trainer"][warmup:])
        bare_s = median(wall["bare"][warmup:])
        shape = _step_shape(trainer)
        counted = flops.training_step_flops(shape)
        matmul_rates = {
            name: 2.0 * math.prod(matmul[name]) * loops[name] / median(times[f"matmul_{name}"]) for name in matmul
        }
        step_flops_per_s = counted["total"] / trainer_s
        # The same from CPU seconds: with one thread, work per CPU second barely depends on
        # what else runs on the machine (with more threads it counts spinning threads too).
        trainer_cpu_s = median(cpu["trainer"][warmup:])
        matmul_cpu_rates = {
            name: 2.0 * math.prod(matmul[name]) * loops[name] / median(cpu[f"matmul_{name}"]) for name in matmul
        }

        # FlopCounterMode on one bare step (and on G alone) to check the analytic count.
        generator = nets.generator
        flop_counter_step = flops.count_with_flop_counter(lambda: trainer_step.bare_step(nets, batch, cfg, env.device))
        flop_counter_generator = flops.count_with_flop_counter(
            lambda: generator(shape.batch_size, shape.seq_len).sum().backward()
        )
        nets.opt_g.zero_grad(set_to_none=True)
        return {
            "trainer_step_s": trainer_s,
            "bare_step_s": bare_s,
            "trainer_overhead_ratio": bare_s / trainer_s,
            "samples_per_s": cfg.data.batch_size / trainer_s,
            "bare_samples_per_s": cfg.data.batch_size / bare_s,
            "steps_per_block": block,
            "log_interval": cfg.log.interval,
            "tensorboard": cfg.log.tensorboard,
            "progress_bar": cfg.log.progress,
            "world_size": env.world_size,
            "wrapper": "DDPBackend at world size 1: MethodDispatch, no DistributedDataParallel "
            "(the backend wraps DDP only at world size > 1; see ddp_scaling for DDP)",
            "trainer_overhead_ratio_blocks": median(times["bare"]) / median(times["trainer"]),
            "trainer_block": summary(times["trainer"]),
            "bare_block": summary(times["bare"]),
            # The same ratio from process CPU time (less sensitive to other jobs on the machine).
            "trainer_overhead_ratio_cpu_time": median(cpu["bare"][warmup:]) / median(cpu["trainer"][warmup:]),
            "trainer_overhead_ratio_cpu_time_blocks": median(cpu_blocks["bare"]) / median(cpu_blocks["trainer"]),
            "trainer_step_all_s": wall["trainer"],
            "bare_step_all_s": wall["bare"],
            "flops": {
                "method": "analytic (products of LSTM and linear layers, 2mkn); flop_counter_step: "
                "FlopCounterMode on the same step (sees G's loop and D's CPU LSTM stack; "
                "nothing of nn.LSTM)",
                "step_flops": counted,
                "flop_counter_step": flop_counter_step,
                "flop_counter_generator_fwd_bwd": flop_counter_generator,
                "analytic_generator_fwd_bwd": counted["generator_forward"] + counted["generator_backward"],
                "step_flops_per_s": step_flops_per_s,
                "matmul_flops_per_s": matmul_rates,
                "matmul_shapes": {name: list(shape) for name, shape in matmul.items()},
                "utilisation_vs_lstm_step_product": step_flops_per_s / matmul_rates["lstm_step"],
                "cpu_time": {
                    "threads": torch.get_num_threads(),
                    "trainer_step_cpu_s": trainer_cpu_s,
                    "step_flops_per_cpu_s": counted["total"] / trainer_cpu_s,
                    "matmul_flops_per_cpu_s": matmul_cpu_rates,
                    "flops_utilisation": counted["total"] / trainer_cpu_s / matmul_cpu_rates["large"],
                    "utilisation_vs_lstm_step_product": counted["total"]
                    / trainer_cpu_s
                    / matmul_cpu_rates["lstm_step"],
                },
            },
            "flops_utilisation": step_flops_per_s / matmul_rates["large"],
            "shape": shape.__dict__,
        }


def bench_reference_port(data_dir: Path, run_dir: Path, overrides: list[str], s: dict) -> dict:
    """musicgan's real training loop (world 1, replayed batch) against the port-style step
    (reference_port.py) on the same batch, one port step after each trainer iteration;
    events/s = batch x length / step seconds, medians after warm-up."""
    from musicgan.benchmarks import reference_port
    from musicgan.distributed.env import init_distributed

    cfg = workload.bench_config(str(data_dir), overrides)
    env = init_distributed(cfg.dist.timeout_s)
    with trainer_step.open_trainer(cfg, run_dir, env) as trainer:
        batch = trainer_step.first_batch(trainer, cfg.curriculum.max_len)
        real = batch.x.to(env.device)
        port = reference_port.build_port(cfg, trainer.representation.num_features)
        port.generator.to(env.device)
        port.discriminator.to(env.device)
        wall: list[float] = []
        cpu: list[float] = []

        def between():
            cpu_start = time.process_time()
            wall.append(time_call(lambda: reference_port.port_step(port, real), env.device))
            cpu.append(time.process_time() - cpu_start)

        warmup = s["port_warmup"]
        ours_wall, ours_cpu = trainer_step.run_trainer_steps(trainer, batch, warmup + s["port_repeats"] + 1, between)
        events = real.shape[0] * real.shape[1]
        ours_s, port_s = median(ours_wall[warmup:]), median(wall[warmup:])
        return {
            "events_per_step": events,
            "musicgan_step_s": ours_s,
            "port_step_s": port_s,
            "musicgan_events_per_s": events / ours_s,
            "port_events_per_s": events / port_s,
            "reference_port_ratio": port_s / ours_s,
            "reference_port_ratio_cpu_time": median(cpu[warmup:]) / median(ours_cpu[warmup:]),
            "shared_d_forward": cfg.model.crnngan_shared_d_forward,
            "musicgan_step_all_s": ours_wall,
            "port_step_all_s": wall,
        }


def bench_data(midi_dir: Path, data_dir: Path, overrides: list[str], s: dict, quick: bool) -> dict:
    cfg = workload.bench_config(str(data_dir), overrides)
    from musicgan.data.shards import split_urls
    from musicgan.training.families import get_family

    representation = get_family(cfg).build_representation()
    urls = split_urls(str(data_dir), "train")
    stream = {}
    for workers in (1, 2):
        stream[str(workers)] = data_path.stream_samples_per_s(
            urls,
            representation,
            seq_len=cfg.curriculum.max_len,
            batch_size=cfg.data.batch_size,
            num_workers=workers,
            num_batches=s["stream_batches"],
            repeats=s["stream_repeats"],
        )
    prepare = {}
    for name, spec, limit in (("midi_folder", str(midi_dir), None), ("music21_bach", "music21:bach", s["bach_songs"])):
        prepare[name] = {str(w): data_path.prepare_files_per_s(spec, workers=w, limit=limit) for w in (1, 2)}
    return {"stream": stream, "prepare": prepare}


def _status(key: str, value: float) -> str:
    target = TARGETS[key]
    if value >= target:
        return f"met ({value / target:.2f}x target)"
    return f"missed by {100 * (1 - value / target):.0f} %"


def markdown_table(r: dict) -> str:
    step, data, scale, gen = r["training_step"], r["data"], r["scaling"], r["generator"]
    per_batch = gen.get("per_batch", {})
    gen_detail = ", ".join(
        f"batch {b}: {e['speedup']:.2f}x ({1e3 * e['fast_s']:.0f} vs {1e3 * e['reference_s']:.0f} ms)"
        for b, e in per_batch.items()
    )
    fl = step["flops"]
    rows = [
        (
            "Trainer overhead (bare step / musicgan step, world 1)",
            f"{r['trainer_overhead_ratio']:.3f}",
            ">= 0.95",
            _status("trainer_overhead_ratio", r["trainer_overhead_ratio"]),
            f"{1e3 * step['trainer_step_s']:.0f} ms vs bare {1e3 * step['bare_step_s']:.0f} ms per step; "
            f"from CPU time {step.get('trainer_overhead_ratio_cpu_time', float('nan')):.3f}; "
            f"under DDP (2 gloo ranks): {scale.get('trainer_overhead_ratio_ddp', float('nan')):.3f} "
            f"(CPU time {scale.get('trainer_overhead_ratio_ddp_cpu_time', float('nan')):.3f})",
        ),
        (
            "Generator speed (eager LSTMCell / fast loop, fwd+bwd)",
            f"{r['generator_speedup']:.2f}x",
            ">= 1.2",
            _status("generator_speedup", r["generator_speedup"]),
            gen_detail,
        ),
        (
            "Data headroom (stream, 1 worker / trainer consumption)",
            f"{r['data_headroom_ratio']:.1f}x",
            ">= 20",
            _status("data_headroom_ratio", r["data_headroom_ratio"]),
            f"stream {data['stream']['1']['samples_per_s']:.0f} (1 worker), "
            f"{data['stream']['2']['samples_per_s']:.0f} (2 workers) vs trainer {step['samples_per_s']:.1f} samples/s",
        ),
        (
            "DDP scaling (2 gloo ranks / 1 rank, 1 thread each)",
            f"{r['ddp_scaling_ratio']:.2f}x",
            ">= 1.7",
            _status("ddp_scaling_ratio", r["ddp_scaling_ratio"]),
            f"{scale.get('samples_per_s_1', float('nan')):.1f} -> "
            f"{scale.get('samples_per_s_2', float('nan')):.1f} samples/s; "
            f"CPU-time bound {scale.get('ddp_scaling_cpu_time_bound', float('nan')):.2f}x",
        ),
        (
            "FLOP utilisation (step FLOP/s / large matmul FLOP/s)",
            f"{r['flops_utilisation']:.2f}",
            ">= 0.8",
            _status("flops_utilisation", r["flops_utilisation"]),
            f"{fl['step_flops_per_s'] / 1e9:.3g} GFLOP/s "
            f"({fl['step_flops']['total'] / 1e9:.3g} GFLOP/step, analytic) vs "
            f"{fl['matmul_flops_per_s']['large'] / 1e9:.3g} (large) / "
            f"{fl['matmul_flops_per_s']['lstm_step'] / 1e9:.3g} "
            f"(LSTM-step product) GFLOP/s" + _cpu_utilisation(fl),
        ),
        _port_row(r),
    ]
    prep = data["prepare"]
    lines = ["| Benchmark | Figure | Target | Status | Detail |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines.append("")
    lines.append("| prepare (files/s) | 1 worker | 2 workers |")
    lines.append("|---|---|---|")
    for name, entry in prep.items():
        lines.append(
            f"| {name} ({entry['1']['files']} files) | {entry['1']['files_per_s']:.1f} | "
            f"{entry['2']['files_per_s']:.1f} |"
        )
    m = r["machine"]
    lines.append("")
    lines.append(
        f"{m['date_utc']}; {m['cpu']}, {m['cpu_count']} cores, device {m['device']}; python {m['python']}, "
        f"torch {m['torch']}; mode {r['mode']}; load average {m['load_average_1min_start']} at start, "
        f"{m.get('load_average_1min_end')} at end."
    )
    return "\n".join(lines)


def _port_row(r: dict) -> tuple[str, ...]:
    port = r["reference_port"]
    return (
        "Events/s vs the public port's step (musicgan / port, world 1)",
        f"{r['reference_port_ratio']:.2f}x",
        ">= 2",
        _status("reference_port_ratio", r["reference_port_ratio"]),
        f"{port['musicgan_events_per_s']:.0f} vs {port['port_events_per_s']:.0f} events/s "
        f"({1e3 * port['musicgan_step_s']:.0f} vs {1e3 * port['port_step_s']:.0f} ms per step); "
        f"from CPU time {port['reference_port_ratio_cpu_time']:.2f}x",
    )


def _cpu_utilisation(fl: dict) -> str:
    cpu = fl.get("cpu_time")
    if not cpu or cpu["threads"] != 1:
        return ""
    return (
        f"; from CPU time (1 thread): {cpu['flops_utilisation']:.2f} "
        f"({cpu['step_flops_per_cpu_s'] / 1e9:.3g} vs {cpu['matmul_flops_per_cpu_s']['large'] / 1e9:.3g} GFLOP/s)"
    )


def run_suite(
    out: str | None = None, quick: bool = False, workdir: str | None = None, plots: str | None = None
) -> dict:
    """Run every benchmark; return (and optionally write) the JSON-ready results. The
    scaling curves' PNGs go to `plots`, or to OUT-curves/ beside `out` (bench-curves/ here
    without either)."""
    from musicgan.benchmarks import curves

    mode = "quick" if quick else "full"
    s = dict(SETTINGS[mode])
    if os.environ.get("MUSICGAN_BENCH_THREADS"):
        # Intra-op threads of the in-process sections (training step, generator); the
        # scaling ranks always run one thread each. On a machine loaded by other jobs, two
        # OpenMP threads that keep waiting for each other make every figure crawl.
        s["threads"] = int(os.environ["MUSICGAN_BENCH_THREADS"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = workload.workload_overrides(quick)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="musicgan-bench-"))
    results: dict = {"mode": mode, "machine": machine_info(device), "targets": TARGETS, "overrides": overrides}
    try:
        midi_dir = dataset.write_midi_folder(root / "midi", s["songs"])
        data_dir = root / "shards"
        dataset.prepare_shards(midi_dir, data_dir)

        # Quick mode runs single-threaded: on a loaded shared machine two OpenMP threads
        # can wait on each other for most of a toy-sized step.
        with torch_threads(s["threads"]):
            results["threads"] = torch.get_num_threads()
            _section(
                results,
                "training_step",
                "training step: musicgan vs bare, FLOP/s vs matmul",
                lambda: bench_training_step(data_dir, root / "run", overrides, s, device),
                out,
            )
            _section(
                results,
                "reference_port",
                "training step: musicgan vs the public port's step",
                lambda: bench_reference_port(data_dir, root / "run-port", overrides, s),
                out,
            )
            _section(results, "generator", "generator loop", lambda: _bench_generator(quick, s, device), out)
            _section(
                results,
                "families",
                "every family: musicgan step vs bare step",
                lambda: families.bench_families(
                    root / "families", quick=quick, warmup=s["family_warmup"], repeats=s["family_repeats"]
                ),
                out,
            )
        _section(
            results,
            "data",
            "data path: streaming and prepare",
            lambda: bench_data(midi_dir, data_dir, overrides, s, quick),
            out,
        )
        _section(
            results,
            "scaling",
            "scaling: 1 and 2 ranks",
            lambda: scaling.bench_scaling(
                str(data_dir), overrides, steps=s["scaling_steps"], warmup=s["scaling_warmup"], device=device
            ),
            out,
        )
        plots_dir = Path(plots) if plots else curves.plots_beside(out, "-curves")
        _section(
            results,
            "scaling_curves",
            "scaling curves: a few points per curve (the full grid: --scaling-curves)",
            lambda: curves.suite_section(root / "curves", plots_dir, quick),
            out,
        )
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    step = results["training_step"]
    results["trainer_overhead_ratio"] = step["trainer_overhead_ratio"]
    results["generator_speedup"] = results["generator"]["generator_speedup"]
    results["data_headroom_ratio"] = results["data"]["stream"]["1"]["samples_per_s"] / step["samples_per_s"]
    results["ddp_scaling_ratio"] = results["scaling"].get("ddp_scaling_ratio", float("nan"))
    results["flops_utilisation"] = step["flops_utilisation"]
    results["reference_port_ratio"] = results["reference_port"]["reference_port_ratio"]
    results["machine"]["load_average_1min_end"] = machine_load()
    results["markdown"] = "\n\n".join(
        [markdown_table(results), families.markdown_table(results["families"]), results["scaling_curves"]["markdown"]]
    )
    print(results["markdown"], flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
        Path(f"{out}.partial").unlink(missing_ok=True)
    return results


def _bench_generator(quick: bool, s: dict, device: torch.device) -> dict:
    from musicgan.benchmarks.generator import bench_generator

    if quick:
        return bench_generator(
            batch_sizes=(4,), seq_len=8, hidden=24, repeats=s["gen_repeats"], warmup=s["gen_warmup"], device=str(device)
        )
    return bench_generator(
        batch_sizes=(20, 64),
        seq_len=100,
        hidden=350,
        layers=2,
        repeats=s["gen_repeats"],
        warmup=s["gen_warmup"],
        device=str(device),
    )


def _section(results: dict, key: str, label: str, fn, out: str | None = None) -> None:
    """results[key] = fn(), announced on stderr, its wall time kept under "section_s"; with
    `out`, the sections so far are saved to OUT.partial (a long run keeps what it measured)."""
    print(f"[musicgan bench] {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    results[key] = fn()
    results.setdefault("section_s", {})[key] = round(time.perf_counter() - start, 2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out}.partial").write_text(json.dumps(results, indent=2) + "\n")
