"""MIDI files <-> `Song`: the only module that imports pretty_midi (and mido, which it uses).

Reading is defensive because corpora scraped from the web hold every kind of broken file.
Before pretty_midi sees a file we check, cheaply and in bounded memory:
  - size (a 4 MiB cap: mido turns every event into a Python object, ~250 bytes each),
  - the chunk structure on the raw bytes (MThd header, zero/SMPTE division, a header claiming
    more tracks than the file holds, chunks running past the end of the file),
  - then, after mido's parse, the largest absolute tick (pretty_midi allocates a float64
    array of that length: a single delta of 2^28 ticks would need 2 GB) and zero/absurd tempos.
Anything unusable raises `MidiError` whose message is a one-line human reason; prepare puts
that reason into the manifest's `skipped` list.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np

from musicgan.data.bounds import MAX_SONG_SECONDS, checked_span, is_metre  # noqa: F401  (MAX_SONG_SECONDS re-exported)
from musicgan.data.song import DEFAULT_BPM, IS_DRUM, NUM_NOTE_COLUMNS, Song, Track
from musicgan.errors import MidiError

MAX_FILE_BYTES = 4 * 1024 * 1024  # one song; ~1.5M events, ~0.5 GB of mido objects at worst
MAX_TRACKS = 1024
MAX_TICK = 10_000_000  # pretty_midi's own sanity limit; ~80 MB tick->time array
MIN_TEMPO_US = 1_000  # µs per quarter note: faster than 60,000 bpm is corrupt data
WRITE_RESOLUTION = 480  # ticks per quarter note in files we write


def _import_pretty_midi():
    try:
        import pretty_midi
    except ImportError as exc:  # pragma: no cover - core dependency
        raise MidiError("pretty_midi is not installed: run ./launch/setup") from exc
    return pretty_midi


# -- raw-byte checks --------------------------------------------------------------------------
def _check_chunks(data: bytes) -> bytes:
    """Validate the SMF chunk layout; return the bytes starting at MThd (RIFF/RMID unwrapped)."""
    if len(data) == 0:
        raise MidiError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise MidiError(
            f"file is {len(data) / 2**20:.1f} MiB, above the {MAX_FILE_BYTES // 2**20} MiB limit for one song"
        )
    if data[:4] == b"RIFF" and b"MThd" in data[:64]:  # RMID wrapper around a standard MIDI file
        data = data[data.index(b"MThd") :]
    if data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    if len(data) < 14:
        raise MidiError("truncated file (header cut short)")
    header_len = struct.unpack(">L", data[4:8])[0]
    if header_len < 6 or 8 + header_len > len(data):
        raise MidiError(f"corrupt header (length {header_len})")
    fmt, ntracks, division = struct.unpack(">HHH", data[8:14])
    if fmt > 2:
        raise MidiError(f"unknown MIDI format {fmt}")
    if division == 0:
        raise MidiError("zero time division (0 ticks per quarter note)")
    if division & 0x8000:
        raise MidiError("SMPTE time division is not supported")
    if ntracks == 0:
        raise MidiError("header declares no tracks")
    if ntracks > MAX_TRACKS:
        raise MidiError(f"header claims {ntracks} tracks (limit {MAX_TRACKS})")
    # Walk the chunks: mido would otherwise read past a lying length field until EOF, and it
    # stops at the first non-MTrk chunk (vendor chunks such as Yamaha's XF), which we drop.
    pos, tracks, foreign = 8 + header_len, [], False
    while pos + 8 <= len(data) and len(tracks) < ntracks:
        kind = data[pos : pos + 4]
        length = struct.unpack(">L", data[pos + 4 : pos + 8])[0]
        if pos + 8 + length > len(data):
            raise MidiError(
                f"truncated file (chunk {len(tracks) + 1} claims {length} bytes, {len(data) - pos - 8} remain)"
            )
        if kind == b"MTrk":
            tracks.append(data[pos : pos + 8 + length])
        else:
            foreign = True
        pos += 8 + length
    if len(tracks) < ntracks:
        raise MidiError(f"header claims {ntracks} tracks but the file holds {len(tracks)} (truncated or corrupt)")
    if foreign or header_len != 6:
        data = b"MThd" + struct.pack(">LHHH", 6, fmt, ntracks, division) + b"".join(tracks)
    return data


def _parse_mido(data: bytes):
    import mido  # installed with pretty_midi

    try:
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except EOFError:
        raise MidiError("truncated file (ended inside a track)") from None
    except Exception as exc:  # mido raises OSError/ValueError/KeyError/IndexError on junk
        raise MidiError(f"unparsable MIDI: {_one_line(exc)}") from None


def _check_events(mid) -> None:
    """Bound pretty_midi's memory: absolute ticks and tempos, on mido's delta-time tracks."""
    max_tick = 0
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                if msg.tempo == 0:
                    raise MidiError(f"zero tempo at tick {tick}")
                if msg.tempo < MIN_TEMPO_US:
                    raise MidiError(f"absurd tempo ({msg.tempo} µs per quarter note) at tick {tick}")
        max_tick = max(max_tick, tick)
    if max_tick > MAX_TICK:
        raise MidiError(f"last event at tick {max_tick:,}, above the {MAX_TICK:,} tick limit (absurd length)")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


# -- reading ----------------------------------------------------------------------------------
def read_midi_bytes(data: bytes, source: str = "", *, allow_drums_only: bool = False) -> Song:
    """Parse MIDI bytes into a Song (onsets/durations in seconds, tempo changes honoured).

    Raises MidiError(reason) for anything unusable: empty, garbage, truncated, absurd sizes,
    zero tempo/division, no notes, and (unless allow_drums_only) only drum notes, because
    every representation in musicgan is pitch based and would encode such a song as empty.
    """
    pretty_midi = _import_pretty_midi()
    data = _check_chunks(bytes(data))
    mid = _parse_mido(data)
    _check_events(mid)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tempo events on non-zero tracks" etc.
            try:
                pm = pretty_midi.PrettyMIDI(mido_object=mid)
            except TypeError:  # pretty_midi < 0.2.11 has no mido_object: parse again
                pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except MidiError:
        raise
    except Exception as exc:
        raise MidiError(f"unparsable MIDI: {_one_line(exc)}") from None
    return _song_from_pretty_midi(pm, source, allow_drums_only)


def read_midi(path, source: str = "", *, allow_drums_only: bool = False) -> Song:
    """Read a MIDI file; `source` defaults to the path as given."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:  # don't even read it
            raise MidiError(
                f"file is {size / 2**20:.1f} MiB, above the {MAX_FILE_BYTES // 2**20} MiB limit for one song"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise MidiError(f"cannot read file: {exc.strerror or _one_line(exc)}") from None
    return read_midi_bytes(data, source or str(path), allow_drums_only=allow_drums_only)


def _song_from_pretty_midi(pm, source: str, allow_drums_only: bool) -> Song:
    rows = []
    for index, inst in enumerate(pm.instruments):  # track = instrument index in file order
        for note in inst.notes:
            rows.append(
                (
                    note.start,
                    note.end - note.start,
                    note.pitch,
                    note.velocity,
                    inst.program,
                    float(inst.is_drum),
                    float(index),
                )
            )
    notes = np.array(rows, dtype=np.float64).reshape(-1, NUM_NOTE_COLUMNS)
    # Zero-length notes (note-on and note-off on the same tick) carry no sound: drop them.
    notes = notes[(notes[:, 1] > 0) & (notes[:, 3] > 0)]
    if len(notes) == 0:
        raise MidiError("no notes")
    if not np.isfinite(notes).all():
        raise MidiError("non-finite note times")
    if not allow_drums_only and (notes[:, IS_DRUM] > 0.5).all():
        raise MidiError("only drum notes (no pitched notes)")
    times, bpms = pm.get_tempo_changes()
    tempos = [(float(t), float(b)) for t, b in zip(times, bpms)]
    if not tempos or tempos[0][0] > 0.0:
        tempos.insert(0, (0.0, DEFAULT_BPM))
    signatures = []
    for ts in pm.time_signature_changes:
        num, den = int(ts.numerator), int(ts.denominator)
        if not is_metre(num, den):
            continue
        entry = (float(ts.time), num, den)
        if signatures and signatures[-1][1:] == entry[1:]:
            continue  # the same metre repeated per track (music21 writes one per part)
        signatures.append(entry)
    signatures.sort(key=lambda s: s[0])
    tracks = [Track(" ".join(inst.name.split()), int(inst.program), bool(inst.is_drum)) for inst in pm.instruments]
    # The first time signature marks the first bar line; notes before it are a pickup.
    downbeat_s = signatures[0][0] if signatures else 0.0
    return checked_span(
        Song(
            notes=notes, tempos=tempos, time_signatures=signatures, source=source, tracks=tracks, downbeat_s=downbeat_s
        )
    )


# -- writing ----------------------------------------------------------------------------------
def _to_pretty_midi(song: Song):
    pretty_midi = _import_pretty_midi()
    first_bpm = song.tempos[0][1] if song.tempos else DEFAULT_BPM
    pm = pretty_midi.PrettyMIDI(resolution=WRITE_RESOLUTION, initial_tempo=float(first_bpm))
    if len(song.tempos) > 1:
        # pretty_midi has no public API for tempo changes; its writer emits one set_tempo per
        # entry of _tick_scales (tick, seconds per tick), so we fill that list from the map.
        beats = song.seconds_to_beats([t for t, _ in song.tempos])
        pm._tick_scales = [
            (int(round(b * WRITE_RESOLUTION)), 60.0 / (max(bpm, 1e-3) * WRITE_RESOLUTION))
            for b, (_, bpm) in zip(beats, song.tempos)
        ]
        last_tick = int(round(float(song.seconds_to_beats(song.end_time)) * WRITE_RESOLUTION)) + 1
        pm._update_tick_to_time(max(last_tick, pm._tick_scales[-1][0] + 1))
    for t, num, den in song.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(int(num), int(den), float(t)))
    notes = song.notes
    # One instrument per (track, program, drum flag); songs without track identity (track -1)
    # group by program and drum flag alone, as before tracks existed.
    groups: dict[tuple[int, int, bool], list] = {}
    for onset, duration, pitch, velocity, program, is_drum, track in notes:
        key = (int(track), int(np.clip(program, 0, 127)), bool(is_drum > 0.5))
        groups.setdefault(key, []).append(
            pretty_midi.Note(
                velocity=int(np.clip(round(velocity), 1, 127)),
                pitch=int(np.clip(round(pitch), 0, 127)),
                start=float(onset),
                end=float(onset + duration),
            )
        )
    for (track, program, is_drum), group in sorted(groups.items()):
        name = song.tracks[track].name if 0 <= track < len(song.tracks) else ""
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        inst.notes = group
        pm.instruments.append(inst)
    return pm


def write_midi(song: Song, path) -> None:
    """Write a Song as a type-1 MIDI file (480 ticks per quarter, tempo map kept)."""
    _to_pretty_midi(song).write(str(path))


def midi_bytes(song: Song) -> bytes:
    """The bytes `write_midi` would write."""
    buffer = io.BytesIO()
    _to_pretty_midi(song).write(buffer)
    return buffer.getvalue()


def synthesize_sine(song: Song, sample_rate: int = 22050) -> np.ndarray:
    """Mono float32 audio in [-1, 1] from pretty_midi's sine synthesis (drums are silent)."""
    pm = _to_pretty_midi(song)
    audio = pm.synthesize(fs=sample_rate) if song.num_notes else np.zeros(0)
    return np.asarray(audio, dtype=np.float32)
