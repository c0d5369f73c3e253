"""Objective metrics of generated audio: pure functions on mono float waveforms in [-1, 1].

Per clip (`AUDIO_METRICS`, name -> function(waveform, rate, block) -> float):
  spectral_flatness  mean over frames of geometric / arithmetic mean of the power spectrum
                     (0: tonal, 1: white noise); silent frames are left out.
  silence_ratio      share of frames whose RMS is below SILENCE_DBFS.
  rms_variation      coefficient of variation (std / mean) of the frame RMS: dynamics; a
                     stationary drone is near 0.
  click_ratio        mean |x[n] - x[n-1]| across block boundaries (n a multiple of the block
                     size) over the same mean everywhere else: ~1 on real audio, far above
                     1 when the blocks do not join (the clicks of block-wise DFT synthesis).
Per set, against real audio:
  frechet_log_mel    Fréchet distance between Gaussians fitted to per-frame log-mel
                     (NUM_MELS bands) vectors of the generated and the real clips (an
                     in-house FAD-like distance: no pretrained embedding).
  copy_distance      mean over generated frames of 1 - the highest cosine similarity to any
                     training frame (log-mel vectors centred on the training mean): near 0
                     means the model replays training audio (memorisation).
Frames: Hann windows of ~32 ms (a power of two), 50 % overlap (scipy's ShortTimeFFT).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from musicgan.data.audio_representations import mel_matrix
from musicgan.metrics.distributions import frechet_from_moments

NUM_MELS = 64
FRAME_SECONDS = 0.032
SILENCE_DBFS = -60.0  # frames quieter than this count as silence
POWER_FLOOR = 1e-10  # inside log(mel power + floor)
MAX_TRAIN_FRAMES = 20000  # copy distance: training frames compared (a seeded subset beyond this)


def frame_length(rate: int) -> int:
    """The power of two nearest to FRAME_SECONDS at this rate (256 at 8 kHz, 512 at 16 kHz)."""
    return int(2 ** round(np.log2(FRAME_SECONDS * rate)))


def power_frames(waveform: np.ndarray, rate: int) -> np.ndarray:
    """(frames, bins) power spectra of Hann windows at 50 % overlap."""
    from scipy.signal import ShortTimeFFT
    from scipy.signal.windows import hann

    n = frame_length(rate)
    stft = ShortTimeFFT(hann(n, sym=False), n // 2, rate, fft_mode="onesided")
    waveform = np.asarray(waveform, dtype=np.float64)
    if len(waveform) < n:
        waveform = np.pad(waveform, (0, n - len(waveform)))
    return np.abs(stft.stft(waveform, p0=0, p1=stft.p_max(len(waveform)) - 1)).T ** 2


def rms_frames(waveform: np.ndarray, rate: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames of frame_length(rate) samples."""
    n = frame_length(rate)
    usable = max(n, len(waveform) - len(waveform) % n)
    padded = np.pad(np.asarray(waveform, dtype=np.float64), (0, max(0, usable - len(waveform))))[:usable]
    return np.sqrt(np.mean(padded.reshape(-1, n) ** 2, axis=1))


