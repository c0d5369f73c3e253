"""MuseGAN's objective metrics (Dong, Hsiao, Yang & Yang 2018, "MuseGAN: Multi-track
Sequential Generative Adversarial Networks for Symbolic Music Generation and
Accompaniment", section "Objective metrics"), per bar per track.

Every function here is pure and vectorised over bars: `bars` is a boolean array
(M, S, P) holding M bars of ONE track (S steps per bar, P pitch rows, row 0 = MIDI
`lowest_pitch`); the result is (M,) float64, one value per bar, NaN where the metric is
undefined: every metric but EB is NaN on an empty bar.

EB  empty bar: 100 for an empty bar, else 0 (its mean is the paper's "% of empty bars").
UPC used pitch classes: distinct pitch classes (MIDI pitch % 12) sounding in the bar.
    `used_pitch_classes_compat` is the reference code's chroma: it sums blocks of P / 12
    CONSECUTIVE pitch rows into 12 "classes", so a C and the D above it count once.
QN  qualified notes: % of the bar's notes (runs of consecutive on-steps of one pitch,
    cut at the bar line) lasting >= `min_steps` steps. The paper's threshold: 3 steps of
    96 per bar (a 32nd note); its code used 2. Default here 3 steps, whatever the grid:
    at 48 steps per bar that is a 16th note, so say the grid next to the figure.
DP  drum pattern: % of drum onsets on a 16th-note grid, an onset one step off the grid
    weighing 0.3, best over the `S / 16` shifts of the grid (the v1 code's tiled filter
    [1, 0.3, 0, 0, 0, 0.3] at 96 steps per bar). For drum tracks only: NaN without drums.
TD  tonal distance of two tracks: per beat, each track's chroma (sounding steps per pitch
    class) L1-normalised and mapped to the 6-D tonal centroid of Harte, Sandler & Gasser
    2006, "Detecting harmonic change in musical audio" (fifths, minor thirds, major thirds
    circles, radii 1, 1, 0.5); Euclidean distance; mean over the beats where both tracks
    sound (NaN when there is none).

`phrase_metrics` applies them to phrases (B, K, N, S, P) of named tracks: what
`musicgan evaluate` shows per track and per track pair; `song_bars` cuts a `Song` into such
bars so the registry (group "musegan") can score any song.
"""

from __future__ import annotations

import itertools

import numpy as np

from musicgan.data.song import IS_DRUM, PROGRAM, Song
from musicgan.metrics.registry import DEFAULT_BAR_BEATS, NAN, STEPS_PER_BEAT, register

QN_MIN_STEPS = 3  # the paper's threshold (in steps of its 96-per-bar grid)
DP_GRID_PER_BAR = 16  # sixteenth notes in a 4/4 bar
DP_NEIGHBOUR_WEIGHT = 0.3
TONAL_RADII = (1.0, 1.0, 0.5)  # fifths, minor thirds, major thirds
TONAL_ANGLES = (7 * np.pi / 6, 3 * np.pi / 2, 2 * np.pi / 3)
NUM_MIDI_PITCHES = 128


def pitch_classes(num_pitches: int, lowest_pitch: int) -> np.ndarray:
    """(P, 12) one-hot: row i -> pitch class (lowest_pitch + i) % 12."""
    return np.eye(12)[(np.arange(num_pitches) + lowest_pitch) % 12]


def tonal_matrix() -> np.ndarray:
    """(12, 6): each pitch class's point on the three circles (sin, cos per circle)."""
    classes = np.arange(12)[:, None]
    columns = []
    for radius, angle in zip(TONAL_RADII, TONAL_ANGLES):
        columns += [radius * np.sin(classes * angle), radius * np.cos(classes * angle)]
    return np.concatenate(columns, axis=1)


