"""Registry of per-song metrics: small pure functions `Song -> float` (NaN when undefined).

Both the training loop (`crnngan_summary`, every epoch) and `musicgan evaluate` read this
one registry. Definitions and the public references' pitfalls: `docs/metrics.md`.

Conventions
- Pitch metrics ignore drum notes (`Song.pitched()`); rhythm metrics (empty-beat rate,
  groove consistency) use every note.
- Counts (unique_tones, n_pitches_used, n_pitch_classes_used, repetitions_3 and their
  melody_* forms) are 0 on an
  empty song, a well-defined value that lets a collapsed generator show up in averages;
  spans, ratios and entropies are NaN there. `*_compat` variants are NaN on an empty song,
  as the reference code refuses empty songs.
- "Same onset" (C-RNN-GAN polyphony) uses a tolerance, because generated timing is
  continuous: onsets closer than `onset_tolerance` seconds (chained) form one onset group.
  Default: half a tick of the C-RNN-GAN reference grid, i.e. 0.5 * (0.5 s / 384) = 0.651 ms
  (384 ticks per quarter note at 120 bpm). Decoded sample times are rounded to MIDI ticks
  coarser than this, so chord notes written by our representations share an onset exactly.
- Grid-based MusPy-style metrics (polyphony, polyphony_rate) sample the song on a grid of
  `STEPS_PER_BEAT` = 12 steps per quarter note (resolves sixteenths and eighth triplets);
  each note covers steps [round(on), round(off)) and at least one step.

Which variant a report uses: the `crnngan` group holds the correct definitions and the
`*_compat` variants side by side; reports and the training loop show both, named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from musicgan.data.bounds import GridTooLarge, check_grid
from musicgan.data.chords import NO_CHORD, TRIAD_TEMPLATES, song_chords
from musicgan.data.song import DURATION, ONSET, PITCH, TRACK, Song
from musicgan.data.tracks import group_tracks

log = logging.getLogger(__name__)

# Half a tick of 384 ticks per quarter note at 120 bpm, in seconds (see module docstring).
DEFAULT_ONSET_TOLERANCE = 0.5 * (60.0 / 120.0) / 384.0
STEPS_PER_BEAT = 12  # grid resolution (per quarter note) of the piano-roll-style metrics
GROOVE_STEPS_PER_BEAT = 12
DEFAULT_BAR_BEATS = 4.0  # quarter notes per bar when a song has no time signature
POLYPHONY_RATE_THRESHOLD = 2  # a step is polyphonic when >= 2 pitches sound

# Scale templates of the C-RNN-GAN reference (pitch classes relative to the root).
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "natural_minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}

NAN = float("nan")


@dataclass(frozen=True)
class Metric:
    """One registered metric: `fn(song, **params) -> float`."""

    name: str
    fn: Callable[..., float]
    groups: tuple[str, ...]
    description: str
    params: tuple[str, ...] = ()  # keyword parameters `compute_metrics` may pass through
    higher_is: str = ""  # informational: "" when neither direction is "better"

    def __call__(self, song: Song, **params) -> float:
        accepted = {k: v for k, v in params.items() if k in self.params}
        try:
            return float(self.fn(song, **accepted))
        except GridTooLarge as exc:  # a grid metric refuses a song spanning too many beats: undefined
            log.warning("%s undefined for %s: %s", self.name, song.source or "a song", exc)
            return NAN


METRICS: dict[str, Metric] = {}
GROUPS = ("crnngan", "muspy", "musegan", "melody")
# What every evaluation computes ("all"). The multi-track `musegan` group (registered by
# musicgan.metrics.musegan) is asked for by name: on one-track songs most of it is NaN, and
# adding it to "all" would have changed every existing report's comparison rows. The
# `melody` group is in "all": it reads the top line of any song (a chorale's soprano), so
# `evaluate` compares it for every model (six more comparison rows in every report).
DEFAULT_GROUPS = ("crnngan", "muspy", "melody")


def register(name: str, groups: Sequence[str], description: str, params: Sequence[str] = ()):
    """Decorator adding a function to `METRICS` under `name`."""

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = Metric(name, fn, tuple(groups), description, tuple(params))
        return fn

    return wrap


def metric_names(group: str | None = None) -> list[str]:
    """Registered names, in registration order; `group=None` or "all": those of DEFAULT_GROUPS."""
    if group in (None, "all"):
        return [n for n, m in METRICS.items() if set(m.groups) & set(DEFAULT_GROUPS)]
    if group not in GROUPS:
        raise ValueError(f"unknown metric group {group!r}; known: {', '.join(GROUPS)}, all")
    return [n for n, m in METRICS.items() if group in m.groups]


# -- shared helpers -----------------------------------------------------------------------
def _pitches(song: Song) -> np.ndarray:
    """(n,) int64 pitches of the non-drum notes, in (onset, pitch) order."""
    return song.notes[~song.is_drum, 2].astype(np.int64)


def onset_groups(onsets: np.ndarray, tolerance: float) -> np.ndarray:
    """(n,) group index per sorted onset: a new group starts when the gap exceeds tolerance."""
    if len(onsets) == 0:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(onsets)
    return np.concatenate([[0], np.cumsum(gaps > tolerance)]).astype(np.int64)


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0:
        return NAN
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum() + 0.0)


def _scale_masks(compat: bool) -> np.ndarray:
    """(3 scales * 12 roots, 12 pitch classes) membership: is pc in the scale on that root?

    compat: the reference's test `pc - root in scale`, false for every pc below the root.
    """
    masks = np.zeros((len(SCALES), 12, 12))
    for s, degrees in enumerate(SCALES.values()):
        for root in range(12):
            for pc in range(12):
                relative = pc - root if compat else (pc - root) % 12
                masks[s, root, pc] = relative in degrees
    return masks.reshape(-1, 12)


SCALE_MASKS = _scale_masks(compat=False)
SCALE_MASKS_COMPAT = _scale_masks(compat=True)


def _best_scale_fraction(pitches: np.ndarray, masks: np.ndarray) -> float:
    """Max over (scale, root) of the share of notes whose pitch class is in the scale."""
    hist = np.bincount(pitches % 12, minlength=12).astype(np.float64)  # (12,)
    return float((masks @ hist).max() / len(pitches))


def _pianoroll_counts(song: Song, steps_per_beat: int = STEPS_PER_BEAT) -> np.ndarray:
    """(num_steps,) number of distinct non-drum pitches sounding at each grid step."""
    notes = song.notes[~song.is_drum]
    if len(notes) == 0:
        return np.zeros(0, dtype=np.int64)
    on = np.rint(song.seconds_to_beats(notes[:, 0]) * steps_per_beat).astype(np.int64)
    off = np.rint(song.seconds_to_beats(notes[:, 0] + notes[:, 1]) * steps_per_beat).astype(np.int64)
    off = np.maximum(off, on + 1)  # notes shorter than a step still occupy one step
    # Difference array over (step, used pitch): +1 at onset, -1 at offset; a pitch sounds
    # where the running sum is > 0 (overlapping notes of one pitch count once).
    used, column = np.unique(notes[:, 2].astype(np.int64), return_inverse=True)
    num_steps = check_grid(int(off.max()) + 1, len(used), "step grid") - 1
    size = (num_steps + 1) * len(used)
    diff = np.bincount(on * len(used) + column, minlength=size) - np.bincount(off * len(used) + column, minlength=size)
    sounding = np.cumsum(diff.reshape(num_steps + 1, len(used)), axis=0)[:num_steps] > 0
    return sounding.sum(axis=1)


# -- C-RNN-GAN metrics (Mogren 2016), correct versions -------------------------------------
@register(
    "scale_consistency",
    ["crnngan"],
    "max over 12 roots x {major, natural minor, harmonic minor} of the share of notes in the scale",
)
def scale_consistency(song: Song) -> float:
    pitches = _pitches(song)
    if len(pitches) == 0:
        return NAN
    return _best_scale_fraction(pitches, SCALE_MASKS)


@register("tone_span", ["crnngan"], "highest minus lowest MIDI pitch (semitones)")
def tone_span(song: Song) -> float:
    pitches = _pitches(song)
    return float(pitches.max() - pitches.min()) if len(pitches) else NAN


@register("unique_tones", ["crnngan"], "number of distinct MIDI pitches")
def unique_tones(song: Song) -> float:
    return float(len(np.unique(_pitches(song))))


@register("intensity_span", ["crnngan"], "highest minus lowest velocity of the non-drum notes")
def intensity_span(song: Song) -> float:
    vel = song.notes[~song.is_drum, 3]
    return float(vel.max() - vel.min()) if len(vel) else NAN


@register(
    "polyphony",
    ["crnngan"],
    "share of onset groups where >= 2 notes start together (within onset_tolerance)",
    params=("onset_tolerance",),
)
def crnngan_polyphony(song: Song, onset_tolerance: float = DEFAULT_ONSET_TOLERANCE) -> float:
    onsets = song.notes[~song.is_drum, 0]
    if len(onsets) == 0:
        return NAN
    sizes = np.bincount(onset_groups(np.sort(onsets), onset_tolerance))
    return float(np.mean(sizes >= 2))


def repetition_count(sequence: np.ndarray, n: int, skip_last_window: bool = False) -> int:
    """Pairs (i < j, j >= i + n) of identical length-n windows of `sequence`.

    skip_last_window: the reference's off-by-one (window starts j < L - n only).
    """
    num_windows = len(sequence) - n + 1 - (1 if skip_last_window else 0)
    if num_windows < 2:
        return 0
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(sequence, dtype=np.int64), n)[:num_windows]
    if n <= 8 and windows.min() >= 0 and windows.max() < 128:  # MIDI pitches: one int64 per n-gram
        codes = windows @ (128 ** np.arange(n - 1, -1, -1, dtype=np.int64))
        _, labels = np.unique(codes, return_inverse=True)
    else:
        _, labels = np.unique(windows, axis=0, return_inverse=True)
    labels = labels.reshape(-1).astype(np.int64)  # same label = same n-gram
    positions = np.arange(num_windows, dtype=np.int64)
    # Sort (label, position) as one integer key; for each window count the windows with the
    # same label that start at least n later: O(L log L), no Python loop.
    span = num_windows + n + 1
    keys = np.sort(labels * span + positions)
    first_far = np.searchsorted(keys, labels * span + positions + n, side="left")
    label_end = np.searchsorted(keys, labels * span + span, side="left")
    return int((label_end - first_far).sum())


@register("repetitions_3", ["crnngan"], "pairs of identical, non-overlapping 3-note pitch sequences (timing ignored)")
def repetitions_3(song: Song) -> float:
    return float(repetition_count(_pitches(song), 3))


# -- C-RNN-GAN reference quirks (compat variants: only to compare with published numbers) --
@register(
    "scale_consistency_compat",
    ["crnngan"],
    "reference code: `pitch % 12 - root` in scale (misses classes below the root; D major scale = 0.857)",
)
def scale_consistency_compat(song: Song) -> float:
    pitches = _pitches(song)
    if len(pitches) == 0:
        return NAN
    return _best_scale_fraction(pitches, SCALE_MASKS_COMPAT)


@register(
    "polyphony_compat",
    ["crnngan"],
    "reference code's later get_polyphony_score (double counts; 4 triads = 11/15 = 0.733)",
    params=("onset_tolerance",),
)
def crnngan_polyphony_compat(song: Song, onset_tolerance: float = DEFAULT_ONSET_TOLERANCE) -> float:
    onsets = np.sort(song.notes[~song.is_drum, 0])
    if len(onsets) == 0:
        return NAN
    groups = onset_groups(onsets, onset_tolerance)
    mono = poly = 0
    tones_in_event = 0
    previous = groups[0]
    # Faithful to the reference loop: every note adds one count for the event it belongs to
    # at that moment, and closing an event counts it once more.
    for g in groups:
        if g == previous:
            tones_in_event += 1
        else:
            if tones_in_event == 1:
                mono += 1
            elif tones_in_event > 1:
                poly += 1
            tones_in_event = 1
        previous = g
        if tones_in_event == 1:
            mono += 1
        else:
            poly += 1
    return float(poly) / (poly + mono) if poly else 0.0


@register("repetitions_3_compat", ["crnngan"], "reference code: skips the last window and needs >= 8 notes")
def repetitions_3_compat(song: Song) -> float:
    pitches = _pitches(song)
    if len(pitches) == 0:
        return NAN
    # The reference only loops over lengths l < min(len // 2, 10).
    if not 3 < min(len(pitches) // 2, 10):
        return 0.0
    return float(repetition_count(pitches, 3, skip_last_window=True))


# -- MusPy-style metrics (Dong et al. 2020), with the pitfalls of docs/metrics.md fixed ----
@register("pitch_range", ["muspy"], "highest minus lowest pitch (semitones)")
def pitch_range(song: Song) -> float:
    return tone_span(song)


@register("n_pitches_used", ["muspy"], "number of distinct pitches")
def n_pitches_used(song: Song) -> float:
    return unique_tones(song)


@register("n_pitch_classes_used", ["muspy"], "number of distinct pitch classes")
def n_pitch_classes_used(song: Song) -> float:
    return float(len(np.unique(_pitches(song) % 12)))


@register("pitch_entropy", ["muspy"], "Shannon entropy (bits) of the pitch histogram (note counts)")
def pitch_entropy(song: Song) -> float:
    return _entropy_bits(np.bincount(_pitches(song), minlength=128).astype(np.float64))


@register("pitch_class_entropy", ["muspy"], "Shannon entropy (bits) of the pitch-class histogram (note counts)")
def pitch_class_entropy(song: Song) -> float:
    return _entropy_bits(np.bincount(_pitches(song) % 12, minlength=12).astype(np.float64))


@register("polyphony_muspy", ["muspy"], "mean number of sounding pitches over grid steps with at least one")
def muspy_polyphony(song: Song) -> float:
    counts = _pianoroll_counts(song)
    active = counts[counts > 0]
    return float(active.mean()) if len(active) else NAN


@register(
    "polyphony_rate",
    ["muspy"],
    "share of grid steps (song start to end) with >= 2 sounding pitches (MusPy uses > threshold)",
)
def polyphony_rate(song: Song) -> float:
    counts = _pianoroll_counts(song)
    return float(np.mean(counts >= POLYPHONY_RATE_THRESHOLD)) if len(counts) else NAN


@register(
    "empty_beat_rate", ["muspy"], "share of quarter-note beats (starting before the song ends) in which no note sounds"
)
def empty_beat_rate(song: Song) -> float:
    if song.num_notes == 0:
        return NAN
    check_grid(int(song.seconds_to_beats(song.end_time)) + 1, 1, "beat grid")
    beats = song.beat_times()
    beats = beats[beats < song.end_time]  # no phantom beat starting exactly at the end
    if len(beats) == 0:
        return NAN
    beat_ends = np.append(beats[1:], song.beats_to_seconds(song.seconds_to_beats(beats[-1]) + 1.0))
    # Beat [start, end) is occupied when a note has onset < end and offset > start. Among
    # the notes with onset < end (a prefix in onset order) the latest offset decides.
    order = np.argsort(song.onsets, kind="stable")
    onsets_sorted = song.onsets[order]
    latest_offset = np.maximum.accumulate(song.offsets[order])  # (num_notes,)
    num_started = np.searchsorted(onsets_sorted, beat_ends, side="left")  # (num_beats,)
    occupied = (num_started > 0) & (latest_offset[np.maximum(num_started - 1, 0)] > beats)
    return float(1.0 - occupied.mean())


@register(
    "groove_consistency",
    ["muspy"],
    "1 - mean Hamming distance between onset patterns of consecutive bars / steps per bar (identical bars = 1.0)",
)
def groove_consistency(song: Song) -> float:
    if song.num_notes == 0:
        return NAN
    bar_beats = song.bar_length_beats() or DEFAULT_BAR_BEATS
    steps_per_bar = int(round(bar_beats * GROOVE_STEPS_PER_BEAT))
    step = np.rint(song.seconds_to_beats(song.onsets) * GROOVE_STEPS_PER_BEAT).astype(np.int64)
    # Bars up to the one holding the last onset: a sustained final note adds no empty bar
    # (MusPy's `end // bar + 1` adds one, so two identical bars score 0.875 there).
    num_bars = int(step.max() // steps_per_bar) + 1
    if num_bars < 2:
        return NAN
    check_grid(num_bars, steps_per_bar, "bar grid")
    patterns = np.zeros((num_bars, steps_per_bar), dtype=bool)
    patterns[step // steps_per_bar, step % steps_per_bar] = True
    hamming = np.count_nonzero(patterns[1:] != patterns[:-1], axis=1)  # (num_bars - 1,)
    return float(1.0 - hamming.mean() / steps_per_bar)


# -- melody metrics (MidiNet, Yang et al. 2017): on the song's `melody` track grouping (a
# chorale's soprano, a decoded melody_chord song's melody track), bars of the song's grid.
MELODY_LENGTH_STEPS = 4  # note lengths are counted in 16ths (4 per quarter note)


MELODY_TRACK = "Melody"  # the track name melody_chord's decode writes


def _melody(song: Song) -> np.ndarray:
    """(n, 7) notes of the melody line: a track named "Melody" when the song has one (a
    decoded melody_chord song, whose melody may be empty: the top part would then be the
    chords), else the `melody` grouping (top part, made monophonic)."""
    names = [t.name for t in song.tracks]
    if MELODY_TRACK in names:
        return song.notes[song.notes[:, TRACK] == names.index(MELODY_TRACK)]
    (melody,) = group_tracks(song, "melody")
    return melody.notes


def _bar_index(song: Song, seconds: np.ndarray) -> np.ndarray:
    """0-based bar of the song's bar grid holding each time."""
    beats = song.seconds_to_beats(seconds) - song.bar_origin_beats()
    return np.floor(beats / song.bar_beats() + 1e-9).astype(np.int64)


