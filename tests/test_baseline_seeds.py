"""The seed table of `python -m musicgan.benchmarks.baseline_seeds` read from real evaluations:
songs from the reference's own generator ("gen") against uniformly random notes ("rand"),
evaluated twice (two "seeds") the way the module evaluates a GAN against its baseline."""

from __future__ import annotations

from pathlib import Path

from midi_factory import make_song

from musicgan.benchmarks.baseline_seeds import PAPER_STATISTICS, main
from musicgan.data.midi import write_midi
from musicgan.metrics.compare import random_songs
from musicgan.metrics.evaluate import run_evaluate


def write_folder(folder: Path, songs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, song in enumerate(songs):
        write_midi(song, folder / f"sample-{i:03d}.mid")
    return folder


def evaluate_seed(out: Path, seed: int, reference: Path) -> None:
    gen = write_folder(
        out / f"seed-{seed}" / "gen", [make_song(seed=100 + 10 * seed + i, num_onsets=30) for i in range(8)]
    )
    rand = write_folder(out / f"seed-{seed}" / "rand", random_songs(8, seed=seed))
    run_evaluate(
        generated=str(gen),
        compare=[str(rand)],
        reference=str(reference),
        out=str(out / f"seed-{seed}" / "eval"),
        cache_root=out / "cache",
        report=False,
        echo=lambda line: None,
    )


def test_table_over_seeds_counts_the_seeds_the_first_model_beats(tmp_path, midi_folder, bach_shards, capsys):
    for seed in (0, 1):
        evaluate_seed(tmp_path, seed, midi_folder)
    common = ["--data", str(bach_shards), "--out", str(tmp_path), "--seeds", "0", "1", "--table-only"]
    assert main([*common, "--gan", "gen", "--baseline", "rand"]) == 0
    table = capsys.readouterr().out
    assert "on 2 of 2 seeds" in table and (tmp_path / "table.md").read_text().strip() == table.strip()
    assert all(f"| {name} |" in table for name in PAPER_STATISTICS)  # the paper's statistics, real / MLE / GAN
    assert "| random_vs_reference |" in table  # the random-notes floor beside the models
    assert main([*common, "--gan", "rand", "--baseline", "gen"]) == 0
    assert "on 0 of 2 seeds" in capsys.readouterr().out


def test_missing_evaluation_is_a_one_line_error(tmp_path, bach_shards, capsys):
    argv = ["--data", str(bach_shards), "--out", str(tmp_path), "--seeds", "3", "--table-only"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no evaluation for seed 3" in err and len(err.splitlines()) == 1


def test_baseline_from_reuses_finished_runs_and_refuses_an_unfinished_one(tmp_path, bach_shards, capsys):
    """`--baseline-from`: a seed whose baseline run did not finish in the earlier OUT is a
    one-line error before anything trains (no second baseline in the new OUT)."""
    earlier, out = tmp_path / "earlier", tmp_path / "out"
    unfinished = earlier / "seed-0" / "lstm-baseline-bach"
    unfinished.mkdir(parents=True)
    (unfinished / "log.jsonl").write_text('{"event": "started"}\n')
    argv = ["--data", str(bach_shards), "--out", str(out), "--seeds", "0", "--baseline-from", str(earlier)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no finished lstm-baseline-bach run for seed 0" in err and len(err.splitlines()) == 1
    assert not (out / "seed-0" / "crnngan-bach").exists()  # refused before the GAN trained
