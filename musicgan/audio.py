"""The one synthesizer module: a song -> mono audio with FluidSynth and a General MIDI
soundfont, for shards (`musicgan prepare --audio-rate`) and for WAV files (samples, reports).

FluidSynth comes from the Debian packages `fluidsynth` and `fluid-soundfont-gm`
(`apt-get install -y fluidsynth fluid-soundfont-gm`, or `./launch/setup --system`);
`$MUSICGAN_SOUNDFONT` points at another .sf2 file. `render_wav` falls back to pretty_midi's
sine synthesis when FluidSynth is missing (it sounds like a test tone, but always works);
`render_audio` (what prepare stores) never falls back: it raises.

Determinism: reverb and chorus are off and FluidSynth writes 32-bit float samples (its
16-bit writer adds dither noise); the stereo output is mixed down and quantised here, so
the same song gives the same bytes on every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from musicgan.data.song import Song
from musicgan.errors import DataError, MidiError

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm (Debian/Ubuntu)
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora/Arch
    "/usr/share/soundfonts/default.sf2",
)
FLUIDSYNTH_TIMEOUT_S = 120
FLUIDSYNTH_GAIN = 0.5  # the default 0.2 is quiet; 0.5 leaves a 4-part chorale peaking near 0.25
PCM_SCALE = 32767.0
# Longer songs are skipped: FluidSynth's float output needs 8 bytes per sample (150 MB of
# temporary file for 20 minutes at 16 kHz) and a shard sample should stay well below that.
MAX_AUDIO_SECONDS = 1200.0


def find_soundfont() -> str | None:
    """`$MUSICGAN_SOUNDFONT` when set and present, else the first installed GM soundfont."""
    override = os.environ.get("MUSICGAN_SOUNDFONT")
    if override and Path(override).is_file():
        return override
    return next((p for p in SOUNDFONT_CANDIDATES if Path(p).is_file()), None)


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None and find_soundfont() is not None


def require_fluidsynth() -> str:
    """The soundfont path; DataError (one line) when FluidSynth or a GM soundfont is missing."""
    if shutil.which("fluidsynth") is None:
        raise DataError(
            "audio rendering needs the fluidsynth program: apt-get install -y fluidsynth "
            "fluid-soundfont-gm (or ./launch/setup --system)"
        )
    soundfont = find_soundfont()
    if soundfont is None:
        raise DataError(
            "audio rendering needs a General MIDI soundfont: apt-get install -y fluid-soundfont-gm, "
            "or set MUSICGAN_SOUNDFONT to an .sf2 file"
        )
    return soundfont


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 (clipped, rounded half to even: deterministic)."""
    return np.round(np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * PCM_SCALE).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1], the exact inverse of to_pcm16 on its range."""
    return (np.asarray(pcm, dtype=np.float64) / PCM_SCALE).astype(np.float32)


def render_audio(song: Song, sample_rate: int, seconds: float | None = None) -> np.ndarray:
    """Mono int16 audio of `song`: `seconds` long (default: the song's length), FluidSynth's
    release tail beyond it cut off. Raises MidiError(reason) when FluidSynth fails or renders
    noticeably less than the song (the reason goes into the manifest's skipped list)."""
    soundfont = require_fluidsynth()
    seconds = song.length_s if seconds is None else float(seconds)
    if not song.num_notes:
        raise MidiError("audio: no notes to render")
    if seconds > MAX_AUDIO_SECONDS:
        raise MidiError(
            f"audio: the song lasts {seconds / 60:.0f} min, above the {MAX_AUDIO_SECONDS / 60:.0f} min "
            "limit for rendering"
        )
    stereo, messages = _fluidsynth_float(song, sample_rate, soundfont)
    wanted = int(round(seconds * sample_rate))
    if len(stereo) < wanted - sample_rate // 2:  # more than 0.5 s short: the renderer stopped early
        raise MidiError(f"audio: FluidSynth rendered {len(stereo) / sample_rate:.1f} s of a {seconds:.1f} s song")
    if not stereo.any():  # FluidSynth exits 0 with silence when it cannot load the soundfont
        raise MidiError(f"audio: FluidSynth rendered only silence ({messages or 'no message'})")
    mono = stereo[:wanted].mean(axis=1)
    return to_pcm16(np.pad(mono, (0, wanted - len(mono))))


def _fluidsynth_float(song: Song, sample_rate: int, soundfont: str) -> tuple[np.ndarray, str]:
    """((samples, 2) float32 stereo as FluidSynth renders it, its first error line); MidiError on failure."""
    from musicgan.data.midi import write_midi

    with tempfile.TemporaryDirectory(prefix="musicgan-audio-") as tmp:
        midi_path, raw_path = Path(tmp) / "song.mid", Path(tmp) / "song.raw"
        write_midi(song, midi_path)
        # -n no MIDI input, -i no shell, -F render to file (faster than real time), -R/-C 0 no
        # reverb/chorus, raw little-endian float: no dither, no header to parse. No default
        # soundfont: FluidSynth would silently swap in its own when ours fails to load.
        command = [
            "fluidsynth",
            "-n",
            "-i",
            "-q",
            "-o",
            "synth.default-soundfont=",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            str(FLUIDSYNTH_GAIN),
            "-r",
            str(int(sample_rate)),
            "-T",
            "raw",
            "-O",
            "float",
            "-E",
            "little",
            "-F",
            str(raw_path),
            soundfont,
            str(midi_path),
        ]
        try:
            done = subprocess.run(command, check=True, capture_output=True, timeout=FLUIDSYNTH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise MidiError(f"audio: FluidSynth took more than {FLUIDSYNTH_TIMEOUT_S} s") from None
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = _first_error(getattr(exc, "stderr", b"") or b"")
            raise MidiError(f"audio: FluidSynth failed: {detail or type(exc).__name__}") from None
        if not raw_path.is_file():
            raise MidiError("audio: FluidSynth wrote no output")
        return np.fromfile(raw_path, dtype="<f4").reshape(-1, 2), _first_error(done.stderr)


def _first_error(stderr: bytes) -> str:
    lines = [" ".join(line.split()) for line in stderr.decode("utf-8", "replace").splitlines()]
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")[:160]


def write_wav(audio: np.ndarray, path, sample_rate: int) -> None:
    """Mono audio as 16-bit PCM: int16 as it is; float in [-1, 1] peak-normalised to 0.9 when louder."""
    audio = np.asarray(audio).reshape(-1)
    if audio.dtype != np.int16:
        audio = audio.astype(np.float64)
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        audio = to_pcm16(audio * (0.9 / peak) if peak > 0.9 else audio)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(audio.astype("<i2").tobytes())


def read_wav(path) -> tuple[np.ndarray, int]:
    """(int16 mono samples, rate) of a 16-bit PCM WAV (stereo is mixed down); DataError otherwise."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise DataError(
                    f"{path}: only 16-bit PCM WAV is read, this one has {8 * wav.getsampwidth()}-bit samples"
                )
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, wav.getnchannels())
            rate = wav.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        raise DataError(f"cannot read WAV {path}: {exc}") from None
    return pcm.mean(axis=1).astype(np.int16) if pcm.shape[1] > 1 else pcm[:, 0].copy(), rate


def render_wav(song: Song, path, sample_rate: int = 22050) -> str:
    """Write `song` as a WAV file at `path`; returns the renderer used: "fluidsynth" or "sine"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if song.num_notes and fluidsynth_available():
        try:
            write_wav(render_audio(song, sample_rate), path, sample_rate)
            return "fluidsynth"
        except MidiError:
            pass  # the sine fallback below still gives the user something to hear
    from musicgan.data.midi import synthesize_sine

    write_wav(synthesize_sine(song, sample_rate=sample_rate), path, sample_rate)
    return "sine"
