"""The benchmark suite: the quick run's JSON (real trainer, real loader, real gloo ranks),
the bare reference step doing exactly the trainer's math, and the analytic FLOP count.
Nothing here is timed against a threshold: the machine is shared and noisy."""

from __future__ import annotations

import json
import math

import pytest
import torch

from musicgan.benchmarks import families, flops
from musicgan.benchmarks.trainer_step import bare_copies, bare_step, build_trainer, first_batch, run_trainer_steps
from musicgan.benchmarks.workload import bench_config, workload_overrides

CURVES = {"step_vs_seq_len", "step_vs_batch_size", "step_vs_hidden", "prepare_vs_songs", "evaluate_vs_songs"}
PLOTS = ("scaling-step", "scaling-throughput", "scaling-data", "scaling-memory")
RATIOS = (
    "trainer_overhead_ratio",
    "generator_speedup",
    "data_headroom_ratio",
    "ddp_scaling_ratio",
    "flops_utilisation",
    "reference_port_ratio",
)


@pytest.mark.slow
def test_quick_suite_writes_json_with_every_ratio(tmp_path, capsys):
    from musicgan.benchmarks.suite import run_suite

    out = tmp_path / "bench.json"
    returned = run_suite(out=str(out), quick=True)
    results = json.loads(out.read_text())
    for key in RATIOS:
        assert isinstance(results[key], float) and math.isfinite(results[key]) and results[key] > 0, (key, results[key])
        assert results[key] == pytest.approx(returned[key])
    # Details behind each ratio.
    step = results["training_step"]
    assert step["trainer_step_s"] > 0 and step["bare_step_s"] > 0
    assert step["flops"]["step_flops"]["total"] > 0
    assert set(step["flops"]["matmul_flops_per_s"]) == {"large", "lstm_step"}
    port = results["reference_port"]
    assert port["shared_d_forward"] is True
    assert port["port_step_s"] > 0 and port["musicgan_step_s"] > 0
    assert port["events_per_step"] == 8 * 12  # the quick workload: batch 8, length 12
    assert port["musicgan_events_per_s"] == pytest.approx(port["events_per_step"] / port["musicgan_step_s"])
    assert port["reference_port_ratio"] == pytest.approx(port["port_step_s"] / port["musicgan_step_s"])
    assert len(port["port_step_all_s"]) == len(port["musicgan_step_all_s"]) == 3  # 1 warm-up + 2
    assert port["reference_port_ratio_cpu_time"] > 0
    assert {"1", "2"} <= results["data"]["stream"].keys()
    assert {"midi_folder", "music21_bach"} <= results["data"]["prepare"].keys()
    for entry in results["data"]["prepare"].values():
        assert entry["1"]["files"] > 0 and entry["2"]["files_per_s"] > 0
    assert results["scaling"]["multi"]["world_size"] == 2 and results["scaling"]["multi"]["ddp_wrapped"]
    assert results["generator"]["per_batch"]
    for key, case in results["families"]["cases"].items():
        if "skipped" not in case:
            assert case["real_per_s"] > 0 and case["bare_per_s"] > 0 and case["ratio"] > 0, key
            assert case["real_step"]["repeats"] == case["bare_step"]["repeats"] == 2, key
    assert {"musegan-critic", "musegan-generator", "seqgan"} <= results["families"]["cases"].keys()
    assert {"torch", "python", "date_utc", "cpu_count"} <= results["machine"].keys()
    # The closing scaling curves: every curve fitted, the four PNGs beside --out.
    section = results["scaling_curves"]
    assert section["mode"] == "quick" and section["grid"]["seq_len"] == [4, 8]
    assert set(section["curves"]) == CURVES
    for name, curve in section["curves"].items():
        assert len(curve["points"]) == 2 and not any("failed" in p for p in curve["points"]), name
        for fit in ("fit_time", "fit_cpu_time", "fit_peak_rss"):
            assert curve[fit]["best"] in ("linear", "n log n", "quadratic"), (name, fit)
            assert math.isfinite(curve[fit]["models"][curve[fit]["best"]]["relative_rms"]), (name, fit)
    # The base size is in all three step sweeps and measured once.
    sweeps = ("step_vs_seq_len", "step_vs_batch_size", "step_vs_hidden")
    steps = [p for c in sweeps for p in section["curves"][c]["points"]]
    base = [p for p in steps if p["size"] == section["base"]]
    assert len(base) == 3 and sum("shared_with" in p for p in steps) == 2
    assert len({p["step_s"] for p in base}) == 1 and len({p["step_s"] for p in steps}) == 4
    plots = tmp_path / "bench-curves"
    assert set(section["plots"]) == set(PLOTS)
    for name in PLOTS:
        assert section["plots"][name] == str(plots / f"{name}.png")
        assert (plots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # The Markdown table is printed and returned.
    table = results["markdown"]
    assert "| step_vs_hidden | CPU s |" in table and str(plots / "scaling-memory.png") in table
    assert "vs the public port's step" in table
    assert table.startswith("| Benchmark |") and "DDP scaling" in table and "prepare (files/s)" in table
    assert "| Family step |" in table and "musegan-critic" in table
    assert table in capsys.readouterr().out


def test_bare_step_is_the_trainer_step(midi_folder_shards, tmp_path, one_torch_thread):
    """The reference the overhead ratio divides by does the same work: from the same weights
    and the same seed, one bare step and one real trainer step give the same weights."""
    from musicgan.distributed.env import init_distributed
    from musicgan.training.loop import step_seed

    cfg = bench_config(str(midi_folder_shards), workload_overrides(quick=True))
    trainer = build_trainer(cfg, tmp_path / "run", init_distributed())
    try:
        batch = first_batch(trainer, cfg.curriculum.max_len)
        nets = bare_copies(trainer)
        initial = {k: v.clone() for k, v in trainer.backend.module("generator").state_dict().items()}
        for _ in range(2):  # two steps: the second starts from weights both updated
            torch.manual_seed(step_seed(cfg.train.seed, 0, trainer.state.step))
            g_loss, d_loss = bare_step(nets, batch, cfg, torch.device("cpu"))
            run_trainer_steps(trainer, batch, 1)
            assert trainer.last_losses["loss/generator"] == pytest.approx(g_loss, rel=1e-5)
            assert trainer.last_losses["loss/discriminator"] == pytest.approx(d_loss, rel=1e-5)
        for name, bare in (("generator", nets.generator), ("discriminator", nets.discriminator)):
            ours, theirs = trainer.backend.module(name).state_dict(), bare.state_dict()
            for key in ours:
                torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")
        # Both really trained: the weights left their initial values.
        final = trainer.backend.module("generator").state_dict()
        assert any(not torch.equal(final[k], initial[k]) for k in final)
    finally:
        trainer.logger.close()


def test_analytic_generator_flops_match_flop_counter():
    """FlopCounterMode sees the generator's hand-written autograd Function (plain aten
    products), so it checks the analytic count there; it counts nothing for nn.LSTM on CPU,
    which is why the suite uses the analytic count for the whole step."""
    from musicgan.models.crnngan import CRNNDiscriminator, CRNNGenerator

    shape = flops.StepShape(
        g_hidden=32, g_layers=2, d_hidden=16, d_layers=2, batch_size=5, seq_len=7, num_features=4, noise_dim=4
    )
    torch.manual_seed(0)
    generator = CRNNGenerator(4, hidden=32, layers=2)
    counted = flops.count_with_flop_counter(lambda: generator(5, 7).sum().backward())
    parts = flops.training_step_flops(shape)
    analytic = parts["generator_forward"] + parts["generator_backward"]
    assert counted == pytest.approx(analytic, rel=0.02), (counted, analytic)
    # nn.LSTM on CPU: not counted at all (if a torch release starts counting it, revisit).
    discriminator = CRNNDiscriminator(4, hidden=16, layers=2)
    lstm_counted = flops.count_with_flop_counter(
        lambda: discriminator.forward_stack(torch.randn(5, 7, 4))[0].sum().backward()
    )
    assert lstm_counted < 0.1 * flops.discriminator_forward_flops(shape, 5)
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))


