"""DeepSpeed backend on CPU (DeepSpeed's CPU accelerator, gloo, 2 real ranks).

The heart is the parity test: same seed, debug preset, fp32, the same forced freezing
pattern; DDP and DeepSpeed ZeRO 0/1/2, each with gradient accumulation 1 and 2, must end
with the same generator and discriminator weights (1e-5 relative). A DeepSpeed port that
loses gradients (two backward calls per engine under ZeRO 1/2), steps a frozen network's
optimizer, or shifts one engine's accumulation boundary ends with different weights.

DeepSpeed JIT-compiles a comm op on first use (~100 s); `launch/test` keeps the build in
$TORCH_EXTENSIONS_DIR (repo .cache) so the suite pays it once.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dist_helpers import REPO, final_weights, free_port, init_rank, musicgan, rank_env, spawn, torchrun

from musicgan.config import apply_overrides
from musicgan.errors import ConfigError, UserError
from musicgan.presets import get_preset

pytestmark = pytest.mark.slow

PARITY_STEPS = 16
RESUME_AT = 8  # the split run stops here (mid-epoch) and resumes to PARITY_STEPS
REFUSED_STEPS = 7
STOP_AT = 5  # the stopped run is asked to stop at this step, inside an accumulation window
ACCUMULATIONS = (1, 2)
STAGES = (0, 1, 2)
# Accumulation 1 runs the paper's optimizer (SGD, here with momentum: under ZeRO >= 1 a torch
# SGD needs zero_allow_untested_optimizer); accumulation 2 the debug preset's Adam. Both keep
# state, so a spurious optimizer call on a zero gradient would still move the weights.
OPTIMIZERS = {
    1: ["optim.optimizer=sgd", "optim.momentum=0.9", "optim.g_lr=0.1", "optim.d_lr=0.05"],
    2: ["optim.optimizer=adam", "optim.g_lr=0.01", "optim.d_lr=0.01"],
}
# Forced freezing, one (freeze D, freeze G) per adversarial step, cycled. Chosen so that over
# windows of two micro steps each network is frozen at the first micro step, at the closing
# one (the other micro step's gradient must still be applied), and for a whole window (its
# optimizer must not be called); `window_cases` checks this from the logs.
FREEZE_PATTERN = ((False, False), (True, False), (False, True), (True, True), (True, False))


def parity_cfg(data: Path, backend: str, stage: int, accum: int, max_steps: int = PARITY_STEPS):
    cfg = get_preset("debug")
    cfg.data.path = str(data)
    return apply_overrides(
        cfg,
        [
            f"dist.backend={backend}",
            f"dist.zero_stage={stage}",
            f"dist.grad_accum={accum}",
            *OPTIMIZERS[accum],
            f"train.max_steps={max_steps}",
            "train.epochs=20",
            "train.seed=7",
            "optim.l2=0.1",
            # batch 6 x 2 ranks: an odd number of batches per epoch on the fixture, so some
            # accumulation windows are cut short by an epoch end.
            "data.batch_size=6",
            "log.interval=1",
            "log.sample_every=0",
            "log.tensorboard=false",
            "log.progress=false",
            "log.num_samples=1",
            "log.metric_samples=2",
            "log.metric_songs=4",
            "dist.timeout_s=60",
        ],
    )


def parity_runs() -> list[tuple[str, str, int, int]]:
    runs = []
    for accum in ACCUMULATIONS:
        runs.append((f"ddp-acc{accum}", "ddp", 0, accum))
        runs += [(f"ds-zero{stage}-acc{accum}", "deepspeed", stage, accum) for stage in STAGES]
    # ZeRO-1 (partitioned Adam state) stopped mid-epoch and resumed: must equal the full run.
    runs.append(("ds-zero1-acc2-resumed", "deepspeed", 1, 2))
    # ZeRO-2 stopped by a request on one rank (as a signal would) in the middle of a window:
    # the agreed stop waits for the window's end, checkpoints, and the resumed run equals the
    # full one.
    runs.append(("ds-zero2-acc2-stopped", "deepspeed", 2, 2))
    # Every update refused (gradient norm above train.max_grad_norm): weights must not move.
    runs += [
        ("ddp-refused", "ddp", 0, 2),
        ("ds-zero0-refused", "deepspeed", 0, 2),
        ("ds-zero2-refused", "deepspeed", 2, 2),
    ]
    return runs


def _parity_worker(rank, world_size, port, data, root, runs):
    """Trains every configuration in turn inside one 2-rank process group (saves start-up)."""
    init_rank(rank, world_size, port)
    from musicgan.distributed.env import init_distributed, teardown
    from musicgan.training import loop

    env = init_distributed(timeout_s=60)

    def fit(cfg, run_dir, resume=False, should_stop=None):
        trainer = loop.Trainer(cfg, run_dir, env=env, should_stop=should_stop)
        # The adversarial phase's freezing (its `hold`) replaced by the forced pattern.
        trainer.phases = [dataclasses.replace(p, hold=forced_freezing) if p.hold else p for p in trainer.phases]
        try:
            trainer.fit(resume=resume)
        finally:
            trainer.backend.close()

    try:
        for label, backend, stage, accum in runs:
            calls = iter(range(10**6))  # one count per run, continued across its resume

            def forced_freezing(values):
                # Same decision on every rank and in every run: a function of the call count.
                freeze_d, freeze_g = FREEZE_PATTERN[next(calls) % len(FREEZE_PATTERN)]
                return {name for name, frozen in (("discriminator", freeze_d), ("generator", freeze_g)) if frozen}

            run_dir = Path(root) / label
            if label.endswith("-resumed"):
                fit(parity_cfg(Path(data), backend, stage, accum, max_steps=RESUME_AT), run_dir)
                fit(parity_cfg(Path(data), backend, stage, accum), run_dir, resume=True)
            elif label.endswith("-stopped"):
                polls = iter(range(1, 10**6))
                stop_on_rank_1 = lambda: rank == 1 and next(polls) == STOP_AT  # noqa: E731
                fit(parity_cfg(Path(data), backend, stage, accum), run_dir, should_stop=stop_on_rank_1)
                fit(parity_cfg(Path(data), backend, stage, accum), run_dir, resume=True)
            elif label.endswith("-refused"):
                cfg = parity_cfg(Path(data), backend, stage, accum, max_steps=REFUSED_STEPS)
                fit(apply_overrides(cfg, ["train.max_grad_norm=1e-9", "train.nonfinite=skip"]), run_dir)
            else:
                fit(parity_cfg(Path(data), backend, stage, accum), run_dir)
    finally:
        teardown(env)


def window_cases(rows: list[dict], accum: int) -> dict[str, set[tuple]]:
    """Per network, the freeze patterns seen inside accumulation windows of >= 2 micro steps
    (the loop closes a window every `accum` steps and at every epoch end)."""
    cases: dict[str, set[tuple]] = {"discriminator": set(), "generator": set()}
    window: list[dict] = []
    for i, row in enumerate(rows):
        window.append(row)
        last = i + 1 == len(rows)
        if row["step"] % accum == 0 or last or rows[i + 1]["train/epoch"] != row["train/epoch"]:
            if len(window) >= 2 and all(r["phase"] == "adversarial" for r in window):
                for net in cases:
                    cases[net].add(tuple(int(r[f"freeze/{net}"]) for r in window))
            window = []
    return cases


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()).clamp_min(1e-12))


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_deepspeed_zero_0_1_2_match_ddp_with_accumulation_and_freezing(bach_shards, tmp_path):
    spawn(_parity_worker, 2, str(bach_shards), str(tmp_path), parity_runs())

    for accum in ACCUMULATIONS:
        reference = final_weights(tmp_path / f"ddp-acc{accum}")
        assert reference["step"] == PARITY_STEPS and reference["backend"] == "ddp"
        rows = [r for r in read_log(tmp_path / f"ddp-acc{accum}") if r["event"] == "train"]
        assert len(rows) == PARITY_STEPS
        assert any(r["freeze/discriminator"] == 1.0 for r in rows), "freezing never triggered for D"
        assert any(r["freeze/generator"] == 1.0 for r in rows), "freezing never triggered for G"
        if accum == 2:
            for net, seen in window_cases(rows, accum).items():
                assert {(1, 0), (0, 1), (1, 1)} <= seen, f"{net}: accumulation cases not all exercised: {seen}"
        labels = [f"ds-zero{stage}-acc{accum}" for stage in STAGES]
        labels += ["ds-zero1-acc2-resumed", "ds-zero2-acc2-stopped"] if accum == 2 else []
        for label in labels:
            state = final_weights(tmp_path / label)
            assert state["step"] == PARITY_STEPS and state["backend"] == "deepspeed"
            ds_rows = [r for r in read_log(tmp_path / label) if r["event"] == "train"]
            ds_rows = list({r["step"]: r for r in ds_rows}.values())  # a resumed run logs each step once anyway
            assert [(r["freeze/discriminator"], r["freeze/generator"]) for r in ds_rows] == [
                (r["freeze/discriminator"], r["freeze/generator"]) for r in rows
            ], label
            # The engines' global gradient norms (UpdateResult) match DDP's clip_grad_norm_.
            for ds_row, row in zip(ds_rows, rows):
                for key in ("grad_norm/generator", "grad_norm/discriminator"):
                    assert (key in ds_row) == (key in row), (label, row["step"], key)
                    if key in row:
                        assert ds_row[key] == pytest.approx(row[key], rel=1e-4, abs=1e-7), (label, row["step"], key)
            for net in ("generator", "discriminator"):
                assert state[net].keys() == reference[net].keys()
                for key, expected in reference[net].items():
                    # The plain .pt holds full weights at every ZeRO stage (what `sample` reads).
                    assert state[net][key].shape == expected.shape, f"{label} {net}.{key} is partitioned"
                    error = relative_error(state[net][key], expected)
                    assert error <= 1e-5, f"{label}: {net}.{key} differs from DDP by {error:.2e} (relative)"
            # One directory per engine, each save with an explicit tag (no shared `latest`).
            engines = tmp_path / label / "checkpoints" / "deepspeed"
            assert sorted(p.name for p in engines.iterdir()) == ["discriminator", "generator"]
            assert (engines / "generator" / f"step-{PARITY_STEPS:08d}").is_dir()
            assert not list(engines.rglob("latest"))

    # The runs really trained: accumulation changed the result, and freezing-free steps moved.
    a1, a2 = final_weights(tmp_path / "ddp-acc1"), final_weights(tmp_path / "ddp-acc2")
    assert any(relative_error(a1[n][k], a2[n][k]) > 1e-3 for n in ("generator", "discriminator") for k in a1[n])
    resumed = read_log(tmp_path / "ds-zero1-acc2-resumed")
    assert any(r["event"] == "train" and r["step"] == RESUME_AT + 1 for r in resumed)
    stopped = [r for r in read_log(tmp_path / "ds-zero2-acc2-stopped") if r["event"] == "stopped"]
    # Requested inside the window [5, 6]: the stop happens when that window closes.
    assert [r["step"] for r in stopped] == [STOP_AT + 1]

    # Refused updates: DeepSpeed runs its step with the optimizer held back (ZeRO-0 from the
    # reduced .grad norm, ZeRO-2 from the engine's global norm); same outcome as DDP's.
    reference = final_weights(tmp_path / "ddp-refused")
    events = [(r["step"], r["what"]) for r in read_log(tmp_path / "ddp-refused") if r["event"] == "divergence"]
    assert len(events) >= 3 and all("gradient norm" in what for _, what in events)
    for label in ("ds-zero0-refused", "ds-zero2-refused"):
        state = final_weights(tmp_path / label)
        assert [s for s, _ in events] == [r["step"] for r in read_log(tmp_path / label) if r["event"] == "divergence"]
        for net in ("generator", "discriminator"):
            for key, expected in reference[net].items():
                assert torch.equal(state[net][key], expected), f"{label}: {net}.{key} moved"


def test_torchrun_deepspeed_run_exits_0_resumes_and_samples(bach_shards, tmp_path):
    """The issue's command under torchrun, `--resume` to 30 steps, then `musicgan sample`."""
    run = tmp_path / "run"
    # epochs=10: the debug preset's 4 epochs end before step 30 on the fixture.
    common = [
        "train",
        "--preset",
        "debug",
        "--data",
        str(bach_shards),
        "--run-dir",
        str(run),
        "--set",
        "dist.backend=deepspeed",
        "--set",
        "train.epochs=10",
        "--set",
        "log.progress=false",
    ]
    first = torchrun(common + ["--max-steps", "20"])
    assert first.returncode == 0  # engines and process group torn down: no abort at exit
    state20 = final_weights(run)
    assert state20["step"] == 20 and state20["backend"] == "deepspeed"
    assert (run / "checkpoints" / "deepspeed" / "generator" / "step-00000020").is_dir()
    assert (run / "checkpoints" / "deepspeed" / "discriminator" / "step-00000020").is_dir()

    second = torchrun(common + ["--max-steps", "30", "--resume"])
    assert "resuming from" in second.stdout and second.returncode == 0
    state30 = final_weights(run)
    assert state30["step"] == 30
    assert any(not torch.equal(state30["generator"][k], state20["generator"][k]) for k in state30["generator"])
    # keep=3 plain checkpoints; engine tags without a plain .pt are pruned (at most one extra).
    tags = sorted(p.name for p in (run / "checkpoints" / "deepspeed" / "generator").iterdir())
    assert "step-00000030" in tags and len(tags) <= 4, tags

    from musicgan.cli import main
    from musicgan.data.midi import read_midi

    # `musicgan sample` reads a DeepSpeed run like a DDP one (the plain .pt); in-process: no
    # process group or engine is involved.
    assert main(["sample", "--run", str(run), "--num", "2", "--length", "16", "--out", str(tmp_path / "samples")]) == 0

    files = sorted((tmp_path / "samples").glob("*.mid"))
    assert len(files) == 2 and all(read_midi(f).num_notes > 0 for f in files)


