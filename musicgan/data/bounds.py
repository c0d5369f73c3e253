"""What a song may span, and how large a grid built from one may get.

A valid MIDI file of under a kilobyte can span ten million beats (60,000 bpm at one tick per quarter
note): every grid built per beat from it (a piano roll, a metric's step grid) would need
gigabytes. So the span of a song is bounded where songs enter (prepare, and shard meta at
load: meta is untrusted too, a hand-edited tempo of 1e9 bpm or NaN), and every grid is
sized through `check_grid`, which refuses with a reason instead of allocating. The limits
are far above real music (README, "Bad input").
"""

from __future__ import annotations

import math
from numbers import Real

from musicgan.errors import DataError, MidiError

MAX_SONG_BEATS = 65_536  # quarter-note beats from the start to the last note's end: 9 hours at 120 bpm
MAX_SONG_SECONDS = 6 * 3600.0
MIN_BPM, MAX_BPM = 1.0, 60_000.0  # MIDI's slowest tempo is 3.6 bpm; faster than 60,000 is corrupt data
MAX_GRID_CELLS = 1 << 24  # 64 MiB as int32: a piano roll of 13 hours at 4 frames per beat and 120 bpm
TIME_SIGNATURE_DENOMINATORS = (1, 2, 4, 8, 16, 32, 64)
MAX_NUMERATOR = 255  # a MIDI time signature's byte; music21 writes free-metre folk songs as e.g. 116/4


class GridTooLarge(DataError):
    """A grid (piano roll, metric step grid) that would exceed MAX_GRID_CELLS."""


def check_grid(num_steps: int, width: int, what: str) -> int:
    """`num_steps`, after checking that a (num_steps, width) grid stays within MAX_GRID_CELLS;
    GridTooLarge (one line, naming `what`) before anything is allocated otherwise."""
    if not 0 <= num_steps * width <= MAX_GRID_CELLS:
        raise GridTooLarge(
            f"{what} would need {num_steps:,} x {width} cells (limit {MAX_GRID_CELLS:,}): the song spans too many beats"
        )
    return int(num_steps)


def span_problem(song) -> str | None:
    """Why a song spans too much, or has a tempo or metre its shard meta could not carry, to be
    used (one line), or None. Prepare and the loader ask the same questions, so a song prepare
    keeps is never skipped by the loader at every epoch."""
    timing = [*map(_tempo_problem, song.tempos), *map(_signature_problem, song.time_signatures)]
    if any(timing):
        return next(p for p in timing if p)[:160]
    if song.num_notes == 0:
        return None
    if not song.end_time <= MAX_SONG_SECONDS:
        return f"song lasts {song.end_time / 3600:.1f} hours (limit {MAX_SONG_SECONDS / 3600:.0f})"
    beats = float(song.seconds_to_beats(song.end_time))
    if not beats <= MAX_SONG_BEATS:
        return f"song spans {beats:,.0f} quarter-note beats (limit {MAX_SONG_BEATS:,}): absurd tempo or length"
    return None


def checked_span(song):
    """`song`, or MidiError(reason) when it spans more than a song may: what prepare and the
    MIDI reader call, so such a file is skipped with that reason."""
    problem = span_problem(song)
    if problem:
        raise MidiError(problem)
    return song


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _tempo_problem(entry) -> str | None:
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and all(map(_number, entry))):
        return f"tempo entry {entry!r} is not [time, bpm] numbers"
    if entry[0] < 0 or not MIN_BPM <= entry[1] <= MAX_BPM:
        return f"tempo {entry[1]!r} bpm at {entry[0]!r} s outside [{MIN_BPM:g}, {MAX_BPM:g}] bpm or before 0"
    return None


def is_metre(numerator, denominator) -> bool:
    """A numerator MIDI can hold over a power-of-two note value: what the readers keep (they
    drop other signatures, as corrupt files carry denominators like 2**200) and shard meta may carry."""
    whole = numerator == int(numerator)
    return whole and 1 <= numerator <= MAX_NUMERATOR and denominator in TIME_SIGNATURE_DENOMINATORS


def _signature_problem(entry) -> str | None:
    if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and all(map(_number, entry)) and entry[0] >= 0):
        return f"time signature {entry!r} is not [time, numerator, denominator] numbers"
    if not is_metre(entry[1], entry[2]):
        return f"time signature {entry[1]!r}/{entry[2]!r} is not a metre"
    return None


def meta_problem(meta: dict) -> str | None:
    """Why a shard sample's meta cannot describe a song (types, NaN, zero denominators...), or None."""
    tempos, signatures = meta.get("tempos", []), meta.get("time_signatures", [])
    if not isinstance(tempos, list) or not isinstance(signatures, list):
        return "tempos and time_signatures must be lists"
    for text in (meta.get("source", ""), meta.get("corpus", "")):
        if not isinstance(text, str):
            return f"source and corpus must be strings, got {text!r}"
    problems = [*map(_tempo_problem, tempos), *map(_signature_problem, signatures)]
    return next((p[:160] for p in problems if p), None)