FAMILY_FIXTURES = {
    "chorales": "bach_shards",
    "melodies": "bach_shards",
    "song_audio": "note_shards",
    "notes": "note_shards",
}


@pytest.mark.parametrize("key", [case.key for case in families.CASES])
def test_family_bare_step_is_the_trainer_step(key, request, tmp_path, one_torch_thread):
    """Each family's bare step does the real step's work: from the same weights and seed,
    two bare steps and two real trainer steps leave every network (EMA and rollout copies
    too) with the same weights, and the real ones moved."""
    from musicgan.training.loop import step_seed

    case = next(c for c in families.CASES if c.key == key)
    if families.missing_input(case):
        pytest.skip(families.missing_input(case))
    data_dir = request.getfixturevalue(FAMILY_FIXTURES[case.corpus])
    trainer, batch, nets = families.start_trainer(case, data_dir, tmp_path / "run", quick=True)
    try:
        names = trainer.family.network_names
        initial = {n: {k: v.clone() for k, v in _weights(trainer.backend.module(n)).items()} for n in names}
        for _ in range(2):
            torch.manual_seed(step_seed(trainer.cfg.train.seed, 0, trainer.state.step))
            case.bare_step(nets, batch, trainer.cfg, torch.device("cpu"))
            run_trainer_steps(trainer, batch, 1)
        for name in names:
            ours, theirs = _weights(trainer.backend.module(name)), _weights(nets.networks[name])
            for k in ours:
                torch.testing.assert_close(ours[k], theirs[k], rtol=1e-4, atol=1e-6, msg=f"{key}: {name}.{k}")
            moved = any(not torch.equal(ours[k], initial[name][k]) for k in ours)
            assert moved or name not in trainer.family.learning_rates(), f"{key}: {name} did not train"
    finally:
        trainer.logger.close()
        trainer.backend.close()


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


