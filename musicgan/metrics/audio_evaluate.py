"""`musicgan evaluate` for runs that generate audio (their samples are WAV files): the
metrics of musicgan/metrics/audio.py against real held-out audio from the shards, with
calibration rows, and an HTML report with audio players and spectrograms.

Real clips: one window per real song (seeded), as long as the generated clips, from the
songs' rendered audio (`prepare --audio-rate`) at the generated rate. Training clips (for
the copy distance) come from the train split the same way.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from musicgan.audio import from_pcm16, read_wav, write_wav
from musicgan.errors import DataError, UserError
from musicgan.metrics import audio as audio_metrics

PLAYERS_PER_SET = 2  # clips with a player and a spectrogram in the report
METRIC_ORDER = (
    "frechet_log_mel",
    "copy_distance",
    "spectral_flatness",
    "silence_ratio",
    "rms_variation",
    "click_ratio",
)


@dataclass
class AudioSet:
    name: str
    paths: list[Path]
    rate: int
    block: int
    clips: list[np.ndarray] = field(default_factory=list)


def wav_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.wav") if p.is_file())


def audio_samples_dir(run_dir: Path) -> Path | None:
    """The run's newest samples folder that holds WAVs and no MIDI (an audio model's), else None."""
    samples = Path(run_dir) / "samples"
    folders = [samples / "final"] + sorted(samples.glob("epoch-*"), reverse=True) if samples.is_dir() else []
    for folder in folders:
        if folder.is_dir() and wav_files(folder) and not list(folder.glob("*.mid")):
            return folder
    return None


def _block_size(run_dir: Path) -> int:
    """Samples per frame of the run's representation (the block grid clicks are measured on)."""
    config = Path(run_dir) / "config.json"
    if not config.is_file():
        return 0
    data = json.loads(config.read_text(encoding="utf-8")).get("data", {})
    return int(data.get("block_size", 0)) // (2 if data.get("overlap") else 1)


def load_set(path: str, name: str | None = None) -> AudioSet:
    """A run directory (its newest audio samples) or a folder of WAVs, all at one rate."""
    root = Path(path)
    folder = audio_samples_dir(root) if (root / "samples").is_dir() else root
    paths = wav_files(folder) if folder is not None and folder.is_dir() else []
    if not paths:
        raise DataError(f"{path} has no WAV samples (an audio run's samples/final, or a folder of .wav files)")
    clips, rates = [], set()
    for item in paths:
        pcm, rate = read_wav(item)
        clips.append(from_pcm16(pcm).astype(np.float64))
        rates.add(rate)
    if len(rates) != 1:
        raise DataError(f"the WAVs of {path} mix sample rates {sorted(rates)}")
    return AudioSet(name or root.name, paths, rates.pop(), _block_size(root), clips)


def real_clips(
    reference: str, split: str, rate: int, length: int | None, max_songs: int | None, seed: int
) -> list[np.ndarray]:
    """One seeded window of `length` samples (None: the whole song) per real song of `split`
    with audio at `rate`."""
    from musicgan.data.loader import iter_songs
    from musicgan.data.shards import split_urls

    rng = np.random.default_rng(seed)
    clips = []
    for song in iter_songs(split_urls(reference, split)):
        if song.audio is None or song.audio_rate != rate or len(song.audio) < (length or 1):
            continue
        size = length or len(song.audio)
        start = int(rng.integers(0, len(song.audio) - size + 1))
        clips.append(from_pcm16(song.audio[start : start + size]).astype(np.float64))
        if max_songs and len(clips) >= max_songs:
            break
    if not clips:
        raise DataError(
            f"split {split!r} of {reference} has no song with audio at {rate} Hz of {(length or 1) / rate:g} s: "
            f"prepare it with --audio-rate {rate}"
        )
    return clips


