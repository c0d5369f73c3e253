"""The MuseGAN family end to end at toy size: the critic schedule with its warm-up in a real
run, multi-track samples, the evaluate hook, and two gloo ranks resuming in the middle of
a critic run exactly as the straight run."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pretty_midi
import pytest
import torch
from dist_helpers import assert_same_networks, final_weights, spawn, train_runs

from musicgan.config import apply_overrides
from musicgan.errors import ConfigError
from musicgan.presets import get_preset

STEPS = 14
RESUME_AT = 9  # musegan-debug: G trains at steps 2, 7, 12 (1-based); 9 is inside a critic run


def musegan_cfg(data: Path, *overrides: str):
    cfg = get_preset("musegan-debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            "log.interval=1",
            "log.tensorboard=false",
            "log.progress=false",
            "log.num_samples=2",
            "log.metric_samples=2",
            "log.metric_songs=4",
            *overrides,
        ],
    )


def read_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return list({r["step"]: r for r in rows if r["event"] == "train"}.values())


def test_debug_run_follows_the_critic_schedule_and_samples_four_tracks(bach_shards, tmp_path):
    from musicgan.training.loop import train
    from musicgan.training.sampling import sample_run

    # Half the cells on at init (torch's default), so that the toy G's samples hold notes.
    result = train(
        musegan_cfg(bach_shards, "train.max_steps=8", "model.musegan_initial_on_share=0.5"), tmp_path / "run"
    )
    rows = read_rows(tmp_path / "run")
    # Warm-up: 2 critic steps for the first generator step, then 5 per generator step.
    assert [r["updates/generator"] for r in rows] == [0, 1, 1, 1, 1, 1, 2, 2]
    assert [r["updates/critic"] for r in rows] == list(range(1, 9))
    state = torch.load(result.checkpoint, weights_only=True)
    assert sorted(state["networks"]) == ["critic", "generator"]
    paths = sample_run(tmp_path / "run", tmp_path / "samples", num=2, length=96)
    instruments = pretty_midi.PrettyMIDI(str(paths[0])).instruments
    assert [i.name for i in instruments] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert paths[0].with_suffix(".png").is_file()


def test_evaluate_hook_reports_generated_and_real_rows(bach_shards, tmp_path):
    from musicgan.metrics.evaluate import SetContext
    from musicgan.metrics.musegan import musegan_set_metric
    from musicgan.training.loop import train

    train(musegan_cfg(bach_shards, "train.max_steps=2"), tmp_path / "run")
    context = SetContext("run", "run", tmp_path / "run", [], Path(bach_shards), "shards", "valid")
    values = musegan_set_metric(context, num_bars=16)
    assert values["musegan/generated/num_bars"] == 16
    for row in ("generated", "real_valid", "real_train"):
        assert {f"musegan/{row}/EB/Soprano", f"musegan/{row}/UPC/Bass", f"musegan/{row}/TD/Alto-Tenor"} <= set(values)
    assert "musegan/real_valid/TD_shuffled/Soprano-Bass" in values
    other = SetContext("run", "midi", tmp_path / "run", [], Path(bach_shards), "shards", "valid")
    assert musegan_set_metric(other) == {}  # a MIDI folder: not a MuseGAN run

    from musicgan.benchmarks.musegan_bar_order import bar_order_report

    probe = bar_order_report(str(tmp_path / "run"), str(bach_shards))
    assert probe["phrases"] > 0 and probe["real_sd"] > 0 and probe["shuffled_minus_real_mean_abs"] > 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("data.num_pitches", "50", "whole octaves"),
        ("curriculum.max_len", "72", "whole bars"),
        ("data.representation", "pianoroll", "needs data.representation=multitrack"),
    ],
)
def test_bad_musegan_configs_are_one_line_errors(bach_shards, tmp_path, key, value, message):
    from musicgan.training.loop import train

    cfg = musegan_cfg(bach_shards, f"{key}={value}", *(["curriculum.start=72"] if key == "curriculum.max_len" else []))
    with pytest.raises(ConfigError, match=message):
        train(cfg, tmp_path / "run")


def _train_runs(data: Path, root: Path, runs) -> None:
    spawn(train_runs, 2, partial(musegan_cfg, data), str(root), runs, STEPS, RESUME_AT)


def test_two_ranks_resume_in_a_critic_run_equals_straight_run(bach_shards, tmp_path):
    _train_runs(bach_shards, tmp_path, [("ddp", []), ("ddp-resumed", [])])
    straight, resumed = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "ddp-resumed")
    assert straight["step"] == resumed["step"] == STEPS and straight["updates"] == {"critic": 14, "generator": 3}
    assert resumed["updates"] == straight["updates"]
    assert_same_networks(straight, resumed)


def test_two_ranks_resume_inside_the_learning_rate_decay_equals_straight_run(bach_shards, tmp_path):
    """The decay is the phase's `lr_factors`, set by the trainer before every step from the
    step counter: a run resumed in the middle of it takes the same (decayed) rates and ends
    with the same weights as the straight run."""
    decay = ["optim.lr_decay_start=0", "optim.lr_decay_end=4"]
    _train_runs(bach_shards, tmp_path, [("ddp", decay), ("ddp-resumed", decay)])
    straight, resumed = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "ddp-resumed")
    assert straight["step"] == resumed["step"] == STEPS and resumed["updates"] == straight["updates"]
    assert_same_networks(straight, resumed)


def test_linear_lr_decay_follows_generator_steps(bach_shards, tmp_path):
    from musicgan.training.loop import train

    # Generator steps at trainer steps 2 and 7 (1-based); the 8th step sets lr for 2 G steps
    # done of a decay over G steps 0 -> 4: half the configured rate.
    result = train(
        musegan_cfg(
            bach_shards, "train.max_steps=8", "optim.lr_decay_start=0", "optim.lr_decay_end=4", "log.num_samples=0"
        ),
        tmp_path / "run",
    )
    state = torch.load(result.checkpoint, weights_only=True)
    for name in ("generator", "critic"):
        assert state["optimizers"][name]["param_groups"][0]["lr"] == pytest.approx(0.5e-3), name


def _critic_only_rows(data: Path, run_dir: Path, gp_weight: float) -> list[dict]:
    """40 critic steps (G waits for the end of a 40-step warm-up run), a fast critic, and a
    G with half its cells on (torch's default shift), so real and fake batches lie far apart."""
    from musicgan.training.loop import train

    overrides = ["train.critic_warmup=40", "train.critic_warmup_g_steps=1", "train.max_steps=39", "optim.d_lr=0.01"]
    overrides.append("model.musegan_initial_on_share=0.5")
    train(musegan_cfg(data, f"train.gp_weight={gp_weight}", *overrides), run_dir)
    return read_rows(run_dir)[-8:]


def test_the_penalty_sets_the_critic_slope_and_the_slope_explains_the_wasserstein_estimate(bach_shards, tmp_path):
    """A soft penalty: the critic's slope at x̂ settles near 1 + d / (2 λ) for real and fake
    batches d apart (about 1 at λ 1000, far above 1 at λ 10), and the Wasserstein estimate
    is about slope x d, far above the d a 1-Lipschitz critic allows."""
    mean = lambda rows, key: sum(r[f"stats/{key}"] for r in rows) / len(rows)  # noqa: E731
    strict = _critic_only_rows(bach_shards, tmp_path / "strict", 1000.0)
    soft = _critic_only_rows(bach_shards, tmp_path / "soft", 10.0)
    assert 0.6 < mean(strict, "critic_slope") < 1.5
    distance, slope = mean(soft, "batch_distance"), mean(soft, "critic_slope")
    assert slope > 4.0 and slope < 1.0 + distance / 20.0 + 1.0
    assert 2.0 * distance < mean(soft, "wasserstein") < 1.5 * slope * distance


def test_shards_without_part_identity_are_refused_at_once(bach_shards, tmp_path):
    import shutil

    from musicgan.errors import DataError
    from musicgan.training.loop import train

    old = tmp_path / "schema1"
    shutil.copytree(bach_shards, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format": "musicgan-shards/1"}))
    with pytest.raises(DataError, match="without part identity"):
        train(musegan_cfg(old), tmp_path / "run")


@pytest.mark.slow
def test_deepspeed_zero_1_with_the_penalty_matches_ddp(bach_shards, tmp_path):
    """The penalty's double backward through DeepSpeed's engine.module (ZeRO-1) against DDP,
    14 steps. Not bit for bit here: the generator's conv biases before batch norm get
    gradients that are pure rounding noise (batch norm removes the bias), which Adam
    normalises to full-size steps, so the two backends' different summation orders show.
    Measured 2026-12-02: max |difference| 5.4e-4 (generator biases), critic <= 3e-8; the
    bound is the Adam float floor of docs/distributed-pitfalls.md, 2e-3."""
    runs = [("ddp", []), ("zero1", ["dist.backend=deepspeed", "dist.zero_stage=1"])]
    _train_runs(bach_shards, tmp_path, runs)
    reference, zero1 = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "zero1")
    assert zero1["backend"] == "deepspeed" and zero1["updates"] == reference["updates"]
    assert_same_networks(reference, zero1, atol=2e-3)
