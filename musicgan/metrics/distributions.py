"""Set-level comparison of songs: mgeval-style distances, overlapping area, KL, Frechet.

Procedure (Yang & Lerch 2018, "On the evaluation of generative models in music"), with the
fixes listed in `docs/metrics.md`:
1. Per-song features (`FEATURES`), computed for every song with at least one pitched note
   (empty songs are counted and left out: their features are undefined).
2. Both sets are subsampled (seeded) to n = min(|reference|, |generated|) songs.
3. Per feature, Euclidean distances between songs: intra-set (leave-one-out, the n(n-1)
   ordered pairs of distinct songs) for each set and inter-set (all n^2 pairs).
4. A Gaussian KDE (scipy.stats.gaussian_kde, Scott's bandwidth) per distance list. The KDE
   is fitted on at most `MAX_KDE_POINTS` distances drawn at random (seeded) from the list:
   evaluating a KDE of 10^6 points on a grid costs minutes; a subsample of 10,000 keeps the
   density shape (Scott's bandwidth then follows the subsample size). All densities of a
   feature are evaluated on ONE common grid (the public code uses different grids, so its
   KL is not a KL). A list with (near) zero variance cannot be fitted by gaussian_kde; it
   becomes a Gaussian bump with the narrowest bandwidth fitted on the other lists (or 1/200
   of the data span when all are degenerate); 1/200 of the span also floors every
   bandwidth so no density is narrower than the grid resolves.
5. Overlapping area OA = integral of min(p, q) (1 = indistinguishable) and
   KL(p || q) = sum P log(P / Q) over the grid cells (masses floored at 1e-12).

Headline numbers
- `overlap_area_mean`: mean over features of OA(intra-reference, inter-set), the paper's
  "how close are the generated songs to the reference set".
- `realism`: mean over features of (OA(intra-ref, inter) + OA(intra-ref, intra-gen)) / 2.
  The first term measures closeness, the second whether the generated set is as diverse as
  the reference (a collapsed generator has intra-gen distances near 0). In [0, 1], higher
  is better; it is what reports and Ray Tune sweeps optimise.
- Features can be left out of the headline numbers (`exclude={feature: reason}`): they
  are still compared and reported per feature, marked `"headline": false` with the
  reason, but not averaged and not in the Frechet vector. `musicgan evaluate` uses this
  for `note_count` when the reference is cropped to windows of N notes (see
  `musicgan.metrics.reference.window_exclusions`): every window then holds N notes by
  construction, so the feature measures the crop, not the music (all distances 0 and OA 1
  for any set cropped alike, and a near-zero reference std that blows up the z-scored
  Frechet vector).
- `frechet`: IN-HOUSE Frechet distance on the flattened feature vector (z-scored with the
  reference's per-dimension mean/std), extrapolated to infinitely many generated songs by
  regressing FD(n) on 1/n (Chong & Forsyth 2020). NOT the published Frechet Music Distance
  (that needs a pretrained embedding model): not comparable to published numbers.
"""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from musicgan.data.song import Song
from musicgan.metrics.registry import DEFAULT_ONSET_TOLERANCE, compute_metrics, onset_groups

FEATURE_VERSION = 1  # bump when a feature definition changes: invalidates cached statistics
MAX_KDE_POINTS = 10_000
GRID_POINTS = 512
MIN_BANDWIDTH_FRACTION = 1.0 / 200.0
MASS_FLOOR = 1e-12
PARALLEL_MIN_SONGS = 200  # below this a process pool costs more than it saves

# Note-length classes in quarter-note beats, mgeval's order: full, half, quarter, 8th,
# 16th, dotted half, dotted quarter, dotted 8th, dotted 16th, half/quarter/8th triplets.
NOTE_LENGTH_CLASSES = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 3.0, 1.5, 0.75, 0.375, 4 / 3, 2 / 3, 1 / 3])

