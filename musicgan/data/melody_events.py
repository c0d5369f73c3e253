"""`melody_chord_events` (JazzGAN, Trieu & Keller 2018, "JazzGAN: Improvising with Generative
Adversarial Networks"): a monophonic melody as discrete tokens in one of four rhythm
encodings, with the chord of every position as a condition.

The melody is the `melody` track grouping (musicgan.data.tracks: the top part, e.g. a
chorale's soprano, else the skyline) on a grid of 48 steps per bar (`steps_per_beat` 12 in
4/4: sixteenths and eighth-note triplets are exact). Rows are float32 (tokens are small
integers), columns:

  rhythm_encoding="timestep" (one row per step, 48 per bar):
      [token, chord...]   token 0 = rest, 1 = sustain (the previous note continues),
                          2 + k = onset of pitch lowest_pitch + k
  "duration" | "end_position" | "interval" (note-based: one row per event):
      [pitch token, rhythm token, chord...]
      pitch token 0 = empty slot, 1 = rest, 2 = tie (the previous bar's last note goes on),
        then for "duration"/"end_position" 3 + k = pitch lowest_pitch + k, for "interval"
        3 + (d + num_pitches - 1) = a note d semitones from the previous note (the first
        note of a sequence counts from `anchor_pitch`);
      rhythm token: "duration"/"interval" the event's length in steps (1..48), "end_position"
        the step of the bar it ends on (1..48); 0 in empty slots.
    Events never cross a bar line (a note that does becomes a note + tie events) and every
    bar has `events_per_bar` slots, its events first, then empty slots: so windows of
    whole bars stay bar-aligned for the loader, and a bar with more events is skipped.

Chord columns (24): the triad's pitch classes (12) + its root one-hot (12), all zero for no
chord, from the per-beat labels of musicgan.data.chords (all pitched parts, the harmony).
A timestep row carries the chord of its beat; a note-based slot j carries the chord of the
beat j * beats_per_bar // events_per_bar, a property of the bar rather than of the melody,
so a generator conditioned on real chords learns nothing of the real rhythm from them. (The
paper gives each note the chord at its onset; that needs the generated timing fed back.)

Decode (for sampled rows, which need not be well formed): empty slots are skipped; a
duration running past the bar line is cut there and the bar's later events dropped; an end
position at or before the bar's current position drops the event; a tie or sustain without
a note before it is a rest; interval pitches are clipped to MIDI 0..127. The melody comes
back as track 0, the chords as block triads per run of equal beats (root below middle C) as
track 1. encode(decode(x)) == x for every well-formed encoding, and decode(encode(song)) is
the song's melody exactly when its onsets and lengths lie on the grid (tests state the
error on real chorales).

Augmentation: `transpose=(low, high)` moves the melody and the chords of a window by a
random number of semitones; pitches leaving the range become rests (interval tokens and
ties are unchanged, so "interval" windows only have their chords moved).
"""

from __future__ import annotations

import numpy as np

from musicgan.data.bounds import check_grid
from musicgan.data.chords import NO_CHORD, chord_root, is_minor, song_chords
from musicgan.data.melody import CHORD_OCTAVE, REST, _notes_song, melody_steps, pitch_runs
from musicgan.data.multitrack import bar_steps, check_transpose, metre_filter, parse_metre
from musicgan.data.representation_base import Representation, finite
from musicgan.data.song import DEFAULT_BPM, Song, Track
from musicgan.errors import ConfigError, SongSkipped

RHYTHM_ENCODINGS = ("timestep", "duration", "end_position", "interval")
STEPS_PER_BAR = 48
CHORD_FEATURES = 24  # triad pitch classes (12) + root one-hot (12)
TIMESTEP_REST, TIMESTEP_SUSTAIN, TIMESTEP_PITCH0 = 0, 1, 2
EMPTY, EVENT_REST, TIE, EVENT_PITCH0 = 0, 1, 2, 3