@register(
    "chord_tone_ratio",
    ["melody"],
    "share of melody onsets whose pitch class is a tone of the bar's chord (bars without a chord left out)",
)
def chord_tone_ratio(song: Song) -> float:
    melody = _melody(song)
    if len(melody) == 0:
        return NAN
    bars = _bar_index(song, melody[:, ONSET])
    labels = song_chords(song, "bar", int(bars.max()) + 1)[bars]
    known = labels != NO_CHORD
    if not known.any():
        return NAN
    pitch_class = melody[known, PITCH].astype(np.int64) % 12
    return float((TRIAD_TEMPLATES[labels[known], pitch_class] > 0).mean())


@register("melody_pitch_range", ["melody"], "highest minus lowest pitch of the melody line (semitones)")
def melody_pitch_range(song: Song) -> float:
    pitches = _melody(song)[:, PITCH]
    return float(pitches.max() - pitches.min()) if len(pitches) else NAN


@register(
    "distinct_pitches_per_bar",
    ["melody"],
    "mean over bars with a melody onset of the distinct pitches starting in that bar",
)
def distinct_pitches_per_bar(song: Song) -> float:
    melody = _melody(song)
    if len(melody) == 0:
        return NAN
    pairs = np.unique(np.stack([_bar_index(song, melody[:, ONSET]), melody[:, PITCH].astype(np.int64)]), axis=1)
    return float(pairs.shape[1] / len(np.unique(pairs[0])))