# name -> number of dimensions
FEATURES = {
    "pitch_count": 1,  # distinct pitches
    "pitch_class_histogram": 12,  # weighted by duration x velocity, sums to 1
    "pitch_class_transition_matrix": 144,  # consecutive onset groups, all pairs, sums to 1
    "pitch_range": 1,  # semitones
    "avg_pitch_interval": 1,  # mean |pitch step| between consecutive notes, (onset, pitch) order
    "note_count": 1,
    "avg_ioi": 1,  # mean gap between consecutive onset groups, seconds
    "note_length_histogram": 12,  # nearest class in log duration (beats), sums to 1
    "note_length_transition_matrix": 144,  # consecutive notes' classes, sums to 1
}


def _normalized(x: np.ndarray) -> np.ndarray:
    total = x.sum()
    return x / total if total > 0 else x


def song_features(song: Song, onset_tolerance: float = DEFAULT_ONSET_TOLERANCE) -> dict[str, np.ndarray] | None:
    """The per-song features (`FEATURES`), or None for a song without pitched notes."""
    notes = song.notes[~song.is_drum]  # (n, 7) sorted by (onset, pitch)
    if len(notes) == 0:
        return None
    onset, duration = notes[:, 0], notes[:, 1]
    pitch = notes[:, 2].astype(np.int64)
    pc = pitch % 12

    pc_hist = _normalized(np.bincount(pc, weights=duration * notes[:, 3], minlength=12))

    group = onset_groups(onset, onset_tolerance)  # (n,), non-decreasing
    num_groups = int(group[-1]) + 1
    group_pc = np.zeros((num_groups, 12))
    group_pc[group, pc] = 1.0  # pitch classes present per onset group
    pc_trans = _normalized(group_pc[:-1].T @ group_pc[1:]).reshape(-1)  # (144,)

    group_onset = onset[np.searchsorted(group, np.arange(num_groups))]
    avg_ioi = float(np.diff(group_onset).mean()) if num_groups > 1 else 0.0
    avg_interval = float(np.abs(np.diff(pitch)).mean()) if len(pitch) > 1 else 0.0

    beats = song.seconds_to_beats(onset + duration) - song.seconds_to_beats(onset)
    log_len = np.log2(np.maximum(beats, 1e-3))
    length_class = np.argmin(np.abs(log_len[:, None] - np.log2(NOTE_LENGTH_CLASSES)[None, :]), axis=1)
    len_hist = _normalized(np.bincount(length_class, minlength=12).astype(np.float64))
    len_trans = np.zeros((12, 12))
    np.add.at(len_trans, (length_class[:-1], length_class[1:]), 1.0)

    return {
        "pitch_count": np.array([len(np.unique(pitch))], dtype=np.float64),
        "pitch_class_histogram": pc_hist,
        "pitch_class_transition_matrix": pc_trans,
        "pitch_range": np.array([pitch.max() - pitch.min()], dtype=np.float64),
        "avg_pitch_interval": np.array([avg_interval]),
        "note_count": np.array([len(notes)], dtype=np.float64),
        "avg_ioi": np.array([avg_ioi]),
        "note_length_histogram": len_hist,
        "note_length_transition_matrix": _normalized(len_trans).reshape(-1),
    }


# -- statistics of a set of songs (features + registry metrics), parallel ------------------
@dataclass
class SetStatistics:
    """Everything the comparisons need about one set of songs.

    features: {feature: (num_nonempty, dim)}; metrics: {metric: (num_songs,)} per song.
    """

    features: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    num_songs: int
    num_empty: int = 0
    names: list[str] = field(default_factory=list)  # song sources, for the report

    @property
    def num_nonempty(self) -> int:
        return self.num_songs - self.num_empty

    def flat_features(self, exclude: Iterable[str] = ()) -> np.ndarray:
        """(num_nonempty, 317 - excluded dims) concatenation of the features (the Frechet vector)."""
        return np.concatenate([self.features[name] for name in FEATURES if name not in exclude], axis=1)


