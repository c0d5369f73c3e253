"""Generated samples: from networks to songs, MIDI files, piano rolls and metrics.

Used by the training loop (a sample round every few epochs and at the end) and by
`musicgan sample` (any checkpoint of any run, either backend).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from musicgan.config import apply_overrides, from_dict, validate
from musicgan.data.midi import write_midi
from musicgan.data.song import Song
from musicgan.distributed import collectives
from musicgan.errors import DataError, UserError
from musicgan.metrics import runs
from musicgan.training import checkpoint as ckpt
from musicgan.training.families import ModelFamily, get_family

log = logging.getLogger("musicgan")


def decode_all(representation, steps: np.ndarray) -> list[Song]:
    """(N, L, F) generated steps -> N songs through the run's own representation."""
    return [representation.decode(row) for row in steps]


def write_songs(
    songs: list[Song], out_dir: Path, *, prefix: str = "sample", png: bool = True, audio: bool = False
) -> list[Path]:
    """sample-000.mid (+ .png piano roll, one panel per track for multi-track songs, + .wav
    where requested) per song; a song decoded by an audio representation (it carries audio,
    no notes) is written as sample-000.wav only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, song in enumerate(songs):
        path = out_dir / f"{prefix}-{index:03d}.mid"
        if song.audio is not None and not song.num_notes:
            paths.append(_write_decoded_audio(song, path.with_suffix(".wav")))
            if png:
                from musicgan.plots import spectrogram_png

                spectrogram_png(
                    song.audio, song.audio_rate, path.with_suffix(".png"), title=path.with_suffix(".wav").name
                )
            continue
        write_midi(song, path)
        if png:
            from musicgan.plots import piano_roll_png, song_multitrack_png

            picture = song_multitrack_png if len(song.tracks) > 1 else piano_roll_png  # a panel per track
            picture(song, path.with_suffix(".png"), title=path.name)
        if audio:
            from musicgan.audio import render_wav

            render_wav(song, path.with_suffix(".wav"))
        paths.append(path)
    return paths


def _write_decoded_audio(song: Song, path: Path) -> Path:
    from musicgan.audio import write_wav

    write_wav(song.audio, path, song.audio_rate)
    return path


def _summary(songs: list[Song]) -> dict[str, float]:
    from musicgan.metrics import crnngan_summary

    return {k: float(v) for k, v in crnngan_summary(songs).items()}


def sample_round(
    family: ModelFamily,
    networks: dict,
    representation,
    out_dir: Path,
    *,
    num_samples: int,
    metric_samples: int,
    length: int,
    png: bool,
    logger=None,
    step: int = 0,
) -> dict:
    """Generate, write `num_samples` MIDI files, score `metric_samples` songs (rank 0 only).
    Piano-roll PNGs cost ~0.5 s each (matplotlib): written for the final round only; the
    epoch rounds put one piano roll into the `logger`'s TensorBoard instead."""
    steps = family.generate(networks, max(num_samples, metric_samples), length)
    songs = decode_all(representation, steps)
    write_songs(songs[:num_samples], out_dir, png=png)
    if songs and logger is not None:
        try:
            from musicgan.plots import piano_roll_image

            logger.image("samples/piano_roll", step, piano_roll_image(songs[0]))
        except Exception as exc:  # noqa: BLE001 - a picture must never stop training
            log.warning("piano-roll image failed: %s", exc)
    return {f"gen/{k}": v for k, v in _summary(songs[:metric_samples]).items()}


def shared_sample_round(
    family: ModelFamily,
    networks: dict,
    representation,
    cfg,
    out_dir: Path,
    *,
    logger,
    step: int,
    is_main: bool,
    real_metrics: dict | None,
) -> dict:
    """The training loop's sample round into `out_dir` (samples/<label>), called on every rank:
    rank 0 runs `sample_round` (cfg.log.num_samples files of cfg.curriculum.max_len steps,
    cfg.log.metric_samples songs scored; PNGs for the "final" round only) and adds the real
    songs' metrics (`real_metrics`); every rank gets the result (one broadcast)."""
    metrics = None
    if is_main:
        metrics = sample_round(
            family,
            networks,
            representation,
            out_dir,
            num_samples=cfg.log.num_samples,
            metric_samples=cfg.log.metric_samples,
            length=cfg.curriculum.max_len,
            png=out_dir.name == "final",
            logger=logger,
            step=step,
        )
        metrics.update(real_metrics or {})
    return collectives.broadcast_object(metrics, "sample metrics")