def melody_note_steps(song: Song) -> np.ndarray:
    """(n,) length of each melody note in 16ths (at least 1)."""
    melody = _melody(song)
    beats = song.seconds_to_beats(melody[:, ONSET] + melody[:, DURATION]) - song.seconds_to_beats(melody[:, ONSET])
    return np.maximum(np.rint(beats * MELODY_LENGTH_STEPS), 1).astype(np.int64)


@register("melody_note_length", ["melody"], "mean melody note length in quarter notes")
def melody_note_length(song: Song) -> float:
    steps = melody_note_steps(song)
    return float(steps.mean() / MELODY_LENGTH_STEPS) if len(steps) else NAN


@register(
    "melody_note_length_entropy",
    ["melody"],
    "Shannon entropy (bits) of the histogram of melody note lengths in 16ths (0: one length only)",
)
def melody_note_length_entropy(song: Song) -> float:
    # Counts of the lengths present (np.unique, not bincount: a note of 10^7 beats must not
    # allocate a histogram of that many bins).
    return _entropy_bits(np.unique(melody_note_steps(song), return_counts=True)[1].astype(np.float64))


@register("melody_scale_consistency", ["melody"], "scale_consistency of the melody line alone")
def melody_scale_consistency(song: Song) -> float:
    pitches = _melody(song)[:, PITCH].astype(np.int64)
    return _best_scale_fraction(pitches, SCALE_MASKS) if len(pitches) else NAN


