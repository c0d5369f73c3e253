"""Audio representations: a song's rendered audio (`Song.audio`, from `prepare --audio-rate`)
<-> (T, F) frames, with `decode_audio(frames) -> waveform`.

`decode(frames)` returns a song without notes and with the audio attached, so sampling
writes a WAV. `fit(train_songs)` learns the normalisation constants (kept in
`state_dict()`, hence in checkpoints). STFTs come from scipy's ShortTimeFFT (its inverse
uses the dual window, so analysis followed by synthesis is exact wherever frames cover
the signal); no librosa.

  fft_blocks   Non-overlapping blocks of N samples, rectangular window, full DFT, real
               parts then imaginary parts: 2N values per step (the spectral LSTMs of
               Nayebi & Vitelli 2015, "GRUV: Algorithmic Music Generation using Recurrent
               Neural Networks", and their successors). `spectrum="rfft"` keeps the
               N/2 + 1 non-redundant bins (N + 2 values, same information); `overlap=True`
               uses a Hann window at 50 % overlap-add instead of blocks (no block clicks).
               Normalised per dimension to zero mean, unit variance.
  specgram_if  GANSynth's (Engel et al. 2019) log-magnitude + instantaneous frequency:
               STFT (Hann, nfft 2048, hop 512: 4 s at 16 kHz give 128 frames), channel 0 =
               log(|X| + 1e-6), channel 1 = the phase unwrapped along time, differenced, / pi;
               DC dropped by default (1024 bins); `mel=True` maps magnitude power and phase
               onto `num_mels` mel bands (inverse: pseudo-inverse of the mel matrix).
               Normalised per channel to [-margin, margin] by fitted affine constants.
               A step is [channel 0 bins..., channel 1 bins...].
"""

from __future__ import annotations

import numpy as np

from musicgan.audio import from_pcm16, to_pcm16
from musicgan.data.representation_base import Representation, finite
from musicgan.data.song import NUM_NOTE_COLUMNS, Song
from musicgan.errors import ConfigError, DataError

MAGNITUDE_FLOOR = 1e-6  # inside log(|X| + floor): silence maps to log(1e-6), not -inf
STD_FLOOR = 1e-8  # dimensions that never vary (the imaginary part of DC) stay at 0
PINV_RCOND = 1e-6  # mel pseudo-inverse: singular values below this share of the largest count as 0


