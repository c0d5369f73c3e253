"""Checkpoint files: atomic write, pruning, weights_only loading, corrupt-file fallback."""

import pytest
import torch

from musicgan.training import checkpoint as ckpt


def _state(step, value=1.0):
    return {
        "generator": {"w": torch.full((3,), value)},
        "discriminator": {},
        "step": step,
        "config": {"a": {"b": 1}},
        "optimizers": {"generator": {"state": {}, "param_groups": []}},
    }


def test_save_prune_latest_and_weights_only(tmp_path):
    for step in (10, 20, 30, 40):
        ckpt.save_checkpoint(tmp_path, _state(step, step), step, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-00000030.pt", "step-00000040.pt"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00000040.pt"
    state = torch.load(tmp_path / "checkpoints" / "step-00000040.pt", weights_only=True)
    assert torch.equal(state["generator"]["w"], torch.full((3,), 40.0))
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left


def test_truncated_newest_checkpoint_falls_back_with_warning(tmp_path, caplog):
    ckpt.save_checkpoint(tmp_path, _state(1), 1, keep=5)
    newest = ckpt.save_checkpoint(tmp_path, _state(2), 2, keep=5)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated on disk
    path, state = ckpt.find_latest_valid(tmp_path)
    assert path.name == "step-00000001.pt" and state["step"] == 1
    assert "skipping unreadable checkpoint" in caplog.text


def test_failed_write_keeps_previous(tmp_path, monkeypatch):
    """The file system refusing the write mid-checkpoint (ENOSPC) leaves the previous one."""
    ckpt.save_checkpoint(tmp_path, _state(1), 1, keep=5)
    real_save = torch.save

    def save_then_fail(obj, handle):
        real_save(obj, handle)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", save_then_fail)
    with pytest.raises(ckpt.CheckpointWriteError, match="No space left on device"):
        ckpt.save_checkpoint(tmp_path, _state(2), 2, keep=5)
    monkeypatch.undo()
    path, state = ckpt.find_latest_valid(tmp_path)
    assert path.name == "step-00000001.pt" and state["step"] == 1
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["history.json", "latest", "step-00000001.pt"]


def test_pruning_follows_the_runs_own_history_not_step_numbers(tmp_path):
    """A run that resumed past a newer but unreadable file (or any foreign step-N.pt) keeps
    its own checkpoints: pruning by step number would delete the file it just wrote."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "step-00000012.pt").write_bytes(b"not a checkpoint")  # higher step, not this run's
    for step in (3, 4):
        ckpt.save_checkpoint(tmp_path, _state(step), step, keep=1)
    assert (directory / "step-00000004.pt").exists() and not (directory / "step-00000003.pt").exists()
    assert (directory / "step-00000012.pt").exists()  # another run's file is never pruned
    path, state = ckpt.find_latest_valid(tmp_path)
    assert path.name == "step-00000004.pt" and state["step"] == 4
    assert ckpt.read_history(tmp_path) == ["step-00000004.pt"]


def test_history_names_are_never_paths(tmp_path):
    ckpt.save_checkpoint(tmp_path, _state(1), 1, keep=2)
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"x")
    (tmp_path / "checkpoints" / ckpt.HISTORY).write_text('["../victim.pt", "step-00000001.pt"]')
    ckpt.save_checkpoint(tmp_path, _state(2), 2, keep=1)
    assert victim.exists() and ckpt.read_history(tmp_path) == ["step-00000002.pt"]


def test_fresh_run_refuses_a_used_directory_and_overwrite_archives_it(tmp_path):
    assert ckpt.claim_run_dir(tmp_path / "new", resume=False, overwrite=False) is None
    ckpt.save_checkpoint(tmp_path, _state(12), 12, keep=3)
    (tmp_path / "finished.json").write_text("{}")
    with pytest.raises(ckpt.RunDirInUseError, match=r"step-00000012\.pt.*--resume.*new --run-dir.*--overwrite"):
        ckpt.claim_run_dir(tmp_path, resume=False, overwrite=False)
    assert ckpt.claim_run_dir(tmp_path, resume=True, overwrite=False) is None  # resuming is its own run
    archive = ckpt.claim_run_dir(tmp_path, resume=False, overwrite=True)
    assert archive.parent == tmp_path / ckpt.ARCHIVE_DIR
    assert (archive / "checkpoints" / "step-00000012.pt").exists() and (archive / "finished.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.ARCHIVE_DIR]
    assert ckpt.find_latest_valid(tmp_path) is None


def test_torch_save_failure_is_a_checkpoint_error_naming_the_cause(tmp_path, monkeypatch):
    """torch.save reports a failed write as RuntimeError (its writer's message), not OSError."""
    ckpt.save_checkpoint(tmp_path, _state(1), 1, keep=5)

    def failing_save(obj, handle):
        handle.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
            "data/0: file write failed\nmore lines"
        )

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(
        ckpt.CheckpointWriteError,
        match=r"file write failed\); previous checkpoint "
        r"step-00000001\.pt is intact$",
    ):
        ckpt.save_checkpoint(tmp_path, _state(2), 2, keep=5)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["history.json", "latest", "step-00000001.pt"]


def test_weights_of_another_size_name_the_tensor_and_shapes():
    small, big = torch.nn.Linear(4, 3), torch.nn.Linear(4, 5)
    with pytest.raises(
        ckpt.CheckpointMismatchError,
        match=r"^checkpoint c\.pt is for another model size: generator weight is \[5, 4\] there, "
        r"\[3, 4\] here; the checkpoint",
    ):
        ckpt.load_network(
            small,
            big.state_dict(),
            name="generator",
            source="c.pt",
            hint=ckpt.model_differences({"model": {"g_hidden": 5}}, {"model": {"g_hidden": 3}}),
        )
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"1 tensors missing \(bias\), 0 unexpected"):
        ckpt.load_network(small, {"weight": small.weight.detach()}, name="generator", source="c.pt")


def test_format_2_networks_with_aliases_and_format_1_still_read(tmp_path):
    states = {
        "generator": {"w": torch.arange(3.0)},
        "critic": {"v": torch.ones(2)},
        "generator_ema": {"w": torch.zeros(3)},
    }
    packed = ckpt.pack_networks(states)
    path = ckpt.save_checkpoint(tmp_path, {**packed, "step": 1}, 1, keep=2)
    state = torch.load(path, weights_only=True)
    assert state["format_version"] == 2 and sorted(state["networks"]) == ["critic", "generator", "generator_ema"]
    assert torch.equal(state["generator"]["w"], torch.arange(3.0)) and state["discriminator"] == {}
    # The alias is the same tensor as networks["generator"] (stored once by torch.save).
    assert (
        state["generator"]["w"].untyped_storage().data_ptr()
        == state["networks"]["generator"]["w"].untyped_storage().data_ptr()
    )
    assert torch.equal(ckpt.network_state(state, "generator_ema")["w"], torch.zeros(3))
    old = {"generator": {"w": torch.ones(1)}, "discriminator": {"u": torch.ones(2)}, "networks": {}, "step": 3}
    assert torch.equal(ckpt.network_state(old, "discriminator")["u"], torch.ones(2))
    with pytest.raises(ckpt.UserError, match="no network 'critic'"):
        ckpt.network_state(old, "critic")
