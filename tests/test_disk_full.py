"""A disk that fills up during `torch.save`, on a real file system: a small tmpfs mounted by
the test (root only; skipped otherwise). torch reports the failed write as RuntimeError, not
OSError; both of 2 gloo ranks must end at once with the checkpoint error, no partial file."""

from __future__ import annotations

import time

import pytest
from dist_helpers import torchrun

from musicgan.training import checkpoint as ckpt

TMPFS_SIZE = "160k"  # the `small_disk` fixture (conftest)
# (generator width, step whose checkpoint fails, checkpoint left). At width 64 the first
# checkpoint has a tensor larger than the free space: torch.save raises RuntimeError
# ("unexpected pos"). At the debug width 16 (~105 KB) one checkpoint fits, the temp file of
# the second does not, and the write raises OSError.
CASES = [(64, 2, "none"), (16, 4, "step-00000002.pt")]


@pytest.mark.parametrize("width,failing_step,kept", CASES)
def test_disk_full_during_torch_save_ends_both_ranks_with_the_checkpoint_error(
    bach_shards, small_disk, width, failing_step, kept
):
    run = small_disk / "run"
    started = time.monotonic()
    # dist.timeout_s stays long: a rank left blocked would show as this test's own timeout.
    proc = torchrun(
        [
            "train",
            "--preset",
            "debug",
            "--data",
            str(bach_shards),
            "--run-dir",
            str(run),
            "--max-steps",
            "6",
            "--set",
            "log.checkpoint_every=2",
            "--set",
            "log.keep=1",
            "--set",
            "log.progress=false",
            "--set",
            "log.tensorboard=false",
            "--set",
            "log.sample_every=0",
            "--set",
            "dist.timeout_s=600",
            "--set",
            f"model.g_hidden={width}",
        ],
        timeout=150,
        check=False,
    )
    assert proc.returncode != 0
    expected = (
        f"error: could not write checkpoint {ckpt.checkpoint_dir(run) / ckpt.checkpoint_name(failing_step)} "
        f"(No space left on device); previous checkpoint {kept} is intact"
    )
    # Both ranks print the same line (at the same moment: their lines may share a line).
    assert proc.stderr.count(expected) == 2, proc.stderr[-4000:]
    assert time.monotonic() - started < 150
    names = sorted(p.name for p in ckpt.checkpoint_dir(run).iterdir())
    assert names == ([] if kept == "none" else ["history.json", "latest", kept]), names  # no partial or temp file
    if kept != "none":
        assert ckpt.find_latest_valid(run)[1]["step"] == 2
