"""The HTML report against names from the outside: markup in paths, folder and file names,
MIDI track names, a run's config and log is shown as text, and no two sets share a file."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from midi_factory import make_song, note, smf, track, vlq, write_song

from musicgan.metrics.evaluate import run_evaluate

MARKUP = "<img src=x onerror=alert(1)>"  # no "/": a valid file name on every POSIX file system


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, attrs))


def _track_named(name: str) -> bytes:
    """A valid MIDI file whose one track is named `name` (meta event FF 03)."""
    title = name.encode()
    return smf(
        [track(b"\x00\xff\x03" + vlq(len(title)) + title + note(0, 480, 60) + note(0, 480, 64) + note(0, 480, 67))]
    )


def _folder(root: Path, count: int, seed: int) -> Path:
    for i in range(count):
        write_song(root / f"{MARKUP} {i}.mid", make_song(seed=seed + i, num_onsets=30))
    (root / f"track {MARKUP}.mid").write_bytes(_track_named(f"piano {MARKUP}"))
    return root


def _hostile_run(root: Path) -> Path:
    _folder(root / "samples" / "final", 3, seed=50)
    (root / "config.json").write_text(json.dumps({"model": {"name": MARKUP}, "data": {"path": MARKUP}}))
    records = [{"event": "epoch_metrics", "epoch": e, f"gen/{MARKUP}": 0.5, f"real/{MARKUP}": 0.6} for e in (1, 2)]
    (root / "log.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    return root


def test_everything_from_outside_is_escaped_in_the_report(tmp_path):
    reference = _folder(tmp_path / f"ref {MARKUP}", 4, seed=0)
    generated = _folder(tmp_path / f"gen {MARKUP}", 3, seed=20)
    run = _hostile_run(tmp_path / f"run {MARKUP}")
    run_evaluate(
        generated=str(generated),
        reference=str(reference),
        compare=[str(run)],
        out=str(tmp_path / "out"),
        cache_root=tmp_path / "cache",
        audio=1,
        calibrate=False,
        echo=lambda line: None,
    )
    page = (tmp_path / "out" / "index.html").read_text()
    parser = _Tags()
    parser.feed(page)
    handlers = [(tag, name) for tag, attrs in parser.tags for name, _ in attrs if name.startswith("on")]
    assert handlers == [] and not any(tag == "img" and ("src", "x") in attrs for tag, attrs in parser.tags)
    assert page.count(f"ref {MARKUP}".replace("<", "&lt;").replace(">", "&gt;")) >= 1  # shown, as text


def test_sets_whose_names_differ_only_in_punctuation_get_their_own_files(tmp_path):
    reference = tmp_path / "ref"
    for i in range(4):
        write_song(reference / f"r{i}.mid", make_song(seed=i, num_onsets=30))
    sets = []
    for seed, name in enumerate(("a b", "a_b", "a?b", "reference")):
        for i in range(2):
            write_song(tmp_path / name / f"s{i}.mid", make_song(seed=10 * seed + i + 7, num_onsets=30))
        sets.append(str(tmp_path / name))
    run_evaluate(
        generated=sets[0],
        compare=sets[1:],
        reference=str(reference),
        out=str(tmp_path / "out"),
        cache_root=tmp_path / "cache",
        audio=1,
        calibrate=False,
        echo=lambda line: None,
    )
    page = (tmp_path / "out" / "index.html").read_text()
    rolls = re.findall(r'<img src="(plots/roll-[^"]+)"', page)
    sounds = re.findall(r"src='(audio/[^']+)'", page)
    assert len(rolls) == 4 * 2 + 2 and len(set(rolls)) == len(rolls)  # 2 songs per set + 2 real
    assert len(sounds) == 4 + 1 and len(set(sounds)) == len(sounds)
    distances = [p.name for p in (tmp_path / "out" / "plots").glob("distances-*.png")]
    assert len(distances) == 4


def test_report_audio_is_a_bounded_excerpt_of_an_hours_long_song(tmp_path):
    from musicgan.data.song import Song
    from musicgan.metrics.evaluate import EvaluatedSet
    from musicgan.metrics.reference import Reference
    from musicgan.metrics.report import LISTEN_SECONDS, _audio, listening_excerpt

    hours = Song.from_columns([0.0, 30.0, 3599.0], [3600.0, 1.0, 1.0], [60, 64, 67], source="long")
    excerpt = listening_excerpt(hours)
    assert excerpt.num_notes == 2 and excerpt.end_time == LISTEN_SECONDS
    long_set = EvaluatedSet("long", "midi", tmp_path, [], tmp_path, examples=[hours])
    reference = Reference("midi", tmp_path, "valid", None, [], "", False, 0.0)
    made = _audio(tmp_path, reference, [long_set], num_per_set=1)
    wav = tmp_path / made["long/0"][0]
    assert wav.stat().st_size <= 4 * 22050 * (
        LISTEN_SECONDS + 5
    )  # 16-bit stereo at most, plus a release tail: not an hour