def test_deepspeed_launcher_script_runs_two_cpu_ranks(bach_shards, tmp_path):
    """launch/train-deepspeed: the `deepspeed` launcher, 2 CPU processes, ZeRO-2."""
    run = tmp_path / "run"
    env = rank_env({"MUSICGAN_NPROC": "2", "MASTER_PORT": str(free_port())})
    env.pop("OMP_NUM_THREADS")  # the script must set it itself (the launcher does not)
    proc = subprocess.run(
        [
            str(REPO / "launch" / "train-deepspeed"),
            "--preset",
            "debug",
            "--data",
            str(bach_shards),
            "--run-dir",
            str(run),
            "--max-steps",
            "8",
            "--set",
            "dist.zero_stage=2",
            "--set",
            "log.progress=false",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    state = final_weights(run)
    assert state["step"] == 8 and state["world_size"] == 2 and state["backend"] == "deepspeed"
    assert (run / "finished.json").exists()


def test_user_deepspeed_json_overrides_one_process(bach_shards, tmp_path):
    """One process (DeepSpeed gets its own one-rank group); the user's JSON is merged over
    the derived configs, top level for both engines, a named section for one."""
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"stage": 1}, "discriminator": {"gradient_clipping": 1.5}}))
    run = tmp_path / "run"
    musicgan(
        [
            "train",
            "--preset",
            "debug",
            "--data",
            str(bach_shards),
            "--run-dir",
            str(run),
            "--max-steps",
            "6",
            "--set",
            "dist.backend=deepspeed",
            "--set",
            "log.progress=false",
            "--deepspeed-config",
            str(user),
        ]
    )
    configs = {}
    for net in ("generator", "discriminator"):
        saved = torch.load(
            run / "checkpoints" / "deepspeed" / net / "step-00000006" / "mp_rank_00_model_states.pt", weights_only=False
        )  # DeepSpeed's own (pickled) file, written by this test
        configs[net] = saved["ds_config"]
    assert configs["generator"]["zero_optimization"]["stage"] == 1
    assert configs["discriminator"]["zero_optimization"]["stage"] == 1
    assert configs["generator"]["gradient_clipping"] == 5.0  # optim.grad_clip of the debug preset
    assert configs["discriminator"]["gradient_clipping"] == 1.5
    assert final_weights(run)["step"] == 6


