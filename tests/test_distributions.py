"""mgeval-style features, distances, KDE / overlapping area / KL, in-house Frechet distance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from musicgan.data.song import Song
from musicgan.metrics import distributions as dist
from musicgan.metrics.compare import random_songs
from musicgan.metrics.distributions import (
    FEATURES,
    compare_features,
    compute_statistics,
    densities_on_common_grid,
    frechet_distance,
    frechet_from_moments,
    inter_set_distances,
    intra_set_distances,
    kl_divergence,
    overlap_area,
    realism_score,
    song_features,
)


def chorale_like(rng: np.random.Generator, num_chords: int = 24) -> Song:
    """Four voices on diatonic triads of C major, mostly quarter notes at 100 bpm."""
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    onsets, durations, pitches = [], [], []
    t = 0.0
    for _ in range(num_chords):
        d = 0.6 * rng.choice([1, 1, 1, 2, 0.5])
        root = rng.integers(0, 7)
        for voice, base in enumerate((48, 55, 60, 67)):
            pc = scale[(root + 2 * voice) % 7]
            onsets.append(t)
            durations.append(d)
            pitches.append(base + (pc - base) % 12)
        t += d
    return Song.from_columns(onsets, durations, pitches, tempos=[(0.0, 100.0)], time_signatures=[(0.0, 4, 4)])


def test_song_features_exact():
    # Half note C4 (vel 100), quarter E4 (vel 50), then a C4+G4 quarter chord, at 120 bpm.
    song = Song.from_columns([0.0, 1.0, 1.5, 1.5], [1.0, 0.5, 0.5, 0.5], [60, 64, 60, 67], [100, 50, 100, 100])
    f = song_features(song)
    assert set(f) == set(FEATURES)
    assert all(len(f[k]) == FEATURES[k] for k in FEATURES)
    assert f["pitch_count"][0] == 3 and f["pitch_range"][0] == 7 and f["note_count"][0] == 4
    # duration x velocity: C = 1*100 + 0.5*100 = 150, E = 25, G = 50 -> / 225
    assert f["pitch_class_histogram"][[0, 4, 7]] == pytest.approx([150 / 225, 25 / 225, 50 / 225])
    # onset groups {C} {E} {C, G}: transitions C->E, E->C, E->G, each 1/3
    trans = f["pitch_class_transition_matrix"].reshape(12, 12)
    assert trans[0, 4] == trans[4, 0] == trans[4, 7] == pytest.approx(1 / 3)
    assert trans.sum() == pytest.approx(1.0)
    assert f["avg_ioi"][0] == pytest.approx(0.75)  # gaps 1.0 and 0.5 s
    assert f["avg_pitch_interval"][0] == pytest.approx((4 + 4 + 7) / 3)  # 60 64 60 67
    # lengths in beats: 2 (half, class 1), then three quarters (class 2)
    assert f["note_length_histogram"][[1, 2]] == pytest.approx([0.25, 0.75])
    lt = f["note_length_transition_matrix"].reshape(12, 12)
    assert lt[1, 2] == pytest.approx(1 / 3) and lt[2, 2] == pytest.approx(2 / 3)
    assert song_features(Song(np.zeros((0, 6)))) is None


def test_distance_lists():
    x = np.array([[0.0], [1.0], [3.0]])
    assert sorted(intra_set_distances(x)) == [1, 1, 2, 2, 3, 3]  # n(n-1) ordered pairs
    y = np.array([[0.0], [2.0], [2.0]])
    inter = inter_set_distances(x, y)
    assert len(inter) == 9 and sorted(inter) == [0, 1, 1, 1, 1, 1, 2, 2, 3]  # n^2 pairs


def test_kde_overlap_and_kl_on_known_normals():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(0, 1, 20000), rng.normal(0, 1, 20000), rng.normal(3, 1, 20000)
    grid, (pa, pb, pc) = densities_on_common_grid([a, b, c])
    assert np.trapezoid(pa, grid) == pytest.approx(1.0)
    assert overlap_area(pa, pb, grid) > 0.97
    assert overlap_area(pa, pc, grid) == pytest.approx(2 * norm.cdf(-1.5), abs=0.03)  # 0.134 exactly
    assert overlap_area(pa, pc, grid) == pytest.approx(overlap_area(pc, pa, grid))
    assert kl_divergence(pa, pb) < 0.02
    d = rng.normal(1, 1, 20000)
    grid, (pa, pd) = densities_on_common_grid([a, d])
    assert kl_divergence(pa, pd) == pytest.approx(0.5, abs=0.06)  # KL(N(0,1) || N(1,1)) = 1/2


def test_degenerate_lists_do_not_crash():
    rng = np.random.default_rng(1)
    grid, (p_const, p_norm) = densities_on_common_grid([np.zeros(50), rng.normal(0, 1, 500)])
    assert np.isfinite(p_const).all() and 0.0 <= overlap_area(p_const, p_norm, grid) <= 1.0
    grid, pdfs = densities_on_common_grid([np.ones(10), np.ones(7)])
    assert grid is None and pdfs == []  # identical point masses


def test_compare_identical_and_constant_features():
    rng = np.random.default_rng(2)
    songs = [chorale_like(rng) for _ in range(12)]
    result = compare_features(songs, songs)
    assert result["n"] == 12
    assert set(result["features"]) == set(FEATURES)
    # note_count is 96 for every song: all distances are 0 -> identical densities
    assert result["features"]["note_count"]["oa"] == 1.0
    assert result["overlap_area_mean"] > 0.85
    too_few = compare_features(songs[:1], songs)
    assert np.isnan(too_few["overlap_area_mean"])


def test_same_source_close_random_far():
    rng = np.random.default_rng(3)
    a = compute_statistics([chorale_like(rng) for _ in range(20)])
    b = compute_statistics([chorale_like(rng) for _ in range(20)])
    noise = compute_statistics(random_songs(20, seed=4))
    close, far = compare_features(a, b), compare_features(a, noise)
    assert close["overlap_area_mean"] >= 0.85
    assert far["overlap_area_mean"] <= 0.3
    assert close["realism"] == realism_score(a, b)
    assert close["realism"] > 0.8 > 0.4 > far["realism"]


def test_frechet_from_moments_exact():
    # 1-D: (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert frechet_from_moments(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_from_moments(np.zeros(2), cov, np.zeros(2), cov) == pytest.approx(0.0, abs=1e-9)
    # the SVD shortcut used by frechet_distance equals the textbook formula
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.5, 2.0, size=(12, 5))
    textbook = frechet_from_moments(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert dist._CenteredSamples(x).frechet_to(y) == pytest.approx(textbook, rel=1e-9)


def test_frechet_identical_near_zero_and_extrapolated():
    rng = np.random.default_rng(5)
    a = compute_statistics([chorale_like(rng) for _ in range(40)])
    noise = compute_statistics(random_songs(40, seed=6))
    same = frechet_distance(a, a)
    far = frechet_distance(a, noise)
    assert same["frechet_n"] == pytest.approx(0.0, abs=1e-4)  # all 40 songs: identical moments
    assert abs(same["frechet"]) < 1e-3 * far["frechet"]
    assert len(far["points"]) >= 3 and far["points"][-1][0] == 40
    assert "not the published FMD" in far["label"]


def test_parallel_statistics_match_serial(monkeypatch):
    monkeypatch.setattr(dist, "PARALLEL_MIN_SONGS", 4)
    rng = np.random.default_rng(7)
    songs = [chorale_like(rng) for _ in range(10)] + [Song(np.zeros((0, 6)))] + random_songs(5, seed=8)
    serial = compute_statistics(songs, workers=1)
    parallel, kept = compute_statistics(songs, workers=2, keep_songs=3)
    assert parallel.num_songs == serial.num_songs == 16 and parallel.num_empty == serial.num_empty == 1
    for name in FEATURES:
        np.testing.assert_array_equal(parallel.features[name], serial.features[name])
    for name, values in serial.metrics.items():
        np.testing.assert_array_equal(parallel.metrics[name], values)
    assert [s.num_notes for s in kept] == [s.num_notes for s in songs[:3]]


def test_excluded_feature_is_reported_but_not_in_headline_numbers():
    rng = np.random.default_rng(11)
    a = compute_statistics([chorale_like(rng, num_chords=int(rng.integers(16, 40))) for _ in range(16)])
    noise = compute_statistics(random_songs(16, seed=12))
    full = compare_features(a, noise)
    reason = {"note_count": "fixed by the window"}
    cut = compare_features(a, noise, exclude=reason)
    # per-feature values are unchanged; the excluded one is still there, marked
    for name in FEATURES:
        assert cut["features"][name]["oa"] == full["features"][name]["oa"]
        assert cut["features"][name]["headline"] is (name != "note_count")
    kept = [e for f, e in full["features"].items() if f != "note_count"]
    assert cut["overlap_area_mean"] == pytest.approx(np.mean([e["oa"] for e in kept]))
    assert cut["kl_mean"] == pytest.approx(np.mean([e["kl"] for e in kept]))
    assert cut["realism"] == pytest.approx(np.mean([(e["oa"] + e["oa_intra"]) / 2 for e in kept]))
    assert cut["overlap_area_mean"] != full["overlap_area_mean"] and cut["excluded_features"] == reason
    assert full["excluded_features"] == {}
    # Frechet: the excluded columns are not in the vector (note_count alone is far apart here)
    fd_cut = frechet_distance(a, noise, exclude=reason)
    assert fd_cut["excluded_features"] == ["note_count"]
    assert fd_cut["frechet_n"] < frechet_distance(a, noise)["frechet_n"]
    assert a.flat_features(["note_count"]).shape[1] == a.flat_features().shape[1] - 1
    with pytest.raises(ValueError):
        compare_features(a, noise, exclude={"no_such_feature": "x"})
