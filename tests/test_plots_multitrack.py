"""The multi-track piano-roll picture: one coloured panel per track, bar lines, a PNG."""

from __future__ import annotations

import numpy as np

from musicgan.plots import BAR_LINE, COLORS, TRACK_SEPARATOR, _rgb, multitrack_image, multitrack_png


def _roll():
    roll = np.zeros((32, 2, 12), dtype=bool)  # 2 bars of 16 steps, 2 tracks, 12 pitches
    roll[3:6, 0, 11] = True  # track 0: its highest pitch
    roll[20, 1, 0] = True  # track 1: its lowest pitch, in bar 2
    return roll


def test_each_track_gets_its_panel_and_colour_with_bar_lines():
    image = multitrack_image(_roll(), steps_per_bar=16, row_height=2, step_width=2)
    panel = 12 * 2
    assert image.shape == (2 * (panel + 1), 32 * 2, 3)
    assert tuple(image[0, 3 * 2]) == _rgb(COLORS[0])  # top row of panel 0 = highest pitch
    assert tuple(image[panel + 1 + panel - 1, 20 * 2]) == _rgb(COLORS[1])  # bottom row of panel 1
    assert tuple(image[panel + 1, 20 * 2]) == (255, 255, 255)  # nothing else in track 1 there
    assert tuple(image[5, 0]) == BAR_LINE and tuple(image[5, 16 * 2]) == BAR_LINE
    assert tuple(image[panel, 10]) == TRACK_SEPARATOR
    coloured = (image == _rgb(COLORS[0])).all(axis=2).sum() + (image == _rgb(COLORS[1])).all(axis=2).sum()
    assert coloured == 3 * 2 * 2 + 1 * 2 * 2  # 3 steps and 1 step, 2x2 pixels each


def test_multitrack_png_writes_a_picture(tmp_path):
    path = multitrack_png(_roll(), ["Soprano", "Bass"], 16, tmp_path / "roll.png", title="sample")
    assert (tmp_path / "roll.png").stat().st_size > 1000 and path.endswith("roll.png")


def test_a_multitrack_sample_with_no_notes_still_gets_its_picture(tmp_path):
    # A sparse MuseGAN generator can write a phrase with no notes: np.stack of no tracks failed.
    from pathlib import Path

    from musicgan.data.song import Song
    from musicgan.plots import song_multitrack_png

    song = Song(notes=np.zeros((0, 7)), tracks=["Soprano", "Alto"])
    assert Path(song_multitrack_png(song, tmp_path / "empty.png")).is_file()