# JazzGAN (Trieu & Keller 2018) on the melody line: its metrics beyond the ones above.
# A note is "qualified" when it lasts at least a 32nd note (1/8 beat): MuseGAN's threshold
# (Dong et al. 2018, 3 steps of 24 per beat), since JazzGAN's own value is not given.
QUALIFIED_NOTE_BEATS = 0.125


@register("melody_distinct_pitches", ["melody"], "number of distinct MIDI pitches of the melody line")
def melody_distinct_pitches(song: Song) -> float:
    return float(len(np.unique(_melody(song)[:, PITCH])))


@register("melody_distinct_pitch_classes", ["melody"], "number of distinct pitch classes of the melody line")
def melody_distinct_pitch_classes(song: Song) -> float:
    return float(len(np.unique(_melody(song)[:, PITCH].astype(np.int64) % 12)))


@register("melody_repetitions_3", ["melody"], "repetitions_3 of the melody line alone")
def melody_repetitions_3(song: Song) -> float:
    return float(repetition_count(_melody(song)[:, PITCH].astype(np.int64), 3))


@register(
    "qualified_note_rate", ["melody"], "share of melody notes lasting at least QUALIFIED_NOTE_BEATS (a 32nd note)"
)
def qualified_note_rate(song: Song) -> float:
    melody = _melody(song)
    if len(melody) == 0:
        return NAN
    beats = song.seconds_to_beats(melody[:, ONSET] + melody[:, DURATION]) - song.seconds_to_beats(melody[:, ONSET])
    return float((beats >= QUALIFIED_NOTE_BEATS - 1e-9).mean())