# -- scaling curves ------------------------------------------------------------------------------
GROWTH_SIZES = [25, 50, 100, 200, 400, 800]


@pytest.mark.parametrize(
    ("truth", "overhead", "cost"),
    [
        ("linear", 0.2, lambda n: 0.2 + 0.01 * n),
        ("n log n", 0.5, lambda n: 0.5 + 0.002 * n * math.log(n)),
        ("quadratic", 1.0, lambda n: 1.0 + 3e-5 * n**2),
    ],
)
def test_growth_fit_picks_the_model_that_made_the_data(truth, overhead, cost):
    """Costs made by one model (with a fixed overhead, and with 1 % multiplicative noise) are
    fitted best by that model, and its coefficients come back from the exact data."""
    import numpy as np

    from musicgan.benchmarks.growth import fit_growth

    exact = [cost(n) for n in GROWTH_SIZES]
    fit = fit_growth(GROWTH_SIZES, exact)
    assert fit["best"] == truth, fit
    assert fit["models"][truth]["relative_rms"] < 1e-9
    assert fit["models"][truth]["a"] == pytest.approx(overhead, rel=1e-6)
    noisy = exact * (1 + 0.01 * np.random.default_rng(0).standard_normal(len(exact)))
    assert fit_growth(GROWTH_SIZES, noisy)["best"] == truth


def test_loglog_slope_is_the_power_law_exponent():
    from musicgan.benchmarks.growth import loglog_slope

    assert loglog_slope(GROWTH_SIZES, [3.0 * n**1.5 for n in GROWTH_SIZES]) == pytest.approx(1.5)


def test_growth_fit_keeps_coefficients_non_negative():
    """A falling cost gets no negative growth term: the slope is dropped, a constant remains."""
    from musicgan.benchmarks.growth import fit_growth

    fit = fit_growth([10, 20, 40], [3.0, 2.0, 1.0])
    assert all(m["a"] >= 0 and m["b"] >= 0 for m in fit["models"].values()), fit
    assert fit["loglog_slope"] < 0