def real_windows(cfg, representation, train_urls: list[str], num_songs: int, length: int) -> list[Song]:
    """One seeded random window of `length` steps per real song, decoded back to a song, so
    real and generated metrics are measured on equally long excerpts (as the paper does).
    Windows start where the loader's would (bar lines for bar-based representations); songs
    the representation skips or that are shorter than a bar-aligned window are left out."""
    from musicgan.data.loader import iter_encoded, window_start
    from musicgan.data.shards import split_urls

    try:
        urls = split_urls(cfg.data.path, "valid")
    except DataError:
        urls = train_urls  # tiny datasets may have no valid split
    rng = np.random.default_rng(cfg.train.seed)
    songs = []
    for _, steps in iter_encoded(urls, representation):
        start = window_start(len(steps), length, representation.window_align, rng) if len(steps) else None
        if start is None:
            continue
        songs.append(representation.decode(steps[start : start + length]))
        if len(songs) >= num_songs:
            break
    return songs


def real_metrics(cfg, representation, train_urls: list[str]) -> dict:
    songs = real_windows(cfg, representation, train_urls, cfg.log.metric_songs, cfg.curriculum.max_len)
    return {f"real/{k}": v for k, v in _summary(songs).items()} if songs else {}


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None, overrides: Sequence[str] = ()):
    """(config, family, representation, networks, checkpoint path) of any run, any backend.
    `overrides` ("key=value") may set the family's `sampling_keys` only."""
    path = ckpt.resolve_checkpoint(run_dir, checkpoint)
    state = ckpt.load_checkpoint(path)
    if "config" not in state:
        raise UserError(f"{path} is not a musicgan checkpoint (no config)")
    cfg = from_dict(state["config"])
    if overrides:
        allowed = get_family(cfg).sampling_keys
        for item in overrides:
            if item.split("=", 1)[0].strip() not in allowed:
                raise UserError(
                    f"sample --set {item!r}: a {cfg.model.name} run can change only "
                    f"{', '.join(allowed) or 'nothing'} at sampling time"
                )
        cfg = validate(apply_overrides(cfg, list(overrides)))
    family: ModelFamily = get_family(cfg)
    representation = family.build_representation()
    if state.get("representation"):
        representation.load_state_dict(state["representation"])
    networks = family.build_networks(representation)
    for name, net in networks.items():
        ckpt.load_network(net, ckpt.network_state(state, name), name=name, source=path)
        net.eval()
    return cfg, family, representation, networks, path


# The evaluate metrics that score a run's model load it through metrics/runs.py (metrics/ never imports training/).
runs.provide_run_loader(load_run)


def sample_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    num: int,
    length: int,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    audio: bool = False,
    overrides: Sequence[str] = (),
    seconds: float | None = None,
    conditions: dict[str, str] | None = None,
) -> list[Path]:
    """`musicgan sample`: N MIDI files (+ piano-roll PNGs, + WAVs) from a run's checkpoint; N WAVs
    (+ spectrogram PNGs) when the run's representation is an audio one, `seconds` long when given.
    `conditions` (e.g. {"chords": "C G Am F"}) go to families that declare them in
    `sample_conditions`."""
    if num < 1 or length < 1:
        raise UserError("--num and --length must be at least 1")
    if seconds is not None and not seconds > 0:
        raise UserError(f"--seconds must be a positive number, got {seconds}")
    _, family, representation, networks, path = load_run(run_dir, checkpoint, overrides)
    given = {k: v for k, v in (conditions or {}).items() if v is not None}
    for key in given:
        if key not in family.sample_conditions:
            raise UserError(f"sample --{key}: model.name={family.name} takes no {key}")
    if seconds is not None:
        length = _frames_for_seconds(representation, seconds)
    torch.manual_seed(seed)
    songs = decode_all(representation, family.generate(networks, num, length, **given))
    if seconds is not None:
        songs = [trim_audio(song, seconds) for song in songs]
    paths = write_songs(songs, Path(out_dir), audio=audio)
    print(f"[musicgan] wrote {len(paths)} samples from {path} to {out_dir}")
    return paths


def _frames_for_seconds(representation, seconds: float) -> int:
    if not hasattr(representation, "frames_for_seconds"):
        raise UserError(
            f"--seconds needs a run on an audio representation; this one is {representation.name!r} (use --length)"
        )
    return representation.frames_for_seconds(seconds)


def trim_audio(song: Song, seconds: float) -> Song:
    """The song with its audio cut to exactly `seconds` (frames cover whole blocks)."""
    return song.replace(audio=song.audio[: int(round(seconds * song.audio_rate))])