def chord_vectors(labels) -> np.ndarray:
    """(n, 24) float32: chord tones (12) + root one-hot (12); zeros for no chord."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    out = np.zeros((len(labels), CHORD_FEATURES), dtype=np.float32)
    rows = np.flatnonzero(labels != NO_CHORD)
    root = chord_root(labels[rows])
    third = np.where(is_minor(labels[rows]), 3, 4)
    for interval in (np.zeros_like(third), third, np.full_like(third, 7)):
        out[rows, (root + interval) % 12] = 1.0
    out[rows, 12 + root] = 1.0
    return out


def labels_from_chord_vectors(vectors: np.ndarray) -> np.ndarray:
    """Inverse of chord_vectors for any (n, 24) array: argmax root, minor when the minor third
    outweighs the major one, no chord when no root is above 0.5."""
    v = np.nan_to_num(np.asarray(vectors, dtype=np.float64).reshape(-1, CHORD_FEATURES))
    root = np.argmax(v[:, 12:], axis=1)
    rows = np.arange(len(v))
    minor = v[rows, (root + 3) % 12] > v[rows, (root + 4) % 12]
    return np.where(v[:, 12:].max(axis=1) > 0.5, root + 12 * minor, NO_CHORD).astype(np.int64)


def bar_events(pitch: np.ndarray, onset: np.ndarray, bar: int) -> list[list[tuple[int, int, str, int]]]:
    """Per bar, its (start, stop, kind, pitch) events in steps from the bar line; kind is
    "rest", "tie" (a note sounding on from the bar before) or "note"."""
    bars = []
    for first in range(0, len(pitch), bar):
        events = []
        for t in range(first, first + bar):
            if t == first or pitch[t] != pitch[t - 1] or onset[t]:
                tied = t == first and t > 0 and not onset[t] and pitch[t] == pitch[t - 1]
                kind = "rest" if pitch[t] == REST else ("tie" if tied else "note")
                events.append([t - first, t - first + 1, kind, int(pitch[t])])
            else:
                events[-1][1] += 1
        bars.append([tuple(e) for e in events])
    return bars


class MelodyChordEventsRepresentation(Representation):
    """JazzGAN's discrete melody tokens + chord per position (module docstring)."""

    name = "melody_chord_events"

    def __init__(
        self,
        rhythm_encoding: str = "end_position",
        steps_per_beat: int = 12,
        metres=("4/4",),
        lowest_pitch: int = 48,
        num_pitches: int = 48,
        events_per_bar: int = 16,
        anchor_pitch: int = 72,
        transpose=None,
        decode_bpm: float = DEFAULT_BPM,
        decode_velocity: int = 100,
    ) -> None:
        if rhythm_encoding not in RHYTHM_ENCODINGS:
            raise ConfigError(f"rhythm_encoding={rhythm_encoding!r} is not one of {', '.join(RHYTHM_ENCODINGS)}")
        metres = [str(m) for m in metres]
        if bar_steps(metres, int(steps_per_beat)) != STEPS_PER_BAR:
            raise ConfigError(
                f"melody_chord_events needs {STEPS_PER_BAR} steps per bar: steps_per_beat "
                f"{steps_per_beat} gives {bar_steps(metres, int(steps_per_beat))} in {metres}"
            )
        if not 0 <= int(lowest_pitch) <= 127 - int(num_pitches) + 1 or int(num_pitches) < 1:
            raise ConfigError(f"pitch range {lowest_pitch} + {num_pitches} must lie in MIDI 0..127")
        if not int(lowest_pitch) <= int(anchor_pitch) < int(lowest_pitch) + int(num_pitches):
            raise ConfigError(f"anchor_pitch {anchor_pitch} must lie in the pitch range {lowest_pitch} + {num_pitches}")
        super().__init__(
            rhythm_encoding=rhythm_encoding,
            steps_per_beat=int(steps_per_beat),
            metres=metres,
            lowest_pitch=int(lowest_pitch),
            num_pitches=int(num_pitches),
            events_per_bar=int(events_per_bar),
            anchor_pitch=int(anchor_pitch),
            transpose=check_transpose(transpose),
            decode_bpm=float(decode_bpm),
            decode_velocity=int(decode_velocity),
        )
        self.timestep = rhythm_encoding == "timestep"
        self.num_token_fields = 1 if self.timestep else 2
        self.num_features = self.num_token_fields + CHORD_FEATURES
        self.window_align = STEPS_PER_BAR if self.timestep else int(events_per_bar)
        self.min_window = self.window_align
        if not self.timestep and not 1 <= self.window_align <= STEPS_PER_BAR:
            raise ConfigError(f"events_per_bar must be in 1..{STEPS_PER_BAR}, got {events_per_bar}")

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Classes of each token field (the generator's softmax heads)."""
        p = self.options["num_pitches"]
        if self.timestep:
            return (TIMESTEP_PITCH0 + p,)
        pitches = 2 * p - 1 if self.options["rhythm_encoding"] == "interval" else p
        return (EVENT_PITCH0 + pitches, STEPS_PER_BAR + 1)

    @property
    def chord_slice(self) -> slice:
        return slice(self.num_token_fields, self.num_features)

    def _pitch_index(self, pitch: int) -> int:
        return int(pitch) - self.options["lowest_pitch"]

    # -- encode ----------------------------------------------------------------------------
    def encode(self, song: Song) -> np.ndarray:
        metre_filter(song, self.options["metres"], self.name)
        pitch, onset = melody_steps(song, self.options["steps_per_beat"])
        num_bars = max(-(-len(pitch) // STEPS_PER_BAR), 1)
        pitch = np.concatenate([pitch, np.full(num_bars * STEPS_PER_BAR - len(pitch), REST)])
        onset = np.concatenate([onset, np.zeros(num_bars * STEPS_PER_BAR - len(onset), dtype=bool)])
        onset |= (pitch != REST) & (pitch != np.concatenate([[REST], pitch[:-1]]))  # a pitch change is an onset
        self._check_range(pitch)
        beats = song_chords(song, "beat", num_bars * self.beats_per_bar)
        if self.timestep:
            return self._encode_timestep(pitch, onset, beats)
        return self._encode_events(bar_events(pitch, onset, STEPS_PER_BAR), beats)

    @property
    def beats_per_bar(self) -> int:
        return STEPS_PER_BAR // self.options["steps_per_beat"]

    def _check_range(self, pitch: np.ndarray) -> None:
        sounding = pitch[pitch != REST]
        low, high = self.options["lowest_pitch"], self.options["lowest_pitch"] + self.options["num_pitches"] - 1
        if len(sounding) and (sounding.min() < low or sounding.max() > high):
            raise SongSkipped(f"melody pitch outside {low}..{high}")

    def _encode_timestep(self, pitch, onset, beats) -> np.ndarray:
        out = np.zeros(
            (check_grid(len(pitch), self.num_features, "melody_chord_events rows"), self.num_features), dtype=np.float32
        )
        tokens = np.where(
            pitch == REST,
            TIMESTEP_REST,
            np.where(onset, TIMESTEP_PITCH0 + pitch - self.options["lowest_pitch"], TIMESTEP_SUSTAIN),
        )
        out[:, 0] = tokens
        out[:, self.chord_slice] = np.repeat(chord_vectors(beats), self.options["steps_per_beat"], axis=0)
        return out

    def _encode_events(self, bars, beats) -> np.ndarray:
        slots = self.window_align
        if max(len(events) for events in bars) > slots:
            raise SongSkipped(f"a bar holds more than events_per_bar={slots} melody events")
        out = np.zeros(
            (check_grid(len(bars) * slots, self.num_features, "melody_chord_events rows"), self.num_features),
            dtype=np.float32,
        )
        previous = self.options["anchor_pitch"]
        for b, events in enumerate(bars):
            for j, (start, stop, kind, pitch) in enumerate(events):
                out[b * slots + j, :2] = (self._pitch_token(kind, pitch, previous), self._rhythm_token(start, stop))
                previous = pitch if kind == "note" else previous
        slot_beats = np.arange(slots) * self.beats_per_bar // slots
        bar_of = np.repeat(np.arange(len(bars)), slots)
        out[:, self.chord_slice] = chord_vectors(beats[bar_of * self.beats_per_bar + np.tile(slot_beats, len(bars))])
        return out

    def _pitch_token(self, kind: str, pitch: int, previous: int) -> int:
        if kind != "note":
            return EVENT_REST if kind == "rest" else TIE
        if self.options["rhythm_encoding"] == "interval":
            return EVENT_PITCH0 + pitch - previous + self.options["num_pitches"] - 1
        return EVENT_PITCH0 + self._pitch_index(pitch)

    def _rhythm_token(self, start: int, stop: int) -> int:
        return stop if self.options["rhythm_encoding"] == "end_position" else stop - start

    # -- decode ----------------------------------------------------------------------------
    def decode(self, steps: np.ndarray) -> Song:
        o = self.options
        x = finite(steps).reshape(-1, self.num_features)
        tokens = np.clip(np.round(x[:, : self.num_token_fields]), 0, np.array(self.vocab_sizes) - 1).astype(np.int64)
        pitch, onset = self._timestep_pitches(tokens[:, 0]) if self.timestep else self._event_pitches(tokens)
        seconds = 60.0 / o["decode_bpm"] / o["steps_per_beat"]
        melody = _notes_song(pitch_runs(pitch, onset), seconds, o["decode_velocity"], 0)
        chords = _notes_song(self._chord_notes(x), seconds, max(o["decode_velocity"] - 30, 1), 1)
        columns = [np.concatenate(pair) for pair in zip(melody, chords)]
        numerator, denominator = parse_metre(o["metres"][0])
        return Song.from_columns(
            *columns,
            tempos=[(0.0, o["decode_bpm"])],
            time_signatures=[(0.0, numerator, denominator)],
            tracks=[Track("Melody", 0, False), Track("Chords", 0, False)],
        )

    def _timestep_pitches(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pitch = np.where(tokens >= TIMESTEP_PITCH0, tokens - TIMESTEP_PITCH0 + self.options["lowest_pitch"], REST)
        onset = tokens >= TIMESTEP_PITCH0
        for t in np.flatnonzero(tokens == TIMESTEP_SUSTAIN):
            pitch[t] = pitch[t - 1] if t > 0 else REST
        return pitch, onset

    def _event_pitches(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-step pitch and onset flags of note-based rows (decode rules: module docstring)."""
        slots = self.window_align
        num_bars = -(-len(tokens) // slots)
        pitch = np.full(num_bars * STEPS_PER_BAR, REST, dtype=np.int64)
        onset = np.zeros(len(pitch), dtype=bool)
        previous = self.options["anchor_pitch"]
        for b in range(num_bars):
            cursor = 0
            for pitch_token, rhythm in tokens[b * slots : (b + 1) * slots]:
                stop = self._event_stop(cursor, int(rhythm))
                if pitch_token == EMPTY or stop <= cursor:
                    continue
                first = b * STEPS_PER_BAR
                note, previous = self._event_pitch(int(pitch_token), previous, pitch[first - 1] if first else REST)
                pitch[first + cursor : first + stop] = note
                onset[first + cursor] = pitch_token >= EVENT_PITCH0
                cursor = stop
        return pitch, onset

    def _event_stop(self, cursor: int, rhythm: int) -> int:
        if self.options["rhythm_encoding"] == "end_position":
            return rhythm
        return min(cursor + rhythm, STEPS_PER_BAR) if rhythm > 0 else cursor

    def _event_pitch(self, token: int, previous: int, before: int) -> tuple[int, int]:
        """(pitch or REST of this event, previous note for the next interval)."""
        if token == EVENT_REST:
            return REST, previous
        if token == TIE:
            return before, previous
        if self.options["rhythm_encoding"] == "interval":
            note = int(np.clip(previous + token - EVENT_PITCH0 - self.options["num_pitches"] + 1, 0, 127))
            return note, note
        note = token - EVENT_PITCH0 + self.options["lowest_pitch"]
        return note, note

    def chord_labels(self, rows: np.ndarray) -> np.ndarray:
        """Per-beat chord labels of decoded rows (the beat's first row or slot)."""
        x = finite(rows).reshape(-1, self.num_features)
        firsts = np.arange(0, len(x), self.options["steps_per_beat"]) if self.timestep else self._first_slots(len(x))
        return labels_from_chord_vectors(x[firsts, self.chord_slice])

    def _first_slots(self, num_rows: int) -> np.ndarray:
        slots = self.window_align
        slot_beats = np.arange(slots) * self.beats_per_bar // slots
        firsts = np.array([int(np.flatnonzero(slot_beats == k)[0]) for k in range(self.beats_per_bar)])
        return (np.arange(num_rows // slots)[:, None] * slots + firsts).reshape(-1)

    def _chord_notes(self, x: np.ndarray) -> list[tuple[int, int, int]]:
        """Block triads, one per run of equal beat chords, in melody steps."""
        beat = self.options["steps_per_beat"]
        labels = self.chord_labels(x)
        notes = []
        for start, stop, label in pitch_runs(np.where(labels == NO_CHORD, REST, labels)):
            third = 3 if label >= 12 else 4
            notes += [(start * beat, stop * beat, CHORD_OCTAVE + label % 12 + i) for i in (0, third, 7)]
        return notes

    # -- augment ---------------------------------------------------------------------------
    def augment(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.options["transpose"] is None:
            return window
        low, high = self.options["transpose"]
        shift = int(rng.integers(low, high + 1))
        out = window.copy()
        out[:, self.chord_slice] = np.concatenate(
            [
                np.roll(window[:, self.num_token_fields :][:, :12], shift, axis=1),
                np.roll(window[:, self.num_token_fields + 12 :], shift, axis=1),
            ],
            axis=1,
        )
        if self.options["rhythm_encoding"] != "interval":
            out[:, 0] = self._shift_pitch_tokens(window[:, 0], shift)
        return out

    def _shift_pitch_tokens(self, tokens: np.ndarray, shift: int) -> np.ndarray:
        first = TIMESTEP_PITCH0 if self.timestep else EVENT_PITCH0
        rest = TIMESTEP_REST if self.timestep else EVENT_REST
        is_pitch = tokens >= first
        moved = tokens + shift
        inside = (moved >= first) & (moved < first + self.options["num_pitches"])
        return np.where(is_pitch, np.where(inside, moved, rest), tokens)
