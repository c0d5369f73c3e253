"""Checkpoint files: atomic write, pruning, weights_only loading, corrupt-file fallback."""

import pytest
import torch

from musicgan.training import checkpoint as ckpt


def _state(step, value=1.0):
    return {"generator": {"w": torch.full((3,), value)}, "discriminator": {}, "step": step,
            "config": {"a": {"b": 1}}, "optimizers": {"generator": {"state": {}, "param_groups": []}}}


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
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001.pt"]


def test_format_2_networks_with_aliases_and_format_1_still_read(tmp_path):
    states = {"generator": {"w": torch.arange(3.0)}, "critic": {"v": torch.ones(2)}, "generator_ema": {"w": torch.zeros(3)}}
    packed = ckpt.pack_networks(states)
    path = ckpt.save_checkpoint(tmp_path, {**packed, "step": 1}, 1, keep=2)
    state = torch.load(path, weights_only=True)
    assert state["format_version"] == 2 and sorted(state["networks"]) == ["critic", "generator", "generator_ema"]
    assert torch.equal(state["generator"]["w"], torch.arange(3.0)) and state["discriminator"] == {}
    # The alias is the same tensor as networks["generator"] (stored once by torch.save).
    assert state["generator"]["w"].untyped_storage().data_ptr() == state["networks"]["generator"]["w"].untyped_storage().data_ptr()
    assert torch.equal(ckpt.network_state(state, "generator_ema")["w"], torch.zeros(3))
    old = {"generator": {"w": torch.ones(1)}, "discriminator": {"u": torch.ones(2)}, "networks": {}, "step": 3}
    assert torch.equal(ckpt.network_state(old, "discriminator")["u"], torch.ones(2))
    with pytest.raises(ckpt.UserError, match="no network 'critic'"):
        ckpt.network_state(old, "critic")
