"""Audio metrics on signals whose answers are known: tones, noise, silence, clicks, copies."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan.metrics.audio import (
    calibration,
    click_ratio,
    copy_distance,
    frame_length,
    frechet_log_mel,
    rms_variation,
    silence_ratio,
    spectral_flatness,
)

RATE, BLOCK = 8000, 1000


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.3, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


def noise(seconds: float = 1.0, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    return amplitude * np.random.default_rng(seed).standard_normal(int(seconds * RATE))


def test_frames_are_about_32_ms():
    assert frame_length(8000) == 256 and frame_length(16000) == 512


def test_flatness_separates_tones_from_noise():
    assert spectral_flatness(tone(440), RATE) < 0.05
    assert spectral_flatness(noise(), RATE) > 0.4
    assert np.isnan(spectral_flatness(np.zeros(RATE), RATE))  # all silent: undefined


def test_silence_ratio_and_rms_variation():
    half_silent = np.concatenate([tone(440, 0.5), np.zeros(RATE // 2)])
    assert silence_ratio(half_silent, RATE) == pytest.approx(0.5, abs=0.02)
    assert silence_ratio(tone(440), RATE) == 0.0
    assert rms_variation(tone(440), RATE) < 0.01  # steady
    assert rms_variation(half_silent, RATE) > 0.9  # on / off


def test_click_ratio_finds_discontinuities_at_block_boundaries_only():
    smooth = tone(261.63, seconds=8)  # boundaries fall on every phase of the tone
    assert click_ratio(smooth, RATE, BLOCK) == pytest.approx(1.0, abs=0.2)
    blocks = smooth.reshape(-1, BLOCK).copy()
    blocks[1::2] *= -1  # every other block flips sign: a jump at each boundary
    assert click_ratio(blocks.reshape(-1), RATE, BLOCK) > 5.0
    shifted = np.roll(blocks.reshape(-1), BLOCK // 2)  # the same jumps, off the block grid
    assert click_ratio(shifted, RATE, BLOCK) < 1.2


def test_frechet_is_small_for_the_same_kind_of_audio_and_large_across_kinds():
    tones = [tone(f) for f in (330, 440, 550, 660)]
    other_tones = [tone(f, phase=1.0) for f in (330, 440, 550, 660)]
    noises = [noise(seed=s) for s in range(4)]
    same, different = frechet_log_mel(tones, other_tones, RATE), frechet_log_mel(noises, tones, RATE)
    assert 1000 * same < different
    assert 1000 * frechet_log_mel(noises, [noise(seed=9 + s) for s in range(4)], RATE) < different


def test_copy_distance_is_zero_for_a_copy_of_training_audio():
    train = [tone(440), noise(seed=3)]
    assert copy_distance([train[1][:4000]], train, RATE) < 0.02
    assert copy_distance([tone(1750)], train, RATE) > 5 * copy_distance([train[0][:4000]], train, RATE)


def test_calibration_has_a_real_row_and_a_noise_floor():
    real = [tone(f) for f in (330, 440, 550, 660)]
    result = calibration(real, [tone(f) for f in (300, 400)], RATE, BLOCK)
    assert result["real_vs_real"]["frechet_log_mel"] < result["noise"]["frechet_log_mel"]
    assert result["noise"]["spectral_flatness"] > 0.4 > result["real_vs_real"]["spectral_flatness"]


def test_evaluate_scores_wav_sets_against_real_audio_and_escapes_names(bach_audio_shards, tmp_path):
    from musicgan.audio import write_wav
    from musicgan.data.loader import iter_songs
    from musicgan.data.shards import split_urls
    from musicgan.metrics.audio_evaluate import run_audio_evaluate

    train = [s.audio[:16000] for s in iter_songs(split_urls(bach_audio_shards, "train"))]
    copies, hiss = tmp_path / "copies", tmp_path / "<i>hiss&co"
    for folder in (copies, hiss):
        folder.mkdir()
    for k, pcm in enumerate(train):
        write_wav(pcm, copies / f"c{k}.wav", 8000)
        write_wav(noise(2.0, seed=k, amplitude=0.1), hiss / f"n{k}.wav", 8000)
    lines = []
    result = run_audio_evaluate(
        run=str(copies),
        compare=[str(hiss)],
        reference=str(bach_audio_shards),
        out=str(tmp_path / "ev"),
        echo=lines.append,
    )
    ours, noisy = result["sets"]["copies"]["metrics"], result["sets"]["<i>hiss&co"]["metrics"]
    assert ours["copy_distance"] < 1e-3 < noisy["copy_distance"]  # training audio replayed: memorisation
    assert ours["frechet_log_mel"] < noisy["frechet_log_mel"]
    assert noisy["spectral_flatness"] > 0.4 > ours["spectral_flatness"]
    assert set(result["calibration"]) == {"real_vs_real", "noise"}
    page = (tmp_path / "ev" / "index.html").read_text()
    assert "&lt;i&gt;hiss&amp;co" in page and "<i>hiss" not in page
    players = sum(min(2, n) for n in (len(train), len(train), result["reference"]["num_clips"]))
    assert page.count("<audio controls") == players and any("calibration: noise" in line for line in lines)