def _statistics_of_chunk(items: list, read=None, keep: int = 0) -> tuple[list, dict[str, np.ndarray], list[str], list]:
    """(features per song, metrics, names, first `keep` songs) of one chunk; `read` turns an
    item (e.g. a MIDI path) into a Song or None (unreadable: left out) inside the worker."""
    songs = [s for s in (map(read, items) if read else items) if s is not None]
    return (
        [song_features(s) for s in songs],
        compute_metrics(songs, group="all"),
        [s.source for s in songs],
        songs[:keep],
    )


def _default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def _pool_context():
    """fork is cheapest, but forking a process that runs torch's thread pools can deadlock:
    spawn once torch is loaded (the trainer), fork otherwise (`musicgan evaluate`)."""
    import multiprocessing
    import sys

    return multiprocessing.get_context("spawn" if "torch" in sys.modules else "fork")


def compute_statistics(items: Iterable, workers: int | None = None, read=None, keep_songs: int = 0):
    """Features and every registry metric of each song.

    items: Songs, or anything `read` (a picklable top-level function) turns into a Song or
    None, e.g. MIDI paths, so reading happens in the workers too. A process pool of
    `workers` (default: the usable CPU cores) runs when there are >= PARALLEL_MIN_SONGS items.
    Returns SetStatistics, or (SetStatistics, first `keep_songs` songs) when keep_songs > 0.
    """
    items = list(items)
    workers = _default_workers() if workers is None else max(1, workers)
    if workers > 1 and len(items) >= PARALLEL_MIN_SONGS:
        num_chunks = workers * 4  # a few chunks per worker balances uneven song lengths
        chunks = [items[i * len(items) // num_chunks : (i + 1) * len(items) // num_chunks] for i in range(num_chunks)]
        with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            results = list(pool.map(_statistics_of_chunk, chunks, [read] * num_chunks, [keep_songs] * num_chunks))
    else:
        results = [_statistics_of_chunk(items, read, keep_songs)]
    per_song = [f for r in results for f in r[0]]
    metrics = {name: np.concatenate([r[1][name] for r in results]) for name in results[0][1]}
    defined = [f for f in per_song if f is not None]
    features = {
        name: (np.stack([f[name] for f in defined]) if defined else np.zeros((0, dim)))
        for name, dim in FEATURES.items()
    }
    stats = SetStatistics(
        features=features,
        metrics=metrics,
        num_songs=len(per_song),
        num_empty=len(per_song) - len(defined),
        names=[n for r in results for n in r[2]],
    )
    if keep_songs:
        return stats, [s for r in results for s in r[3]][:keep_songs]
    return stats


def as_statistics(songs_or_stats, workers: int | None = None) -> SetStatistics:
    return songs_or_stats if isinstance(songs_or_stats, SetStatistics) else compute_statistics(songs_or_stats, workers)


def single_blas_thread(fn):
    """Run `fn` with BLAS limited to one thread (when threadpoolctl is installed).

    The work here is many small matrix products and SVDs; OpenBLAS threads spin-wait, and
    on a busy 2-core machine a 1000 x 317 Frechet computation took 6 s of CPU with threads
    and 0.2 s without. Without threadpoolctl, set OPENBLAS_NUM_THREADS=1 before starting.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            limit = contextlib.nullcontext()
        else:
            limit = threadpool_limits(1, user_api="blas")
        with limit:
            return fn(*args, **kwargs)

    return wrapper


# -- densities on one grid -------------------------------------------------------------------
def _subsample(values: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= max_points else rng.choice(values, max_points, replace=False)


def densities_on_common_grid(
    lists: Sequence[np.ndarray], max_points: int = MAX_KDE_POINTS, grid_points: int = GRID_POINTS, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gaussian KDE (Scott) of each list, all evaluated on one grid.

    Returns (grid (G,), [pdf (G,) per list]), each pdf normalised to integrate to 1 on the
    grid; grid is None when every value of every list is the same number (identical point
    masses: the caller treats them as identical densities).
    """
    from scipy.stats import gaussian_kde  # scipy.stats import costs ~0.3 s: only when needed

    rng = np.random.default_rng(seed)
    samples = [_subsample(np.asarray(v, dtype=np.float64), max_points, rng) for v in lists]
    lo = min(float(s.min()) for s in samples)
    hi = max(float(s.max()) for s in samples)
    span = hi - lo
    if not span > 0:
        return None, []
    min_bw = span * MIN_BANDWIDTH_FRACTION
    kernels = []  # (gaussian_kde or None for a degenerate list, bandwidth in data units, centre)
    for s in samples:
        std = float(s.std())
        if std < 1e-9 * max(1.0, abs(float(s.mean()))) or len(s) < 2:
            kernels.append((None, 0.0, float(s.mean())))
            continue
        kde = gaussian_kde(s)  # bw_method="scott"
        bandwidth = float(np.sqrt(kde.covariance[0, 0]))
        if bandwidth < min_bw:
            kde.set_bandwidth(kde.factor * min_bw / bandwidth)
            bandwidth = min_bw
        kernels.append((kde, bandwidth, 0.0))
    # A degenerate list borrows the narrowest fitted bandwidth: a point mass at 0 beside a
    # list that is mostly 0 should overlap it as much as that list's own KDE allows.
    fitted = [bw for kde, bw, _ in kernels if kde is not None]
    point_bw = min(fitted) if fitted else min_bw
    kernels = [(kde, bw if kde is not None else point_bw, c) for kde, bw, c in kernels]
    widest = max(k[1] for k in kernels)
    grid = np.linspace(lo - 4 * widest, hi + 4 * widest, grid_points)
    pdfs = []
    for kde, bandwidth, centre in kernels:
        if kde is None:
            pdf = np.exp(-0.5 * ((grid - centre) / bandwidth) ** 2)
        else:
            pdf = kde(grid)
        pdfs.append(pdf / np.trapezoid(pdf, grid))
    return grid, pdfs


def overlap_area(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> float:
    """Integral of min(p, q) over the grid (both densities on the same grid)."""
    return float(np.clip(np.trapezoid(np.minimum(p, q), grid), 0.0, 1.0))


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) in nats between the grid-cell masses of two densities on one grid."""
    p_mass = np.maximum(p / p.sum(), MASS_FLOOR)
    q_mass = np.maximum(q / q.sum(), MASS_FLOOR)
    p_mass, q_mass = p_mass / p_mass.sum(), q_mass / q_mass.sum()
    return float(np.sum(p_mass * np.log(p_mass / q_mass)))


# -- distances ---------------------------------------------------------------------------------
def intra_set_distances(x: np.ndarray) -> np.ndarray:
    """(n(n-1),) Euclidean distances between distinct songs (each ordered pair, as mgeval)."""
    from scipy.spatial.distance import cdist

    d = cdist(x, x)
    return d[~np.eye(len(x), dtype=bool)]


def inter_set_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n^2,) Euclidean distances between every song of x and every song of y."""
    from scipy.spatial.distance import cdist

    return cdist(x, y).reshape(-1)


def _describe(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "std": float(values.std())}


@single_blas_thread
def compare_features(
    reference,
    generated,
    seed: int = 0,
    keep_densities: bool = False,
    workers: int | None = None,
    exclude: dict[str, str] | None = None,
) -> dict:
    """mgeval comparison of two sets (songs or SetStatistics), feature by feature.

    Returns {"n": n, "features": {feature: {oa, kl, oa_generated, kl_generated, oa_intra,
    intra_reference, intra_generated, inter, headline}}, "overlap_area_mean", "kl_mean",
    "realism", "excluded_features"} (+ "densities" per feature with keep_densities: grid and
    the three pdfs, for plots). exclude: {feature: reason} compared and reported but left
    out of the three means (see the module docstring).
    """
    exclude = dict(exclude or {})
    unknown = set(exclude) - set(FEATURES)
    if unknown or len(exclude) >= len(FEATURES):
        raise ValueError(f"cannot exclude {sorted(exclude)} from the features {list(FEATURES)}")
    ref, gen = as_statistics(reference, workers), as_statistics(generated, workers)
    n = min(ref.num_nonempty, gen.num_nonempty)
    nan = float("nan")
    if n < 2:  # leave-one-out distances need two songs per set
        return {
            "n": n,
            "features": {},
            "overlap_area_mean": nan,
            "kl_mean": nan,
            "realism": nan,
            "excluded_features": exclude,
        }
    rng = np.random.default_rng(seed)
    ref_idx = np.sort(rng.choice(ref.num_nonempty, n, replace=False))
    gen_idx = np.sort(rng.choice(gen.num_nonempty, n, replace=False))
    per_feature = {}
    for k, name in enumerate(FEATURES):
        x, y = ref.features[name][ref_idx], gen.features[name][gen_idx]
        intra_ref, intra_gen, inter = intra_set_distances(x), intra_set_distances(y), inter_set_distances(x, y)
        grid, (p_ref, p_gen, p_inter) = _unpack(densities_on_common_grid([intra_ref, intra_gen, inter], seed=seed + k))
        if grid is None:  # all distances identical (e.g. every song has the same value)
            entry = {"oa": 1.0, "kl": 0.0, "oa_generated": 1.0, "kl_generated": 0.0, "oa_intra": 1.0}
        else:
            entry = {
                "oa": overlap_area(p_ref, p_inter, grid),
                "kl": kl_divergence(p_ref, p_inter),
                "oa_generated": overlap_area(p_gen, p_inter, grid),
                "kl_generated": kl_divergence(p_gen, p_inter),
                "oa_intra": overlap_area(p_ref, p_gen, grid),
            }
        entry.update(
            intra_reference=_describe(intra_ref),
            intra_generated=_describe(intra_gen),
            inter=_describe(inter),
            headline=name not in exclude,
        )
        if keep_densities and grid is not None:
            entry["densities"] = {"grid": grid, "intra_reference": p_ref, "intra_generated": p_gen, "inter": p_inter}
        per_feature[name] = entry
    headline = [e for e in per_feature.values() if e["headline"]]
    oa = np.array([e["oa"] for e in headline])
    oa_intra = np.array([e["oa_intra"] for e in headline])
    return {
        "n": n,
        "features": per_feature,
        "overlap_area_mean": float(oa.mean()),
        "kl_mean": float(np.mean([e["kl"] for e in headline])),
        "realism": float(np.mean((oa + oa_intra) / 2.0)),
        "excluded_features": exclude,
    }


def _unpack(result):
    grid, pdfs = result
    return (grid, pdfs) if grid is not None else (None, (None, None, None))


# -- in-house Frechet distance -------------------------------------------------------------------
class _CenteredSamples:
    """Reference samples kept as a thin SVD so every FD against it is a small problem.

    With Xc = U diag(s) V^T (centred reference, m x d), S_ref^1/2 = V diag(s / sqrt(m-1)) V^T,
    and for generated samples Yc (n x d) the trace term tr((S_ref^1/2 S_gen S_ref^1/2)^1/2) is
    the sum of singular values of Yc V diag(s) / sqrt((m-1)(n-1)): an n x k SVD instead of
    d x d eigendecompositions (d = 317 features). Same value as `frechet_from_moments`.
    """

    def __init__(self, x: np.ndarray):
        self.mean = x.mean(axis=0)
        centred = x - self.mean
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        self.scaled_basis = vt.T * (singular / np.sqrt(len(x) - 1))  # (d, k)
        self.trace = float(np.sum(singular**2) / (len(x) - 1))

    def frechet_to(self, y: np.ndarray) -> float:
        mean = y.mean(axis=0)
        centred = y - mean
        trace_y = float(np.sum(centred**2) / (len(y) - 1))
        singular = np.linalg.svd(centred @ self.scaled_basis, compute_uv=False) / np.sqrt(len(y) - 1)
        return float(np.sum((self.mean - mean) ** 2) + self.trace + trace_y - 2.0 * singular.sum())


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(matrix)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_from_moments(mu1, sigma1, mu2, sigma2, sqrt_sigma1=None) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), via symmetric eigenvalues
    (stable where sqrtm of the non-symmetric S1 S2 returns complex noise)."""
    root1 = _sqrt_psd(sigma1) if sqrt_sigma1 is None else sqrt_sigma1
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


@single_blas_thread
def frechet_distance(
    reference,
    generated,
    num_points: int = 5,
    repeats: int = 3,
    seed: int = 0,
    workers: int | None = None,
    exclude: Iterable[str] = (),
) -> dict:
    """In-house Frechet distance (NOT the published FMD) with 1/n extrapolation, on the
    flattened features minus those in `exclude` (see the module docstring).

    Features are z-scored with the reference's per-dimension mean and std (dimensions with
    zero std left unscaled) so counts and histograms weigh alike. FD is computed between
    the full reference and random generated subsets of `num_points` sizes from N/4 to N
    (`repeats` draws each), FD(n) = a + b / n is fitted by least squares and the intercept a
    is reported as `frechet`; `frechet_n` is the plain FD with all N generated songs.
    """
    ref, gen = as_statistics(reference, workers), as_statistics(generated, workers)
    x, y = ref.flat_features(exclude), gen.flat_features(exclude)
    nan = float("nan")
    if len(x) < 2 or len(y) < 2:
        return {
            "frechet": nan,
            "frechet_n": nan,
            "points": [],
            "label": FRECHET_LABEL,
            "excluded_features": sorted(exclude),
        }
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    x, y = (x - mean) / std, (y - mean) / std
    # Dimensions constant in both sets (e.g. pitch-class transitions no song uses) only add
    # their squared mean difference; leaving them out makes the SVDs smaller.
    constant = (x.std(axis=0) == 0) & (y.std(axis=0) == 0)
    constant_term = float(np.sum((x[0, constant] - y[0, constant]) ** 2))
    x, y = x[:, ~constant], y[:, ~constant]
    reference = _CenteredSamples(x)

    def fd(sample: np.ndarray) -> float:
        return constant_term + reference.frechet_to(sample)

    total = len(y)
    sizes = np.unique(np.linspace(max(2, total // 4), total, num_points).astype(int))
    rng = np.random.default_rng(seed)
    points = []
    for size in sizes:
        draws = 1 if size == total else repeats
        values = [fd(y[rng.choice(total, size, replace=False)]) for _ in range(draws)]
        points.append((int(size), float(np.mean(values))))
    full = points[-1][1]
    if len(points) >= 2:
        inv_n = np.array([1.0 / s for s, _ in points])
        _slope, intercept = np.polyfit(inv_n, np.array([v for _, v in points]), 1)
    else:
        intercept = full
    return {
        "frechet": float(intercept),
        "frechet_n": full,
        "points": points,
        "label": FRECHET_LABEL,
        "excluded_features": sorted(exclude),
    }


FRECHET_LABEL = "in-house Frechet distance on handcrafted features (1/n-extrapolated); not the published FMD"


# -- one number -------------------------------------------------------------------------------
def realism_score(
    reference_songs_or_features,
    generated,
    seed: int = 0,
    workers: int | None = None,
    exclude: dict[str, str] | None = None,
) -> float:
    """Overall realism in [0, 1] (higher = closer to the reference): the mean over features
    of (OA(intra-ref, inter) + OA(intra-ref, intra-gen)) / 2, features in `exclude` left
    out; see the module docstring. Both arguments take songs or `SetStatistics` (e.g.
    cached reference statistics)."""
    return compare_features(reference_songs_or_features, generated, seed=seed, workers=workers, exclude=exclude)[
        "realism"
    ]
