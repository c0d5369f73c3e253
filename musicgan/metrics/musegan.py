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
RB  repeated bars (not one of the paper's): 100 for a bar that is an exact copy of the
    bar before it in its phrase (same track, every step and pitch), else 0; NaN for a
    phrase's first bar and for empty bars. A generator that writes one bar four times
    scores 100; chorales almost never repeat a whole bar.

`phrase_metrics` applies them to phrases (B, K, N, S, P) of named tracks: what
`musicgan evaluate` shows per track and per track pair; `song_tracks` and `song_bars` cut a
`Song` into tracks and bars (its parts or instruments, its own bar grid) so the registry
(group "musegan") can score any song.
"""

from __future__ import annotations

import itertools

import numpy as np

from musicgan.data.bounds import check_grid
from musicgan.data.song import DURATION, IS_DRUM, ONSET, PITCH, PROGRAM, Song
from musicgan.metrics.registry import NAN, STEPS_PER_BEAT, register
from musicgan.metrics.runs import load_run

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


def repeated_bars(phrase_bars: np.ndarray) -> np.ndarray:
    """RB per bar of ONE track's phrases (B, N, S, P) bool -> (B * N,), phrase-major."""
    copies = np.zeros(phrase_bars.shape[:2], dtype=bool)
    copies[:, 1:] = (phrase_bars[:, 1:] == phrase_bars[:, :-1]).all(axis=(2, 3))
    defined = phrase_bars.any(axis=(2, 3))
    defined[:, 0] = False
    return _defined(np.where(copies, 100.0, 0.0), defined).reshape(-1)


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
    distance = np.linalg.norm(
        tonal_centroids(bars_a, lowest_pitch, beats_per_bar) - tonal_centroids(bars_b, lowest_pitch, beats_per_bar),
        axis=2,
    )  # (M, beats)
    defined = ~np.isnan(distance)
    count = defined.sum(axis=1)
    return _defined(np.where(defined, distance, 0.0).sum(axis=1) / np.maximum(count, 1), count > 0)


# -- phrases of named tracks ------------------------------------------------------------------
def track_pairs(names) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(len(names)), 2))


