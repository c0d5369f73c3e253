"""A blind listening test as a kit: anonymised, shuffled clips of several models plus real
clips as a control, a static rating page, and the aggregation of the raters' CSV files.

  DIR/kit/            what raters get: clip-NNN.wav and index.html (players, 1-5 ratings,
                      a button that saves `ratings-<rater>.csv`: rater,clip,rating)
  DIR/answer_key.json clip -> model; kept outside kit/ so the raters never see it

`listening_results` reads any number of rating rows, maps clips to models through the key
and reports per model the mean rating and a 95 % Student-t interval over all ratings.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from musicgan.audio import write_wav
from musicgan.errors import DataError, UserError
from musicgan.metrics.audio_evaluate import load_set, real_clips

REAL_MODEL = "real"  # the control's name in the answer key
KEY_NAME = "answer_key.json"
RATINGS = (1, 2, 3, 4, 5)
CSV_HEADER = ("rater", "clip", "rating")


def make_listening_kit(
    out: str,
    runs: Sequence[str],
    reference: str,
    split: str = "valid",
    clips_per_model: int = 5,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> dict:
    """Write DIR/kit (clips + page) and DIR/answer_key.json; return the key."""
    if not runs:
        raise UserError("--listening-kit needs the runs to compare: --run RUN and/or --compare RUN ...")
    if clips_per_model < 1:
        raise UserError(f"--kit-clips must be at least 1, got {clips_per_model}")
    sets = [load_set(r) for r in runs]
    names = [s.name for s in sets]
    if len(set(names)) != len(names) or REAL_MODEL in names:
        raise UserError(f"--listening-kit: model names must be unique and not {REAL_MODEL!r}, got {', '.join(names)}")
    rate, length = sets[0].rate, min(len(c) for s in sets for c in s.clips)
    if any(s.rate != rate for s in sets):
        raise UserError("--listening-kit: the runs' WAVs have different sample rates")
    pool = [(s.name, c[:length]) for s in sets for c in s.clips[:clips_per_model]]
    pool += [(REAL_MODEL, c) for c in real_clips(reference, split, rate, length, clips_per_model, seed)]
    order = np.random.default_rng(seed).permutation(len(pool))
    kit = Path(out) / "kit"
    kit.mkdir(parents=True, exist_ok=True)
    key = {}
    for number, index in enumerate(order):
        clip = f"clip-{number:03d}"
        write_wav(pool[index][1].astype(np.float32), kit / f"{clip}.wav", rate)
        key[clip] = pool[index][0]
    (kit / "index.html").write_text(rating_page(sorted(key)), encoding="utf-8")
    (Path(out) / KEY_NAME).write_text(json.dumps(key, indent=1, sort_keys=True), encoding="utf-8")
    echo(
        f"listening kit: {len(key)} clips of {length / rate:.2f} s from {', '.join(names)} and {REAL_MODEL}; "
        f"send {kit} to the raters, keep {Path(out) / KEY_NAME}"
    )
    return key


RATING_SCRIPT = """
function csvText() {
  const rater = (document.getElementById('rater').value || 'anonymous').replace(/[",\\n\\r]/g, ' ').trim();
  const rows = ['rater,clip,rating'];
  for (const clip of CLIPS) {
    const picked = document.querySelector('input[name="' + clip + '"]:checked');
    if (picked) rows.push(rater + ',' + clip + ',' + picked.value);
  }
  return {rater: rater, text: rows.join('\\n') + '\\n', count: rows.length - 1};
}
function saveRatings() {
  const out = csvText();
  document.getElementById('csv').value = out.text;
  document.getElementById('status').textContent = out.count + ' of ' + CLIPS.length + ' clips rated';
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([out.text], {type: 'text/csv'}));
  link.download = 'ratings-' + out.rater.replace(/[^A-Za-z0-9_-]/g, '_') + '.csv';
  document.body.appendChild(link);
  link.click();
  link.remove();
}
"""


def rating_page(clips: list[str]) -> str:
    """The static page: one player and five radio buttons per clip, a rater name, a save
    button that downloads the CSV (and shows it in a text box, to copy by hand)."""
    rows = []
    for clip in clips:
        name = html.escape(clip)
        radios = "".join(f'<label><input type="radio" name="{name}" value="{r}"> {r}</label> ' for r in RATINGS)
        rows.append(
            f'<tr><td>{name}</td><td><audio controls preload="none" src="{name}.wav"></audio></td>'
            f"<td>{radios}</td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Listening test</title></head><body>"
        "<h1>Listening test</h1><p>Listen to each clip and rate it from 1 (bad) to 5 (excellent). "
        "The clips are in random order; some are real recordings.</p>"
        "<p><label>Your name: <input id='rater' type='text'></label></p>"
        "<table><tr><th>clip</th><th>listen</th><th>rating</th></tr>" + "".join(rows) + "</table>"
        "<p><button id='save' onclick='saveRatings()'>Save ratings (CSV)</button> <span id='status'></span></p>"
        "<p><textarea id='csv' rows='6' cols='40' readonly></textarea></p>"
        f"<script>const CLIPS = {json.dumps(clips)};{RATING_SCRIPT}</script></body></html>"
    )


def read_ratings(paths: Sequence[str | Path], key: dict[str, str]) -> list[tuple[str, str, int]]:
    """(rater, model, rating) of every row of the rating CSVs; DataError on a bad row."""
    rows = []
    for path in paths:
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if tuple(reader.fieldnames or ()) != CSV_HEADER:
                    raise DataError(f"{path}: expected the header {','.join(CSV_HEADER)}, got {reader.fieldnames}")
                rows += [_rating_row(path, line, key) for line in reader]
        except OSError as exc:
            raise DataError(f"cannot read ratings {path}: {exc.strerror}") from None
    return rows


def _rating_row(path, line: dict, key: dict[str, str]) -> tuple[str, str, int]:
    clip, rating = (line.get("clip") or "").strip(), (line.get("rating") or "").strip()
    if clip not in key:
        raise DataError(f"{path}: clip {clip!r} is not in the answer key of this kit")
    if rating not in {str(r) for r in RATINGS}:
        raise DataError(f"{path}: rating {rating!r} of {clip} is not one of 1-5")
    return (line.get("rater") or "").strip(), key[clip], int(rating)


def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and its 95 % Student-t interval (NaN half-width for a single rating)."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return {"n": len(values), "mean": mean, "low": math.nan, "high": math.nan}
    half = float(t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return {"n": len(values), "mean": mean, "low": mean - half, "high": mean + half}


def listening_results(kit_dir: str, ratings: Sequence[str], echo: Callable[[str], None] = print) -> dict:
    """Per model: number of ratings, mean and 95 % interval (best mean first); also written
    to DIR/results.json."""
    key_path = Path(kit_dir) / KEY_NAME
    if not key_path.is_file():
        raise DataError(f"{kit_dir} has no {KEY_NAME}: pass the folder given to --listening-kit")
    key = json.loads(key_path.read_text(encoding="utf-8"))
    rows = read_ratings(ratings, key)
    if not rows:
        raise DataError("the rating files hold no ratings")
    by_model: dict[str, list[int]] = {}
    for _, model, rating in rows:
        by_model.setdefault(model, []).append(rating)
    results = {m: interval(v) for m, v in sorted(by_model.items(), key=lambda item: -np.mean(item[1]))}
    (Path(kit_dir) / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    echo(f"{len(rows)} ratings from {len({r for r, _, _ in rows})} raters:")
    for model, r in results.items():
        echo(f"  {model:<24} mean {r['mean']:.2f}  95% interval [{r['low']:.2f}, {r['high']:.2f}]  (n={r['n']})")
    return results