@pytest.mark.slow
def test_quick_scaling_curves_write_json_and_plots(tmp_path):
    """`musicgan bench --scaling-curves --quick`: every curve with its points, fits and peak
    RSS in the JSON, the four PNGs written."""
    from musicgan.cli import main

    out, plots = tmp_path / "curves.json", tmp_path / "plots"
    assert main(["bench", "--scaling-curves", "--quick", "--out", str(out), "--plots", str(plots)]) == 0
    results = json.loads(out.read_text())
    assert set(results["curves"]) == CURVES
    for name, curve in results["curves"].items():
        assert len(curve["points"]) == 2 and not any("failed" in p for p in curve["points"]), name
        for point in curve["points"]:
            assert point[curve["time_key"]] > 0 and point[curve["cpu_key"]] > 0, name
            assert 10 < point["peak_rss_mb"] < 100_000 and point["process_cpu_s"] > 0, name
        for fit in ("fit_time", "fit_cpu_time", "fit_peak_rss"):
            assert curve[fit]["best"] in ("linear", "n log n", "quadratic"), (name, fit)
    steps = results["curves"]["step_vs_batch_size"]["points"]
    assert [p["batch_rows"] for p in steps] == results["grid"]["batch_size"]
    assert all(p["events_per_s"] == pytest.approx(p["batch_rows"] * p["batch_length"] / p["step_s"]) for p in steps)
    prepared = results["curves"]["prepare_vs_songs"]["points"]
    assert all(p["files"] > 0 and not p["torch_imported"] for p in prepared)  # RSS of prepare alone
    assert results["cpu_s"]["children"] > 0 and "| step_vs_seq_len | CPU s |" in results["markdown"]
    for name in PLOTS:
        assert (plots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_scaling_grid_rows_are_replaced_and_checked():
    from musicgan.benchmarks.curves import parse_grid

    grid = parse_grid(["seq_len=10,20", "prepare_songs=5,all"], "quick")
    assert grid["seq_len"] == [10, 20] and grid["prepare_songs"] == [5, "all"]
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        parse_grid(["depth=3"], "quick")


def test_port_step_trains_both_networks_the_port_way():
    """The port-style reference really does the port's work at the benchmark's sizes: both
    networks move, G's feature-matching loss is a sum of squares (>= 0), D's loss is the
    clamped log loss (> 0)."""
    from musicgan.benchmarks import reference_port

    cfg = bench_config("unused", workload_overrides(quick=True))
    torch.manual_seed(0)
    nets = reference_port.build_port(cfg, 4)
    before = {n: [p.clone() for p in m.parameters()] for n, m in (("g", nets.generator), ("d", nets.discriminator))}
    real = torch.rand(8, 12, 4)
    g_loss, d_loss = reference_port.port_step(nets, real)
    assert g_loss >= 0 and d_loss > 0
    for name, module in (("g", nets.generator), ("d", nets.discriminator)):
        assert any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters())), name
    assert isinstance(nets.discriminator.lstm, torch.nn.LSTM) and nets.discriminator.lstm.bidirectional


@pytest.mark.parametrize("cell", [False, True], ids=["products", "cell"])
def test_split_products_compute_the_one_product_recurrence(cell):
    """split_product.py times the same recurrence four ways: each gives the top layer's
    outputs of the one-product loop (a wrong split of the gate rows, units or batch rows
    would not; a missing barrier would only sometimes show)."""
    from musicgan.benchmarks import split_product

    recurrence = split_product.Recurrence(batch=6, hidden=10, layers=2, steps=7)
    calls = split_product.variant_calls(recurrence, cell)
    outputs = {v: split_product.result_of(recurrence, call, t) for v, (t, call) in calls.items()}
    assert outputs["one_1t"].abs().max() > 0.01  # the recurrence carries values, not zeros
    for variant, output in outputs.items():
        torch.testing.assert_close(output, outputs["one_1t"], rtol=1e-5, atol=1e-6, msg=variant)


def test_suite_refuses_a_grid_and_names_where_plots_go(capsys):
    """The suite's curves run a fixed grid (--grid is --scaling-curves'); without --plots its
    PNGs go to OUT-curves/ beside --out."""
    from musicgan.benchmarks.curves import plots_beside
    from musicgan.cli import main

    assert main(["bench", "--quick", "--grid", "seq_len=4,8"]) == 2
    assert "--grid belongs to --scaling-curves" in capsys.readouterr().err
    assert str(plots_beside("/tmp/x/bench.json", "-curves")) == "/tmp/x/bench-curves"
    assert str(plots_beside("/tmp/x/run", "-curves")) == "/tmp/x/run-curves"
    assert str(plots_beside(None, "-curves")) == "bench-curves"