def phrase_metrics(
    phrases: np.ndarray,
    track_names,
    drum_tracks=(),
    lowest_pitch: int = 0,
    beats_per_bar: int = 4,
    qn_min_steps: int = QN_MIN_STEPS,
    shuffle_seed: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-bar values over every bar of `phrases` (B, K, N, S, P) bool:
    {"EB/<track>", "RB/<track>", "UPC/<track>", "UPC_compat/<track>", "QN/<track>" (pitched
    tracks), "DP/<track>" (drum tracks), "TD/<a>-<b>" (pitched pairs)}: (B * N,) each.
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
        out[f"RB/{name}"] = repeated_bars(tracks[i].reshape(b, n, s, p))
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
            out[f"TD_shuffled/{pair}"] = tonal_distance(
                tracks[i], tracks[j][rng.permutation(b * n)], lowest_pitch, beats_per_bar
            )
    return out


def nan_mean(values: np.ndarray) -> float:
    """Mean of the defined values; NaN (no warning) when there is none."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else NAN


# -- songs (the registry's view) ---------------------------------------------------------------
def song_tracks(song: Song) -> list[tuple[np.ndarray, bool, str]]:
    """(notes, is_drum, name) per track: the song's own tracks (parts, MIDI instruments)
    when every note has one, else notes grouped by instrument (program, drum flag) in order
    of first appearance."""
    ids = song.track_ids
    if song.tracks and len(ids) and ids.min() >= 0:
        return [(song.notes[ids == i], t.is_drum, t.name) for i, t in enumerate(song.tracks) if (ids == i).any()]
    keys = song.notes[:, [PROGRAM, IS_DRUM]]
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [
        (song.notes[inverse == t], bool(keys[first[t], 1] > 0.5), f"program {int(keys[first[t], 0])}")
        for t in np.argsort(first)
    ]


def song_bars(song: Song, notes: np.ndarray, steps_per_beat: int = STEPS_PER_BEAT) -> np.ndarray:
    """(num_bars, S, 128) bool roll of `notes` (rows of `song.notes`) on the song's bar grid
    (`Song.grid_steps`: bar lines from its downbeat and first metre). A note covers steps
    [onset, offset), at least one; its last step is dropped when the same pitch starts again
    there, so repeated notes stay apart (as in the paper's encoding)."""
    steps_per_bar = round(song.bar_beats() * steps_per_beat)
    on = song.grid_steps(notes[:, ONSET], steps_per_beat)
    off = np.maximum(song.grid_steps(notes[:, ONSET] + notes[:, DURATION], steps_per_beat), on + 1)
    end = int(song.grid_steps(song.end_time, steps_per_beat)) if song.num_notes else 0
    num_bars = max(1, -(-end // steps_per_bar))
    rows = check_grid(num_bars * steps_per_bar + 1, NUM_MIDI_PITCHES, "bar roll")  # GridTooLarge: metric NaN
    roll = np.zeros((rows, NUM_MIDI_PITCHES), dtype=bool)
    pitch = notes[:, PITCH].astype(np.int64)
    starts = set(zip(on.tolist(), pitch.tolist()))
    for o, f, q in zip(on, off, pitch):
        last = f - 1 if (f, q) in starts and f - 1 > o else f
        roll[max(o, 0) : last, q] = True
    return roll[:-1].reshape(num_bars, steps_per_bar, NUM_MIDI_PITCHES)


def _song_track_bars(song: Song) -> list[tuple[np.ndarray, bool]]:
    return [(song_bars(song, notes), drum) for notes, drum, _ in song_tracks(song)] if song.num_notes else []


def _pooled(song: Song, fn, drums: bool = False) -> float:
    values = [fn(bars) for bars, drum in _song_track_bars(song) if drum == drums]
    return nan_mean(np.concatenate(values)) if values else NAN


@register(
    "musegan_empty_bars",
    ["musegan"],
    "% of (track, bar) cells where the track is silent (MuseGAN EB; tracks = parts or instruments)",
)
def musegan_empty_bars(song: Song) -> float:
    values = [empty_bars(bars) for bars, _ in _song_track_bars(song)]
    return nan_mean(np.concatenate(values)) if values else NAN


@register(
    "musegan_used_pitch_classes", ["musegan"], "distinct pitch classes per non-empty (pitched track, bar) (MuseGAN UPC)"
)
def musegan_used_pitch_classes(song: Song) -> float:
    return _pooled(song, lambda bars: used_pitch_classes(bars, lowest_pitch=0))


@register(
    "musegan_qualified_notes",
    ["musegan"],
    f"% of notes per (pitched track, bar) lasting >= {QN_MIN_STEPS} steps of {STEPS_PER_BEAT} per beat (MuseGAN QN)",
)
def musegan_qualified_notes(song: Song) -> float:
    return _pooled(song, qualified_notes)


@register(
    "musegan_drum_pattern",
    ["musegan"],
    "% of drum onsets on a 16th grid, 0.3 for one step off, best shift (MuseGAN DP; NaN without drums)",
)
def musegan_drum_pattern(song: Song) -> float:
    if _steps_per_bar(song) % DP_GRID_PER_BAR:
        return NAN  # no 16th grid in this metre
    return _pooled(song, drum_pattern, drums=True)


@register(
    "musegan_tonal_distance",
    ["musegan"],
    "mean per-bar tonal distance over pairs of pitched tracks (MuseGAN TD; NaN with < 2)",
)
def musegan_tonal_distance(song: Song) -> float:
    pitched = [bars for bars, drum in _song_track_bars(song) if not drum]
    values = [tonal_distance(a, b, 0, _beats_per_bar(song)) for a, b in itertools.combinations(pitched, 2)]
    return nan_mean(np.concatenate(values)) if values else NAN


def _steps_per_bar(song: Song) -> int:
    return round(song.bar_beats() * STEPS_PER_BEAT)


def _beats_per_bar(song: Song) -> int:
    """Quarter-note beats per bar; 1 (the whole bar) when the bar is not whole beats (7/8)."""
    bar_beats = song.bar_beats()
    return int(bar_beats) if float(bar_beats).is_integer() else 1


# -- `musicgan evaluate` ------------------------------------------------------------------------
EVALUATE_BARS = 20_000  # generated bars per model, as the paper
EVALUATE_BATCH = 256  # phrases per generator call
SHUFFLE_SEED = 0


def steps_to_phrases(steps: np.ndarray, num_tracks: int, steps_per_bar: int) -> np.ndarray:
    """(B, N * S, K * P) multitrack windows -> (B, K, N, S, P) bool (on where > 0)."""
    b, t, f = steps.shape
    shaped = steps.reshape(b, t // steps_per_bar, steps_per_bar, num_tracks, f // num_tracks)
    return shaped.transpose(0, 3, 1, 2, 4) > 0


def whole_phrase_windows(urls, representation, length: int):
    """Every whole window of `length` steps of each song, back to back: (length, F) arrays."""
    from musicgan.data.loader import encoded_windows

    return encoded_windows(urls, representation, length, lambda n: range(0, n - length + 1, length))


def real_phrases(urls, representation, bars_per_phrase: int) -> np.ndarray:
    """Every whole phrase of each song of `urls` the representation takes, back to back,
    as (M, K, N, S, P) bool."""
    windows = list(whole_phrase_windows(urls, representation, bars_per_phrase * representation.window_align))
    if not windows:
        return np.zeros(
            (
                0,
                len(representation.tracks),
                bars_per_phrase,
                representation.window_align,
                representation.options["num_pitches"],
            ),
            dtype=bool,
        )
    return steps_to_phrases(np.stack(windows), len(representation.tracks), representation.window_align)


def phrase_means(phrases: np.ndarray, representation, shuffle: bool) -> dict[str, float]:
    """{"EB/<track>": mean, ..., "num_bars": n} of `phrase_metrics` over these phrases."""
    tracks = representation.tracks
    values = phrase_metrics(
        phrases,
        [t.name for t in tracks],
        [t.name for t in tracks if t.is_drum],
        representation.options["lowest"],
        shuffle_seed=SHUFFLE_SEED if shuffle else None,
    )
    return {name: nan_mean(v) for name, v in values.items()} | {"num_bars": float(phrases.shape[0] * phrases.shape[2])}


def generated_phrases(family, networks, representation, num_bars: int, bars_per_phrase: int, seed: int) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    num, chunks = -(-num_bars // bars_per_phrase), []
    for start in range(0, num, EVALUATE_BATCH):
        steps = family.generate(
            networks, min(EVALUATE_BATCH, num - start), bars_per_phrase * representation.window_align
        )
        chunks.append(steps_to_phrases(steps, len(representation.tracks), representation.window_align))
    return np.concatenate(chunks)


def musegan_set_metric(context, num_bars: int = EVALUATE_BARS, seed: int = 0) -> dict[str, float]:
    """`musicgan evaluate` hook for MuseGAN runs ({} for anything else): per-track means of
    the metrics above for `num_bars` bars freshly generated from the run's checkpoint
    (seeded), for the reference split and its train split (encoded by the run's own
    representation, every whole phrase), and the split's shuffled-pairs TD. Keys:
    musegan/<row>/<metric>/<track>, rows generated, real_<split>, real_train."""
    from musicgan.metrics.pianoroll import run_model_name

    if context.kind != "run" or context.reference_kind != "shards" or run_model_name(context.path) != "musegan":
        return {}
    from musicgan.data.shards import split_urls

    cfg, family, representation, networks, _ = load_run(context.path)
    bars_per_phrase = cfg.curriculum.max_len // representation.window_align
    rows = {"generated": (generated_phrases(family, networks, representation, num_bars, bars_per_phrase, seed), False)}
    for split in dict.fromkeys((context.split, "train")):
        phrases = real_phrases(split_urls(context.reference, split), representation, bars_per_phrase)
        rows[f"real_{split}"] = (phrases, split == context.split)
    return {
        f"musegan/{row}/{name}": value
        for row, (phrases, shuffle) in rows.items()
        for name, value in phrase_means(phrases, representation, shuffle).items()
    }


def musegan_summary_lines(extra: dict[str, float]) -> list[str]:
    """One line per row of a set's MuseGAN metrics: each metric's mean over tracks (pairs)."""
    lines = []
    rows = dict.fromkeys(key.split("/")[1] for key in extra if key.startswith("musegan/"))
    for row in rows:
        means = {}
        for metric in ("EB", "RB", "UPC", "QN", "DP", "TD", "TD_shuffled"):
            values = [v for k, v in extra.items() if k.startswith(f"musegan/{row}/{metric}/")]
            if values:
                means[metric] = nan_mean(np.array(values))
        lines.append(
            f"musegan {row}: "
            + " ".join(f"{m}={v:.3g}" for m, v in means.items())
            + f" ({int(extra.get(f'musegan/{row}/num_bars', 0))} bars)"
        )
    return lines


# The paper's Tables (Dong et al. 2018), LPD-5 rock at 96 steps per bar: another corpus,
# shown for the trend only. Columns per track B(ass) D(rums) G(uitar) P(iano) S(trings).
PUBLISHED_CORPUS = "published (paper, LPD-5 rock, 96 steps per bar; another corpus: trends only)"
PUBLISHED_COLUMNS = ("EB B/D/G/P/S %", "UPC B/G/P/S", "QN B/G/P/S %", "DP %", "TD B-G B-S B-P G-S G-P S-P")
PUBLISHED_ROWS = {
    "training data": (
        "8.06/8.06/19.4/24.8/10.1",
        "1.71/3.08/3.28/3.38",
        "90.0/81.9/88.4/89.6",
        "88.6",
        "1.57 1.58 1.51 1.10 1.02 1.04",
    ),
    "shuffled pairs": ("", "", "", "", "1.59 1.59 1.56 1.14 1.12 1.13"),
    "jamming": (
        "6.59/2.33/18.3/22.6/6.10",
        "1.53/3.69/4.13/4.09",
        "71.5/56.6/62.2/63.1",
        "93.2",
        "1.56 1.60 1.54 1.05 0.99 1.05",
    ),
    "composer": (
        "0.01/28.9/1.34/0.02/0.01",
        "2.51/4.20/4.89/5.19",
        "49.5/47.4/49.9/52.5",
        "75.3",
        "1.37 1.36 1.30 0.95 0.98 0.91",
    ),
    "hybrid": (
        "2.14/29.7/11.7/17.8/6.04",
        "2.35/4.76/5.45/5.24",
        "44.6/43.2/45.5/52.0",
        "71.3",
        "1.34 1.35 1.32 0.85 0.85 0.83",
    ),
}
