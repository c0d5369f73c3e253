"""Track grouping rules: which notes of a song form each track of a multi-track representation.

A representation asks for a rule by name and gets a list of `TrackGroup`s in a fixed, named
order; a song the rule cannot group raises `SongSkipped(reason)`:
    parts    one group per part, in score order; exactly `num_parts` parts (4: a chorale's
             S, A, T, B), else skipped. Needs track identity (schema-2 shards).
    lpd5     MuseGAN's five instrument families from each note's General MIDI program
             (Dong et al. 2018, "MuseGAN", the Lakh Pianoroll Dataset LPD-5): drums = drum flag;
             piano 0-7; guitar 24-31; bass 32-39; strings = any other program below 96 or
             104-111; programs 96-103 (synth effects) and 112-127 (percussive, sound effects)
             are dropped. Instruments of one family merge (a roll ORs them). Works on
             schema-1 shards too (it reads the program column, not the track).
    melody   one group: the part with the highest mean pitch (a chorale's soprano), else
             (no track identity) all pitched notes; then made monophonic by the skyline
             (highest note at each onset, cut at the next onset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicgan.data.song import DURATION, IS_DRUM, ONSET, PITCH, PROGRAM, TRACK, Song
from musicgan.errors import ConfigError, SongSkipped

GROUPINGS = ("parts", "lpd5", "melody")
# (name, program a decoded track is written with, drum flag), in MuseGAN's LPD-5 order of the
# spec's decode programs: piano 0 (acoustic grand), guitar 25 (steel acoustic), bass 33
# (electric finger), strings 48 (string ensemble 1).
LPD5_TRACKS = (
    ("Drums", 0, True),
    ("Piano", 0, False),
    ("Guitar", 25, False),
    ("Bass", 33, False),
    ("Strings", 48, False),
)
CHORALE_PARTS = 4


@dataclass
class TrackGroup:
    """The notes of one output track (rows of Song.notes) and how it decodes."""

    name: str
    program: int
    is_drum: bool
    notes: np.ndarray  # (n, 7), sorted by (onset, pitch)


def group_tracks(song: Song, rule: str, num_parts: int = CHORALE_PARTS) -> list[TrackGroup]:
    """The song's notes split into tracks by `rule` (see module docstring); raises SongSkipped."""
    if rule == "parts":
        return _parts(song, num_parts)
    if rule == "lpd5":
        return _lpd5(song)
    if rule == "melody":
        return [TrackGroup("Melody", _melody_program(song), False, skyline(_top_part(song)))]
    raise ConfigError(f"unknown track grouping {rule!r}; choose one of {', '.join(GROUPINGS)}")


def _parts(song: Song, num_parts: int) -> list[TrackGroup]:
    if not song.tracks:
        raise SongSkipped("no part identity (a schema-1 shard: run `musicgan prepare` again)")
    if len(song.tracks) != num_parts:
        raise SongSkipped(f"{len(song.tracks)} parts, not {num_parts}")
    ids = song.track_ids
    return [TrackGroup(t.name, t.program, t.is_drum, song.notes[ids == i]) for i, t in enumerate(song.tracks)]


def lpd5_family(program: np.ndarray, is_drum: np.ndarray) -> np.ndarray:
    """Index into LPD5_TRACKS of each note (program 0-127, drum flag), -1 where dropped."""
    program = np.asarray(program, dtype=np.int64)
    family = np.full(program.shape, 4, dtype=np.int64)  # strings: every program not claimed below
    family[program <= 7] = 1
    family[(program >= 24) & (program <= 31)] = 2
    family[(program >= 32) & (program <= 39)] = 3
    family[((program >= 96) & (program <= 103)) | (program >= 112)] = -1
    family[np.asarray(is_drum, dtype=bool)] = 0
    return family


def _lpd5(song: Song) -> list[TrackGroup]:
    family = lpd5_family(song.notes[:, PROGRAM], song.notes[:, IS_DRUM] > 0.5)
    return [
        TrackGroup(name, program, drum, song.notes[family == i]) for i, (name, program, drum) in enumerate(LPD5_TRACKS)
    ]


def _top_part(song: Song) -> np.ndarray:
    """Notes of the pitched part with the highest mean pitch; all pitched notes without parts."""
    pitched = song.notes[song.notes[:, IS_DRUM] < 0.5]
    ids = pitched[:, TRACK].astype(np.int64)
    known = np.unique(ids[ids >= 0])
    if len(known) == 0:
        return pitched
    means = [pitched[ids == i, PITCH].mean() for i in known]
    return pitched[ids == known[int(np.argmax(means))]]


def _melody_program(song: Song) -> int:
    top = _top_part(song)
    return int(top[0, PROGRAM]) if len(top) else 0


def skyline(notes: np.ndarray) -> np.ndarray:
    """Monophonic line: the highest note of each onset, each cut where the next one starts."""
    if len(notes) == 0:
        return notes
    order = np.lexsort((-notes[:, PITCH], notes[:, ONSET]))
    ordered = notes[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = np.diff(ordered[:, ONSET]) > 1e-9
    line = ordered[first].copy()
    next_onset = np.append(line[1:, ONSET], np.inf)
    line[:, DURATION] = np.minimum(line[:, DURATION], next_onset - line[:, ONSET])
    return line
