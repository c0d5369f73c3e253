"""The evaluation report: PNG pictures, WAV files and `index.html` in one folder.

Everything is linked relatively (plots/*.png, audio/*.wav), so the folder opens from disk
in a browser and can be copied or archived whole. Called by `evaluate.run_evaluate`.
"""

from __future__ import annotations

import hashlib
import html
import logging
import math
import re
import time
from pathlib import Path

import numpy as np

from musicgan.data.song import DURATION, ONSET
from musicgan.metrics.distributions import FEATURES
from musicgan.metrics.registry import DEFAULT_GROUPS, metric_names

log = logging.getLogger(__name__)

REFERENCE_LABEL = "real"
LISTEN_SECONDS = 60.0  # audio per example in the report
CURVE_METRICS = ("scale_consistency", "tone_span", "unique_tones", "intensity_span", "polyphony", "repetitions_3")


def _slug(name: str) -> str:
    """A file-name-safe form of a set name, unique per name: the readable part alone would
    map "a b" and "a_b" (or "reference") to one file."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:48] or "set"
    return f"{readable}-{hashlib.sha256(name.encode('utf-8', 'backslashreplace')).hexdigest()[:8]}"


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def _musegan_section(result: dict, names: list[str]) -> list[str]:
    """MuseGAN's per-track metrics (`musegan/<row>/<metric>/<track>` extras) per set, and the
    paper's published rows labelled as another corpus."""
    from musicgan.metrics.musegan import PUBLISHED_COLUMNS, PUBLISHED_CORPUS, PUBLISHED_ROWS

    parts = []
    for name in names:
        extra = {k: v for k, v in result["sets"][name]["extra"].items() if k.startswith("musegan/")}
        if not extra:
            continue
        rows = list(dict.fromkeys(k.split("/")[1] for k in extra))
        columns = list(dict.fromkeys("/".join(k.split("/")[2:]) for k in extra))
        parts.append(f"<h2>MuseGAN metrics: {html.escape(name)} (per bar, mean over bars)</h2>")
        parts.append(
            _table(
                ["row"] + columns,
                [[html.escape(r)] + [_fmt(extra.get(f"musegan/{r}/{c}")) for c in columns] for r in rows],
            )
        )
    if parts:
        parts.append(f"<h3>{html.escape(PUBLISHED_CORPUS)}</h3>")
        parts.append(_table(["row", *PUBLISHED_COLUMNS], [[r, *cells] for r, cells in PUBLISHED_ROWS.items()]))
    return parts


def _table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(rel: str, alt: str) -> str:
    return f'<img src="{html.escape(rel)}" alt="{html.escape(alt)}" loading="lazy">'


def _plots(out_dir: Path, result: dict, ref, sets, densities) -> tuple[dict[str, str], dict[str, str]]:
    """Draw every picture; returns ({key: path relative to out_dir}, {key: caption}).
    Failures are logged and skipped: a broken picture must not cost the metrics."""
    from musicgan import plots

    made: dict[str, str] = {}
    captions: dict[str, str] = {}

    def attempt(key: str, rel: str, fn, *args, **kwargs):
        try:
            fn(*args, out_dir / rel, **kwargs)
            made[key] = rel
        except Exception as exc:  # noqa: BLE001 - report what failed, keep going
            log.warning("plot %s failed: %s", rel, exc)

    for group in DEFAULT_GROUPS:
        panels = {}
        for metric in metric_names(group):
            values = {REFERENCE_LABEL: ref.stats.metrics[metric]}
            values.update({s.name: s.stats.metrics[metric] for s in sets})
            panels[metric] = values
        attempt(f"hist/{group}", f"plots/histograms-{group}.png", plots.histograms_png, panels)

    for s in sets:
        dens = densities.get(s.name, {})
        if dens:
            panels = {
                f: (
                    d["grid"],
                    {"intra real": d["intra_reference"], f"intra {s.name}": d["intra_generated"], "inter": d["inter"]},
                )
                for f, d in dens.items()
            }
            attempt(f"dens/{s.name}", f"plots/distances-{_slug(s.name)}.png", plots.densities_png, panels)
        if s.curves:
            panels = {}
            for metric in [m for m in CURVE_METRICS if m in s.curves] + sorted(set(s.curves) - set(CURVE_METRICS)):
                c = s.curves[metric]
                panels[metric] = {"generated": (c["epoch"], c["gen"]), "real valid": (c["epoch"], c["real"])}
            attempt(f"curves/{s.name}", f"plots/curves-{_slug(s.name)}.png", plots.curves_png, panels)
        for i, song in enumerate(s.examples[:3]):
            attempt(f"roll/{s.name}/{i}", f"plots/roll-{_slug(s.name)}-{i}.png", plots.piano_roll_png, song, axes=False)
            captions[f"roll/{s.name}/{i}"] = f"{s.name}: {song.source} ({song.num_notes} notes, {song.end_time:.1f} s)"
    for i, song in enumerate(ref.examples):
        attempt(f"roll/{REFERENCE_LABEL}/{i}", f"plots/roll-reference-{i}.png", plots.piano_roll_png, song, axes=False)
        captions[f"roll/{REFERENCE_LABEL}/{i}"] = f"real: {song.source} ({song.num_notes} notes, {song.end_time:.1f} s)"
    return made, captions


