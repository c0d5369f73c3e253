"""MidiNet's melody table: generated 8-bar melodies vs the real held-out sopranos they take
their chords from vs a random-melody floor over the same chords, on the `melody` metrics.

All three sets are `melody_chord` steps decoded the same way (melody track + block-triad
chord track, 120 bpm), so only the melody differs:
    generated  the run's generator, bar by bar on each held-out song's chords (primed with zeros)
    real       bars 1-8 of the same held-out songs (test split, else valid): their sopranos
    random     one uniformly random pitch per quarter note in MIDI 60-83 (the reference's
               two octaves) over the same chords
Usage: python -m musicgan.benchmarks.melodies RUN_DIR [--num 100] [--bars 8] [--set KEY=VALUE ...]
(--set: sampling options for the generated set, e.g. model.midinet_decode=threshold)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from musicgan.metrics.registry import compute_metrics, summarize
from musicgan.models.midinet import NUM_PITCHES
from musicgan.training.sampling import decode_all, load_run

RANDOM_LOW, RANDOM_HIGH = 60, 83
STEPS_PER_NOTE = 4  # the random floor's notes are quarter notes (4 sixteenths)
COLUMNS = (
    "chord_tone_ratio",
    "distinct_pitches_per_bar",
    "melody_note_length",
    "melody_note_length_entropy",
    "melody_pitch_range",
    "melody_scale_consistency",
)


def random_melodies(real: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, T, 141) the real steps with each melody replaced by random quarter notes."""
    rng = np.random.default_rng(seed)
    out = real.copy()
    out[:, :, :NUM_PITCHES] = 0.0
    n, steps = real.shape[:2]
    pitches = rng.integers(RANDOM_LOW, RANDOM_HIGH + 1, (n, -(-steps // STEPS_PER_NOTE)))
    per_step = np.repeat(pitches, STEPS_PER_NOTE, axis=1)[:, :steps]
    out[np.arange(n)[:, None], np.arange(steps)[None], per_step] = 1.0
    return out


def melody_sets(
    run_dir: str, num: int, bars: int, seed: int = 0, overrides: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """{"generated", "real", "random"}: (num, bars x bar, 141) melody_chord steps each."""
    _, family, _, networks, _ = load_run(run_dir, overrides=["model.midinet_prime=zeros", *overrides])
    bar = family.bar
    songs = family.held_out_windows(bars + 1, num)
    real = np.stack([song[bar : (bars + 1) * bar] for song in songs])
    torch.manual_seed(seed)
    generated = family.generate(networks, num, bars * bar)
    return {"generated": generated, "real": real, "random": random_melodies(real, seed)}


def melody_table(run_dir: str, num: int = 100, bars: int = 8, seed: int = 0, overrides: tuple[str, ...] = ()) -> str:
    """A Markdown table: mean ± std of each melody metric per set."""
    _, _, representation, _, _ = load_run(run_dir)
    rows = ["| set | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, steps in melody_sets(run_dir, num, bars, seed, overrides).items():
        summary = summarize(compute_metrics(decode_all(representation, steps), "melody"))
        cells = [f"{summary[c]['mean']:.3f} ± {summary[c]['std']:.3f}" for c in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--num", type=int, default=100)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sampling option")
    args = parser.parse_args()
    print(melody_table(args.run_dir, args.num, args.bars, args.seed, tuple(args.set)))


if __name__ == "__main__":
    main()
