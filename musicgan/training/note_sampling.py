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
    """"48,55,60" -> [48, 55, 60]; UserError on anything else."""
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


def sample_notes(run_dir: str | Path, out_dir: str | Path, *, pitches: Sequence[int], num: int, seed: int = 0,
                 checkpoint: str | Path | None = None, interpolate: bool = False) -> list[Path]:
    """`num` notes per pitch (pitchNNN-III.wav + .png in `out_dir`); see the module docstring."""
    if num < 1:
        raise UserError("--num must be at least 1")
    cfg, family, representation, networks, path = load_run(run_dir, checkpoint)
    if not hasattr(family, "generate_notes"):
        raise UserError(f"--pitches needs a pitch-conditioned run (model.name=gansynth); {run_dir} is "
                        f"model.name={cfg.model.name}")
    torch.manual_seed(seed)
    paths = []
    for pitch in pitches:
        z = note_latents(cfg.model.latent_dim, num, interpolate)
        steps = family.generate_notes(networks, [pitch] * num, z)
        prefix = f"{'morph-' if interpolate else ''}pitch{pitch:03d}"
        paths += write_songs(decode_all(representation, steps), Path(out_dir), prefix=prefix)
    print(f"[musicgan] wrote {len(paths)} notes of pitches {','.join(map(str, pitches))} from {path} to {out_dir}")
    return paths