class AudioRepresentation(Representation):
    """Base: checks and converts the song's audio, normalises, decodes to a song with audio."""

    dtype = np.float32

    def __init__(self, sample_rate: int, normalize: bool, **options) -> None:
        if int(sample_rate) < 1:
            raise ConfigError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
        super().__init__(sample_rate=int(sample_rate), normalize=bool(normalize), **options)
        self.needs_fit = bool(normalize)
        self.stats: dict[str, list[float]] | None = None

    # -- what a subclass provides ---------------------------------------------------------
    def analyse(self, waveform: np.ndarray) -> np.ndarray:  # (samples,) float64 -> (T, F) float64
        raise NotImplementedError

    def synthesise(self, frames: np.ndarray) -> np.ndarray:  # (T, F) float64 -> (samples,) float64
        raise NotImplementedError

    def accumulate(self, totals: dict | None, frames: np.ndarray) -> dict:
        """Running totals for the normalisation, updated with one song's unnormalised frames
        (songs are folded in one at a time: 4 h of chorales are ~5 GB of fft_blocks frames)."""
        raise NotImplementedError

    def statistics(self, totals: dict) -> dict[str, list[float]]:
        """Normalisation constants (JSON lists) from the totals over all training songs."""
        raise NotImplementedError

    def normalise(self, frames: np.ndarray, stats: dict) -> np.ndarray:
        raise NotImplementedError

    def denormalise(self, frames: np.ndarray, stats: dict) -> np.ndarray:
        raise NotImplementedError

    @property
    def hop_samples(self) -> int:
        """Samples of audio each frame advances."""
        raise NotImplementedError

    def frames_for_seconds(self, seconds: float) -> int:
        """Frames whose decoded audio lasts at least `seconds` (at least one)."""
        return max(1, int(np.ceil(float(seconds) * self.options["sample_rate"] / self.hop_samples)))

    # -- the codec ----------------------------------------------------------------------------
    def waveform(self, song: Song) -> np.ndarray:
        """The song's audio as float64 in [-1, 1]; DataError when it has none at this rate."""
        rate = self.options["sample_rate"]
        if song.audio is None:
            raise DataError(f"song {song.source or '?'} has no audio: prepare the shards with --audio-rate {rate}")
        if song.audio_rate != rate:
            raise DataError(
                f"song {song.source or '?'} has audio at {song.audio_rate} Hz, the {self.name} "
                f"representation wants {rate} Hz: prepare with --audio-rate {rate} or set its sample_rate"
            )
        return from_pcm16(song.audio).astype(np.float64)

    def encode(self, song: Song) -> np.ndarray:
        frames = self.analyse(self.waveform(song))
        if self.options["normalize"]:
            frames = self.normalise(frames, self._fitted_stats())
        return frames.astype(np.float32)

    def decode_audio(self, frames: np.ndarray) -> np.ndarray:
        """(T, F) frames (any values a generator emits) -> float32 waveform."""
        frames = finite(frames).reshape(-1, self.num_features)
        if self.options["normalize"]:
            frames = self.denormalise(frames, self._fitted_stats())
        return np.nan_to_num(self.synthesise(frames), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def decode(self, steps: np.ndarray) -> Song:
        """A song without notes carrying the decoded audio (int16; louder than full scale is clipped)."""
        return Song(
            np.zeros((0, NUM_NOTE_COLUMNS)),
            audio=to_pcm16(self.decode_audio(steps)),
            audio_rate=self.options["sample_rate"],
        )

    # -- normalisation state ------------------------------------------------------------------
    def fit(self, songs) -> None:
        totals = None
        for song in songs:
            totals = self.accumulate(totals, self.analyse(self.waveform(song)))
        if totals is None:
            raise DataError(f"the {self.name} representation needs at least one training song with audio to fit")
        self.stats = self.statistics(totals)

    def _fitted_stats(self) -> dict:
        if self.stats is None:
            raise RuntimeError(
                f"the {self.name} representation needs fit(train_songs) or load_state_dict() "
                "before encode/decode (or normalize=False)"
            )
        return self.stats

    def state_dict(self) -> dict:
        return dict(super().state_dict(), stats=self.stats)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stats = state.get("stats")


def _hann_stft(window_length: int, hop: int, sample_rate: int, onesided: bool):
    from scipy.signal import ShortTimeFFT
    from scipy.signal.windows import hann

    return ShortTimeFFT(
        hann(window_length, sym=False), hop, sample_rate, fft_mode="onesided" if onesided else "twosided"
    )


def _complex_to_parts(spectra: np.ndarray) -> np.ndarray:
    """(T, bins) complex -> (T, 2 bins): real parts, then imaginary parts."""
    return np.concatenate([spectra.real, spectra.imag], axis=1)


def _parts_to_complex(frames: np.ndarray) -> np.ndarray:
    half = frames.shape[1] // 2
    return frames[:, :half] + 1j * frames[:, half:]


# =============================================================================================
class FftBlocksRepresentation(AudioRepresentation):
    """DFT frames of N-sample blocks (see the module docstring); steps are (T, 2N) or (T, N + 2)."""

    name = "fft_blocks"

    def __init__(
        self,
        block_size: int = 4000,
        sample_rate: int = 16000,
        spectrum: str = "full",
        overlap: bool = False,
        normalize: bool = True,
    ) -> None:
        if int(block_size) < 2 or int(block_size) % 2:
            raise ConfigError(f"block_size must be an even number of samples >= 2, got {block_size}")
        if spectrum not in ("full", "rfft"):
            raise ConfigError(f"spectrum must be 'full' or 'rfft', got {spectrum!r}")
        super().__init__(sample_rate, normalize, block_size=int(block_size), spectrum=spectrum, overlap=bool(overlap))
        self.num_bins = int(block_size) if spectrum == "full" else int(block_size) // 2 + 1
        self.num_features = 2 * self.num_bins

    @property
    def hop_samples(self) -> int:
        n = self.options["block_size"]
        return n // 2 if self.options["overlap"] else n

    def analyse(self, waveform: np.ndarray) -> np.ndarray:
        n = self.options["block_size"]
        if self.options["overlap"]:
            return _complex_to_parts(self._stft().stft(waveform).T)
        blocks = np.pad(waveform, (0, -len(waveform) % n)).reshape(-1, n)  # last block zero-padded
        spectra = np.fft.fft(blocks, axis=1) if self.options["spectrum"] == "full" else np.fft.rfft(blocks, axis=1)
        return _complex_to_parts(spectra)

    def synthesise(self, frames: np.ndarray) -> np.ndarray:
        spectra = _parts_to_complex(frames)
        if self.options["overlap"]:
            return np.real(self._stft().istft(spectra.T)) if len(spectra) else np.zeros(0)
        n = self.options["block_size"]
        full = self.options["spectrum"] == "full"
        blocks = np.fft.ifft(spectra, axis=1).real if full else np.fft.irfft(spectra, n=n, axis=1)
        return blocks.reshape(-1)  # a generated full spectrum need not be Hermitian: its real part

    def _stft(self):
        n = self.options["block_size"]
        return _hann_stft(n, n // 2, self.options["sample_rate"], onesided=self.options["spectrum"] == "rfft")

    def accumulate(self, totals: dict | None, frames: np.ndarray) -> dict:
        totals = totals or {"count": 0, "sum": 0.0, "squares": 0.0}
        return {
            "count": totals["count"] + len(frames),
            "sum": totals["sum"] + frames.sum(axis=0),
            "squares": totals["squares"] + (frames**2).sum(axis=0),
        }

    def statistics(self, totals: dict) -> dict[str, list[float]]:
        mean = totals["sum"] / totals["count"]
        variance = np.maximum(totals["squares"] / totals["count"] - mean**2, 0.0)
        return {"mean": mean.tolist(), "std": np.maximum(np.sqrt(variance), STD_FLOOR).tolist()}

    def normalise(self, frames: np.ndarray, stats: dict) -> np.ndarray:
        return (frames - np.asarray(stats["mean"])) / np.asarray(stats["std"])

    def denormalise(self, frames: np.ndarray, stats: dict) -> np.ndarray:
        return frames * np.asarray(stats["std"]) + np.asarray(stats["mean"])


# =============================================================================================
class SpecgramIfRepresentation(AudioRepresentation):
    """GANSynth's log-magnitude + instantaneous-frequency frames (see the module docstring)."""

    name = "specgram_if"

    def __init__(
        self,
        n_fft: int = 2048,
        hop: int = 512,
        sample_rate: int = 16000,
        mel: bool = False,
        num_mels: int | None = None,
        drop_dc: bool = True,
        margin: float = 0.8,
        normalize: bool = True,
    ) -> None:
        if int(n_fft) < 4 or int(n_fft) % 2 or not 0 < int(hop) <= int(n_fft) // 2:
            raise ConfigError(f"n_fft must be even and >= 4 and hop in 1..n_fft/2, got n_fft={n_fft}, hop={hop}")
        if not 0 < float(margin) <= 1:
            raise ConfigError(f"margin must be in (0, 1], got {margin}")
        num_bins = int(n_fft) // 2 + (0 if drop_dc else 1)
        num_mels = int(num_mels) if num_mels is not None else num_bins
        super().__init__(
            sample_rate,
            normalize,
            n_fft=int(n_fft),
            hop=int(hop),
            mel=bool(mel),
            num_mels=num_mels,
            drop_dc=bool(drop_dc),
            margin=float(margin),
        )
        self.num_bins = num_mels if mel else num_bins
        self.num_features = 2 * self.num_bins
        self._mel_matrices = None

    @property
    def hop_samples(self) -> int:
        return self.options["hop"]

    # -- STFT <-> (log magnitude, IF) -------------------------------------------------------------
    def analyse(self, waveform: np.ndarray) -> np.ndarray:
        spectra = self._stft().stft(waveform).T  # (T, n_fft/2 + 1)
        if self.options["drop_dc"]:
            spectra = spectra[:, 1:]
        magnitude, phase = np.abs(spectra), np.unwrap(np.angle(spectra), axis=0)
        if self.options["mel"]:
            to_mel, _ = self._mels()
            log_magnitude = np.log((magnitude**2) @ to_mel + MAGNITUDE_FLOOR)  # log mel power
            phase = phase @ to_mel
        else:
            log_magnitude = np.log(magnitude + MAGNITUDE_FLOOR)
        frequency = np.diff(phase, axis=0, prepend=0.0) / np.pi
        return np.concatenate([log_magnitude, frequency], axis=1)

    def synthesise(self, frames: np.ndarray) -> np.ndarray:
        log_magnitude, frequency = frames[:, : self.num_bins], frames[:, self.num_bins :]
        # Clamp before exp only to stay finite on generated values; real data lies far inside.
        log_magnitude = np.clip(log_magnitude, np.log(MAGNITUDE_FLOOR), 20.0)
        phase = np.cumsum(frequency * np.pi, axis=0)
        if self.options["mel"]:
            _, from_mel = self._mels()
            power = np.maximum((np.exp(log_magnitude) - MAGNITUDE_FLOOR) @ from_mel, 0.0)
            magnitude, phase = np.sqrt(power), phase @ from_mel
        else:
            magnitude = np.maximum(np.exp(log_magnitude) - MAGNITUDE_FLOOR, 0.0)
        spectra = magnitude * np.exp(1j * phase)
        if self.options["drop_dc"]:
            spectra = np.concatenate([np.zeros((len(spectra), 1)), spectra], axis=1)
        return self._stft().istft(spectra.T) if len(spectra) else np.zeros(0)

    def _stft(self):
        return _hann_stft(self.options["n_fft"], self.options["hop"], self.options["sample_rate"], onesided=True)

    def _mels(self) -> tuple[np.ndarray, np.ndarray]:
        """(linear bins x mels, mels x linear bins): the mel matrix and its pseudo-inverse (cached)."""
        if self._mel_matrices is None:
            first = 1 if self.options["drop_dc"] else 0
            hz = np.arange(first, self.options["n_fft"] // 2 + 1) * self.options["sample_rate"] / self.options["n_fft"]
            to_mel = mel_matrix(hz, self.options["num_mels"], self.options["sample_rate"] / 2)
            # rcond: the matrix has rank ~70 % of its size; numpy's default keeps singular values
            # of 1e-16, whose inverses (1e13) turn float32 rounding into noise louder than the music.
            self._mel_matrices = (to_mel, np.linalg.pinv(to_mel, rcond=PINV_RCOND))
        return self._mel_matrices

    # -- normalisation: per channel, fitted range -> [-margin, margin] ---------------------------
    def accumulate(self, totals: dict | None, frames: np.ndarray) -> dict:
        channels = (frames[:, : self.num_bins], frames[:, self.num_bins :])
        low, high = [float(c.min()) for c in channels], [float(c.max()) for c in channels]
        if totals is not None:
            low, high = np.minimum(low, totals["low"]).tolist(), np.maximum(high, totals["high"]).tolist()
        return {"low": low, "high": high}

    def statistics(self, totals: dict) -> dict[str, list[float]]:
        return totals

    def _affine(self, stats: dict) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature (scale, offset) with normalised = scale * x + offset."""
        low, high = np.asarray(stats["low"]), np.asarray(stats["high"])
        scale = 2.0 * self.options["margin"] / np.maximum(high - low, STD_FLOOR)
        offset = -self.options["margin"] - scale * low
        return np.repeat(scale, self.num_bins), np.repeat(offset, self.num_bins)

    def normalise(self, frames: np.ndarray, stats: dict) -> np.ndarray:
        scale, offset = self._affine(stats)
        return frames * scale + offset

    def denormalise(self, frames: np.ndarray, stats: dict) -> np.ndarray:
        scale, offset = self._affine(stats)
        return (frames - offset) / scale


def mel_matrix(bin_hz: np.ndarray, num_mels: int, max_hz: float) -> np.ndarray:
    """(bins, num_mels) triangular mel filters (HTK scale, 0 Hz to max_hz, peak 1): column m
    weights the linear bins of band m. Bands narrower than a bin catch no bin (a zero
    column); the pseudo-inverse then ignores them."""
    mel = 2595.0 * np.log10(1.0 + np.asarray(bin_hz) / 700.0)
    edges = np.linspace(0.0, 2595.0 * np.log10(1.0 + max_hz / 700.0), num_mels + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (mel[None, :] - lower) / (centre - lower)
    falling = (upper - mel[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).T


AUDIO_REPRESENTATIONS = {
    "fft_blocks": FftBlocksRepresentation,
    "specgram_if": SpecgramIfRepresentation,
}