def listening_excerpt(song, seconds: float = LISTEN_SECONDS):
    """The first `seconds` of a song (notes starting earlier, cut at that time): what the
    report renders, since a song may last hours and its audio would need gigabytes."""
    notes = song.notes[song.onsets < seconds].copy()
    notes[:, DURATION] = np.minimum(notes[:, DURATION], seconds - notes[:, ONSET])
    return song.replace(notes=notes)


def _audio(out_dir: Path, ref, sets, num_per_set: int = 2) -> dict[str, tuple[str, str]]:
    """{key: (relative wav path, renderer)}; renderer is "fluidsynth" or "sine"."""
    from musicgan.audio import render_wav

    made = {}
    jobs = [
        (f"{s.name}/{i}", f"audio/{_slug(s.name)}-{i}.wav", song)
        for s in sets
        for i, song in enumerate(s.examples[:num_per_set])
    ]
    jobs += [(f"{REFERENCE_LABEL}/{i}", f"audio/reference-{i}.wav", song) for i, song in enumerate(ref.examples[:1])]
    for key, rel, song in jobs:
        try:
            made[key] = (rel, render_wav(listening_excerpt(song), out_dir / rel))
        except Exception as exc:  # noqa: BLE001 - audio is a bonus, never a failure
            log.warning("audio %s failed: %s", rel, exc)
    return made


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
.best{font-weight:bold;background:#e7f5e7}
img{max-width:100%;border:1px solid #eee;margin:4px 0}
.note{color:#555;font-size:0.85em}
.rolls{display:flex;flex-wrap:wrap;gap:8px}.rolls figure{margin:0;max-width:590px}
figcaption{font-size:0.8em;color:#555}
"""


def write_report(out_dir: Path, result: dict, ref, sets, densities: dict, audio: int = 2) -> Path:
    """Draw the pictures, render `audio` WAVs per set (+1 real) and write `index.html`."""
    out_dir = Path(out_dir)
    images, captions = _plots(out_dir, result, ref, sets, densities)
    sounds = _audio(out_dir, ref, sets, audio) if audio else {}
    reference = result["reference"]
    names = list(result["sets"])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>musicgan evaluation</title>"
        f"<style>{CSS}</style></head><body>"
    ]
    where = html.escape(str(reference["path"]))  # paths, like every name below, come from outside: escaped
    if reference["split"]:
        where += f" (split <b>{html.escape(str(reference['split']))}</b>)"
    parts.append("<h1>musicgan evaluation</h1>")
    cropped = (
        f" (one window of {reference['window_notes']} notes per song, matching the generated length)"
        if reference.get("window_notes")
        else ""
    )
    parts.append(
        f"<p>Reference: {where}, {reference['num_songs']} songs{cropped}"
        f"{' (statistics from cache)' if reference['cache_hit'] else ''}. "
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}, "
        f"{_fmt(result.get('seconds'), 1)} s.</p>"
    )

    # Summary: evaluated sets, then calibration rows (ceiling and floor).
    rows = []
    for name, s in result["summary"].items():
        rows.append(
            [
                f"<b>{html.escape(name)}</b>",
                str(s["num_songs"]),
                f"<b>{_fmt(s['realism'])}</b>",
                _fmt(s["overlap_area_mean"]),
                _fmt(s["kl_mean"]),
                _fmt(s["frechet"], 2),
                _fmt(s["frechet_n"], 2),
            ]
        )
    for name, s in result.get("calibration", {}).items():
        rows.append(
            [
                f"<i>calibration: {html.escape(name)}</i>",
                str(s["num_songs"]),
                _fmt(s["realism"]),
                _fmt(s["overlap_area_mean"]),
                _fmt(s["kl_mean"]),
                _fmt(s["frechet"], 2),
                _fmt(s["frechet_n"], 2),
            ]
        )
    parts.append("<h2>Summary</h2>")
    parts.append(
        _table(
            [
                "set",
                "songs",
                "realism (higher better)",
                "overlap area mean (higher)",
                "KL mean (lower)",
                "Frechet, in-house (lower)",
                "Frechet at N",
            ],
            rows,
        )
    )
    parts.append(
        "<p class='note'>"
        + "<br>".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in result["definitions"].items())
        + "</p>"
    )

    parts += _musegan_section(result, names)
    extra_names = sorted({k for s in result["sets"].values() for k in s["extra"] if not k.startswith("musegan/")})
    if extra_names:
        parts.append("<h2>Piano-roll likelihood and other set-level metrics</h2>")
        rows = [[html.escape(n)] + [_fmt(result["sets"][n]["extra"].get(k)) for k in extra_names] for n in names]
        parts.append(_table(["set"] + extra_names, rows))

    if "comparison" in result:
        parts.append("<h2>Side by side: which set is closer to the real split</h2>")
        rows = []
        for key, entry in result["comparison"].items():
            cells = [html.escape(key), _fmt(entry["reference"])]
            for n in names:
                v = _fmt(entry["values"].get(n))
                cells.append(f"<span class='best'>{v}</span>" if entry["closer"] == n else v)
            cells.append(html.escape(entry["closer"] or "n/a"))
            rows.append(cells)
        parts.append(_table(["metric", "real"] + names + ["closer"], rows))
        wins = {n: sum(e["closer"] == n for e in result["comparison"].values()) for n in [*names, "tie"]}
        skipped = sum(e["closer"] is None for e in result["comparison"].values())
        parts.append(
            "<p>Closer on "
            + ", ".join(f"<b>{html.escape(n)}</b>: {w} of {len(result['comparison'])} rows" for n, w in wins.items())
            + " (tie: within 0.1%)"
            + (f"; {skipped} not compared (see the rule: left out by the window, or undefined)" if skipped else "")
            + ".</p>"
        )

    parts.append("<h2>Metrics per song: real vs generated (mean &plusmn; std)</h2>")
    rows = []
    for metric in metric_names("all"):
        r = reference["metrics"][metric]
        cells = [html.escape(metric), f"{_fmt(r['mean'])} &plusmn; {_fmt(r['std'])}"]
        cells += [
            f"{_fmt(result['sets'][n]['metrics'][metric]['mean'])} &plusmn; "
            f"{_fmt(result['sets'][n]['metrics'][metric]['std'])}"
            for n in names
        ]
        rows.append(cells)
    parts.append(_table(["metric", "real"] + names, rows))
    for group in DEFAULT_GROUPS:
        if f"hist/{group}" in images:
            parts.append(f"<h3>{group} metrics: histograms</h3>" + _img(images[f"hist/{group}"], f"{group} histograms"))

    parts.append("<h2>Feature distances (mgeval): overlapping area per feature</h2>")
    excluded = reference.get("excluded_features") or {}
    rows = [
        [html.escape(f) + (" <i>(not in the headline numbers)</i>" if f in excluded else "")]
        + [_fmt(result["sets"][n]["distances"]["features"].get(f, {}).get("oa")) for n in names]
        for f in FEATURES
    ]
    parts.append(_table(["feature"] + [f"OA {n}" for n in names], rows))
    if excluded:
        parts.append(
            "<p class='note'>"
            + "<br>".join(
                f"<b>{html.escape(f)}</b> is left out of overlap area mean, KL mean, "
                f"realism and Frechet: {html.escape(why)}"
                for f, why in excluded.items()
            )
            + "</p>"
        )
    for n in names:
        if f"dens/{n}" in images:
            parts.append(
                f"<h3>{html.escape(n)}: intra-set and inter-set distance densities</h3>" + _img(images[f"dens/{n}"], n)
            )

    curves = [n for n in names if f"curves/{n}" in images]
    if curves:
        parts.append("<h2>Metrics over training epochs</h2>")
        for n in curves:
            parts.append(f"<h3>{html.escape(n)}</h3>" + _img(images[f"curves/{n}"], f"{n} curves"))

    parts.append(
        "<h2>Piano rolls</h2><p class='note'>time left to right, high pitches on top, darker = louder, "
        "black tick = onset</p><div class='rolls'>"
    )
    for key, rel in images.items():
        if key.startswith("roll/"):
            parts.append(
                f"<figure>{_img(rel, key)}<figcaption>{html.escape(captions.get(key, key))}</figcaption></figure>"
            )
    parts.append("</div>")

    if sounds:
        parts.append("<h2>Listen</h2>")
        rows = [
            [html.escape(key), f"<audio controls preload='none' src='{html.escape(rel)}'></audio>", renderer]
            for key, (rel, renderer) in sounds.items()
        ]
        parts.append(_table(["sample", "audio", "renderer"], rows))
        if any(r == "sine" for _, r in sounds.values()):
            parts.append(
                "<p class='note'>sine = pretty_midi sine synthesis "
                "(install fluidsynth and fluid-soundfont-gm for real instruments)</p>"
            )
    parts.append("</body></html>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