def test_bad_deepspeed_json_is_a_one_line_error(bach_shards, tmp_path, capsys):
    from musicgan.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 1,}}')
    # In-process: the file is rejected before deepspeed is imported or any group is made.
    code = main(
        [
            "train",
            "--preset",
            "debug",
            "--data",
            str(bach_shards),
            "--run-dir",
            str(tmp_path / "r"),
            "--set",
            "dist.backend=deepspeed",
            "--deepspeed-config",
            str(bad),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: DeepSpeed config") and "not valid JSON" in err and "at line 1" in err
    assert len(err.strip().splitlines()) == 1


# -- config derivation (no processes) ---------------------------------------------------------
def _cfg(*overrides: str):
    cfg = get_preset("debug")
    return apply_overrides(cfg, list(overrides))


def test_engine_config_is_derived_from_the_config_tree():
    from musicgan.distributed.deepspeed import engine_config

    cfg = _cfg("dist.zero_stage=2", "dist.grad_accum=3", "optim.grad_clip=2.5", "data.batch_size=7")
    config = engine_config(cfg, "generator", world_size=4, bf16_supported=False)
    assert config["zero_optimization"] == {"stage": 2}
    assert config["gradient_accumulation_steps"] == 3 and config["train_micro_batch_size_per_gpu"] == 7
    assert "train_batch_size" not in config  # DeepSpeed derives it: survives a world-size change
    assert config["gradient_clipping"] == 2.5 and config["zero_allow_untested_optimizer"] is True
    assert "optimizer" not in config and "bf16" not in config and "fp16" not in config
    assert "torch_autocast" not in config  # fp32 unless bf16 is asked for and supported
    bf16 = engine_config(_cfg("dist.precision=bf16"), "generator", world_size=1, bf16_supported=True)
    assert bf16["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    cpu = engine_config(_cfg("dist.precision=bf16"), "generator", world_size=1, bf16_supported=False)
    assert "torch_autocast" not in cpu


def test_user_config_merges_and_rejects_what_the_trainer_owns(tmp_path):
    from musicgan.distributed.deepspeed import engine_config, load_user_config

    cfg = _cfg("dist.grad_accum=2")
    user = {"zero_optimization": {"stage": 1, "reduce_bucket_size": 1000}, "discriminator": {"gradient_clipping": 0.5}}
    g = engine_config(cfg, "generator", world_size=2, bf16_supported=False, user=user)
    d = engine_config(cfg, "discriminator", world_size=2, bf16_supported=False, user=user)
    assert g["zero_optimization"] == {"stage": 1, "reduce_bucket_size": 1000} == d["zero_optimization"]
    assert g["gradient_clipping"] == cfg.optim.grad_clip and d["gradient_clipping"] == 0.5
    assert "discriminator" not in g and "discriminator" not in d
    ok = engine_config(cfg, "generator", world_size=2, bf16_supported=False, user={"train_batch_size": 16})
    assert ok["train_batch_size"] == 16  # 4 x 2 x 2, consistent
    for bad, match in [
        ({"optimizer": {"type": "Adam"}}, "optimizer"),
        ({"generator": {"scheduler": {}}}, "scheduler"),
        ({"gradient_accumulation_steps": 4}, "dist.grad_accum"),
        ({"train_micro_batch_size_per_gpu": 8}, "data.batch_size"),
        ({"train_batch_size": 10}, "train_batch_size"),
        ({"zero_optimization": {"stage": 3}}, "ZeRO stage 3"),
        ({"generator": {"bf16": {"enabled": True}}}, "dist.precision=bf16"),
        ({"fp16": {"enabled": True}}, "'fp16' is not supported"),
    ]:
        with pytest.raises(ConfigError, match=match):
            engine_config(cfg, "generator", world_size=2, bf16_supported=False, user=bad)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_user_config(tmp_path / "list.json")
    with pytest.raises(ConfigError, match="not found"):
        load_user_config(tmp_path / "missing.json")


def test_missing_deepspeed_names_the_extra(monkeypatch):
    from musicgan.distributed import deepspeed as backend

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # what an environment without it raises
    with pytest.raises(UserError, match=r"musicgan\[deepspeed\]"):
        backend.import_deepspeed()


def test_user_sections_are_checked_against_the_family_networks():
    from musicgan.distributed.deepspeed import check_sections
    from musicgan.training.families import all_network_names

    others = all_network_names() - {"generator"}
    check_sections(
        {"generator": {"gradient_clipping": 1.0}, "zero_optimization": {"stage": 1}}, "mle", ("generator",), others
    )
    with pytest.raises(ConfigError, match="section 'discriminator' names no network of model mle"):
        check_sections({"discriminator": {"gradient_clipping": 1.0}}, "mle", ("generator",), others)
