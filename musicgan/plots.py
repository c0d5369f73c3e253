"""Pictures of songs and metrics. The only module that imports matplotlib (lazily, Agg).

`piano_roll_image` is plain numpy (cheap enough to call every N training steps for
TensorBoard's `add_image(..., dataformats="HWC")`); everything else draws PNG files for
the evaluation report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from musicgan.audio import from_pcm16
from musicgan.data.song import Song
from musicgan.errors import UserError

COLORS = ("#1f4e9c", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fa0", "#6c757d")


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # a core dependency, but say what to do if it is missing
        raise UserError("plots need matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg", force=True)  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)
    return str(path)


# -- piano rolls -----------------------------------------------------------------------------
def piano_roll_image(
    song: Song, max_width: int = 1024, columns_per_second: float = 32.0, row_height: int = 4
) -> np.ndarray:
    """(H, W, 3) uint8 piano roll: time left to right, high pitches on top, darker = louder.

    Rows span the song's pitch range (+2 semitones margin, at least two octaves) with
    `row_height` pixels per semitone; long songs are squeezed to `max_width` columns.
    Drum notes are drawn in red. An empty song gives a blank 2-octave strip.
    """
    notes = song.notes
    end = song.end_time
    scale = min(columns_per_second, max_width / end) if end > 0 else columns_per_second
    width = max(1, int(np.ceil(end * scale)))
    if len(notes):
        low, high = int(notes[:, 2].min()) - 2, int(notes[:, 2].max()) + 2
    else:
        low, high = 58, 62
    if high - low < 24:
        low = (low + high) // 2 - 12
        high = low + 24
    rows = high - low + 1
    image = np.full((rows * row_height, width, 3), 255, dtype=np.uint8)
    for onset, duration, pitch, velocity, _program, is_drum, _track in notes:
        x0 = int(onset * scale)
        x1 = max(x0 + 1, int(np.ceil((onset + duration) * scale)))
        y0 = (high - int(pitch)) * row_height
        shade = int(200 - 170 * min(max(velocity, 0.0), 127.0) / 127.0)  # louder = darker
        color = (230, shade // 2, shade // 2) if is_drum > 0.5 else (shade // 2, shade // 2 + 20, 230 - shade // 3)
        image[y0 + 1 : y0 + row_height, x0:x1] = color
        image[y0 + 1 : y0 + row_height, x0] = (0, 0, 0)  # onset tick: repeated notes stay distinct
    return image


def piano_roll_png(song: Song, path, title: str | None = None, axes: bool = True) -> str:
    """Save `piano_roll_image` with time (s) and MIDI pitch axes as a PNG (a raster: fast
    for any number of notes). axes=False writes the bare image (~50x cheaper: no figure,
    no text; the evaluation report captions it in HTML instead)."""
    plt = _pyplot()
    image = piano_roll_image(song)
    if not axes:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        plt.imsave(str(path), image)
        return str(path)
    notes = song.notes
    high = int(notes[:, 2].max()) + 2 if len(notes) else 62
    rows = image.shape[0] / 4  # row_height = 4 pixels per semitone
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.imshow(
        image,
        aspect="auto",
        interpolation="nearest",
        extent=(0, max(song.end_time, 1e-3), high - rows + 0.5, high + 0.5),
    )
    if not len(notes):
        ax.text(0.5, 0.5, "(no notes)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


# -- spectrograms -----------------------------------------------------------------------------
SPECTROGRAM_NFFT = 512  # 64 ms at 8 kHz, 32 ms at 16 kHz: resolves chorale pitches and block edges


def spectrogram_png(waveform: np.ndarray, sample_rate: int, path, title: str | None = None) -> str:
    """A log-power spectrogram (dB, matplotlib's `specgram`, Hann, 50 % overlap) of a mono
    waveform (int16 or float) with time (s) and frequency (Hz) axes."""
    plt = _pyplot()
    waveform = np.asarray(waveform)
    samples = from_pcm16(waveform) if waveform.dtype == np.int16 else waveform.astype(np.float64)
    fig, ax = plt.subplots(figsize=(10, 3.2))
    nfft = min(SPECTROGRAM_NFFT, max(16, len(samples)))
    if len(samples) >= 16:
        ax.specgram(samples, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma", scale="dB")
    else:
        ax.text(0.5, 0.5, "(too short)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


# -- metric plots ------------------------------------------------------------------------------
# Each helper draws one panel per entry of `panels` ({panel title: data}) in a grid and
# saves one PNG: the report shows a metric family at a glance, and one savefig per family
# costs a fraction of one per metric.
def _grid(num_panels: int, ncols: int, panel_size: tuple[float, float] = (3.6, 2.7)):
    plt = _pyplot()
    ncols = max(1, min(ncols, num_panels))
    nrows = max(1, -(-num_panels // ncols))
    width, height = panel_size
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[num_panels:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _finish_axis(ax, title: str, xlabel: str = "") -> None:
    ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)


def draw_histograms(ax, values: Mapping[str, np.ndarray], bins: int = 30) -> None:
    """Overlaid density histograms of one quantity for several sets (NaN skipped), common bins."""
    finite = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    finite = {k: v[np.isfinite(v)] for k, v in finite.items()}
    pooled = np.concatenate([v for v in finite.values() if len(v)] or [np.zeros(0)])
    if not len(pooled):
        ax.text(0.5, 0.5, "(undefined for every song)", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    lo, hi = float(pooled.min()), float(pooled.max())
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    for (label, v), color in zip(finite.items(), COLORS):
        if len(v):  # one `stairs` artist per set: far cheaper to draw than hist's bars
            density, _ = np.histogram(v, bins=edges, density=True)
            ax.stairs(density, edges, fill=True, alpha=0.35, color=color, label=f"{label} (n={len(v)})")
    ax.legend(fontsize=6)


def histograms_png(panels: Mapping[str, Mapping[str, np.ndarray]], path, ncols: int = 4) -> str:
    """One histogram panel per quantity: {title: {set label: per-song values}}."""
    fig, axes = _grid(len(panels), ncols)
    for ax, (title, values) in zip(axes, panels.items()):
        draw_histograms(ax, values)
        _finish_axis(ax, title)
    fig.subplots_adjust(
        left=0.05, right=0.98, top=0.93, bottom=0.08, hspace=0.55, wspace=0.3
    )  # tight_layout costs seconds
    return _save(fig, path)


MARKERS = ("o", "s", "^", "D", "v", "x")  # past len(COLORS) curves the colours repeat with another marker


def curves_png(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    path,
    xlabel: str = "epoch",
    ncols: int = 3,
    xlabels: Mapping[str, str] | None = None,
    panel_size: tuple[float, float] = (3.6, 2.7),
) -> str:
    """One line-plot panel per quantity: {title: {label: (x, y)}} (NaN gaps allowed);
    `xlabels` {title: label} overrides `xlabel` per panel. Any number of curves per panel
    (a sweep's trials): colour i % 6, marker i // 6."""
    fig, axes = _grid(len(panels), ncols, panel_size)
    for ax, (title, curves) in zip(axes, panels.items()):
        for i, (label, (x, y)) in enumerate(curves.items()):
            style = "--" if label.startswith("real") else "-"
            color, marker = COLORS[i % len(COLORS)], MARKERS[(i // len(COLORS)) % len(MARKERS)]
            ax.plot(x, np.asarray(y, dtype=np.float64), style, marker=marker, markersize=2.5, color=color, label=label)
        ax.legend(fontsize=6)
        _finish_axis(ax, title, (xlabels or {}).get(title, xlabel))
    # tight_layout costs seconds; half an inch at the bottom keeps a one-row figure's x labels.
    bottom = max(0.08, 0.5 / fig.get_figheight())
    fig.subplots_adjust(left=0.05, right=0.98, top=0.93, bottom=bottom, hspace=0.55, wspace=0.3)
    return _save(fig, path)


def _log_ticks(ax, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Log axes labelled in plain numbers: x at the measured sizes, y at 4 values spread over
    the range (matplotlib's own log labels overlap, and show none within one decade)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    xticks = sorted(set(float(x) for x in xs))
    finite = [float(y) for y in ys if np.isfinite(y) and y > 0]
    yticks = sorted({float(f"{v:.2g}") for v in np.geomspace(min(finite), max(finite), 4)}) if finite else []
    for axis, ticks in ((ax.xaxis, xticks), (ax.yaxis, yticks)):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(lambda value, _: f"{value:g}")
        axis.set_minor_locator(NullLocator())
        axis.set_minor_formatter(NullFormatter())


def loglog_png(
    panels: Mapping[str, tuple[str, str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]], path, ncols: int = 3
) -> str:
    """One log-log panel per curve: {title: (xlabel, ylabel, {label: (x, y)})}. A label
    starting "fit" is a fitted model (dashed, no markers); others are measured points."""
    fig, axes = _grid(len(panels), ncols)
    for ax, (title, (xlabel, ylabel, series)) in zip(axes, panels.items()):
        for i, (label, (x, y)) in enumerate(series.items()):
            fitted = label.startswith("fit")
            style = (
                {"linestyle": "--", "marker": None} if fitted else {"linestyle": "-", "marker": "o", "markersize": 3}
            )
            ax.plot(x, np.asarray(y, dtype=np.float64), color=COLORS[i % len(COLORS)], label=label, **style)
        _log_ticks(ax, [v for x, _ in series.values() for v in x], [v for _, y in series.values() for v in y])
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=6)
        _finish_axis(ax, title, xlabel)
    bottom = max(0.08, 0.5 / fig.get_figheight())
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=bottom, hspace=0.6, wspace=0.35)
    return _save(fig, path)


def densities_png(panels: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]], path, ncols: int = 3) -> str:
    """One panel per quantity of densities on a shared grid: {title: (grid, {label: pdf})}
    (the mgeval intra-set / inter-set distance plots)."""
    fig, axes = _grid(len(panels), ncols)
    for ax, (title, (grid, pdfs)) in zip(axes, panels.items()):
        for (label, pdf), color in zip(pdfs.items(), COLORS):
            ax.plot(grid, pdf, color=color, label=label)
            ax.fill_between(grid, pdf, color=color, alpha=0.15)
        ax.legend(fontsize=6)
        _finish_axis(ax, title, "distance")
    fig.subplots_adjust(
        left=0.05, right=0.98, top=0.93, bottom=0.08, hspace=0.55, wspace=0.3
    )  # tight_layout costs seconds
    return _save(fig, path)


# -- multi-track piano rolls (MuseGAN) ---------------------------------------------------------
BAR_LINE = (150, 150, 150)
TRACK_SEPARATOR = (40, 40, 40)


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def multitrack_image(roll: np.ndarray, steps_per_bar: int, row_height: int = 2, step_width: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 picture of a multi-track roll (T, K, P) bool: one panel per track,
    top to bottom in track order, each in its own colour (COLORS), high pitches on top;
    grey bar lines every `steps_per_bar` steps, a dark line between panels. Plain numpy."""
    steps, tracks, pitches = roll.shape
    panel = pitches * row_height
    image = np.full((tracks * (panel + 1), steps * step_width, 3), 255, dtype=np.uint8)
    image[:, :: steps_per_bar * step_width] = BAR_LINE
    for k in range(tracks):
        top = k * (panel + 1)
        on = roll[:, k, ::-1].T  # (P, T), highest pitch first
        pixels = np.repeat(np.repeat(on, row_height, axis=0), step_width, axis=1)
        image[top : top + panel][pixels] = _rgb(COLORS[k % len(COLORS)])
        image[top + panel] = TRACK_SEPARATOR
    return image


def multitrack_png(
    roll: np.ndarray, track_names: Sequence[str], steps_per_bar: int, path, title: str | None = None
) -> str:
    """Save `multitrack_image` as a PNG with track names and bar numbers on the axes."""
    plt = _pyplot()
    image = multitrack_image(roll, steps_per_bar)
    steps, tracks, _ = roll.shape
    panel_height = image.shape[0] / tracks
    # About one screen pixel per image row (dpi 80): thinner panels would drop rows.
    fig, ax = plt.subplots(figsize=(10, 0.9 + image.shape[0] / 80))
    ax.imshow(image, aspect="auto", interpolation="nearest", extent=(0, steps / steps_per_bar, image.shape[0], 0))
    ax.set_yticks([(k + 0.5) * panel_height for k in range(tracks)], list(track_names), fontsize=8)
    ax.set_xlabel("bar")
    if title:
        ax.set_title(title, fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9 if title else 0.97, bottom=0.15)
    return _save(fig, path)


def song_multitrack_png(song: Song, path, title: str | None = None, steps_per_beat: int = 12) -> str:
    """`multitrack_png` of a song's tracks (parts or instruments, `song_tracks`) on its bar
    grid, pitch rows cropped to the used range (+2 semitones)."""
    from musicgan.metrics.musegan import song_bars, song_tracks

    tracks = song_tracks(song)
    if not tracks:  # a sample with no notes at all (a sparse generator writes some): an empty roll
        return piano_roll_png(song, path, title)
    bars = [song_bars(song, notes, steps_per_beat) for notes, _, _ in tracks]  # (N, S, 128) each
    roll = np.stack([b.reshape(-1, b.shape[2]) for b in bars], axis=1)  # (T, K, 128)
    used = np.nonzero(roll.any(axis=(0, 1)))[0]
    low, high = (max(int(used.min()) - 2, 0), min(int(used.max()) + 2, 127)) if len(used) else (48, 72)
    return multitrack_png(roll[:, :, low : high + 1], [name for _, _, name in tracks], bars[0].shape[1], path, title)
