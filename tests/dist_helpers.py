"""Helpers to run real multi-process (gloo) jobs from tests: torchrun subprocesses and
torch.multiprocessing workers. Kept importable (not a conftest) so spawned workers can
unpickle the functions they run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_env(extra: dict | None = None) -> dict:
    """Environment for spawned ranks: one thread per rank (2 ranks on 2 cores)."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MUSICGAN_DEBUG": "1"})
    env.update(extra or {})
    return env


def torchrun(
    args: list[str],
    nproc: int = 2,
    timeout: float = 300,
    extra_torchrun: list[str] | None = None,
    env: dict | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=N -m musicgan <args>` as a real subprocess."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *(extra_torchrun or []),
        "-m",
        "musicgan",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=rank_env(env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def musicgan(args: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "musicgan", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def torchrun_train(preset: str, shards: Path, run_dir: Path, *extra: str, steps: int = 4) -> None:
    """`musicgan train` of `preset` for `steps` steps on 2 gloo ranks; the run must finish."""
    torchrun(
        [
            "train",
            "--preset",
            preset,
            "--data",
            str(shards),
            "--run-dir",
            str(run_dir),
            "--max-steps",
            str(steps),
            "--set",
            "log.progress=false",
            "--set",
            "log.tensorboard=false",
            *extra,
        ],
        timeout=240,
    )
    assert (run_dir / "finished.json").is_file()


def sample_cli(run_dir: Path, out: Path) -> list[Path]:
    """`musicgan sample` of 2 songs of 16 steps from a run; returns the MIDI files."""
    musicgan(["sample", "--run", str(run_dir), "--num", "2", "--length", "16", "--out", str(out)], timeout=120)
    files = sorted(out.glob("*.mid"))
    assert len(files) == 2
    return files


def spawn(fn, world_size: int, *args) -> None:
    """Run fn(rank, world_size, port, *args) in `world_size` real processes (gloo)."""
    port = free_port()
    torch.multiprocessing.spawn(_run_then_exit, args=(fn, world_size, port, *args), nprocs=world_size, join=True)


def _run_then_exit(rank: int, fn, *args) -> None:
    """fn, then (only if it returned: a failure still reaches spawn with its traceback) skip
    interpreter finalisation, where finished ranks abort now and then ("terminate called
    without an active exception"; see musicgan.distributed.env.exit_now). The worker has
    written its results and torn its group down by then."""
    fn(rank, *args)
    from musicgan.distributed.env import exit_now

    exit_now(0)


def init_rank(rank: int, world_size: int, port: int) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
    )
    torch.set_num_threads(1)


def final_weights(run_dir: Path) -> dict:
    from musicgan.training.checkpoint import find_latest_valid

    found = find_latest_valid(run_dir)
    assert found is not None, f"no checkpoint in {run_dir}"
    return found[1]


def assert_same_weights(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0) -> None:
    for net in ("generator", "discriminator"):
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            torch.testing.assert_close(a[net][key], b[net][key], rtol=rtol, atol=atol, msg=f"{net}.{key} differs")


# -- the families' "2 ranks: straight run vs stopped and resumed" scaffold ---------------------
def train_runs(rank, world_size, port, make_cfg, root, runs, steps: int, resume_at: int, keep: str | None = None):
    """A `spawn` worker: trains each (label, overrides) of `runs` in turn in ROOT/label to
    `steps` steps, inside one process group (saves start-up). A label ending in "resumed"
    first stops at `resume_at`, then resumes from its checkpoint to `steps`. The config is
    `make_cfg("train.max_steps=N", *overrides)` (a module-level function or a partial of one,
    so the workers can unpickle it). `keep`: a network whose state dict every rank saves
    after each fit as ROOT/label/<keep>-rank<r>.pt (an EMA or rollout copy, per-rank batch
    statistics: what the checkpoint, written by rank 0, cannot show)."""
    init_rank(rank, world_size, port)
    from musicgan.distributed.env import init_distributed, teardown
    from musicgan.training.loop import Trainer

    env = init_distributed(timeout_s=60)

    def fit(cfg, run_dir: Path, resume: bool) -> None:
        trainer = Trainer(cfg, run_dir, env=env)
        try:
            trainer.fit(resume=resume)
            if keep:
                state = trainer.backend.module(keep).state_dict()
                torch.save({k: v.clone() for k, v in state.items()}, run_dir / f"{keep}-rank{rank}.pt")
        finally:
            trainer.backend.close()

    try:
        for label, overrides in runs:
            run_dir = Path(root) / label
            resumed = label.endswith("resumed")
            if resumed:
                fit(make_cfg(f"train.max_steps={resume_at}", *overrides), run_dir, resume=False)
            fit(make_cfg(f"train.max_steps={steps}", *overrides), run_dir, resume=resumed)
    finally:
        teardown(env)


def assert_same_networks(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0, label: str = "") -> None:
    """The same networks in two checkpoint states, every tensor within rtol/atol (0: bit for
    bit); entries that are not tensors (MuseGAN's track order) compare with ==."""
    assert sorted(a["networks"]) == sorted(b["networks"]), label
    for net, params in a["networks"].items():
        for key, value in params.items():
            other, where = b["networks"][net][key], f"{label}{net}.{key}"
            if torch.is_tensor(value):
                torch.testing.assert_close(other, value, rtol=rtol, atol=atol, msg=where)
            else:
                assert other == value, where


def rank_states(run_dir: Path, network: str) -> tuple[dict, dict]:
    """The state dicts of `network` that ranks 0 and 1 saved (`train_runs(keep=network)`)."""
    r0, r1 = (torch.load(Path(run_dir) / f"{network}-rank{r}.pt", weights_only=True) for r in (0, 1))
    return r0, r1


def assert_ranks_agree(run_dir: Path, network: str, keys=None) -> None:
    """Ranks 0 and 1 hold the same `network` bit for bit (every key, or those of `keys`)."""
    r0, r1 = rank_states(run_dir, network)
    for key in r0 if keys is None else keys:
        assert torch.equal(r0[key], r1[key]), f"{Path(run_dir).name}: {network}.{key} differs between ranks"


def torchrun_split_run(common: list[str], root: Path, steps: int, resume_at: int) -> tuple[dict, dict, dict]:
    """`torchrun` of `common` (train ... without --run-dir) straight to `steps` in ROOT/full,
    and to `resume_at` then `--resume` to `steps` in ROOT/split (the resume must say so);
    returns the final states (full, split) and the split run's state at `resume_at`."""
    torchrun(common + ["--run-dir", str(root / "full"), "--max-steps", str(steps)])
    torchrun(common + ["--run-dir", str(root / "split"), "--max-steps", str(resume_at)])
    first = final_weights(root / "split")
    out = torchrun(common + ["--run-dir", str(root / "split"), "--max-steps", str(steps), "--resume"])
    assert "resuming from" in out.stdout
    return final_weights(root / "full"), final_weights(root / "split"), first
