"""`musicgan` subcommands: prepare, merge-manifests, train, sample, evaluate, listening-results, bench, oracle.

Thin on purpose: parse arguments, build the config, call the library. A user error prints
`error: <one line>` and exits 2 (no traceback; MUSICGAN_DEBUG=1 shows it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from musicgan.errors import UserError, first_line


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.9,0.05,0.05, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"split ratios must be three non-negative numbers summing to 1, got {text!r}")
    return parts  # type: ignore[return-value]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None
    if min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicgan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="MIDI folder or music21 corpus -> WebDataset shards")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--midi-dir", help="folder of .mid/.midi files (recursive)")
    source.add_argument("--corpus", help="bundled corpus, e.g. music21:bach")
    p.add_argument("--out", required=True, help="output shard directory")
    p.add_argument("--workers", type=int, default=None, help="parallel parsers (default: all cores)")
    p.add_argument("--shard-size", type=int, default=200, help="songs per shard")
    p.add_argument("--split-ratios", type=_ratios, default=(0.9, 0.05, 0.05), help="train,valid,test")
    p.add_argument("--limit", type=int, default=None, help="only the first N inputs (smoke tests)")
    p.add_argument("--task-index", type=int, default=None, help="SLURM array: this task's slice")
    p.add_argument("--num-tasks", type=int, default=None, help="SLURM array: number of slices")
    p.add_argument(
        "--audio-rate",
        type=int,
        default=None,
        metavar="HZ",
        help="also render each song once with FluidSynth (mono int16 at HZ, e.g. 16000) into the shards",
    )

    p = sub.add_parser("merge-manifests", help="merge the per-task manifests of an array prepare")
    p.add_argument("--out", required=True, help="the shard directory the tasks wrote into")

    p = sub.add_parser("train", help="train a model (one process, or one rank under torchrun/srun)")
    p.add_argument("--data", help="prepared shard directory")
    p.add_argument("--run-dir", required=True, help="checkpoints, logs and samples go here")
    p.add_argument("--preset", default="crnngan-paper", help="named config (see musicgan/presets.py)")
    p.add_argument("--config", help="JSON file with config values (applied after the preset)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=10 (repeatable)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a run directory that holds an earlier run: its files move to RUN_DIR/archive/<time>/",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--deepspeed-config", help="DeepSpeed JSON merged over the derived engine configs")

    p = sub.add_parser("sample", help="write MIDI samples from a run's checkpoint")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--checkpoint", help="checkpoint file (default: the newest valid one)")
    p.add_argument("--num", type=int, default=8)
    p.add_argument("--length", type=int, default=100, help="steps of the representation")
    p.add_argument(
        "--seconds", type=float, default=None, help="audio runs: length of each WAV in seconds (instead of --length)"
    )
    p.add_argument("--out", help="output folder (default: RUN/samples/sampled)")
    p.add_argument(
        "--chords", help='MidiNet: one chord per bar, e.g. "C G Am F C G C C" (default: a held-out song\'s progression)'
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audio", action="store_true", help="also render WAV (FluidSynth or sine)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a sampling option of the run's family (its `sampling_keys`): model.sample_dropout "
        "(C-RNN-GAN/MLE: sample with dropout, default true), model.rbm_generation, "
        "model.sample_gibbs_steps, model.midinet_prime "
        "(zeros|real), model.midinet_decode (argmax|threshold), model.midinet_sample_bn "
        "(running|batch), model.jazzgan_decode (sample|argmax), model.sample_temperature",
    )
    p.add_argument(
        "--pitches",
        help="pitch-conditioned runs (gansynth): --num notes of each MIDI pitch, e.g. "
        "48,55,60,67 (WAV + spectrogram PNG each)",
    )
    p.add_argument(
        "--interpolate",
        action="store_true",
        help="with --pitches: per pitch, --num notes on the line between two random latents (timbre morphing)",
    )

    p = sub.add_parser("evaluate", help="compare generated music with a real split")
    gen = p.add_mutually_exclusive_group()
    gen.add_argument("--run", help="training run directory (uses its latest samples and log)")
    gen.add_argument("--generated", help="folder of generated MIDI files")
    p.add_argument("--reference", required=True, help="shard directory or MIDI folder of real music")
    p.add_argument("--split", default="valid")
    p.add_argument("--compare", nargs="*", default=[], help="other runs or MIDI folders to compare")
    p.add_argument("--out", help="report folder (required unless --listening-kit)")
    p.add_argument("--max-songs", type=int, default=None)
    p.add_argument(
        "--reference-window",
        default="auto",
        help="crop real songs to the generated length: auto (default), none, or N notes",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="which songs are subsampled to equal counts and where windows start (0: the tables' seed)",
    )
    p.add_argument("--no-audio", action="store_true", help="render no audio for the report")
    p.add_argument("--no-report", action="store_true", help="write metrics.json only")
    p.add_argument(
        "--listening-kit",
        metavar="DIR",
        help="audio runs: write a blind listening test of --run and --compare runs plus real clips "
        "(DIR/kit for the raters, DIR/answer_key.json kept apart) instead of metrics",
    )
    p.add_argument("--kit-clips", type=int, default=5, help="clips per model (and real clips) in the kit")

    p = sub.add_parser(
        "listening-results", help="aggregate a listening kit's ratings: mean and 95%% interval per model"
    )
    p.add_argument("kit", help="the folder given to evaluate --listening-kit")
    p.add_argument("ratings", nargs="+", help="rating CSV files saved by the kit's page")

    p = sub.add_parser("bench", help="speed benchmarks (JSON + Markdown table)")
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument(
        "--scaling-curves",
        action="store_true",
        help="instead: step time, prepare and evaluate time and peak RSS against sizes, fitted and plotted",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="--scaling-curves: replace one row of the grid (seq_len, batch_size, hidden, prepare_songs, "
        "evaluate_songs, steps, warmup; prepare_songs takes 'all'); repeatable",
    )
    p.add_argument(
        "--plots",
        default=None,
        help="folder for the scaling curves' PNGs (default: OUT-curves/ beside --out for the suite, "
        "the folder of --out for --scaling-curves)",
    )

    p = sub.add_parser("oracle", help="SeqGAN's oracle experiment: NLL-oracle of random G, MLE and SeqGAN")
    p.add_argument("--preset", default="seqgan-oracle", help="a seqgan preset (seqgan-oracle, seqgan-oracle-debug)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated oracle seeds, e.g. 0,1,2")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value (repeatable)",
    )
    return parser


def resolve_config(args: argparse.Namespace):
    from musicgan.config import apply_overrides, load_config_file, validate
    from musicgan.data.paths import resolve_data_dir
    from musicgan.presets import get_preset

    cfg = get_preset(args.preset)
    if args.config:
        load_config_file(cfg, args.config)
    apply_overrides(cfg, args.overrides)
    if args.data:
        cfg.data.path = args.data
    if cfg.data.path:  # --data, --set data.path or --config: one resolver (absolute: Ray trials chdir)
        cfg.data.path = str(resolve_data_dir(cfg.data.path))
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps
    return validate(cfg)


def cmd_prepare(args) -> int:
    from musicgan.data.prepare import prepare_dataset

    spec = args.corpus if args.corpus else args.midi_dir
    kwargs = {}
    if args.task_index is not None or args.num_tasks is not None:
        if args.task_index is None or args.num_tasks is None or not 0 <= args.task_index < args.num_tasks:
            raise UserError("--task-index I and --num-tasks N go together, with 0 <= I < N")
        kwargs["partition"] = (args.task_index, args.num_tasks)
    if args.limit is not None:
        kwargs["limit"] = args.limit
    if args.audio_rate is not None:
        kwargs["audio_rate"] = args.audio_rate
    manifest = prepare_dataset(
        spec, args.out, workers=args.workers, shard_size=args.shard_size, ratios=args.split_ratios, **kwargs
    )
    print_manifest_summary(manifest, args.out)
    return 0


def print_manifest_summary(manifest: dict, out: str) -> None:
    splits = manifest.get("splits", {})
    parts = [
        f"{name}: {info.get('songs', 0)} songs, {info.get('notes', 0)} notes, {info.get('shards', 0)} shards"
        for name, info in splits.items()
    ]
    print(f"[musicgan] {out}: " + "; ".join(parts))
    print(f"[musicgan] included {len(manifest.get('included', []))}, skipped {len(manifest.get('skipped', []))}")
    from musicgan.data.paths import printable

    for item in manifest.get("skipped", [])[:10]:
        print(f"  skipped {printable(item['path'])}: {printable(item['reason'])}")


def cmd_merge(args) -> int:
    from musicgan.data.prepare import merge_manifests

    print_manifest_summary(merge_manifests(args.out), args.out)
    return 0


def cmd_train(args) -> int:
    cfg = resolve_config(args)
    if args.dry_run:
        print(cfg.to_json())
        return 0
    if not cfg.data.path:
        raise UserError("--data is required (a directory made by `musicgan prepare`)")
    from musicgan.training.loop import train

    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    resume = args.resume or restarts > 0  # a torchrun restart continues, never archives again
    result = train(
        cfg,
        args.run_dir,
        resume=resume,
        overwrite=args.overwrite and not resume,
        deepspeed_config=args.deepspeed_config,
    )
    if int(os.environ.get("RANK", "0") or 0) == 0 and result.finished:
        print(
            f"[musicgan] finished at step {result.step}: checkpoint {result.checkpoint}, samples in "
            f"{Path(args.run_dir) / 'samples'}"
        )
    return 0


def cmd_sample(args) -> int:
    if args.pitches or args.interpolate:
        return cmd_sample_notes(args)
    from musicgan.training.sampling import sample_run

    out = args.out or str(Path(args.run) / "samples" / "sampled")
    sample_run(
        args.run,
        out,
        num=args.num,
        length=args.length,
        seed=args.seed,
        checkpoint=args.checkpoint,
        audio=args.audio,
        overrides=args.set,
        seconds=args.seconds,
        conditions={"chords": args.chords},
    )
    return 0


def cmd_sample_notes(args) -> int:
    from musicgan.training.note_sampling import parse_pitches, sample_notes

    if not args.pitches:
        raise UserError("--interpolate needs --pitches")
    sample_notes(
        args.run,
        args.out or str(Path(args.run) / "samples" / "sampled"),
        pitches=parse_pitches(args.pitches),
        num=args.num,
        seed=args.seed,
        checkpoint=args.checkpoint,
        interpolate=args.interpolate,
    )
    return 0


def cmd_evaluate(args) -> int:
    import musicgan.training.sampling  # noqa: F401 - hands metrics/runs.py the loader its model metrics use
    from musicgan.metrics.evaluate import run_evaluate
    from musicgan.training.note_sampling import is_pitch_conditioned

    if args.listening_kit:
        from musicgan.metrics.listening import make_listening_kit

        if args.generated:
            raise UserError("--listening-kit compares audio runs: use --run RUN and/or --compare RUN ...")
        make_listening_kit(
            args.listening_kit,
            ([args.run] if args.run else []) + list(args.compare),
            args.reference,
            split=args.split,
            clips_per_model=args.kit_clips,
        )
        return 0
    if not args.out:
        raise UserError("evaluate needs --out DIR (the report folder)")
    if args.run and is_pitch_conditioned(args.run):
        return cmd_evaluate_notes(args)

    window = args.reference_window
    if window == "none":
        window = None
    elif window != "auto":
        try:
            window = int(window)
        except ValueError:
            raise UserError(f"--reference-window must be auto, none or a number, got {window!r}") from None
    extra = {"audio": 0} if args.no_audio else {}
    run_evaluate(
        run=args.run,
        generated=args.generated,
        reference=args.reference,
        split=args.split,
        compare=tuple(args.compare),
        out=args.out,
        max_songs=args.max_songs,
        reference_window=window,
        report=not args.no_report,
        seed=args.seed,
        **extra,
    )
    return 0


def cmd_evaluate_notes(args) -> int:
    from musicgan.training.note_sampling import evaluate_notes, write_note_evaluation

    write_note_evaluation(evaluate_notes(args.run, args.reference, split=args.split), args.out)
    return 0


def cmd_listening_results(args) -> int:
    from musicgan.metrics.listening import listening_results

    listening_results(args.kit, args.ratings)
    return 0


def cmd_bench(args) -> int:
    if args.scaling_curves:
        from musicgan.benchmarks.curves import parse_grid, run_curves

        try:
            parse_grid(args.grid, "quick" if args.quick else "full")
        except ValueError as exc:
            raise UserError(str(exc)) from None
        run_curves(out=args.out, quick=args.quick, grid_entries=args.grid, plots_dir=args.plots)
        return 0
    if args.grid:
        raise UserError("--grid belongs to --scaling-curves (the suite's curves run a fixed small grid)")
    from musicgan.benchmarks.suite import run_suite

    run_suite(out=args.out, quick=args.quick, plots=args.plots)
    return 0


def cmd_oracle(args) -> int:
    from musicgan.config import apply_overrides, validate
    from musicgan.presets import get_preset
    from musicgan.training.oracle import run_oracle

    run_oracle(validate(apply_overrides(get_preset(args.preset), args.overrides)), args.seeds)
    return 0


COMMANDS = {
    "prepare": cmd_prepare,
    "merge-manifests": cmd_merge,
    "train": cmd_train,
    "sample": cmd_sample,
    "evaluate": cmd_evaluate,
    "listening-results": cmd_listening_results,
    "bench": cmd_bench,
    "oracle": cmd_oracle,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[musicgan] %(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    code = _run(args)
    if args.command == "train" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        from musicgan.distributed.env import exit_now

        exit_now(code)  # skip interpreter finalisation: see exit_now
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if os.environ.get("MUSICGAN_DEBUG"):
            traceback.print_exc()
        first = first_line(exc) if str(exc).strip() else ""  # the type is printed already
        print(
            f"error: unexpected {type(exc).__name__}: {first} (MUSICGAN_DEBUG=1 shows the traceback)", file=sys.stderr
        )
        return 1
