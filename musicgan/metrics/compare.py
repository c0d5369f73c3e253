"""Reading the evaluated sets against the reference: the calibration rows (a real split
against train: the ceiling; uniformly random notes: the floor), the side-by-side comparison
table with --compare, the summary lines `musicgan evaluate` prints, and the definitions
metrics.json carries.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from musicgan.data.song import Song
from musicgan.errors import DataError
from musicgan.metrics import cache
from musicgan.metrics.distributions import (
    FEATURES,
    FRECHET_LABEL,
    SetStatistics,
    compare_features,
    compute_statistics,
    frechet_distance,
)
from musicgan.metrics.musegan import musegan_summary_lines
from musicgan.metrics.reference import MIN_RELIABLE_WINDOW, Reference, load_reference, window_exclusions
from musicgan.metrics.registry import metric_names

CALIBRATION_MAX_SONGS = 1000
CALIBRATION_VERSION = 2  # bump when the cached calibration numbers change meaning


# -- calibration: real-vs-real ceiling, random-notes floor -------------------------------------
def random_songs(num_songs: int, seed: int = 0, num_notes: int | None = None) -> list[Song]:
    """Uniformly random notes: 100-300 per song (or exactly `num_notes`), pitch 21-108,
    velocity 1-127, onsets uniform over 0.25 s per note, durations 0.1-1.0 s. The floor
    every model should beat.

    The time scale is deliberately music-like (mean gap 0.25 s; Bach chorales: 0.25-0.49 s
    per song, median 0.33) so the floor is not made easy by tempo alone: avg_ioi overlaps
    real music (OA ~0.93) and the floor's distance comes from pitch, pitch-class and
    rhythm structure."""
    rng = np.random.default_rng(seed)
    songs = []
    for i in range(num_songs):
        n = int(num_notes or rng.integers(100, 301))
        onsets = np.sort(rng.uniform(0.0, 0.25 * n, n))
        songs.append(
            Song.from_columns(
                onsets,
                rng.uniform(0.1, 1.0, n),
                rng.integers(21, 109, n),
                rng.integers(1, 128, n),
                source=f"random-{i:04d}",
            )
        )
    return songs


def headline_numbers(distances: dict, frechet: dict, num_songs: int) -> dict:
    return {
        "overlap_area_mean": distances["overlap_area_mean"],
        "kl_mean": distances["kl_mean"],
        "realism": distances["realism"],
        "frechet": frechet["frechet"],
        "frechet_n": frechet["frechet_n"],
        "num_songs": num_songs,
        "pairs_n": distances["n"],
    }


def calibration(ref: Reference, workers: int | None, seed: int, cache_root: Path | None) -> dict:
    """Headline numbers of `<split> vs train` (real vs real) and `random notes vs train`.

    Needs a shard reference with a train split; for a MIDI reference only random notes vs
    the reference itself. The result depends on the reference alone, so it is cached
    under the reference's content hash (first run ~2x the cost of one comparison).
    """
    # The key covers the window; v2: headline numbers leave out `window_exclusions`.
    cache_name = f"calibration-v{CALIBRATION_VERSION}-{ref.cache_key[:32]}-seed{seed}-max{CALIBRATION_MAX_SONGS}"
    cached = cache.load_json(cache_name, cache_root)
    if cached is not None:
        return cached
    out = _calibration(ref, workers, seed, cache_root)
    cache.save_json(cache_name, json_safe(out), cache_root)
    return out


def _calibration(ref: Reference, workers: int | None, seed: int, cache_root: Path | None) -> dict:
    out = {}
    exclude = window_exclusions(ref.window_notes)

    def headline(base_stats: SetStatistics, other: SetStatistics, num_songs: int) -> dict:
        d = compare_features(base_stats, other, seed=seed, exclude=exclude)
        return headline_numbers(d, frechet_distance(base_stats, other, seed=seed, exclude=exclude), num_songs)

    base, base_name = ref, ref.split if ref.kind == "shards" else "reference"
    if ref.kind == "shards":
        try:
            base = (
                ref
                if ref.split == "train"
                else load_reference(
                    str(ref.path), "train", CALIBRATION_MAX_SONGS, workers, cache_root, ref.window_notes, seed
                )
            )
            base_name = "train"
        except DataError:
            base = ref
        if base is not ref:
            out[f"{ref.split}_vs_train"] = headline(base.stats, ref.stats, ref.stats.num_songs)
        elif ref.split == "train":
            try:
                other = load_reference(
                    str(ref.path), "valid", CALIBRATION_MAX_SONGS, workers, cache_root, ref.window_notes, seed
                )
                out["valid_vs_train"] = headline(ref.stats, other.stats, other.stats.num_songs)
            except DataError:
                pass
    count = min(max(base.stats.num_songs, 2), CALIBRATION_MAX_SONGS)
    rand = compute_statistics(random_songs(count, seed, ref.window_notes), workers)
    out[f"random_vs_{base_name}"] = headline(base.stats, rand, count)
    return out


# -- comparison table --------------------------------------------------------------------------------
TIE_TOLERANCE = 1e-3  # relative: scores closer than this are reported as a tie


def _closer(scores: dict[str, float]) -> str | None:
    """Name with the smallest score (a distance to the reference), "tie" when the best two
    are within TIE_TOLERANCE, None when no score is defined."""
    finite = sorted((v, n) for n, v in scores.items() if v is not None and np.isfinite(v))
    if not finite:
        return None
    if len(finite) > 1 and abs(finite[1][0] - finite[0][0]) <= TIE_TOLERANCE * max(1.0, abs(finite[0][0])):
        return "tie"
    return finite[0][1]


def comparison_table(reference: dict, sets: dict) -> dict:
    """Per registry metric, mgeval feature and headline number: each set's value and which
    set is closer to the reference windows it met ("tie" within TIE_TOLERANCE). A feature left
    out of the headline numbers (by any set's windows) keeps its row, with closer None and
    the reason as its rule: it is equal by construction, not a tie between the models."""
    names = list(sets)
    excluded = dict(reference.get("excluded_features") or {})
    for n in names:  # a feature fixed by any set's windows is left out for all
        excluded.update(sets[n]["distances"].get("excluded_features") or {})
    table = {}
    for metric in metric_names("all"):
        ref_mean = reference["metrics"][metric]["mean"]
        values = {n: sets[n]["metrics"][metric]["mean"] for n in names}
        # each set against the mean of the windows it met (its own length)
        own = {n: sets[n].get("reference_metrics", reference["metrics"])[metric]["mean"] for n in names}
        gaps = {n: abs(v - own[n]) for n, v in values.items()}
        table[f"metric/{metric}"] = {
            "reference": ref_mean,
            "values": values,
            "closer": _closer(gaps),
            "rule": "|mean - reference mean| smaller",
        }
    for feature in FEATURES:
        values = {n: sets[n]["distances"]["features"].get(feature, {}).get("oa", math.nan) for n in names}
        if feature in excluded:
            table[f"overlap_area/{feature}"] = {
                "reference": 1.0,
                "values": values,
                "closer": None,
                "rule": f"not compared: {excluded[feature]}",
            }
            continue
        table[f"overlap_area/{feature}"] = {
            "reference": 1.0,
            "values": values,
            "closer": _closer({n: -v for n, v in values.items()}),
            "rule": "larger overlap",
        }
    for key, sign in (("overlap_area_mean", -1.0), ("realism", -1.0), ("frechet", 1.0)):
        values = {n: sets[n]["summary"][key] for n in names}
        table[f"summary/{key}"] = {
            "reference": None,
            "values": values,
            "closer": _closer({n: sign * v for n, v in values.items()}),
            "rule": "smaller" if sign > 0 else "larger",
        }
    return table


def comparison_counts(table: dict, names: list[str]) -> dict[str, int]:
    """Rows of the comparison table each set is closer on, plus "tie" and "not compared"."""
    counts = {name: 0 for name in names} | {"tie": 0, "not compared": 0}
    for entry in table.values():
        counts["not compared" if entry["closer"] is None else entry["closer"]] += 1
    return counts


# -- text: the printed summary and metrics.json's values ----------------------------------------
def summary_lines(result: dict) -> list[str]:
    ref = result["reference"]
    where = f"{ref['path']} split {ref['split']}" if ref["split"] else ref["path"]
    window = f", one {ref['window_notes']}-note window each" if ref.get("window_notes") else ""
    lines = [f"reference: {where} ({ref['num_songs']} songs{window}{', cached' if ref['cache_hit'] else ''})"]
    for feature, reason in (ref.get("excluded_features") or {}).items():
        lines.append(f"headline numbers leave out {feature}: {reason}")
    if ref.get("window_notes") and ref["window_notes"] < MIN_RELIABLE_WINDOW:
        lines.append(
            f"warning: windows of {ref['window_notes']} notes (< {MIN_RELIABLE_WINDOW}) are too short for the "
            "histogram features to separate real from random music: read the random-notes floor below"
        )
    rows = [(n, s) for n, s in result["summary"].items()] + [
        (f"[calibration] {n}", s) for n, s in result["calibration"].items()
    ]
    for name, s in rows:
        lines.append(
            f"{name}: overlap_area_mean={_num(s['overlap_area_mean'])} frechet={_num(s['frechet'])} "
            f"realism={_num(s['realism'])} (n={s['num_songs']})"
        )
    for name, entry in result["sets"].items():
        lines += [f"{name}: {line}" for line in musegan_summary_lines(entry["extra"])]
    if result.get("comparison_counts"):
        total = sum(result["comparison_counts"].values())
        lines.append(
            f"closer to the reference, of {total} rows: "
            + ", ".join(f"{n} {c}" for n, c in result["comparison_counts"].items())
        )
    return lines


def comparison_lines(result: dict) -> list[str]:
    """The side-by-side table as text (with --compare): one row per metric, the reference
    value, each set's value and the set closer to the reference."""
    table = result.get("comparison")
    if not table:
        return []
    names = list(result["sets"])
    width = max(len(k) for k in table)
    lines = ["", f"{'metric':<{width}}  {'real':>9}  " + "  ".join(f"{n[:12]:>12}" for n in names) + "  closer"]
    for key, entry in table.items():
        real = "" if entry["reference"] is None else _num(entry["reference"])
        values = "  ".join(f"{_num(entry['values'].get(n)):>12}" for n in names)
        lines.append(f"{key:<{width}}  {real:>9}  {values}  {entry['closer'] or 'not compared'}")
    return lines


def _num(value) -> str:
    """3 decimals; "nan" for undefined (NaN, or None from cached JSON)."""
    return "nan" if value is None or not math.isfinite(value) else f"{value:.3f}"


def json_safe(value):
    """NaN/inf -> null, numpy -> Python: metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


DEFINITIONS = {
    "overlap_area_mean": "mean over the mgeval features of the overlapping area between the KDEs of intra-reference "
    "and inter-set (reference x evaluated) song distances; 1 = indistinguishable",
    "kl_mean": "mean over features of KL(intra-reference || inter-set), nats, both densities on one grid",
    "realism": "mean over features of (OA(intra-ref, inter) + OA(intra-ref, intra-evaluated)) / 2: closeness and "
    "matching diversity; in [0, 1], higher is better",
    "frechet": FRECHET_LABEL + "; lower is better",
    "frechet_n": "the same Frechet distance with all evaluated songs, before extrapolation",
    "compat": "*_compat metrics reproduce the C-RNN-GAN reference code's quirks, only to compare with published "
    "numbers; the plain names are the correct definitions",
    "calibration": "<split>_vs_train: a real held-out split against train (the ceiling); random_vs_*: uniformly "
    "random notes (the floor: pitch 21-108, velocity 1-127, onsets uniform at 4 notes/s on average, "
    "durations 0.1-1.0 s, as many notes as the reference window)",
    "excluded_features": "features compared and shown per feature but left out of overlap_area_mean, kl_mean, "
    "realism and frechet, with the reason (note_count when the reference is cropped to windows "
    "of N notes: fixed by the crop)",
    "onset_tolerance_s": "onsets closer than 0.651 ms (half a 1/384-quarter tick at 120 bpm) count as simultaneous",
}
