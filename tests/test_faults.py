"""Fault tolerance on 2 gloo ranks: SIGKILL + elastic restart, SIGTERM stop,
a stalled rank, a truncated shard. Real torchrun processes, real signals, real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dist_helpers import REPO, assert_same_weights, final_weights, init_rank, rank_env, spawn, torchrun

STEPS = 20
DEBUG = ["train", "--preset", "debug", "--set", "log.checkpoint_every=4"]


@pytest.fixture(scope="module")
def uninterrupted(bach_shards, tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("faults") / "uninterrupted"
    torchrun(DEBUG + ["--data", str(bach_shards), "--run-dir", str(run), "--max-steps", str(STEPS)])
    return final_weights(run)


def _start(args: list[str], extra_torchrun: list[str] | None = None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *(extra_torchrun or []),
        "-m",
        "musicgan",
        *args,
    ]
    return subprocess.Popen(
        cmd, cwd=REPO, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _workers(torchrun_pid: int) -> list[int]:
    """PIDs of the worker processes torchrun started (its direct children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == torchrun_pid:
                children.append(int(entry.name))
    return sorted(children)


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Block until log.jsonl shows a training row at >= step."""
    deadline = time.time() + timeout
    log = run / "log.jsonl"
    while time.time() < deadline:
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        if log.exists():
            rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            if any(r.get("event") == "train" and r["step"] >= step for r in rows):
                return
        time.sleep(0.2)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def test_sigkill_of_a_worker_restarts_and_ends_with_uninterrupted_weights(bach_shards, tmp_path, uninterrupted):
    run = tmp_path / "killed"
    proc = _start(
        DEBUG
        + ["--data", str(bach_shards), "--run-dir", str(run), "--max-steps", str(STEPS), "--set", "log.interval=1"],
        ["--max-restarts=1"],
    )
    _wait_for_step(run, 10, proc)
    victim = _workers(proc.pid)[-1]
    os.kill(victim, signal.SIGKILL)  # one worker dies mid-run, no warning
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    assert "resuming from" in out  # the restarted group found the checkpoint by itself
    state = final_weights(run)
    assert state["step"] == STEPS
    assert_same_weights(state, uninterrupted)


def test_sigterm_stops_all_ranks_cleanly_and_resumes_exactly(bach_shards, tmp_path, uninterrupted):
    run = tmp_path / "terminated"
    args = DEBUG + [
        "--data",
        str(bach_shards),
        "--run-dir",
        str(run),
        "--max-steps",
        str(STEPS),
        "--set",
        "log.interval=1",
    ]
    proc = _start(args)
    _wait_for_step(run, 6, proc)
    os.kill(_workers(proc.pid)[-1], signal.SIGTERM)  # only rank 1 gets the signal
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-4000:]
    stopped = json.loads((run / "stopped.json").read_text())
    assert "SIGTERM" in stopped["reason"] and stopped["step"] < STEPS
    assert "Resume with the same command plus --resume" in err
    assert final_weights(run)["step"] == stopped["step"]  # checkpoint written at the agreed step
    torchrun(args + ["--resume"])
    assert_same_weights(final_weights(run), uninterrupted)


def test_stalled_rank_becomes_an_error_naming_rank_and_operation(bach_shards, tmp_path):
    run = tmp_path / "stalled"
    proc = _start(
        DEBUG
        + [
            "--data",
            str(bach_shards),
            "--run-dir",
            str(run),
            "--max-steps",
            "200",
            "--set",
            "log.interval=1",
            "--set",
            "dist.timeout_s=8",
            "--set",
            "train.epochs=100",
        ]
    )
    _wait_for_step(run, 3, proc)
    stalled = _workers(proc.pid)[-1]
    os.kill(stalled, signal.SIGSTOP)  # alive but frozen: the worst kind of hang
    start = time.time()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        try:
            os.kill(stalled, signal.SIGCONT)
        except ProcessLookupError:
            pass
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    assert proc.returncode != 0
    assert time.time() - start < 90
    # Whichever collective rank 0 was in when rank 1 froze, the error names it and the rank.
    assert re.search(r"error: collective \w+\(.+\) failed on rank 0 of 2", err), err[-3000:]


def _stall_in_backward_worker(rank: int, world_size: int, port: int, backend_name: str, out: str) -> None:
    """Rank 1 never joins the gradient reduction (it waits for rank 0's report); rank 0's
    update of a one-layer network must end in a CollectiveError, written to out/rank0.txt."""
    import torch

    from musicgan.config import apply_overrides
    from musicgan.distributed.env import exit_now, init_distributed
    from musicgan.errors import UserError
    from musicgan.presets import get_preset
    from musicgan.training.loop import make_backend

    init_rank(rank, world_size, port)
    env = init_distributed(timeout_s=4)
    cfg = apply_overrides(get_preset("debug"), [f"dist.backend={backend_name}", "optim.optimizer=sgd"])
    backend = make_backend(cfg, env, network_names=("generator",))
    torch.manual_seed(0)
    backend.setup({"generator": torch.nn.Linear(4, 1)}, {"generator": lambda p: torch.optim.SGD(p, lr=0.1)})
    report = Path(out) / "rank0.txt"
    if rank == 1:
        deadline = time.time() + 60
        while not report.exists() and time.time() < deadline:
            time.sleep(0.2)
        exit_now(0)  # the group is broken: no teardown
    loss = backend.train_module("generator")("forward", torch.ones(2, 4)).sum()
    try:
        backend.update("generator", loss)
        message = "no error"
    except UserError as exc:  # CollectiveError is one; anything else fails the test with its traceback
        message = f"{type(exc).__name__}: {exc}"
    report.write_text(message)
    exit_now(0)


@pytest.mark.parametrize("backend_name", ["ddp", pytest.param("deepspeed", marks=pytest.mark.slow)])
def test_peer_stalled_in_the_gradient_reduction_is_a_collective_error(backend_name, tmp_path):
    """Deterministic: the stall falls inside the backend's update (DDP reduces in backward(),
    DeepSpeed in its engine's backward or step), not wherever a SIGSTOP happened to land."""
    spawn(_stall_in_backward_worker, 2, backend_name, str(tmp_path))
    message = (tmp_path / "rank0.txt").read_text()
    expected = r"CollectiveError: collective \w+\(gradients of generator\) failed on rank 0 of 2"
    assert re.match(expected, message), message


def test_truncated_shard_is_skipped_and_reported(bach_shards, tmp_path):
    data = tmp_path / "shards"
    shutil.copytree(bach_shards, data)
    victim = sorted(data.glob("train-*.tar"))[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # cut in the middle
    run = tmp_path / "run"
    proc = torchrun(DEBUG + ["--data", str(data), "--run-dir", str(run), "--max-steps", "12"])
    assert final_weights(run)["step"] == 12  # every rank saw its full number of batches
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    data_rows = [r for r in rows if r["event"] == "data"]
    assert data_rows and sum(r["skipped_samples"] + r["shard_errors"] for r in data_rows) > 0
    assert victim.name in proc.stderr  # the warning names the shard


def test_sigterm_to_the_process_group_with_loader_workers_stops_cleanly(bach_shards, tmp_path):
    """What `timeout`, `kill -TERM -PGID`, SLURM and scancel do: every process of the group,
    the 2 loader workers included, gets SIGTERM. The workers must survive it; the run stops at
    a step with a checkpoint and stopped.json, then shuts its workers down itself."""
    run = tmp_path / "group"
    cmd = [
        sys.executable,
        "-m",
        "musicgan",
        *DEBUG,
        "--data",
        str(bach_shards),
        "--run-dir",
        str(run),
        "--max-steps",
        "400",
        "--set",
        "train.epochs=100",
        "--set",
        "log.interval=1",
        "--set",
        "data.num_workers=2",
        "--set",
        "log.tensorboard=false",
        # Small batches: an epoch of many batches, so the signal lands in the middle of
        # one, while its workers are running (a new epoch forks new workers).
        "--set",
        "data.batch_size=2",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _wait_for_step(run, 3, proc)
        # On a quiet machine a debug epoch lasts a fraction of a second and its workers are
        # replaced at each epoch start: look until the 2 workers of a running epoch are seen.
        deadline = time.monotonic() + 30
        while len(workers := _workers(proc.pid)) != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(workers) == 2, workers  # the loader's worker processes, in the same group
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-4000:]
    stopped = json.loads((run / "stopped.json").read_text())
    assert "SIGTERM" in stopped["reason"] and stopped["step"] < 400
    assert final_weights(run)["step"] == stopped["step"]
    assert not any(
        Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in workers
    )  # no worker outlives the run