def _defined(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    return np.where(defined, values, NAN).astype(np.float64)


def _nonempty(bars: np.ndarray) -> np.ndarray:
    return bars.any(axis=(1, 2))


# -- per bar, one track --------------------------------------------------------------------
def empty_bars(bars: np.ndarray) -> np.ndarray:
    """EB per bar: 100.0 when nothing sounds, else 0.0 (never NaN)."""
    return np.where(_nonempty(bars), 0.0, 100.0)


def used_pitch_classes(bars: np.ndarray, lowest_pitch: int) -> np.ndarray:
    """UPC per bar: number of distinct pitch classes (pitch % 12) that sound."""
    sounding = bars.any(axis=1).astype(np.float64)  # (M, P)
    counts = ((sounding @ pitch_classes(bars.shape[2], lowest_pitch)) > 0).sum(axis=1)
    return _defined(counts, _nonempty(bars))


def used_pitch_classes_compat(bars: np.ndarray) -> np.ndarray:
    """UPC as the reference code computes it: 12 blocks of P / 12 consecutive rows."""
    m, _, p = bars.shape
    if p % 12:
        raise ValueError(f"the compat chroma needs a multiple of 12 pitch rows, got {p}")
    blocks = bars.any(axis=1).reshape(m, 12, p // 12).any(axis=2)
    return _defined(blocks.sum(axis=1), _nonempty(bars))


def note_lengths(bars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bar index, length in steps) of every note: runs of on-steps of one pitch in a bar."""
    m, s, p = bars.shape
    padded = np.zeros((m, p, s + 2), dtype=np.int8)
    padded[:, :, 1:-1] = bars.transpose(0, 2, 1)
    change = np.diff(padded, axis=2)  # +1 where a run starts, -1 one past where it ends
    bar_of_start, _, start = np.nonzero(change == 1)
    _, _, end = np.nonzero(change == -1)  # same (bar, pitch, time) order as the starts
    return bar_of_start, end - start


def qualified_notes(bars: np.ndarray, min_steps: int = QN_MIN_STEPS) -> np.ndarray:
    """QN per bar: % of its notes lasting >= min_steps steps."""
    bar, length = note_lengths(bars)
    notes = np.bincount(bar, minlength=len(bars))
    qualified = np.bincount(bar, weights=length >= min_steps, minlength=len(bars))
    return _defined(100.0 * qualified / np.maximum(notes, 1), notes > 0)


def onsets_per_step(bars: np.ndarray) -> np.ndarray:
    """(M, S) number of pitches starting at each step (a run continuing over the bar line
    counts again at the bar's first step, as everything here is per bar)."""
    previous = np.zeros_like(bars)
    previous[:, 1:] = bars[:, :-1]
    return (bars & ~previous).sum(axis=2)


def drum_pattern_filters(steps_per_bar: int) -> np.ndarray:
    """(shifts, S): the 16th-grid weights (1 on the grid, 0.3 one step off), every shift."""
    if steps_per_bar % DP_GRID_PER_BAR:
        raise ValueError(f"drum pattern needs a multiple of {DP_GRID_PER_BAR} steps per bar, got {steps_per_bar}")
    period = steps_per_bar // DP_GRID_PER_BAR
    base = np.zeros(period)
    base[[1, -1] if period > 1 else []] = DP_NEIGHBOUR_WEIGHT
    base[0] = 1.0
    tiled = np.tile(base, DP_GRID_PER_BAR)
    return np.stack([np.roll(tiled, shift) for shift in range(period)])


def drum_pattern(bars: np.ndarray) -> np.ndarray:
    """DP per bar of a drum track: best over grid shifts of the weighted % of onsets."""
    onsets = onsets_per_step(bars).astype(np.float64)  # (M, S)
    total = onsets.sum(axis=1)
    scores = onsets @ drum_pattern_filters(bars.shape[1]).T  # (M, shifts)
    return _defined(100.0 * scores.max(axis=1) / np.maximum(total, 1.0), total > 0)


def tonal_centroids(bars: np.ndarray, lowest_pitch: int, beats_per_bar: int) -> np.ndarray:
    """(M, beats, 6) tonal centroid of each beat's L1-normalised chroma; NaN when silent."""
    m, s, p = bars.shape
    if s % beats_per_bar:
        raise ValueError(f"{s} steps per bar do not split into {beats_per_bar} beats")
    per_beat = bars.reshape(m, beats_per_bar, s // beats_per_bar, p).sum(axis=2, dtype=np.float64)
    chroma = per_beat @ pitch_classes(p, lowest_pitch)  # (M, beats, 12)
    total = chroma.sum(axis=2, keepdims=True)
    normalised = np.where(total > 0, chroma / np.maximum(total, 1.0), NAN)
    return normalised @ tonal_matrix()


def tonal_distance(bars_a: np.ndarray, bars_b: np.ndarray, lowest_pitch: int, beats_per_bar: int) -> np.ndarray:
    """TD per bar between two tracks: mean over beats where both sound of the centroids'
    Euclidean distance."""
    distance = np.linalg.norm(tonal_centroids(bars_a, lowest_pitch, beats_per_bar)
                              - tonal_centroids(bars_b, lowest_pitch, beats_per_bar), axis=2)  # (M, beats)
    defined = ~np.isnan(distance)
    count = defined.sum(axis=1)
    return _defined(np.where(defined, distance, 0.0).sum(axis=1) / np.maximum(count, 1), count > 0)


# -- phrases of named tracks ------------------------------------------------------------------
def track_pairs(names) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(len(names)), 2))


def phrase_metrics(phrases: np.ndarray, track_names, drum_tracks=(), lowest_pitch: int = 0,
                   beats_per_bar: int = 4, qn_min_steps: int = QN_MIN_STEPS,
                   shuffle_seed: int | None = None) -> dict[str, np.ndarray]:
    """Per-bar values over every bar of `phrases` (B, K, N, S, P) bool:
    {"EB/<track>", "UPC/<track>", "UPC_compat/<track>", "QN/<track>" (pitched tracks),
    "DP/<track>" (drum tracks), "TD/<a>-<b>" (pitched pairs)}: (B * N,) each.
    shuffle_seed: also "TD_shuffled/<a>-<b>", track b's bars randomly re-paired with
    track a's (the paper's baseline: how far apart unrelated bars are)."""
    phrases = np.asarray(phrases, dtype=bool)
    b, k, n, s, p = phrases.shape
    tracks = phrases.transpose(1, 0, 2, 3, 4).reshape(k, b * n, s, p)  # (K, M, S, P)
    track_names = list(track_names)
    drums = {track_names.index(d) for d in drum_tracks}
    out = {}
    for i, name in enumerate(track_names):
        out[f"EB/{name}"] = empty_bars(tracks[i])
        if i in drums:
            out[f"DP/{name}"] = drum_pattern(tracks[i])
            continue
        out[f"UPC/{name}"] = used_pitch_classes(tracks[i], lowest_pitch)
        if p % 12 == 0:
            out[f"UPC_compat/{name}"] = used_pitch_classes_compat(tracks[i])
        out[f"QN/{name}"] = qualified_notes(tracks[i], qn_min_steps)
    rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
    for i, j in track_pairs(track_names):
        if i in drums or j in drums:
            continue
        pair = f"{track_names[i]}-{track_names[j]}"
        out[f"TD/{pair}"] = tonal_distance(tracks[i], tracks[j], lowest_pitch, beats_per_bar)
        if rng is not None:
            out[f"TD_shuffled/{pair}"] = tonal_distance(tracks[i], tracks[j][rng.permutation(b * n)], lowest_pitch,
                                                        beats_per_bar)
    return out


def nan_mean(values: np.ndarray) -> float:
    """Mean of the defined values; NaN (no warning) when there is none."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else NAN


# -- songs (the registry's view) ---------------------------------------------------------------
def song_tracks(song: Song) -> list[tuple[np.ndarray, bool]]:
    """(notes, is_drum) per track: notes grouped by instrument (program, drum flag), the
    identity a MIDI file keeps, in order of first appearance."""
    keys = song.notes[:, [PROGRAM, IS_DRUM]]
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [(song.notes[inverse == t], bool(keys[first[t], 1] > 0.5)) for t in np.argsort(first)]


def song_bars(song: Song, notes: np.ndarray, steps_per_beat: int = STEPS_PER_BEAT) -> np.ndarray:
    """(num_bars, S, 128) bool roll of `notes` (rows of `song.notes`) cut into bars from
    beat 0; the song's first time signature gives the bar length (else 4 beats). A note
    covers steps [round(onset), round(offset)), at least one; its last step is dropped
    when the same pitch starts again there, so repeated notes stay apart (as in the
    paper's encoding)."""
    bar_beats = song.bar_length_beats() or DEFAULT_BAR_BEATS
    steps_per_bar = int(round(bar_beats * steps_per_beat))
    end = float(song.seconds_to_beats(song.end_time)) if song.num_notes else 0.0
    num_bars = max(1, int(np.ceil(end / bar_beats - 1e-9)))
    roll = np.zeros((num_bars * steps_per_bar + 1, NUM_MIDI_PITCHES), dtype=bool)
    on = np.rint(song.seconds_to_beats(notes[:, 0]) * steps_per_beat).astype(np.int64)
    off = np.maximum(np.rint(song.seconds_to_beats(notes[:, 0] + notes[:, 1]) * steps_per_beat).astype(np.int64), on + 1)
    pitch = notes[:, 2].astype(np.int64)
    starts = set(zip(on.tolist(), pitch.tolist()))
    for o, f, q in zip(on, off, pitch):
        last = f - 1 if (f, q) in starts and f - 1 > o else f
        roll[o:last, q] = True
    return roll[:-1].reshape(num_bars, steps_per_bar, NUM_MIDI_PITCHES)


def _song_track_bars(song: Song) -> list[tuple[np.ndarray, bool]]:
    return [(song_bars(song, notes), drum) for notes, drum in song_tracks(song)] if song.num_notes else []


def _pooled(song: Song, fn, drums: bool = False) -> float:
    values = [fn(bars) for bars, drum in _song_track_bars(song) if drum == drums]
    return nan_mean(np.concatenate(values)) if values else NAN


@register("musegan_empty_bars", ["musegan"], "% of (track, bar) cells where the track is silent (MuseGAN EB; tracks = instruments)")
def musegan_empty_bars(song: Song) -> float:
    values = [empty_bars(bars) for bars, _ in _song_track_bars(song)]
    return nan_mean(np.concatenate(values)) if values else NAN


@register("musegan_used_pitch_classes", ["musegan"], "distinct pitch classes per non-empty (pitched track, bar) (MuseGAN UPC)")
def musegan_used_pitch_classes(song: Song) -> float:
    return _pooled(song, lambda bars: used_pitch_classes(bars, lowest_pitch=0))


@register("musegan_qualified_notes", ["musegan"], f"% of notes per (pitched track, bar) lasting >= {QN_MIN_STEPS} steps of {STEPS_PER_BEAT} per beat (MuseGAN QN)")
def musegan_qualified_notes(song: Song) -> float:
    return _pooled(song, qualified_notes)


@register("musegan_drum_pattern", ["musegan"], "% of drum onsets on a 16th grid, 0.3 for one step off, best shift (MuseGAN DP; NaN without drums)")
def musegan_drum_pattern(song: Song) -> float:
    if _steps_per_bar(song) % DP_GRID_PER_BAR:
        return NAN  # no 16th grid in this metre
    return _pooled(song, drum_pattern, drums=True)


@register("musegan_tonal_distance", ["musegan"], "mean per-bar tonal distance over pairs of pitched tracks (MuseGAN TD; NaN with < 2)")
def musegan_tonal_distance(song: Song) -> float:
    pitched = [bars for bars, drum in _song_track_bars(song) if not drum]
    values = [tonal_distance(a, b, 0, _beats_per_bar(song)) for a, b in itertools.combinations(pitched, 2)]
    return nan_mean(np.concatenate(values)) if values else NAN


def _steps_per_bar(song: Song) -> int:
    return int(round((song.bar_length_beats() or DEFAULT_BAR_BEATS) * STEPS_PER_BEAT))


def _beats_per_bar(song: Song) -> int:
    """Quarter-note beats per bar; 1 (the whole bar) when the bar is not whole beats (7/8)."""
    bar_beats = song.bar_length_beats() or DEFAULT_BAR_BEATS
    return int(bar_beats) if float(bar_beats).is_integer() else 1
