"""Real MIDI for tests: songs written through musicgan.data.midi (pretty_midi), and
malformed files built byte by byte (pretty_midi may only be imported in musicgan/data/midi.py).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from musicgan.data.midi import midi_bytes, write_midi
from musicgan.data.song import Song

GRID = 0.125  # seconds; at 120 bpm and 480 ticks/quarter this is 120 ticks, so it round-trips exactly


def make_song(
    seed: int = 0,
    num_onsets: int = 40,
    chord_prob: float = 0.3,
    tempo: float = 120.0,
    program: int = 0,
    source: str = "",
) -> Song:
    """A random pitched song on a 1/8 s grid: melody with some chords, varied velocities."""
    rng = np.random.default_rng(seed)
    onset, duration, pitch, velocity = [], [], [], []
    t = 0.0
    for _ in range(num_onsets):
        root = int(rng.integers(48, 80))
        chord = [root]
        if rng.random() < chord_prob:
            chord += [root + 4, root + 7][: int(rng.integers(1, 3))]
        step = int(rng.integers(1, 4))
        # Notes end by the next onset: MIDI cannot hold two overlapping notes of one pitch
        # on one channel (readers pair the note-offs differently), so tests avoid them.
        length = GRID * int(rng.integers(1, step + 1))
        for p in chord:
            onset.append(t)
            duration.append(length)
            pitch.append(p)
            velocity.append(int(rng.integers(40, 120)))
        t += GRID * step
    return Song.from_columns(
        onset,
        duration,
        pitch,
        velocity,
        program=np.full(len(onset), program),
        tempos=[(0.0, tempo)],
        time_signatures=[(0.0, 4, 4)],
        source=source,
    )


def write_song(path, song: Song) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_midi(song, path)
    return path


# -- raw bytes ---------------------------------------------------------------------------------
def vlq(value: int) -> bytes:
    """MIDI variable-length quantity (at most 0x0FFFFFFF)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def track(events: bytes, end: bool = True) -> bytes:
    body = events + (b"\x00\xff\x2f\x00" if end else b"")
    return b"MTrk" + struct.pack(">L", len(body)) + body


def smf(tracks: list[bytes], division: int = 480, fmt: int = 1, ntracks: int | None = None) -> bytes:
    header = b"MThd" + struct.pack(">LHHH", 6, fmt, len(tracks) if ntracks is None else ntracks, division)
    return header + b"".join(tracks)


def note(delta_on: int, length: int, pitch: int = 60, velocity: int = 100, channel: int = 0) -> bytes:
    return vlq(delta_on) + bytes([0x90 | channel, pitch, velocity]) + vlq(length) + bytes([0x80 | channel, pitch, 0])


def tempo_event(delta: int, us_per_quarter: int) -> bytes:
    return vlq(delta) + b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big")


def program_change(delta: int, program: int, channel: int = 0) -> bytes:
    return vlq(delta) + bytes([0xC0 | channel, program])


def time_signature_event(delta: int, numerator: int = 4, denominator: int = 4) -> bytes:
    """Meta event FF 58: the denominator is stored as a power of two."""
    return vlq(delta) + b"\xff\x58\x04" + bytes([numerator, denominator.bit_length() - 1, 24, 8])


def simple_midi(division: int = 480) -> bytes:
    """Three quarter notes at 120 bpm: a valid file."""
    return smf([track(note(0, division, 60) + note(0, division, 64) + note(0, division, 67))], division=division)


def malformed_files(tmp_valid: bytes | None = None) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, substring expected in the skip reason)."""
    valid = tmp_valid or simple_midi()
    rng = np.random.default_rng(7)
    return {
        "empty.mid": (b"", "empty file"),
        "garbage.mid": (rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "not a MIDI file"),
        "text.midi": (b"this is not music\n" * 20, "not a MIDI file"),
        "truncated.mid": (valid[: len(valid) - 9], "truncated"),
        "header_only.mid": (valid[:14], "holds 0"),
        "zero_division.mid": (smf([track(note(0, 480))], division=0), "zero time division"),
        "smpte.mid": (smf([track(note(0, 480))], division=0xE728), "SMPTE"),
        "tracks_65535.mid": (smf([track(note(0, 480))], ntracks=65535), "65535 tracks"),
        "delta_2_28.mid": (smf([track(note(0, 480) + note(0x0FFFFFFF, 480))]), "tick limit"),
        "zero_tempo.mid": (smf([track(tempo_event(0, 0) + note(0, 480))]), "zero tempo"),
        "no_notes.mid": (smf([track(tempo_event(0, 500000))]), "no notes"),
        "zero_length.mid": (smf([track(note(0, 0) + note(10, 0, 62))]), "no notes"),
        "drums_only.mid": (smf([track(note(0, 240, 36, channel=9) + note(0, 240, 38, channel=9))]), "only drum"),
        "format_7.mid": (smf([track(note(0, 480))], fmt=7), "unknown MIDI format"),
        "bad_status.mid": (smf([track(b"\x00\x40\x40")]), "unparsable"),
        "chunk_overrun.mid": (valid[:14] + b"MTrk" + struct.pack(">L", 10**6) + valid[22:], "truncated"),
    }


def write_corpus_folder(root, num_valid: int = 6, with_malformed: bool = True) -> dict:
    """A nested folder of valid songs (mixed extension case) and malformed files.

    Returns {"valid": [relative sources], "malformed": {relative source: expected reason}}.
    """
    root = Path(root)
    names = ["a.mid", "B.MID", "nested/c.Midi", "nested/deeper/d.midi", "e.mId", "nested/f.MIDI"]
    valid = []
    for i in range(num_valid):
        name = names[i % len(names)] if i < len(names) else f"more/song{i:03d}.mid"
        song = make_song(seed=100 + i, num_onsets=20 + 7 * i, program=i % 3)
        write_song(root / name, song)
        valid.append(name)
    (root / "notes.txt").write_text("not a MIDI file and not listed\n")
    (root / "nested" / "cover.png").write_bytes(b"\x89PNG....")
    malformed = {}
    if with_malformed:
        for name, (data, reason) in malformed_files(midi_bytes(make_song(seed=1))).items():
            path = root / "bad" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            malformed[f"bad/{name}"] = reason
    return {"valid": sorted(valid), "malformed": malformed}
