"""The golden loss curve (torchtitan keeps one): 20 steps of `--preset debug` at seed 0 on one
process, on 2 gloo ranks (DDP) and on 2 ranks under DeepSpeed ZeRO-1, compared EXACTLY with
the curves stored in tests/assets/golden_debug.json (every logged loss and gradient norm, and
a digest of the final weights).

A refactor of the trainer must leave these numbers bit-identical. A change that means to
alter them regenerates the file and says why in its commit:
  MUSICGAN_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from dist_helpers import final_weights, init_rank, spawn

from musicgan.config import apply_overrides
from musicgan.presets import get_preset

ASSET = Path(__file__).parent / "assets" / "golden_debug.json"
GOLDEN_STEPS = 20
REGENERATE = os.environ.get("MUSICGAN_REGENERATE_GOLDEN") == "1"


def golden_cfg(data: Path, *overrides: str):
    cfg = get_preset("debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            "train.seed=0",
            f"train.max_steps={GOLDEN_STEPS}",
            "log.interval=1",
            "log.sample_every=0",
            "log.tensorboard=false",
            "log.progress=false",
            "log.num_samples=1",
            "log.metric_samples=2",
            "log.metric_songs=4",
            *overrides,
        ],
    )


def weights_digest(state: dict) -> str:
    """sha256 over every tensor of the plain checkpoint's generator and discriminator."""
    digest = hashlib.sha256()
    for net in ("generator", "discriminator"):
        for key in sorted(state[net]):
            digest.update(f"{net}.{key}".encode())
            digest.update(state[net][key].detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def curve(run_dir: Path) -> dict:
    """Per train row: the step and every loss/ and grad_norm/ value; plus the weights' digest."""
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["event"] == "train"]
    values = [{k: v for k, v in r.items() if k == "step" or k.startswith(("loss/", "grad_norm/"))} for r in rows]
    return {"rows": values, "weights_sha256": weights_digest(final_weights(run_dir))}


def check_or_write(label: str, got: dict) -> None:
    stored = json.loads(ASSET.read_text()) if ASSET.exists() else {}
    if REGENERATE:
        stored[label] = got
        ASSET.parent.mkdir(exist_ok=True)
        ASSET.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        return
    assert label in stored, f"no golden curve {label!r}: regenerate (see this file's docstring)"
    expected = stored[label]
    assert len(got["rows"]) == len(expected["rows"]) == GOLDEN_STEPS
    for row, want in zip(got["rows"], expected["rows"]):
        assert row == want, f"{label}: step {want['step']} differs from the golden curve"
    assert got["weights_sha256"] == expected["weights_sha256"], f"{label}: final weights differ"


def test_golden_curve_one_process(bach_shards, tmp_path):
    from musicgan.training.loop import train

    train(golden_cfg(bach_shards), tmp_path / "run")
    check_or_write("one-process", curve(tmp_path / "run"))


def _golden_worker(rank, world_size, port, data, root, runs):
    init_rank(rank, world_size, port)
    from musicgan.distributed.env import init_distributed, teardown
    from musicgan.training.loop import Trainer

    env = init_distributed(timeout_s=60)
    try:
        for label, overrides in runs:
            trainer = Trainer(golden_cfg(Path(data), *overrides), Path(root) / label, env=env)
            try:
                trainer.fit()
            finally:
                trainer.backend.close()
    finally:
        teardown(env)


def test_golden_curve_two_ranks_ddp(bach_shards, tmp_path):
    spawn(_golden_worker, 2, str(bach_shards), str(tmp_path), [("ddp-2-ranks", [])])
    check_or_write("ddp-2-ranks", curve(tmp_path / "ddp-2-ranks"))


@pytest.mark.slow
def test_golden_curve_two_ranks_deepspeed_zero1(bach_shards, tmp_path):
    runs = [("deepspeed-zero1-2-ranks", ["dist.backend=deepspeed", "dist.zero_stage=1"])]
    spawn(_golden_worker, 2, str(bach_shards), str(tmp_path), runs)
    check_or_write("deepspeed-zero1-2-ranks", curve(tmp_path / "deepspeed-zero1-2-ranks"))


def test_golden_curves_are_distinct_runs_and_zero1_equals_ddp():
    """One process and two ranks are different runs (a copy of one curve into the other would
    pass the tests above). DeepSpeed ZeRO-1 reproduced DDP's losses and final weights bit for
    bit when the curves were made (fp32, Adam, accumulation 1); only the logged gradient norms
    differ in the last bits (the engine sums the squares in another order)."""
    stored = json.loads(ASSET.read_text())
    ddp, zero1 = stored["ddp-2-ranks"], stored["deepspeed-zero1-2-ranks"]
    assert stored["one-process"]["weights_sha256"] != ddp["weights_sha256"]
    assert zero1["weights_sha256"] == ddp["weights_sha256"]
    for a, b in zip(ddp["rows"], zero1["rows"]):
        assert {k: v for k, v in a.items() if k.startswith("loss/")} == {
            k: v for k, v in b.items() if k.startswith("loss/")
        }
        assert a.keys() == b.keys()
        for key in (k for k in a if k.startswith("grad_norm/")):
            assert b[key] == pytest.approx(a[key], rel=1e-6)