@register(
    "non_chord_tone_ratio",
    ["melody"],
    "1 - chord_tone_ratio: share of melody onsets (bars with a chord) outside the bar's triad",
)
def non_chord_tone_ratio(song: Song) -> float:
    return 1.0 - chord_tone_ratio(song)


# -- batch API -------------------------------------------------------------------------------
def compute_metrics(songs: Iterable[Song], group: str | None = "crnngan", **params) -> dict[str, np.ndarray]:
    """Per-song values: {metric name: (num_songs,) float64}. `params` (e.g. onset_tolerance)
    reach the metrics that declare them."""
    names = metric_names(group)
    songs = list(songs)
    out = {name: np.empty(len(songs), dtype=np.float64) for name in names}
    for i, song in enumerate(songs):
        for name in names:
            out[name][i] = METRICS[name](song, **params)
    return out


def summarize(values: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """NaN-aware {name: {mean, std, n}} where n counts the defined (non-NaN) values."""
    summary = {}
    for name, vals in values.items():
        vals = np.asarray(vals, dtype=np.float64)
        defined = vals[~np.isnan(vals)]
        summary[name] = {
            "mean": float(defined.mean()) if len(defined) else NAN,
            "std": float(defined.std()) if len(defined) else NAN,
            "n": int(len(defined)),
        }
    return summary


def crnngan_summary(songs: Iterable[Song], **params) -> dict[str, float]:
    """Means of the `crnngan` group (NaN-aware): what the trainer logs every epoch."""
    return {name: s["mean"] for name, s in summarize(compute_metrics(songs, "crnngan", **params)).items()}
