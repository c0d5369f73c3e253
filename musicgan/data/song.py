"""The one domain object: a song as a table of notes plus its tracks, tempo, metre and downbeat.

Everything in musicgan speaks `Song`: MIDI files and music21 scores are read into it,
shards store it, representations encode/decode it, metrics measure it and sampling writes
it back to MIDI. Times are in seconds with tempo changes already honoured (the MIDI reader
does that); the tempo map is kept so beat-based views (piano rolls per beat, empty-beat
rate, ticks-per-quarter compat mode) can convert back. `tracks` and the note column `track`
keep part identity (a chorale's S, A, T, B; a MIDI file's instruments); `downbeat_s` and the
metre place the bar lines (`bar_origin_beats`), which a pickup moves away from t = 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

# Columns of `Song.notes` (float64, one row per note). A plain float array rather than a
# structured dtype so shards can store it as `.npy` loadable with allow_pickle=False and
# every consumer can slice columns without knowing numpy record arrays.
NOTE_COLUMNS = ("onset", "duration", "pitch", "velocity", "program", "is_drum", "track")
ONSET, DURATION, PITCH, VELOCITY, PROGRAM, IS_DRUM, TRACK = range(len(NOTE_COLUMNS))
NUM_NOTE_COLUMNS = len(NOTE_COLUMNS)
# Schema-1 tables (shards written before track identity) have the first six columns only;
# they are accepted everywhere and get track = NO_TRACK.
LEGACY_NOTE_COLUMNS = 6
NO_TRACK = -1.0

DEFAULT_BPM = 120.0
DEFAULT_METRE = (4, 4)  # what MIDI assumes when a file has no time signature


@dataclass(frozen=True)
class Track:
    """One part of a score or instrument of a MIDI file; `Song.notes[:, TRACK]` indexes `Song.tracks`."""

    name: str = ""
    program: int = 0
    is_drum: bool = False

    def meta(self) -> dict:
        return {"name": self.name, "program": int(self.program), "is_drum": bool(self.is_drum)}


@dataclass
class Song:
    """A polyphonic song.

    notes: (num_notes, 7) float64, columns NOTE_COLUMNS, sorted by (onset, pitch).
        onset/duration in seconds; pitch 0-127 (MIDI number); velocity 1-127;
        program 0-127 (General MIDI); is_drum 0 or 1; track = index into `tracks`, or -1
        when unknown (schema-1 shards, decoded model output). A (n, 6) table gets track -1.
    tempos: [(time_s, bpm), ...] sorted, first at 0.0.
    time_signatures: [(time_s, numerator, denominator), ...] sorted (may be empty).
    source: where the song came from: path relative to the input root, or a corpus id.
    corpus: name of the corpus (`music21:bach`) or "" for a MIDI folder.
    tracks: the parts in score order / instruments in file order ([] when unknown).
    downbeat_s: time of the first bar line after any pickup (0.0 when the song starts on one).
    audio: the song rendered once by `musicgan prepare --audio-rate` (int16 mono), or None.
    audio_rate: samples per second of `audio` (0 without audio).
    duration: seconds, when the song lasts longer than its last note-off (a rendered single
        note held 3 s of 4 s); None: `end_time`.
    labels: per-song integers a conditional model reads (a rendered note's pitch, program).
    """

    notes: np.ndarray
    tempos: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, DEFAULT_BPM)])
    time_signatures: list[tuple[float, int, int]] = field(default_factory=list)
    source: str = ""
    corpus: str = ""
    tracks: list[Track] = field(default_factory=list)
    downbeat_s: float = 0.0
    audio: np.ndarray | None = None
    audio_rate: int = 0
    duration: float | None = None
    labels: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        notes = np.asarray(self.notes, dtype=np.float64)
        if notes.size == 0:
            notes = notes.reshape(0, notes.shape[1] if notes.ndim == 2 else NUM_NOTE_COLUMNS)
        if notes.ndim == 2 and notes.shape[1] == LEGACY_NOTE_COLUMNS:
            notes = np.concatenate([notes, np.full((len(notes), 1), NO_TRACK)], axis=1)
        if notes.ndim != 2 or notes.shape[1] != NUM_NOTE_COLUMNS:
            raise ValueError(f"notes must have shape (n, {NUM_NOTE_COLUMNS}), got {notes.shape}")
        order = np.lexsort((notes[:, PITCH], notes[:, ONSET]))
        self.notes = notes[order]
        if not self.tempos:
            self.tempos = [(0.0, DEFAULT_BPM)]

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_columns(
        cls, onset, duration, pitch, velocity=None, program=None, is_drum=None, track=None, **meta
    ) -> "Song":
        """Build from per-column sequences; velocity defaults to 100, program 0, not drum, track -1."""
        onset = np.asarray(onset, dtype=np.float64)
        n = len(onset)
        cols = [
            onset,
            np.asarray(duration, dtype=np.float64),
            np.asarray(pitch, dtype=np.float64),
            np.full(n, 100.0) if velocity is None else np.asarray(velocity, dtype=np.float64),
            np.zeros(n) if program is None else np.asarray(program, dtype=np.float64),
            np.zeros(n) if is_drum is None else np.asarray(is_drum, dtype=np.float64),
            np.full(n, NO_TRACK) if track is None else np.asarray(track, dtype=np.float64),
        ]
        return cls(np.stack(cols, axis=1) if n else np.zeros((0, NUM_NOTE_COLUMNS)), **meta)

    def replace(self, **changes) -> "Song":
        return dataclasses.replace(self, **changes)

    # -- views ----------------------------------------------------------------------------
    @property
    def num_notes(self) -> int:
        return int(self.notes.shape[0])

    @property
    def onsets(self) -> np.ndarray:
        return self.notes[:, ONSET]

    @property
    def durations(self) -> np.ndarray:
        return self.notes[:, DURATION]

    @property
    def offsets(self) -> np.ndarray:
        return self.notes[:, ONSET] + self.notes[:, DURATION]

    @property
    def pitches(self) -> np.ndarray:
        return self.notes[:, PITCH].astype(np.int64)

    @property
    def velocities(self) -> np.ndarray:
        return self.notes[:, VELOCITY].astype(np.int64)

    @property
    def is_drum(self) -> np.ndarray:
        return self.notes[:, IS_DRUM] > 0.5

    @property
    def track_ids(self) -> np.ndarray:
        return self.notes[:, TRACK].astype(np.int64)

    @property
    def end_time(self) -> float:
        return float(self.offsets.max()) if self.num_notes else 0.0

    @property
    def length_s(self) -> float:
        """How long the song lasts: `duration` when set, else the last note-off."""
        return self.end_time if self.duration is None else float(self.duration)

    def pitched(self) -> "Song":
        """The song without drum notes (pitch metrics ignore drums)."""
        return self.replace(notes=self.notes[~self.is_drum])

    # -- time conversion (tempo map) ---------------------------------------------------------
    def _tempo_segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start_s, start_beat, seconds_per_beat) per tempo segment."""
        times = np.array([t for t, _ in self.tempos], dtype=np.float64)
        spb = np.array([60.0 / max(b, 1e-6) for _, b in self.tempos], dtype=np.float64)
        beats = np.zeros_like(times)
        if len(times) > 1:
            beats[1:] = np.cumsum(np.diff(times) / spb[:-1])
        return times, beats, spb

    def seconds_to_beats(self, seconds) -> np.ndarray:
        """Quarter-note beats elapsed at each time (piecewise-linear in the tempo map)."""
        seconds = np.asarray(seconds, dtype=np.float64)
        times, beats, spb = self._tempo_segments()
        seg = np.clip(np.searchsorted(times, seconds, side="right") - 1, 0, len(times) - 1)
        return beats[seg] + (seconds - times[seg]) / spb[seg]

    def beats_to_seconds(self, beats_q) -> np.ndarray:
        beats_q = np.asarray(beats_q, dtype=np.float64)
        times, beats, spb = self._tempo_segments()
        seg = np.clip(np.searchsorted(beats, beats_q, side="right") - 1, 0, len(times) - 1)
        return times[seg] + (beats_q - beats[seg]) * spb[seg]

    def beat_times(self) -> np.ndarray:
        """Onset time in seconds of every quarter-note beat up to the song's end."""
        last = float(self.seconds_to_beats(self.end_time)) if self.num_notes else 0.0
        return self.beats_to_seconds(np.arange(0.0, np.floor(last) + 1.0))

    def bar_length_beats(self) -> float | None:
        """Quarter notes per bar from the first time signature, None when unknown."""
        if not self.time_signatures:
            return None
        _, num, den = self.time_signatures[0]
        return num * 4.0 / den

    def metre(self) -> tuple[int, int]:
        """(numerator, denominator) of the first time signature; 4/4 when there is none."""
        return tuple(self.time_signatures[0][1:]) if self.time_signatures else DEFAULT_METRE

    def metres(self) -> list[tuple[int, int]]:
        """Every distinct metre the song uses, in order of appearance (4/4 when none is given)."""
        found = [tuple(ts[1:]) for ts in self.time_signatures] or [DEFAULT_METRE]
        return list(dict.fromkeys(found))

    def bar_origin_beats(self) -> float:
        """The bar line at or before t = 0, in quarter-note beats (<= 0): step 0 of a bar grid.

        Bars of the first metre are counted back from the downbeat, so a pickup (even one
        longer than a bar) lands in the last beats of a (partly empty) first bar.
        """
        bar = self.bar_beats()
        downbeat = float(self.seconds_to_beats(max(self.downbeat_s, 0.0)))
        return downbeat - np.ceil(downbeat / bar - 1e-9) * bar

    def bar_beats(self) -> float:
        """Quarter notes per bar of the first metre (4.0 without a time signature)."""
        numerator, denominator = self.metre()
        return numerator * 4.0 / denominator

    def grid_steps(self, seconds, steps_per_beat: int) -> np.ndarray:
        """Nearest step of a bar-aligned grid (step 0 = `bar_origin_beats`) for each time."""
        beats = self.seconds_to_beats(seconds) - self.bar_origin_beats()
        return np.round(beats * steps_per_beat).astype(np.int64)

    def meta(self) -> dict:
        """JSON-serialisable metadata (what a shard's `.json` stores beside the notes)."""
        return {
            "source": self.source,
            "corpus": self.corpus,
            "tempos": [[float(t), float(b)] for t, b in self.tempos],
            "time_signatures": [[float(t), int(n), int(d)] for t, n, d in self.time_signatures],
            "num_notes": self.num_notes,
            "end_time": self.end_time,
            "tracks": [track.meta() for track in self.tracks],
            "downbeat_s": float(self.downbeat_s),
            # Written only when present, so shards without audio keep their exact bytes.
            **({"audio_rate": int(self.audio_rate)} if self.audio is not None else {}),
            **({"duration": float(self.duration)} if self.duration is not None else {}),
            **({"labels": dict(sorted(self.labels.items()))} if self.labels else {}),
        }

    @classmethod
    def from_arrays(cls, notes: np.ndarray, meta: dict, audio: np.ndarray | None = None) -> "Song":
        """Inverse of (`notes`, `meta()`, `audio`): how the loader rebuilds a song from a shard sample.
        ValueError / KeyError / TypeError on malformed meta (the loader skips such a sample)."""
        downbeat_s = float(meta.get("downbeat_s", 0.0))
        if not (np.isfinite(downbeat_s) and downbeat_s >= 0.0):
            raise ValueError(f"downbeat_s must be a finite time >= 0, got {downbeat_s}")
        return cls(
            notes=notes,
            tempos=[(float(t), float(b)) for t, b in meta.get("tempos", [[0.0, DEFAULT_BPM]])],
            time_signatures=[(float(t), int(n), int(d)) for t, n, d in meta.get("time_signatures", [])],
            source=meta.get("source", ""),
            corpus=meta.get("corpus", ""),
            tracks=[Track(str(t["name"]), int(t["program"]), bool(t["is_drum"])) for t in meta.get("tracks", [])],
            downbeat_s=downbeat_s,
            audio=audio,
            audio_rate=int(meta.get("audio_rate", 0)) if audio is not None else 0,
            duration=float(meta["duration"]) if meta.get("duration") is not None else None,
            labels={str(k): int(v) for k, v in meta.get("labels", {}).items()},
        )