def log_mel_frames(waveform: np.ndarray, rate: int, num_mels: int = NUM_MELS) -> np.ndarray:
    """(frames, num_mels) log mel power."""
    n = frame_length(rate)
    to_mel = mel_matrix(np.arange(n // 2 + 1) * rate / n, num_mels, rate / 2)
    return np.log(power_frames(waveform, rate) @ to_mel + POWER_FLOOR)


def _loud(power: np.ndarray) -> np.ndarray:
    threshold = 10 ** (SILENCE_DBFS / 10) * power.shape[1]
    return power[power.mean(axis=1) * 2 > threshold] if len(power) else power


def spectral_flatness(waveform: np.ndarray, rate: int, block: int = 0) -> float:
    power = _loud(power_frames(waveform, rate)) + POWER_FLOOR
    if not len(power):
        return float("nan")
    return float(np.mean(np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)))


def silence_ratio(waveform: np.ndarray, rate: int, block: int = 0) -> float:
    rms = rms_frames(waveform, rate)
    return float(np.mean(20 * np.log10(rms + 1e-12) < SILENCE_DBFS))


def rms_variation(waveform: np.ndarray, rate: int, block: int = 0) -> float:
    rms = rms_frames(waveform, rate)
    return float(rms.std() / rms.mean()) if rms.mean() > 0 else float("nan")


def click_ratio(waveform: np.ndarray, rate: int, block: int = 0) -> float:
    steps = np.abs(np.diff(np.asarray(waveform, dtype=np.float64)))  # steps[i] = |x[i+1] - x[i]|
    if block < 2 or len(steps) < 2 * block:
        return float("nan")
    at_boundary = np.zeros(len(steps), dtype=bool)
    at_boundary[block - 1 :: block] = True
    inside = steps[~at_boundary].mean()
    return float(steps[at_boundary].mean() / inside) if inside > 0 else float("nan")


AUDIO_METRICS: dict[str, Callable[[np.ndarray, int, int], float]] = {
    "spectral_flatness": spectral_flatness,
    "silence_ratio": silence_ratio,
    "rms_variation": rms_variation,
    "click_ratio": click_ratio,
}


def clip_metrics(clips: list[np.ndarray], rate: int, block: int) -> dict[str, float]:
    """Mean of every AUDIO_METRICS entry over the clips (NaN clips left out)."""
    return {name: _nan_mean([fn(c, rate, block) for c in clips]) for name, fn in AUDIO_METRICS.items()}


def _nan_mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def frechet_log_mel(generated: list[np.ndarray], real: list[np.ndarray], rate: int) -> float:
    a, b = (np.concatenate([log_mel_frames(c, rate) for c in clips]) for clips in (generated, real))
    return frechet_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def copy_distance(generated: list[np.ndarray], train: list[np.ndarray], rate: int, seed: int = 0) -> float:
    # Centred on the training frames' mean: raw log-mel vectors share a large negative offset
    # that makes any two frames look alike to the cosine.
    gen = np.concatenate([log_mel_frames(c, rate) for c in generated])
    ref = np.concatenate([log_mel_frames(c, rate) for c in train])
    centre = ref.mean(axis=0)
    gen, ref = _unit_rows(gen - centre), _unit_rows(ref - centre)
    if len(ref) > MAX_TRAIN_FRAMES:
        ref = ref[np.random.default_rng(seed).choice(len(ref), MAX_TRAIN_FRAMES, replace=False)]
    return float(np.mean(1.0 - (gen @ ref.T).max(axis=1)))


def set_metrics(
    generated: list[np.ndarray], real: list[np.ndarray], train: list[np.ndarray], rate: int, block: int
) -> dict[str, float]:
    """Per-clip means plus the two distances of one set of clips against the real ones."""
    return {
        **clip_metrics(generated, rate, block),
        "frechet_log_mel": frechet_log_mel(generated, real, rate),
        "copy_distance": copy_distance(generated, train, rate),
    }


def calibration(real: list[np.ndarray], train: list[np.ndarray], rate: int, block: int, seed: int = 0) -> dict:
    """The scale of every number: real held-out clips (first half vs second half for the
    Fréchet distance) and white noise at the real clips' RMS (the floor a model must beat)."""
    half = max(1, len(real) // 2)
    rng = np.random.default_rng(seed)
    noise = [rng.standard_normal(len(c)) * float(np.sqrt(np.mean(np.square(c)))) for c in real]
    real_row = {**clip_metrics(real, rate, block), "copy_distance": copy_distance(real, train, rate, seed)}
    real_row["frechet_log_mel"] = frechet_log_mel(real[:half], real[half:] or real, rate)
    return {"real_vs_real": real_row, "noise": set_metrics(noise, real, train, rate, block)}
