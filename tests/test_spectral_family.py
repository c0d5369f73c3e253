"""The spectral-lstm family: next-frame loss, the sliding generation loop, held-out seeds,
config checks, and runs on rendered chorales (one process; 2 ranks resumed = straight)."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch
from dist_helpers import assert_same_weights, musicgan, torchrun_split_run

from musicgan.config import Config, apply_overrides, validate
from musicgan.errors import ConfigError, UserError
from musicgan.models.spectral import build_spectral_net
from musicgan.presets import get_preset
from musicgan.training.families import get_family
from musicgan.training.families.spectral import continue_frames, next_frame_loss


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    torch.manual_seed(0)


def spectral_cfg(data="", *overrides: str) -> Config:
    cfg = get_preset("spectral-debug")
    cfg.data.path = str(data)
    cfg.log.progress = False
    return validate(apply_overrides(cfg, list(overrides)))


def test_next_frame_loss_compares_prediction_t_with_frame_t_plus_1_on_valid_steps_only():
    frames = torch.randn(2, 5, 3)
    predictions = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])  # row 1: frames 3, 4 are padding
    expected = torch.cat(
        [(predictions[0, :4] - frames[0, 1:5]).square().mean(1), (predictions[1, :2] - frames[1, 1:3]).square().mean(1)]
    ).mean()
    torch.testing.assert_close(next_frame_loss(predictions, frames, lengths), expected)
    # The loss is zero for a perfect next-frame predictor, whatever the padding holds.
    shifted = torch.cat([frames[:, 1:], torch.randn(2, 1, 3)], dim=1)
    assert next_frame_loss(shifted, frames, lengths).item() == 0.0


def test_generation_slides_a_window_of_t_frames_and_returns_only_predictions():
    net = build_spectral_net("fc", 6, 8).eval()
    seed = torch.randn(2, 4, 6)
    out = continue_frames(net, seed, 3)
    assert out.shape == (2, 3, 6)
    window = seed
    for step in range(3):  # the loop by hand: the last output of the current window, appended
        expected = net(window)[:, -1]
        torch.testing.assert_close(out[:, step], expected)
        window = torch.cat([window[:, 1:], expected[:, None]], dim=1)
    assert not any(torch.allclose(out[:, i], seed[:, j]) for i in range(3) for j in range(4))  # no seed frame


def test_generating_no_samples_reads_no_data():
    family = get_family(spectral_cfg("/nonexistent"))
    networks = family.build_networks(family.build_representation())
    assert family.generate(networks, 0, 5).shape == (0, 5, 202)


def test_config_accepts_audio_representations_and_the_family_checks_its_keys():
    validate(spectral_cfg())  # fft_blocks passes config validation (the representation registry)
    cfg = Config()
    cfg.data.representation = "wavelets"
    with pytest.raises(ConfigError, match="data.representation='wavelets' is not one of .*fft_blocks"):
        validate(cfg)
    with pytest.raises(ConfigError, match="model.spectral_arch='lstm' is not one of baseline, fc, conv"):
        get_family(spectral_cfg("", "model.spectral_arch=lstm"))
    with pytest.raises(ConfigError, match="spectral-lstm needs data.representation=fft_blocks, got 'pianoroll'"):
        get_family(spectral_cfg("", "data.representation=pianoroll"))
    with pytest.raises(ConfigError, match="data.spectrum='half' is not one of full, rfft"):
        spectral_cfg("", "data.spectrum=half")


@pytest.mark.parametrize("arch", ["baseline", "bilinear", "kblock"])
def test_l2_covers_dense_weights_only_and_rmsprop_is_the_optimizer(arch):
    family = get_family(spectral_cfg("", f"model.spectral_arch={arch}", "optim.l2=0.5"))
    rep = family.build_representation()
    net = family.build_networks(rep)["generator"]
    optimizer = family.optimizers()["generator"](net.parameters())
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.defaults["lr"] == 1e-4
    dense = {id(p) for p in net.dense_parameters()}
    assert dense and all(id(p) not in dense for p in net.lstms.parameters())


# -- on rendered chorales ---------------------------------------------------------------------
def test_seeds_are_windows_of_held_out_songs(bach_audio_shards):
    from musicgan.data.loader import iter_encoded, iter_songs
    from musicgan.data.shards import split_urls

    family = get_family(spectral_cfg(bach_audio_shards))
    rep = family.build_representation()
    rep.fit(iter_songs(split_urls(bach_audio_shards, "train")))
    family.build_networks(rep)
    seeds = family.seed_windows(3)
    assert seeds.shape == (3, family.seed_frames, rep.num_features)

    def windows_of(split):
        encoded = [frames for _, frames in iter_encoded(split_urls(bach_audio_shards, split), rep)]
        return [f[i : i + family.seed_frames] for f in encoded for i in range(len(f) - family.seed_frames + 1)]

    valid, train = windows_of("valid"), windows_of("train")
    for seed in seeds:
        assert any(np.array_equal(seed, w) for w in valid)
        assert not any(np.array_equal(seed, w) for w in train)


def test_one_process_run_then_sample_seconds_writes_non_silent_wavs_and_spectrograms(bach_audio_shards, tmp_path):
    from musicgan.training.loop import train

    result = train(spectral_cfg(bach_audio_shards, "train.max_steps=6"), tmp_path / "run")
    assert result.finished and result.step == 6
    state = torch.load(result.checkpoint, weights_only=True)
    stats = state["representation"]["stats"]
    assert state["representation"]["name"] == "fft_blocks" and len(stats["mean"]) == 200 + 2  # rfft, N = 200
    musicgan(["sample", "--run", str(tmp_path / "run"), "--seconds", "1.3", "--num", "2", "--out", str(tmp_path / "s")])
    for index in range(2):
        with wave.open(str(tmp_path / "s" / f"sample-{index:03d}.wav")) as wav:
            assert wav.getframerate() == 8000 and wav.getnframes() == 10400  # exactly 1.3 s
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
        assert np.sqrt(np.mean(pcm**2)) > 10.0  # not silent (int16 RMS)
        assert (tmp_path / "s" / f"sample-{index:03d}.png").stat().st_size > 1000


def test_seconds_need_an_audio_representation():
    from musicgan.data.representations import build_representation
    from musicgan.training.sampling import _frames_for_seconds

    assert _frames_for_seconds(build_representation("fft_blocks", block_size=1000, sample_rate=8000), 1.3) == 11
    assert (
        _frames_for_seconds(build_representation("fft_blocks", block_size=1000, sample_rate=8000, overlap=True), 1.3)
        == 21
    )
    with pytest.raises(UserError, match="--seconds needs a run on an audio representation; this one is 'pianoroll'"):
        _frames_for_seconds(build_representation("pianoroll"), 2.0)


def test_two_ranks_resume_equals_uninterrupted(bach_audio_shards, tmp_path):
    common = ["train", "--preset", "spectral-debug", "--data", str(bach_audio_shards)]
    full, split, first = torchrun_split_run(common, tmp_path, 8, 3)
    assert full["step"] == split["step"] == 8 and first["step"] == 3
    assert_same_weights(full, split)
    assert any(not torch.equal(full["generator"][k], first["generator"][k]) for k in full["generator"])


def test_throughput_benchmark_times_a_real_training_step_of_every_architecture():
    from musicgan.benchmarks.spectral import run

    rows = run("toy", repeats=1)["rows"]
    assert [r["arch"] for r in rows] == ["baseline", "fc", "conv", "stacked", "bilinear", "kblock"]
    assert all(r["blocks_per_s"] > 0 and r["blocks_per_s"] == r["batch"] * r["window"] / r["step_s"] for r in rows)
    params = {r["arch"]: r["parameters"] for r in rows}
    assert params["stacked"] > params["fc"] and params["bilinear"] > params["fc"]  # a second LSTM
