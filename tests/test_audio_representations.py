"""fft_blocks and specgram_if on audio rendered from real chorales: layout, round trips (with
their stated error), fitted normalisation in the state dict, streaming through the loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musicgan.audio import find_soundfont, from_pcm16, render_audio
from musicgan.data.loader import iter_songs, make_loader
from musicgan.data.note_corpus import note_items, note_song
from musicgan.data.prepare import prepare_dataset
from musicgan.data.representations import build_representation, representation_from_state
from musicgan.data.shards import split_urls
from musicgan.data.song import Song
from musicgan.errors import DataError

pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="needs fluidsynth + fluid-soundfont-gm")
RATE = 8000  # the spec's small configuration: 8 kHz, N = 1000, nfft 256 / hop 64
SMALL_SPECGRAM = dict(n_fft=256, hop=64, sample_rate=RATE)


@pytest.fixture(scope="module")
def audio_shards(tmp_path_factory):
    """Three chorales with their audio at 8 kHz, all in the train split."""
    out = tmp_path_factory.mktemp("audio_shards")
    prepare_dataset("music21:bach", out, workers=1, ratios=(1, 0, 0), progress=False, limit=3, audio_rate=RATE)
    return out


@pytest.fixture(scope="module")
def chorales(audio_shards) -> list[Song]:
    return sorted(iter_songs(split_urls(audio_shards, "train")), key=lambda s: s.source)


def _round_trip_lsb(rep, song: Song) -> tuple[int, float]:
    """(max |error| in int16 steps over the song, error RMS relative to the signal RMS)."""
    decoded = rep.decode(rep.encode(song))
    assert decoded.num_notes == 0 and decoded.audio_rate == song.audio_rate and decoded.audio.dtype == np.int16
    assert len(decoded.audio) >= len(song.audio)
    error = decoded.audio[: len(song.audio)].astype(np.int64) - song.audio
    return int(np.abs(error).max()), float(np.sqrt(np.mean(error**2.0) / np.mean(song.audio**2.0)))


@pytest.mark.parametrize(
    "options, features",
    [
        ({}, 2000),
        ({"spectrum": "rfft"}, 1002),
        ({"overlap": True}, 2000),
        ({"overlap": True, "spectrum": "rfft"}, 1002),
    ],
)
def test_fft_blocks_round_trip_rendered_chorales_exactly(chorales, options, features):
    rep = build_representation("fft_blocks", block_size=1000, sample_rate=RATE, **options)
    rep.fit(chorales[:2])
    song = chorales[2]  # not seen by fit
    steps = rep.encode(song)
    assert steps.shape[1] == rep.num_features == features and steps.dtype == np.float32
    if not options:
        assert len(steps) == -(-len(song.audio) // 1000)  # one step per block, the last zero-padded
    assert _round_trip_lsb(rep, song) == (0, 0.0)  # exact: float32 frames lose less than half an LSB


def test_fft_blocks_faithful_layout_is_real_parts_then_imaginary_parts(chorales):
    rep = build_representation("fft_blocks", block_size=1000, sample_rate=RATE, normalize=False)
    song = chorales[0]
    block = from_pcm16(song.audio[5000:6000]).astype(np.float64)
    spectrum = np.fft.fft(block)
    np.testing.assert_allclose(rep.encode(song)[5], np.concatenate([spectrum.real, spectrum.imag]), atol=1e-4)


def test_fitted_normalisation_is_per_dimension_and_travels_in_the_state_dict(chorales):
    rep = build_representation("fft_blocks", block_size=1000, sample_rate=RATE, spectrum="rfft")
    with pytest.raises(RuntimeError, match="needs fit"):
        rep.encode(chorales[0])
    rep.fit(chorales)
    frames = np.concatenate([rep.encode(song) for song in chorales]).astype(np.float64)
    varying = np.asarray(rep.stats["std"]) > 1e-6  # the imaginary parts of DC and Nyquist are always 0
    assert varying.sum() == rep.num_features - 2
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(frames.std(axis=0)[varying], 1.0, atol=1e-4)
    restored = representation_from_state(json.loads(json.dumps(rep.state_dict())))  # as a checkpoint holds it
    assert np.array_equal(restored.encode(chorales[1]), rep.encode(chorales[1]))


def test_specgram_if_linear_round_trip_is_exact_and_dropping_dc_costs_a_few_lsb(chorales):
    with_dc = build_representation("specgram_if", drop_dc=False, **SMALL_SPECGRAM)
    gansynth = build_representation("specgram_if", **SMALL_SPECGRAM)  # DC dropped, as GANSynth does
    for rep in (with_dc, gansynth):
        rep.fit(chorales[:2])
        assert rep.encode(chorales[0]).min() == pytest.approx(-0.8) and rep.encode(chorales[0]).max() <= 0.8 + 1e-6
    assert _round_trip_lsb(with_dc, chorales[2]) == (0, 0.0)
    max_lsb, relative = _round_trip_lsb(gansynth, chorales[2])
    # Measured on bwv101.7 at nfft 256: at most 21 int16 steps, error RMS 2.6e-3 of the signal's
    # (at nfft 2048 / 16 kHz: 8 steps, 5.5e-4): the low end of each frame's spectrum is lost.
    assert 0 < max_lsb <= 64 and relative < 5e-3, (max_lsb, relative)


def test_specgram_if_mel_round_trip_keeps_the_spectrogram_within_its_stated_error(chorales):
    rep = build_representation("specgram_if", mel=True, **SMALL_SPECGRAM)
    assert rep.num_features == 2 * 128
    rep.fit(chorales[:2])
    song = chorales[2]
    decoded = rep.decode(rep.encode(song)).audio[: len(song.audio)]
    linear = build_representation("specgram_if", normalize=False, **SMALL_SPECGRAM)
    original, rebuilt = (
        np.exp(linear.analyse(from_pcm16(a).astype(np.float64))[:, :128]) for a in (song.audio, decoded)
    )
    relative = np.linalg.norm(rebuilt - original) / np.linalg.norm(original)
    # The mel matrix has rank ~70 % of its size, so high-frequency detail is smoothed. Measured on
    # bwv101.7: 0.13 of the magnitude spectrogram's norm at nfft 256 (0.09 at nfft 2048, 16 kHz);
    # the waveform differs more (0.31 of its RMS): phase is averaged across each mel band.
    assert relative < 0.25, relative


def test_specgram_if_is_gansynth_layout_on_a_rendered_note():
    item = note_items("soundfont:notes?programs=0&pitches=60")[0]
    song = note_song(item)
    song = song.replace(audio=render_audio(song, 16000), audio_rate=16000)
    steps = build_representation("specgram_if", normalize=False).encode(song)
    assert steps.shape == (128, 2 * 1024)  # 4 s at 16 kHz, nfft 2048, hop 512, DC dropped
    frequency = steps[:, 1024:]
    assert np.abs(frequency).max() <= 1.0 + 1e-6  # an unwrapped phase step divided by pi
    assert steps[:, :1024].min() >= np.log(1e-6) - 1e-4


def test_instantaneous_frequency_of_a_steady_sine_is_its_phase_advance_per_hop_over_pi():
    # 9 bins of 31.25 Hz = 281.25 Hz: per hop of 64 samples the phase advances 4.5 pi = 0.5 pi (mod 2 pi).
    samples = np.arange(RATE) * (2 * np.pi * 281.25 / RATE)
    song = Song(np.zeros((0, 6)), audio=(0.5 * 32767 * np.sin(samples)).astype(np.int16), audio_rate=RATE)
    steps = build_representation("specgram_if", normalize=False, **SMALL_SPECGRAM).encode(song)
    assert np.allclose(steps[10:-10, 128 + 8], 0.5, atol=1e-3)  # bin 9 is column 8 without DC


def test_decode_of_any_generator_output_is_a_song_with_bounded_audio(chorales):
    rep = build_representation("fft_blocks", block_size=1000, sample_rate=RATE)
    rep.fit(chorales[:1])
    garbage = np.random.default_rng(0).normal(scale=50.0, size=(4, rep.num_features))
    garbage[0, :3] = [np.nan, np.inf, -np.inf]
    song = rep.decode(garbage)
    assert song.num_notes == 0 and song.audio.dtype == np.int16 and len(song.audio) == 4000


def test_songs_without_audio_or_at_another_rate_are_clear_errors(chorales):
    rep = build_representation("fft_blocks", sample_rate=16000, normalize=False)
    with pytest.raises(DataError, match="has audio at 8000 Hz, the fft_blocks representation wants 16000 Hz"):
        rep.encode(chorales[0])
    with pytest.raises(DataError, match="has no audio: prepare the shards with --audio-rate 16000"):
        rep.encode(chorales[0].replace(audio=None))


def test_the_loader_streams_audio_windows(audio_shards, chorales):
    rep = build_representation("fft_blocks", block_size=1000, sample_rate=RATE, spectrum="rfft")
    rep.fit(chorales)
    loader = make_loader(
        split_urls(audio_shards, "train"),
        rep,
        seq_len=6,
        batch_size=2,
        num_batches=2,
        seed=3,
        epoch=0,
        rank=0,
        world_size=1,
    )
    encoded = {song.source: rep.encode(song) for song in chorales}
    for batch in loader:
        assert batch.x.shape == (2, 6, rep.num_features) and batch.x.dtype.is_floating_point
        for row, source in zip(batch.x.numpy(), batch.keys):
            steps = encoded[source]
            assert any(np.array_equal(row, steps[s : s + 6]) for s in range(len(steps) - 5))


def test_samples_of_an_audio_representation_are_written_as_wav(chorales, tmp_path):
    import wave

    from musicgan.training.sampling import decode_all, write_songs

    rep = build_representation("specgram_if", **SMALL_SPECGRAM)
    rep.fit(chorales[:1])
    steps = np.stack([rep.encode(song)[:40] for song in chorales[:2]])  # (N, L, F) as a generator emits
    paths = write_songs(decode_all(rep, steps), tmp_path, png=False) + write_songs(
        [chorales[0]], tmp_path, prefix="x", png=False
    )
    assert [p.name for p in paths] == ["sample-000.wav", "sample-001.wav", "x-000.mid"]  # notes still give MIDI
    for path, row in zip(paths[:2], steps):
        with wave.open(str(path)) as wav:
            assert wav.getframerate() == RATE and wav.getnchannels() == 1 and wav.getsampwidth() == 2
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        assert np.array_equal(pcm, rep.decode(row).audio)
