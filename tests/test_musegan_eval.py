"""MuseGAN metrics on real data and in the outputs: real chorale phrases through the
multitrack representation, per-track means, summary lines, the report's table, the
multi-track sample picture, and real windows on bar lines."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan.data.loader import iter_encoded
from musicgan.data.representations import build_representation
from musicgan.data.shards import split_urls
from musicgan.data.song import Song, Track
from musicgan.metrics.musegan import (
    PUBLISHED_CORPUS,
    musegan_summary_lines,
    phrase_means,
    real_phrases,
    steps_to_phrases,
)
from musicgan.metrics.report import _musegan_section
from musicgan.plots import COLORS, _rgb
from musicgan.training.sampling import write_songs


def chorale_representation():
    return build_representation("multitrack", grouping="parts", steps_per_beat=12, lowest=36, num_pitches=48)


def test_real_phrases_are_the_whole_bar_aligned_phrases_of_the_songs_it_takes(bach_shards):
    rep = chorale_representation()
    urls = split_urls(bach_shards, "train")
    encoded = [steps for _, steps in iter_encoded(urls, rep)]  # 5-part and 3/4 chorales left out
    phrases = real_phrases(urls, rep, bars_per_phrase=4)
    assert phrases.shape[1:] == (4, 4, 48, 48)
    assert len(phrases) == sum(len(steps) // 192 for steps in encoded) > 0
    first = steps_to_phrases(encoded[0][None, :192], 4, 48)[0]
    assert np.array_equal(phrases[0], first) and first.any()


def test_phrase_means_per_track_and_pair_with_the_shuffled_row(bach_shards):
    rep = chorale_representation()
    phrases = real_phrases(split_urls(bach_shards, "train"), rep, bars_per_phrase=4)
    means = phrase_means(phrases, rep, shuffle=True)
    assert means["num_bars"] == 4 * len(phrases)
    assert {"EB/Soprano", "UPC/Bass", "QN/Alto", "TD/Soprano-Bass", "TD_shuffled/Tenor-Bass"} <= set(means)
    assert 0 <= means["EB/Soprano"] < 20 and 1 <= means["UPC/Soprano"] <= 12
    # Bach's voices agree more within a bar than with a random other bar.
    pairs = [k.split("/")[1] for k in means if k.startswith("TD/")]
    assert np.mean([means[f"TD/{p}"] for p in pairs]) < np.mean([means[f"TD_shuffled/{p}"] for p in pairs])


def test_summary_lines_and_report_table_show_every_row():
    extra = {
        "musegan/generated/EB/Soprano": 10.0,
        "musegan/generated/EB/Bass": 20.0,
        "musegan/generated/TD/Soprano-Bass": 1.5,
        "musegan/generated/num_bars": 800.0,
        "musegan/real_valid/EB/Soprano": 1.0,
        "musegan/real_valid/num_bars": 40.0,
        "loglik": 3.0,
    }
    lines = musegan_summary_lines(extra)
    assert lines == ["musegan generated: EB=15 TD=1.5 (800 bars)", "musegan real_valid: EB=1 (40 bars)"]
    html = "".join(_musegan_section({"sets": {"run": {"extra": extra}}}, ["run"]))
    assert "EB/Soprano" in html and "real_valid" in html and "TD/Soprano-Bass" in html
    assert PUBLISHED_CORPUS.split(",")[0] in html and "loglik" not in html


def test_multi_track_samples_get_a_panel_per_track_picture(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    song = Song.from_columns(
        [0.0, 0.0, 1.0],
        [1.0, 1.0, 1.0],
        [72, 48, 74],
        track=[0, 1, 0],
        tracks=[Track("Soprano"), Track("Bass")],
        time_signatures=[(0.0, 4, 4)],
    )
    (path,) = write_songs([song], tmp_path)
    pixels = (matplotlib.image.imread(path.with_suffix(".png"))[..., :3] * 255).round().astype(int)
    assert (pixels == _rgb(COLORS[1])).all(axis=2).any()  # the second track's panel colour
