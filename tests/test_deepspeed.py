"""DeepSpeed backend on CPU (DeepSpeed's CPU accelerator, gloo, 2 real ranks).

The heart is the parity test: same seed, debug preset, fp32, the same forced freezing
pattern; DDP and DeepSpeed ZeRO 0/1/2, each with gradient accumulation 1 and 2, must end
with the same generator and discriminator weights (1e-5 relative). A DeepSpeed port that
loses gradients (two backward calls per engine under ZeRO 1/2), steps a frozen network's
optimizer, or shifts one engine's accumulation boundary ends with different weights.

DeepSpeed JIT-compiles a comm op on first use (~100 s); `launch/test` keeps the build in
$TORCH_EXTENSIONS_DIR (repo .cache) so the suite pays it once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dist_helpers import REPO, final_weights, free_port, init_rank, musicgan, rank_env, spawn, torchrun
from musicgan.config import apply_overrides
from musicgan.errors import ConfigError, UserError
from musicgan.presets import get_preset

pytestmark = pytest.mark.slow

PARITY_STEPS = 16
ACCUMULATIONS = (1, 2)
STAGES = (0, 1, 2)
# Forced freezing, one entry per adversarial step, cycled: (freeze D, freeze G). Over windows
# of two micro steps it gives every case: both update, one frozen at the first or at the
# closing micro step (gradients from the other micro step must still be applied), a network
# frozen for a whole window (its optimizer must not be called: momentum would move it).
FREEZE_PATTERN = ((False, False), (True, False), (True, False), (False, True), (False, True), (True, True))


def parity_cfg(data: Path, backend: str, stage: int, accum: int):
    cfg = get_preset("debug")
    cfg.data.path = str(data)
    return apply_overrides(cfg, [
        f"dist.backend={backend}", f"dist.zero_stage={stage}", f"dist.grad_accum={accum}",
        f"train.max_steps={PARITY_STEPS}", "train.epochs=20", "train.seed=7",
        # batch 6 x 2 ranks: an odd number of batches per epoch on the fixture, so some
        # accumulation windows are cut short by an epoch end.
        "data.batch_size=6",
        # Momentum: a spurious optimizer step on a zero gradient would still move weights.
        "optim.momentum=0.9",
        "log.interval=1", "log.sample_every=0", "log.tensorboard=false", "log.progress=false",
        "log.num_samples=1", "log.metric_samples=2", "log.metric_songs=4", "dist.timeout_s=60",
    ])


def parity_runs() -> list[tuple[str, str, int, int]]:
    runs = []
    for accum in ACCUMULATIONS:
        runs.append((f"ddp-acc{accum}", "ddp", 0, accum))
        runs += [(f"ds-zero{stage}-acc{accum}", "deepspeed", stage, accum) for stage in STAGES]
    return runs


def _parity_worker(rank, world_size, port, data, root, runs):
    """Trains every configuration in turn inside one 2-rank process group (saves start-up)."""
    init_rank(rank, world_size, port)
    from musicgan.distributed.env import init_distributed, teardown
    from musicgan.training import loop

    env = init_distributed(timeout_s=60)
    try:
        for label, backend, stage, accum in runs:
            calls = iter(range(10**6))

            def forced_freezing(d_loss, g_loss, theta_d, theta_g):
                # Same decision on every rank and in every run: a function of the call count.
                freeze_d, freeze_g = FREEZE_PATTERN[next(calls) % len(FREEZE_PATTERN)]
                return loop.FreezeDecision(freeze_d, freeze_g)

            loop.decide_freezing = forced_freezing
            trainer = loop.Trainer(parity_cfg(Path(data), backend, stage, accum), Path(root) / label, env=env)
            try:
                trainer.fit()
            finally:
                trainer.backend.close()
    finally:
        teardown(env)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()).clamp_min(1e-12))


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_deepspeed_zero_0_1_2_match_ddp_with_accumulation_and_freezing(bach_shards, tmp_path):
    runs = parity_runs()
    spawn(_parity_worker, 2, str(bach_shards), str(tmp_path), runs)

    for accum in ACCUMULATIONS:
        reference = final_weights(tmp_path / f"ddp-acc{accum}")
        assert reference["step"] == PARITY_STEPS and reference["backend"] == "ddp"
        rows = [r for r in read_log(tmp_path / f"ddp-acc{accum}") if r["event"] == "train"]
        assert any(r["freeze/discriminator"] == 1.0 for r in rows), "freezing never triggered for D"
        assert any(r["freeze/generator"] == 1.0 for r in rows), "freezing never triggered for G"
        for stage in STAGES:
            label = f"ds-zero{stage}-acc{accum}"
            state = final_weights(tmp_path / label)
            assert state["step"] == PARITY_STEPS and state["backend"] == "deepspeed"
            ds_rows = [r for r in read_log(tmp_path / label) if r["event"] == "train"]
            assert [(r["freeze/discriminator"], r["freeze/generator"]) for r in ds_rows] == \
                   [(r["freeze/discriminator"], r["freeze/generator"]) for r in rows]
            for net in ("generator", "discriminator"):
                assert state[net].keys() == reference[net].keys()
                moved = False
                for key, expected in reference[net].items():
                    # The plain .pt holds full weights at every ZeRO stage (what `sample` reads).
                    assert state[net][key].shape == expected.shape, f"{label} {net}.{key} is partitioned"
                    error = relative_error(state[net][key], expected)
                    assert error <= 1e-5, f"{label}: {net}.{key} differs from DDP by {error:.2e} (relative)"
                assert state[net] and (tmp_path / label / "checkpoints" / "deepspeed" / net).is_dir()
            # One directory per engine, each save with an explicit tag (no shared `latest`).
            engines = tmp_path / label / "checkpoints" / "deepspeed"
            assert sorted(p.name for p in engines.iterdir()) == ["discriminator", "generator"]
            assert (engines / "generator" / f"step-{PARITY_STEPS:08d}").is_dir()
            assert not (engines / "latest").exists() and not (engines / "generator" / "latest").exists()

    # The runs really trained (not a comparison of untouched initial weights).
    a1, a2 = final_weights(tmp_path / "ddp-acc1"), final_weights(tmp_path / "ddp-acc2")
    assert any(relative_error(a1[n][k], a2[n][k]) > 1e-4 for n in ("generator", "discriminator") for k in a1[n])
