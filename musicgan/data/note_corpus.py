"""`soundfont:notes`: a corpus of single notes, one song per (program, pitch), for models of
isolated notes (GANSynth: Engel et al. 2019, "GANSynth: Adversarial Neural Audio Synthesis").

With `musicgan prepare --corpus soundfont:notes --audio-rate 16000` every note is rendered
by the General MIDI soundfont like any other song, so shards and loader work unchanged;
pitch, program and velocity are also in each song's `labels` for conditioning.

Options ride on the spec as a query string (quote it in a shell), e.g.
    soundfont:notes?programs=0,24,40&pitches=60-62&seconds=1&hold=0.75
    programs  GM programs (0-127): a list with ranges, `acoustic` (default: the acoustic
              families 0-79 without the organs 16-23) or `all-acoustic` (0-79, organs kept)
    pitches   MIDI pitches, default 24-84 (61 classes)
    velocity  1-127, default 100
    seconds   song length, default 4; hold: how long the key is held, default 3 (the rest
              is the release)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from musicgan.data.song import Song
from musicgan.errors import DataError

SOUNDFONT_PREFIX = "soundfont:"
NOTES_CORPUS = "soundfont:notes"
ORGANS = range(16, 24)  # GM family 3 (drawbar ... bandoneon): organ timbres, not "acoustic"
# The acoustic GM families are programs 0-79 (piano ... pipe); 80-127 are synth, ethnic and
# effects. "acoustic" means that set without the organs: a filter that keeps the wrong side
# of this line hands users mostly organ and synth timbres.
PROGRAM_SETS = {"acoustic": [p for p in range(80) if p not in ORGANS], "all-acoustic": list(range(80))}
DEFAULTS = {"programs": "acoustic", "pitches": "24-84", "velocity": "100", "seconds": "4", "hold": "3"}
MAX_NOTE_SECONDS = 20.0


@dataclass(frozen=True)
class NoteItem:
    """One note to render (duck-types corpora.SongItem for prepare: `source`, `kind`, `skip`)."""

    source: str
    program: int
    pitch: int
    velocity: int
    hold_s: float
    seconds: float
    kind: str = "note"
    skip: str = ""  # never set: every note of the set can be rendered


def note_items(spec: str) -> list[NoteItem]:
    """Every (program, pitch) of the spec's note set, sorted by source; DataError on bad options."""
    name, _, query = spec.partition("?")
    if name != NOTES_CORPUS:
        raise DataError(f"unknown corpus {name}; valid: {NOTES_CORPUS}")
    options = _options(query)
    programs = PROGRAM_SETS.get(options["programs"]) or _int_set(options["programs"], "programs", 0, 127)
    pitches = _int_set(options["pitches"], "pitches", 0, 127)
    velocity = _int_set(options["velocity"], "velocity", 1, 127)
    hold, seconds = _seconds(options["hold"], "hold"), _seconds(options["seconds"], "seconds")
    if len(velocity) != 1 or hold > seconds:
        raise DataError(f"{NOTES_CORPUS}: give one velocity and hold <= seconds (got {options})")
    return [
        NoteItem(f"{NOTES_CORPUS}/program{p:03d}/pitch{n:03d}", p, n, velocity[0], hold, seconds)
        for p in programs
        for n in pitches
    ]


def note_song(item: NoteItem, corpus: str = NOTES_CORPUS) -> Song:
    """The note as a song: key down at 0, up at `hold_s`, lasting `seconds` (labels attached)."""
    song = Song.from_columns(
        [0.0], [item.hold_s], [item.pitch], [item.velocity], [item.program], source=item.source, corpus=corpus
    )
    return song.replace(
        duration=item.seconds, labels={"pitch": item.pitch, "program": item.program, "velocity": item.velocity}
    )


def _options(query: str) -> dict[str, str]:
    try:
        given = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise DataError(f"{NOTES_CORPUS}: options must look like ?programs=0-7&pitches=60-72, got ?{query}") from None
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise DataError(f"{NOTES_CORPUS}: unknown option {unknown[0]!r} (valid: {', '.join(DEFAULTS)})")
    return {**DEFAULTS, **given}


def _int_set(text: str, name: str, low: int, high: int) -> list[int]:
    """ "0-7,24" -> [0, ..., 7, 24] (sorted, unique), each within [low, high]."""
    values = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            values.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise DataError(f"{NOTES_CORPUS}: {name} must be numbers and ranges like 0-7,24, got {text!r}") from None
    if not values or min(values) < low or max(values) > high:
        raise DataError(f"{NOTES_CORPUS}: {name} must lie in {low}-{high}, got {text!r}")
    return sorted(values)


def _seconds(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_NOTE_SECONDS:
        raise DataError(f"{NOTES_CORPUS}: {name} must be seconds in (0, {MAX_NOTE_SECONDS:g}], got {text!r}")
    return value
