"""Rank, world size and device from the environment: torchrun, SLURM (srun without
torchrun), Ray Train, or a plain single process. Also the process group's lifetime."""

from __future__ import annotations

import datetime
import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if os.environ.get(name, "") != "":
            return int(os.environ[name])
    return default


def read_rank_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank): torchrun/Ray set RANK etc.; bare srun sets SLURM_*."""
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    return rank, world, local


def pick_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(timeout_s: float = 600.0) -> DistEnv:
    """Join (or create) the default process group: NCCL on GPU, gloo on CPU.

    Under Ray Train the group already exists and is left to Ray. The timeout turns a dead
    or stalled peer into an error instead of a silent hang.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", default=0)
        return DistEnv(rank, world, local, pick_device(local), initialized_here=False)
    rank, world, local = read_rank_world()
    device = pick_device(local)
    if world == 1:
        return DistEnv(0, 1, 0, device, initialized_here=False)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(
        backend=backend, rank=rank, world_size=world, timeout=timeout, store=_elastic_store(timeout, world)
    )
    return DistEnv(rank, world, local, device, initialized_here=True)


def _elastic_store(timeout: datetime.timedelta, world: int):
    """Under torchrun, a store namespaced by the restart attempt (None elsewhere: env://).

    torchrun's agent keeps ONE TCPStore across elastic restarts; torch's env:// handler adds
    no per-attempt prefix, so after a restart a rank can read its peer's address from the
    dead attempt and gloo fails with "connectFullMesh ... Connection refused" (seen here,
    about one restart in two). Prefixing the keys with the attempt number avoids it.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world, is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"musicgan/attempt_{attempt}", store)


def teardown(env: DistEnv) -> None:
    """Destroy the process group we created (on success, error and Ctrl-C alike)."""
    if env.initialized_here and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - teardown must never mask the original error
            pass


def exit_now(code: int) -> None:
    """End a rank's process right after its work is saved and its group torn down.

    A rank can die in interpreter finalisation after everything succeeded ("terminate
    called without an active exception", SIGABRT from a C++ thread destructor; seen here
    about once in 50 runs, in CLI ranks and in spawned benchmark ranks alike, and noted
    for DeepSpeed in docs/distributed-pitfalls.md), which turns a finished run into a failure.
    Call this only once checkpoints and logs are written and closed.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
