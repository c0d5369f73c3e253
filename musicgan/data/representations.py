"""Representations: symmetric encode/decode pairs between a `Song` and a (T, F) array.

Shards store whole songs; the loader encodes at load time, so one shard set serves every
model. `encode` takes a whole song, `decode` takes any (T, F) array a generator may emit
(NaN, negative lengths, out-of-range pitches, zero padding rows) and always returns a
valid Song. `state_dict()` is JSON and goes into checkpoints so sampling decodes exactly
as training encoded.

Registry names: "events" (C-RNN-GAN, K tones per step), "pianoroll" (88 keys), "tokens"
(note/chord vocabulary), "multitrack" (MuseGAN, musicgan/data/multitrack.py),
"melody_chord" (MidiNet) and "melody_grid" (SeqGAN) (musicgan/data/melody.py),
"melody_chord_events" (JazzGAN's rhythm encodings, musicgan/data/melody_events.py). The base
class and the loader contract (window_align, min_window, augment, SongSkipped) are in
musicgan/data/representation_base.py. "fft_blocks" and "specgram_if" encode the song's rendered audio
(musicgan.data.audio_representations). Drums are left out (they have no pitch in the musical
sense) except by "multitrack" with the lpd5 grouping, which keeps them as a drum track of
onsets; `include_drums=True` keeps them in "events".
"""

from __future__ import annotations

import numpy as np

from musicgan.data.bounds import check_grid
from musicgan.data.melody import MelodyChordRepresentation, MelodyGridRepresentation
from musicgan.data.melody_events import MelodyChordEventsRepresentation
from musicgan.data.multitrack import MultitrackRepresentation
from musicgan.data.representation_base import Representation, finite
from musicgan.data.song import DEFAULT_BPM, DURATION, IS_DRUM, ONSET, PITCH, VELOCITY, Song
from musicgan.errors import ConfigError

MAX_DECODED_SECONDS = 60.0  # clamp for generated lengths/dts: a runaway value is not a note


def _notes_for(song: Song, include_drums: bool) -> np.ndarray:
    notes = song.notes if include_drums else song.notes[song.notes[:, IS_DRUM] < 0.5]
    return notes  # sorted by (onset, pitch) by Song