def run_audio_evaluate(
    *,
    run: str,
    reference: str,
    split: str = "valid",
    compare: Sequence[str] = (),
    out: str,
    max_songs: int | None = None,
    seed: int = 0,
    report: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Score a run's WAV samples (and other runs / WAV folders) against real audio; write
    metrics.json (+ index.html) under `out`; return the metrics.json content."""
    sets = [load_set(run)] + [load_set(c) for c in compare]
    first = sets[0]
    if any(s.rate != first.rate for s in sets):
        raise UserError(
            "evaluate: the compared audio sets have different sample rates: "
            + ", ".join(f"{s.name} {s.rate} Hz" for s in sets)
        )
    length = min(len(c) for s in sets for c in s.clips)
    real = real_clips(reference, split, first.rate, length, max_songs, seed)
    train = real_clips(reference, "train", first.rate, None, max_songs, seed)  # whole songs: any frame may be copied
    block = first.block
    result = {
        "reference": {
            "path": str(reference),
            "split": split,
            "num_clips": len(real),
            "rate": first.rate,
            "clip_seconds": length / first.rate,
            "block_size": block,
        },
        "sets": {
            s.name: {
                "path": str(s.paths[0].parent),
                "num_clips": len(s.clips),
                "metrics": audio_metrics.set_metrics([c[:length] for c in s.clips], real, train, first.rate, block),
            }
            for s in sets
        },
        "calibration": audio_metrics.calibration(real, train, first.rate, block, seed),
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if report:
        write_audio_report(out_dir, result, sets, real)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, allow_nan=True), encoding="utf-8")
    for line in audio_summary_lines(result):
        echo(line)
    echo(f"report: {out_dir / 'index.html'}" if report else f"metrics: {out_dir / 'metrics.json'}")
    return result


def _rows(result: dict) -> list[tuple[str, dict]]:
    rows = [(name, s["metrics"]) for name, s in result["sets"].items()]
    return rows + [(f"calibration: {name}", values) for name, values in result["calibration"].items()]


def audio_summary_lines(result: dict) -> list[str]:
    lines = [
        "audio metrics vs " + f"{result['reference']['path']} ({result['reference']['split']}, "
        f"{result['reference']['num_clips']} clips of {result['reference']['clip_seconds']:.2f} s):",
        "  " + "set".ljust(28) + "".join(m.rjust(18) for m in METRIC_ORDER),
    ]
    for name, values in _rows(result):
        lines.append("  " + name[:28].ljust(28) + "".join(f"{values.get(m, float('nan')):18.4g}" for m in METRIC_ORDER))
    return lines


def write_audio_report(out_dir: Path, result: dict, sets: list[AudioSet], real: list[np.ndarray]) -> Path:
    """index.html: the metrics table (calibration rows included), then per set a few clips
    with an audio player and a spectrogram. Every name and path from outside is escaped."""
    from musicgan.plots import spectrogram_png

    rate = result["reference"]["rate"]
    clips = {s.name: s.clips[:PLAYERS_PER_SET] for s in sets}
    clips["real"] = real[:PLAYERS_PER_SET]
    sections = []
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    for index, (name, waves) in enumerate(clips.items()):
        items = []
        for k, wave_ in enumerate(waves):
            stem = f"set{index:02d}-{k:02d}"
            write_wav(wave_.astype(np.float32), out_dir / "audio" / f"{stem}.wav", rate)
            spectrogram_png(wave_, rate, out_dir / "plots" / f"{stem}.png", title=f"{name} #{k}")
            items.append(
                f'<figure><audio controls preload="none" src="audio/{stem}.wav"></audio>'
                f'<img src="plots/{stem}.png" alt="{html.escape(name)} spectrogram" loading="lazy"></figure>'
            )
        sections.append(f"<h2>{html.escape(name)}</h2>" + "".join(items))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ("set",) + METRIC_ORDER)
    body = "".join(
        "<tr><td>"
        + html.escape(name)
        + "</td>"
        + "".join(f"<td>{values.get(m, float('nan')):.4g}</td>" for m in METRIC_ORDER)
        + "</tr>"
        for name, values in _rows(result)
    )
    ref = result["reference"]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>musicgan audio evaluation</title></head><body>"
        f"<h1>Audio evaluation</h1><p>Reference: {html.escape(ref['path'])} (split {html.escape(ref['split'])}, "
        f"{ref['num_clips']} clips of {ref['clip_seconds']:.2f} s at {rate} Hz)</p>"
        f"<table border='1'><tr>{head}</tr>{body}</table>" + "".join(sections) + "</body></html>"
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
