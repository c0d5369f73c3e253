"""Render a song to a WAV file: FluidSynth + a General MIDI soundfont where installed,
pretty_midi's sine synthesis otherwise.

FluidSynth comes from the Debian packages `fluidsynth` and `fluid-soundfont-gm`
(`apt-get install -y fluidsynth fluid-soundfont-gm`); `$MUSICGAN_SOUNDFONT` points at
another .sf2 file. The sine fallback needs nothing beyond pretty_midi and sounds like a
test tone, but it always works.
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

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm (Debian/Ubuntu)
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora/Arch
    "/usr/share/soundfonts/default.sf2",
)
FLUIDSYNTH_TIMEOUT_S = 120


def find_soundfont() -> str | None:
    """`$MUSICGAN_SOUNDFONT` when set and present, else the first installed GM soundfont."""
    override = os.environ.get("MUSICGAN_SOUNDFONT")
    if override and Path(override).is_file():
        return override
    return next((p for p in SOUNDFONT_CANDIDATES if Path(p).is_file()), None)


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None and find_soundfont() is not None


def _render_fluidsynth(song: Song, path: Path, sample_rate: int) -> bool:
    """True when FluidSynth wrote a non-empty WAV at `path`."""
    from musicgan.data.midi import write_midi

    with tempfile.TemporaryDirectory(prefix="musicgan-audio-") as tmp:
        midi_path = Path(tmp) / "song.mid"
        write_midi(song, midi_path)
        # -n no MIDI input, -i no shell, -F render to file (faster than real time),
        # -g gain 0.5 keeps dense chorales from clipping.
        command = ["fluidsynth", "-n", "-i", "-q", "-g", "0.5", "-r", str(sample_rate), "-T", "wav",
                   "-F", str(path), find_soundfont(), str(midi_path)]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=FLUIDSYNTH_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return False
    return path.is_file() and path.stat().st_size > 44  # more than a WAV header


def write_wav(audio: np.ndarray, path, sample_rate: int) -> None:
    """Mono float audio in [-1, 1] (peak-normalised to 0.9 when louder) as 16-bit PCM."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.9:
        audio = audio * (0.9 / peak)
    pcm = np.round(audio * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def render_wav(song: Song, path, sample_rate: int = 22050) -> str:
    """Write `song` as a WAV file at `path`; returns the renderer used: "fluidsynth" or "sine"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if song.num_notes and fluidsynth_available() and _render_fluidsynth(song, path, sample_rate):
        return "fluidsynth"
    from musicgan.data.midi import synthesize_sine

    write_wav(synthesize_sine(song, sample_rate=sample_rate), path, sample_rate)
    return "sine"
