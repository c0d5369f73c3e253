"""A run directory belongs to one run: a fresh run refuses another run's checkpoints, pruning
and resuming follow the run's own history, and `--overwrite` archives instead of deleting.
Real one-process training runs on the `bach_shards` fixture (debug sizes, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from musicgan.cli import main
from musicgan.training import checkpoint as ckpt


def _train(bach_shards: Path, run: Path, steps: int, *extra: str) -> int:
    return main(
        [
            "train",
            "--preset",
            "debug",
            "--data",
            str(bach_shards),
            "--run-dir",
            str(run),
            "--max-steps",
            str(steps),
            "--set",
            "log.progress=false",
            "--set",
            "log.tensorboard=false",
            "--set",
            "log.sample_every=0",
            "--set",
            "log.num_samples=1",
            "--set",
            "log.metric_samples=2",
            "--set",
            "log.metric_songs=4",
            *extra,
        ]
    )


def _newest_step(run: Path) -> int:
    return ckpt.find_latest_valid(run)[1]["step"]


def test_fresh_run_into_a_used_directory_is_refused_then_overwrite_archives(bach_shards, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(bach_shards, run, 6) == 0
    old = (run / "checkpoints" / "step-00000006.pt").read_bytes()
    capsys.readouterr()

    assert _train(bach_shards, run, 3) == 2  # a fresh run: refused, nothing touched
    err = capsys.readouterr().err
    assert err.startswith("error: run directory") and "--resume" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "checkpoints" / "step-00000006.pt").read_bytes() == old

    assert _train(bach_shards, run, 3, "--overwrite", "--set", "log.keep=1") == 0
    archived = list((run / ckpt.ARCHIVE_DIR).glob("*/checkpoints/step-00000006.pt"))
    assert len(archived) == 1 and archived[0].read_bytes() == old  # moved aside, not deleted
    assert _newest_step(run) == 3
    assert main(["sample", "--run", str(run), "--num", "1", "--length", "8", "--out", str(tmp_path / "s")]) == 0
    assert "step-00000003.pt" in capsys.readouterr().out  # sample uses the new run's weights

    assert _train(bach_shards, run, 5, "--resume", "--set", "log.keep=1") == 0  # resume still works
    assert _newest_step(run) == 5
    assert [p.name for p in (run / "checkpoints").glob("step-*.pt")] == ["step-00000005.pt"]


def test_resume_past_an_unreadable_newer_file_keeps_its_own_checkpoint(bach_shards, tmp_path):
    """--resume finds no valid checkpoint (the only one is garbage at a higher step) and
    starts fresh: its own step-3 must survive keep=1 and be what the next resume reads."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-00000012.pt").write_bytes(b"truncated")
    assert _train(bach_shards, run, 3, "--resume", "--set", "log.keep=1") == 0
    assert (run / "checkpoints" / "step-00000003.pt").exists()
    assert _newest_step(run) == 3
    assert _train(bach_shards, run, 4, "--resume", "--set", "log.keep=1") == 0
    state = torch.load(run / "checkpoints" / "step-00000004.pt", weights_only=True)
    assert state["step"] == 4


def test_resume_with_another_model_size_names_the_mismatch(bach_shards, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(bach_shards, run, 2) == 0
    capsys.readouterr()
    assert _train(bach_shards, run, 4, "--resume", "--set", "model.g_hidden=24") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "is for another model size: generator" in err and "model.g_hidden=16 (this run: 24)" in err, err


def test_a_run_that_is_running_is_not_finished(bach_shards, tmp_path):
    """finished.json of an earlier, shorter invocation goes when the run is extended."""
    run = tmp_path / "run"
    assert _train(bach_shards, run, 2) == 0
    assert json.loads((run / "finished.json").read_text())["step"] == 2
    calls = []

    def stop_at_once() -> bool:
        calls.append(1)
        return True

    from musicgan.presets import get_preset
    from musicgan.training.loop import train

    cfg = get_preset("debug")
    cfg.data.path, cfg.log.progress, cfg.log.tensorboard, cfg.train.max_steps = str(bach_shards), False, False, 6
    result = train(cfg, run, resume=True, should_stop=stop_at_once)
    assert not result.finished and calls
    assert not (run / "finished.json").exists() and (run / "stopped.json").exists()
