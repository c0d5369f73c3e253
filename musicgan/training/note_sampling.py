"""`musicgan sample --pitches ...`: notes of chosen pitches from a pitch-conditioned run
(a family with `generate_notes(networks, pitches, z)`: GANSynth), as WAVs (decoded through
the run's own representation, `decode_audio`) with a spectrogram picture each.

`--interpolate N` morphs timbre as the GANSynth paper shows: per pitch, N notes whose
latents lie evenly on the straight line between two random latents (pitch held fixed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from musicgan.errors import UserError
from musicgan.training.sampling import decode_all, load_run, write_songs


def parse_pitches(text: str) -> list[int]:
    """ "48,55,60" -> [48, 55, 60]; UserError on anything else."""
    try:
        pitches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--pitches takes MIDI pitches separated by commas (48,55,60), got {text!r}") from None
    if not pitches:
        raise UserError("--pitches needs at least one MIDI pitch")
    return pitches


def line_latents(start: torch.Tensor, end: torch.Tensor, count: int) -> torch.Tensor:
    """(count, latent): start, evenly spaced points, end (start alone when count is 1)."""
    weights = torch.linspace(0.0, 1.0, count).unsqueeze(1) if count > 1 else torch.zeros(1, 1)
    return torch.lerp(start.unsqueeze(0), end.unsqueeze(0), weights)


def note_latents(latent_dim: int, num: int, interpolate: bool) -> torch.Tensor:
    """(num, latent): independent draws, or the line between two draws."""
    if interpolate:
        start, end = torch.randn(2, latent_dim)
        return line_latents(start, end, num)
    return torch.randn(num, latent_dim)


def sample_notes(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    pitches: Sequence[int],
    num: int,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    interpolate: bool = False,
) -> list[Path]:
    """`num` notes per pitch (pitchNNN-III.wav + .png in `out_dir`); see the module docstring."""
    if num < 1:
        raise UserError("--num must be at least 1")
    cfg, family, representation, networks, path = load_run(run_dir, checkpoint)
    if not hasattr(family, "generate_notes"):
        raise UserError(
            f"--pitches needs a pitch-conditioned run (model.name=gansynth); {run_dir} is model.name={cfg.model.name}"
        )
    torch.manual_seed(seed)
    paths = []
    for pitch in pitches:
        z = note_latents(cfg.model.latent_dim, num, interpolate)
        steps = family.generate_notes(networks, [pitch] * num, z)
        prefix = f"{'morph-' if interpolate else ''}pitch{pitch:03d}"
        paths += write_songs(decode_all(representation, steps), Path(out_dir), prefix=prefix)
    print(f"[musicgan] wrote {len(paths)} notes of pitches {','.join(map(str, pitches))} from {path} to {out_dir}")
    return paths


# -- evaluation of a pitch-conditioned run (musicgan.metrics.notes) --------------------------------
def note_images(family, representation, urls) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, 2, T, bins), pitch classes (n,)) of every note of `urls`, as training sees them."""
    from musicgan.data.loader import iter_encoded
    from musicgan.training.families.gansynth import pitch_one_hot, to_image

    frames, pitches = [], []
    for song, steps in iter_encoded(urls, representation):
        if len(steps) >= family.cfg.curriculum.max_len and "pitch" in song.labels:
            frames.append(torch.from_numpy(steps[: family.cfg.curriculum.max_len]))
            pitches.append(song.labels["pitch"])
    if not frames:
        raise UserError("no notes with pitch labels in the reference shards")
    stacked = torch.stack(frames)
    classes, _ = pitch_one_hot(torch.tensor(pitches), family.cfg)
    return to_image(stacked, stacked.shape[2] // 2), classes


def evaluate_notes(
    run_dir: str | Path, reference: str | Path, *, split: str = "valid", seed: int = 0, ndb_bins: int = 10
) -> dict[str, dict[str, float]]:
    """Pitch accuracy, pitch entropy, Frechet and NDB of the run's notes (conditioned on the
    held-out notes' pitches), of the held-out real notes themselves and of uniform noise."""
    from musicgan.data.shards import split_urls
    from musicgan.metrics import notes
    from musicgan.training.families.gansynth import to_image

    cfg, family, representation, networks, _ = load_run(run_dir)
    train_urls, held_urls = split_urls(reference, "train"), split_urls(reference, split)
    train_images, train_classes = note_images(family, representation, train_urls)
    held_images, held_classes = note_images(family, representation, held_urls)
    if len(held_images) < 2:
        raise UserError(
            f"the {split} split of {reference} has {len(held_images)} note(s): the Frechet distance "
            "needs at least 2 (use a larger split, e.g. --split train to check the pipeline)"
        )
    classifier = notes.cached_classifier(
        train_urls, train_images, train_classes, cfg.model.num_pitches, encoding=representation.state_dict()
    )
    centroids = notes.ndb_bins(notes.log_spectra(train_images), min(ndb_bins, len(train_images)), seed)
    torch.manual_seed(seed)
    pitches = (held_classes + cfg.model.min_pitch).tolist()
    generated = family.generate_notes(networks, pitches, torch.randn(len(pitches), cfg.model.latent_dim))
    generated = to_image(torch.from_numpy(generated), generated.shape[2] // 2)
    sets = {"generated": generated, "real held-out": held_images, "noise": notes.noise_images(held_images, seed)}
    return {
        name: notes.note_metrics(classifier, train_images, centroids, images, held_classes)
        for name, images in sets.items()
    }


def is_pitch_conditioned(run_dir: str | Path) -> bool:
    """Does the run's family generate notes of chosen pitches (from its config.json)?"""
    import json

    from musicgan.config import from_dict
    from musicgan.training.families import get_family

    path = Path(run_dir) / "config.json"
    return path.is_file() and hasattr(get_family(from_dict(json.loads(path.read_text()))), "generate_notes")


def write_note_evaluation(results: dict[str, dict[str, float]], out_dir: str | Path) -> Path:
    """metrics.json in `out_dir` and a table on stdout."""
    import json

    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("| set | pitch accuracy | pitch entropy (bits) | Frechet | NDB |\n|---|---|---|---|---|")
    for name, m in results.items():
        print(
            f"| {name} | {m['pitch_accuracy']:.3f} | {m['pitch_entropy']:.3f} | {m['frechet']:.3g} | {m['ndb']:.2f} |"
        )
    return path