# =============================================================================================
class EventRepresentation(Representation):
    """C-RNN-GAN events: one step = [dt, (length, pitch, velocity) x K].

    dt is the time since the previous step's onset (0 inside a chord). K = tones_per_step:
    K=1 is C-RNN-GAN (one note per step, F=4), K=3 is C-RNN-GAN-3 (F=10): notes sharing an
    onset fill the K slots of one step, lowest pitch first, unused slots all zero; a chord
    with more than K notes continues in the next step with dt=0, so nothing is lost.

    Units: time_unit "seconds" (tempo honoured) or "ticks" (384 per quarter note, the
    reference's compat mode; decoded at `decode_bpm`); pitch_unit "midi" or "hz".
    Normalisation (normalize=True, default), chosen so that it inverts exactly:
        time   -> log1p(t / time_scale)   time_scale = 0.25 s or 96 ticks (a 16th at 384);
                                          the log tames heavy tails (lengths up to 2e5 ticks)
        pitch  -> (midi - 64) / 64        ("midi");  log2(hz / 440) ("hz": octaves from A4)
        velocity -> velocity / 127
    An unused slot is all zeros: velocity 0 there marks "no note" on decode.
    """

    name = "events"

    def __init__(
        self,
        tones_per_step: int = 1,
        pitch_unit: str = "midi",
        time_unit: str = "seconds",
        normalize: bool = True,
        ticks_per_quarter: int = 384,
        decode_bpm: float = DEFAULT_BPM,
        include_drums: bool = False,
        chord_tolerance: float = 1e-4,
    ) -> None:
        if int(tones_per_step) < 1:
            raise ConfigError(f"tones_per_step must be >= 1, got {tones_per_step}")
        if pitch_unit not in ("midi", "hz"):
            raise ConfigError(f"pitch_unit must be 'midi' or 'hz', got {pitch_unit!r}")
        if time_unit not in ("seconds", "ticks"):
            raise ConfigError(f"time_unit must be 'seconds' or 'ticks', got {time_unit!r}")
        super().__init__(
            tones_per_step=int(tones_per_step),
            pitch_unit=pitch_unit,
            time_unit=time_unit,
            normalize=bool(normalize),
            ticks_per_quarter=int(ticks_per_quarter),
            decode_bpm=float(decode_bpm),
            include_drums=bool(include_drums),
            chord_tolerance=float(chord_tolerance),
        )
        self.tones_per_step = int(tones_per_step)
        self.num_features = 1 + 3 * self.tones_per_step
        self.dtype = np.float32

    # -- unit transforms (each pair is an exact inverse) ----------------------------------
    @property
    def _time_scale(self) -> float:
        return 0.25 if self.options["time_unit"] == "seconds" else self.options["ticks_per_quarter"] / 4.0

    def _times_out(self, t: np.ndarray) -> np.ndarray:
        return np.log1p(t / self._time_scale) if self.options["normalize"] else t

    def _times_in(self, x: np.ndarray) -> np.ndarray:
        return np.expm1(x) * self._time_scale if self.options["normalize"] else x

    def _pitch_out(self, midi: np.ndarray) -> np.ndarray:
        if self.options["pitch_unit"] == "hz":
            octaves = (midi - 69.0) / 12.0
            return octaves if self.options["normalize"] else 440.0 * 2.0**octaves
        return (midi - 64.0) / 64.0 if self.options["normalize"] else midi

    def _pitch_in(self, x: np.ndarray) -> np.ndarray:
        if self.options["pitch_unit"] == "hz":
            if self.options["normalize"]:
                return 69.0 + 12.0 * x
            return 69.0 + 12.0 * np.log2(np.maximum(x, 1e-3) / 440.0)
        return x * 64.0 + 64.0 if self.options["normalize"] else x

    def _velocity_out(self, v: np.ndarray) -> np.ndarray:
        return v / 127.0 if self.options["normalize"] else v

    def _velocity_in(self, x: np.ndarray) -> np.ndarray:
        return x * 127.0 if self.options["normalize"] else x

    def _seconds_to_time(self, song: Song, seconds: np.ndarray) -> np.ndarray:
        if self.options["time_unit"] == "seconds":
            return seconds
        return song.seconds_to_beats(seconds) * self.options["ticks_per_quarter"]

    def _time_to_seconds(self, t: np.ndarray) -> np.ndarray:
        if self.options["time_unit"] == "seconds":
            return t
        return t / self.options["ticks_per_quarter"] * 60.0 / self.options["decode_bpm"]

    # -- codecs --------------------------------------------------------------------------------
    def encode(self, song: Song) -> np.ndarray:
        notes = _notes_for(song, self.options["include_drums"])
        k = self.tones_per_step
        if len(notes) == 0:
            return np.zeros((0, self.num_features), dtype=np.float32)
        onset = self._seconds_to_time(song, notes[:, ONSET])
        offset = self._seconds_to_time(song, notes[:, ONSET] + notes[:, DURATION])
        length = offset - onset
        # Steps: a new step starts at each new onset, and every K notes inside one onset.
        tol = self.options["chord_tolerance"] if self.options["time_unit"] == "seconds" else 1e-6
        new_onset = np.ones(len(notes), dtype=bool)
        new_onset[1:] = np.diff(onset) > tol
        group = np.cumsum(new_onset) - 1
        first_of_group = np.flatnonzero(new_onset)
        index_in_group = np.arange(len(notes)) - first_of_group[group]
        new_step = new_onset | (index_in_group % k == 0)
        step = np.cumsum(new_step) - 1  # step of each note
        slot = index_in_group % k
        num_steps = int(step[-1]) + 1
        step_onset = onset[np.flatnonzero(new_step)]
        dt = np.diff(step_onset, prepend=0.0)  # the first step's dt: distance from the song start
        out = np.zeros((num_steps, self.num_features), dtype=np.float64)
        out[:, 0] = self._times_out(np.maximum(dt, 0.0))
        cols = 1 + 3 * slot
        out[step, cols] = self._times_out(np.maximum(length, 0.0))
        out[step, cols + 1] = self._pitch_out(notes[:, PITCH])
        out[step, cols + 2] = self._velocity_out(notes[:, VELOCITY])
        return out.astype(np.float32)

    def decode(self, steps: np.ndarray) -> Song:
        steps = finite(steps).reshape(-1, self.num_features)
        onset = self._time_to_seconds(np.cumsum(self._decode_time(steps[:, 0])))
        rows = []
        for s in range(self.tones_per_step):
            c = 1 + 3 * s
            length = self._time_to_seconds(self._decode_time(steps[:, c]))
            # Clamp before the inverse transforms only to keep them finite; the musical range
            # is enforced on the decoded values.
            pitch = np.clip(np.round(self._pitch_in(np.clip(steps[:, c + 1], -1e6, 1e6))), 0, 127)
            velocity = np.clip(np.round(self._velocity_in(np.clip(steps[:, c + 2], -1e6, 1e6))), 0, 127)
            keep = (velocity >= 1) & (length > 0)  # zero slots and padding rows are not notes
            rows.append(np.stack([onset, length, pitch, velocity], axis=1)[keep])
        notes = np.concatenate(rows) if rows else np.zeros((0, 4))
        tempo = self.options["decode_bpm"] if self.options["time_unit"] == "ticks" else DEFAULT_BPM
        return Song.from_columns(notes[:, 0], notes[:, 1], notes[:, 2], notes[:, 3], tempos=[(0.0, tempo)])

    def _decode_time(self, x: np.ndarray) -> np.ndarray:
        """Encoded dt/length -> time units, clamped to [0, MAX_DECODED_SECONDS worth]."""
        max_time = self._seconds_to_time_bound()
        if self.options["normalize"]:
            x = np.clip(x, 0.0, np.log1p(max_time / self._time_scale))
        return np.clip(self._times_in(x), 0.0, max_time)

    def _seconds_to_time_bound(self) -> float:
        if self.options["time_unit"] == "seconds":
            return MAX_DECODED_SECONDS
        return MAX_DECODED_SECONDS / 60.0 * self.options["decode_bpm"] * self.options["ticks_per_quarter"]


# =============================================================================================
# Krumhansl-Kessler key profiles (probe-tone ratings), index 0 = tonic.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _standardised(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.sqrt((x * x).sum(axis=-1, keepdims=True))


# (24, 12): rows 0-11 major with tonic 0..11, rows 12-23 minor; standardised so that a dot
# product with a standardised histogram is Pearson's correlation.
_KEY_PROFILES = _standardised(
    np.stack([np.roll(profile, tonic) for profile in (_MAJOR_PROFILE, _MINOR_PROFILE) for tonic in range(12)])
)


def estimate_key(song: Song) -> tuple[int, str]:
    """(tonic pitch class 0-11, "major"|"minor") by Krumhansl-Schmuckler: the rotation of the
    major/minor profile best correlated with the duration-weighted pitch-class histogram."""
    notes = _notes_for(song, include_drums=False)
    histogram = np.zeros(12)
    np.add.at(histogram, notes[:, PITCH].astype(int) % 12, notes[:, DURATION])
    if histogram.sum() <= 0 or np.ptp(histogram) == 0:
        return 0, "major"  # no notes, or all twelve pitch classes equally: no key to find
    best = int(np.argmax(_KEY_PROFILES @ _standardised(histogram)))
    return best % 12, ("major", "minor")[best // 12]


def transposition_to_c(song: Song) -> int:
    """Semitones (-6..+5) that move the estimated tonic to C (major -> C major, minor -> C minor)."""
    tonic, _ = estimate_key(song)
    return -tonic if tonic <= 6 else 12 - tonic


class PianoRollRepresentation(Representation):
    """88-key binary piano roll (MIDI 21-108), `frames_per_beat` frames per quarter note.

    A key is on in frame t when a note covers it; onset/offset are rounded to the frame grid
    and every note keeps at least one frame. Notes outside the 88 keys are dropped.
    transpose="c" shifts each song so its estimated key (Krumhansl-Schmuckler) becomes C
    major / C minor, the RNN-RBM protocol (Boulanger-Lewandowski 2012: 1 frame per quarter
    for JSB chorales). Decoding turns each run of on-frames into a note at `decode_bpm` with
    `decode_velocity`; repeated notes of one pitch that touch merge (a binary roll cannot
    tell them apart), so the exact inverse is encode(decode(roll)) == roll.
    """

    name = "pianoroll"
    LOWEST, NUM_KEYS = 21, 88

    def __init__(
        self,
        frames_per_beat: int = 4,
        transpose: str | None = None,
        decode_bpm: float = DEFAULT_BPM,
        decode_velocity: int = 100,
        threshold: float = 0.5,
    ) -> None:
        if int(frames_per_beat) < 1:
            raise ConfigError(f"frames_per_beat must be >= 1, got {frames_per_beat}")
        if transpose not in (None, "none", "c"):
            raise ConfigError(f"transpose must be None or 'c', got {transpose!r}")
        super().__init__(
            frames_per_beat=int(frames_per_beat),
            transpose=None if transpose == "none" else transpose,
            decode_bpm=float(decode_bpm),
            decode_velocity=int(decode_velocity),
            threshold=float(threshold),
        )
        self.num_features = self.NUM_KEYS
        self.dtype = np.float32

    def encode(self, song: Song) -> np.ndarray:
        notes = _notes_for(song, include_drums=False)
        fpb = self.options["frames_per_beat"]
        shift = transposition_to_c(song) if self.options["transpose"] == "c" else 0
        keys = notes[:, PITCH].astype(np.int64) + shift - self.LOWEST
        inside = (keys >= 0) & (keys < self.NUM_KEYS)
        notes, keys = notes[inside], keys[inside]
        if len(notes) == 0:
            return np.zeros((0, self.NUM_KEYS), dtype=np.float32)
        start = np.round(song.seconds_to_beats(notes[:, ONSET]) * fpb).astype(np.int64)
        end = np.round(song.seconds_to_beats(notes[:, ONSET] + notes[:, DURATION]) * fpb).astype(np.int64)
        start = np.maximum(start, 0)
        end = np.maximum(end, start + 1)
        # +1 where a note starts, -1 where it ends, running sum > 0 = sounding (no per-note loop)
        num_frames = check_grid(int(end.max()) + 1, self.NUM_KEYS, "piano roll")
        edges = np.zeros((num_frames, self.NUM_KEYS), dtype=np.int32)
        np.add.at(edges, (start, keys), 1)
        np.add.at(edges, (end, keys), -1)
        return (np.cumsum(edges, axis=0)[:-1] > 0).astype(np.float32)

    def decode(self, steps: np.ndarray) -> Song:
        roll = finite(steps).reshape(-1, self.NUM_KEYS) > self.options["threshold"]
        seconds_per_frame = 60.0 / self.options["decode_bpm"] / self.options["frames_per_beat"]
        padded = np.zeros((roll.shape[0] + 2, self.NUM_KEYS), dtype=np.int8)
        padded[1:-1] = roll
        change = np.diff(padded, axis=0)  # +1 at a run's first frame, -1 after its last
        on_t, on_k = np.nonzero(change == 1)
        off_t, off_k = np.nonzero(change == -1)
        # np.nonzero walks row-major (time first); sort both by (key, time) to pair runs.
        on = np.lexsort((on_t, on_k))
        off = np.lexsort((off_t, off_k))
        start, key, stop = on_t[on], on_k[on], off_t[off]
        return Song.from_columns(
            start * seconds_per_frame,
            (stop - start) * seconds_per_frame,
            key + self.LOWEST,
            np.full(len(start), float(self.options["decode_velocity"])),
            tempos=[(0.0, self.options["decode_bpm"])],
        )


# =============================================================================================
class TokenRepresentation(Representation):
    """Discrete note/chord tokens (the LSTM models of Nguyen et al. 2018): one token per onset.

    A token is the sorted set of pitches starting together: "60" or "60.64.67". The
    vocabulary is learnt by `fit` on the training songs: ids 0 = padding (so the loader's
    zero padding is padding), 1 = unknown, then tokens by descending count (ties by name),
    at most `max_vocab`, each seen at least `min_count` times. Steps are (T, 1) int64 ids.
    Timing is not represented: decode places tokens `step_beats` apart at `decode_bpm`, each
    lasting one step. Exact inverse: encode(decode(ids)) == ids for ids >= 2.
    """

    name = "tokens"
    needs_fit = True
    PAD, UNK = 0, 1

    def __init__(
        self,
        max_vocab: int = 4096,
        min_count: int = 1,
        step_beats: float = 0.5,
        decode_bpm: float = DEFAULT_BPM,
        decode_velocity: int = 100,
        chord_tolerance: float = 1e-4,
    ) -> None:
        super().__init__(
            max_vocab=int(max_vocab),
            min_count=int(min_count),
            step_beats=float(step_beats),
            decode_bpm=float(decode_bpm),
            decode_velocity=int(decode_velocity),
            chord_tolerance=float(chord_tolerance),
        )
        self.num_features = 1
        self.dtype = np.int64
        self.vocab: list[str] = ["<pad>", "<unk>"]
        self._index: dict[str, int] = {}
        self._fitted = False

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def song_tokens(self, song: Song) -> list[str]:
        notes = _notes_for(song, include_drums=False)
        if len(notes) == 0:
            return []
        new = np.ones(len(notes), dtype=bool)
        new[1:] = np.diff(notes[:, ONSET]) > self.options["chord_tolerance"]
        groups = np.split(notes[:, PITCH].astype(np.int64), np.flatnonzero(new)[1:])
        return [".".join(str(p) for p in sorted(set(g.tolist()))) for g in groups]

    def fit(self, songs) -> None:
        counts: dict[str, int] = {}
        for song in songs:
            for token in self.song_tokens(song):
                counts[token] = counts.get(token, 0) + 1
        ranked = sorted((t for t, c in counts.items() if c >= self.options["min_count"]), key=lambda t: (-counts[t], t))
        self._set_vocab(["<pad>", "<unk>"] + ranked[: max(self.options["max_vocab"] - 2, 0)])

    def _set_vocab(self, vocab: list[str]) -> None:
        self.vocab = list(vocab)
        self._index = {t: i for i, t in enumerate(self.vocab)}
        self._fitted = True

    def encode(self, song: Song) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("the tokens representation needs fit(train_songs) or load_state_dict() before encode")
        ids = [self._index.get(t, self.UNK) for t in self.song_tokens(song)]
        return np.asarray(ids, dtype=np.int64).reshape(-1, 1)

    def decode(self, steps: np.ndarray) -> Song:
        ids = np.asarray(steps).reshape(-1)
        if ids.dtype.kind == "f":
            ids = np.nan_to_num(ids, nan=0.0, posinf=0.0, neginf=0.0).round()
        ids = np.clip(ids.astype(np.int64), 0, len(self.vocab) - 1)
        step_s = self.options["step_beats"] * 60.0 / self.options["decode_bpm"]
        onset, pitch = [], []
        for i, token_id in enumerate(ids):
            if token_id < 2:  # padding and unknown carry no pitches
                continue
            for p in self.vocab[token_id].split("."):
                onset.append(i * step_s)
                pitch.append(int(p))
        n = len(onset)
        return Song.from_columns(
            onset,
            np.full(n, step_s),
            pitch,
            np.full(n, float(self.options["decode_velocity"])),
            tempos=[(0.0, self.options["decode_bpm"])],
        )

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["vocab"] = list(self.vocab)
        state["fitted"] = self._fitted
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("fitted", "vocab" in state):
            self._set_vocab(state["vocab"])


# =============================================================================================
REPRESENTATIONS = {
    "events": EventRepresentation,
    "pianoroll": PianoRollRepresentation,
    "tokens": TokenRepresentation,
    "multitrack": MultitrackRepresentation,
    "melody_chord": MelodyChordRepresentation,
    "melody_grid": MelodyGridRepresentation,
    "melody_chord_events": MelodyChordEventsRepresentation,
}


def all_representations() -> dict[str, type]:
    """Every registered representation: the symbolic ones above and the audio ones. The audio
    module subclasses Representation, so it is imported here when asked for, not at load."""
    from musicgan.data.audio_representations import AUDIO_REPRESENTATIONS

    return {**REPRESENTATIONS, **AUDIO_REPRESENTATIONS}


def build_representation(name: str, **options) -> Representation:
    """Instantiate a representation by registry name with its options."""
    registry = all_representations()
    try:
        cls = registry[name]
    except KeyError:
        raise ConfigError(f"unknown representation {name!r}; choose one of {', '.join(registry)}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad option for representation {name!r}: {exc}") from None


def representation_from_state(state: dict) -> Representation:
    """Rebuild a representation from its `state_dict()` (what a checkpoint stores)."""
    rep = build_representation(state["name"], **state.get("options", {}))
    rep.load_state_dict(state)
    return rep
