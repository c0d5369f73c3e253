"""RNN-RBM / LSTM-RBM: RBM math (exact and AIS partition functions), CD-k training signal,
sampling to MIDI, the likelihood metrics, and 2-rank gloo runs through the real trainer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from dist_helpers import sample_cli, torchrun_train

from musicgan.data.midi import read_midi
from musicgan.metrics.pianoroll import (
    accuracy_counts,
    bernoulli_log_likelihood,
    fit_bernoulli,
    frame_accuracy,
    is_likelihood_run,
    pianoroll_likelihood_metrics,
    rbm_likelihood_metrics,
)
from musicgan.models.rbm import (
    RecurrentRBM,
    ais_log_partition,
    exact_log_partition,
    free_energy,
    gibbs_chain,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_force_log_partition(weight, bv, bh) -> float:
    """log Z summing exp(-E(v, h)) over every joint state of a tiny RBM (one set of biases)."""
    nv, nh = weight.shape
    total = []
    for code_v in range(2**nv):
        v = torch.tensor([(code_v >> i) & 1 for i in range(nv)], dtype=torch.float64)
        for code_h in range(2**nh):
            h = torch.tensor([(code_h >> j) & 1 for j in range(nh)], dtype=torch.float64)
            total.append(bv.double() @ v + bh.double() @ h + v @ weight.double() @ h)
    return float(torch.logsumexp(torch.stack(total), 0))


def test_exact_partition_matches_brute_force_both_orientations():
    torch.manual_seed(0)
    weight = torch.randn(5, 4)
    bv, bh = torch.randn(5), torch.randn(4)
    expected = brute_force_log_partition(weight, bv, bh)
    assert float(exact_log_partition(weight, bv, bh)) == pytest.approx(expected, abs=1e-9)
    # more hidden than visible: enumerates the visible layer instead
    assert float(exact_log_partition(weight.t(), bh, bv)) == pytest.approx(expected, abs=1e-9)


def test_free_energy_is_the_marginal_of_the_joint():
    torch.manual_seed(1)
    weight, bv, bh = torch.randn(4, 3), torch.randn(4), torch.randn(3)
    v = torch.tensor([1.0, 0.0, 1.0, 1.0])
    joint = [
        bv @ v + bh @ h + v @ weight @ h
        for h in (torch.tensor([(c >> j) & 1 for j in range(3)], dtype=torch.float32) for c in range(8))
    ]
    expected = float(torch.logsumexp(torch.stack(joint), 0))
    assert float(-free_energy(v, weight, bv, bh)) == pytest.approx(expected, abs=1e-5)


def test_ais_matches_exact_partition_of_tiny_88_key_rbms():
    """88 visible keys, 10 hidden units: log Z is exact by enumerating 2^10 hidden states."""
    torch.manual_seed(2)
    weight = torch.randn(88, 10) * 0.3
    bv = torch.randn(6, 88) - 2.0  # six RBMs with different (frame-like) biases, shared W
    bh = torch.randn(6, 10)
    exact = exact_log_partition(weight, bv, bh)
    estimate, stderr = ais_log_partition(weight, bv, bh, num_chains=64, num_betas=400)
    assert estimate.shape == (6,) and stderr.shape == (6,)
    assert torch.all((estimate - exact).abs() < 0.1), estimate - exact
    # Too few temperatures for a strongly coupled RBM must be visibly worse than many: the
    # estimator really anneals rather than returning the base model's log Z.
    strong = torch.randn(88, 10) * 0.8
    exact_strong = exact_log_partition(strong, bv, bh)
    base = (torch.nn.functional.softplus(bv).sum(-1) + torch.nn.functional.softplus(bh).sum(-1)).double()
    good, _ = ais_log_partition(strong, bv, bh, num_chains=64, num_betas=800)
    assert (good - exact_strong).abs().max() < 0.25
    assert (base - exact_strong).abs().min() > 1.0  # the base alone is far off


def test_cd_training_lowers_free_energy_of_the_data():
    """CD-k gradient sign: training on a tiny fixed corpus lowers the data's free energy
    relative to the model's own samples, and raises its exact likelihood."""
    torch.manual_seed(3)
    patterns = torch.zeros(4, 12)
    patterns[0, [0, 4, 7]] = 1
    patterns[1, [2, 5, 9]] = 1
    patterns[2, [4, 7, 11]] = 1
    patterns[3, [0, 5, 9]] = 1
    v = patterns[torch.randint(0, 4, (8, 10))]  # (B=8, T=10, V=12) fixed corpus
    model = RecurrentRBM(num_visible=12, rbm_hidden=6, rnn_hidden=8, cell="rnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)

    def exact_nll() -> float:
        with torch.no_grad():
            bv, bh = model.conditional_biases(v)
            nll = free_energy(v, model.weight, bv, bh).double() + exact_log_partition(model.weight, bv, bh)
            return float(nll.mean())

    start_nll = exact_nll()
    with torch.no_grad():
        start_fe = float(model.cd_loss(v, None, 1)[1]["free_energy"])
    for _ in range(150):
        loss, stats = model.cd_loss(v, None, k=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(stats["free_energy"]) < start_fe - 3.0
    assert exact_nll() < start_nll - 2.0  # nats per frame


def test_cd_loss_masks_padding_and_is_batch_first():
    torch.manual_seed(4)
    model = RecurrentRBM(num_visible=10, rbm_hidden=5, rnn_hidden=4, cell="lstm")
    v = torch.bernoulli(torch.full((3, 7, 10), 0.3))
    lengths = torch.tensor([7, 4, 2])
    loss, stats = model(v, lengths, 2)
    loss.backward()
    assert loss.shape == () and set(stats) == {"free_energy", "recon_xent"}
    assert all(p.grad is not None for p in model.parameters())
    # Padding frames do not matter: changing them leaves the free-energy statistic unchanged.
    v2 = v.clone()
    v2[1, 4:] = 1.0
    v2[2, 2:] = 1.0
    torch.manual_seed(5)
    _, a = model(v, lengths, 1)
    torch.manual_seed(5)
    _, b = model(v2, lengths, 1)
    assert float(a["free_energy"]) == pytest.approx(float(b["free_energy"]), abs=1e-5)


def test_gibbs_and_generation_shapes_and_top1_variant():
    torch.manual_seed(6)
    model = RecurrentRBM(num_visible=88, rbm_hidden=20, rnn_hidden=16, cell="rnn")
    v, mean = gibbs_chain(torch.zeros(5, 88), model.weight, model.bv, model.bh, 3)
    assert v.shape == mean.shape == (5, 88) and set(v.unique().tolist()) <= {0.0, 1.0}
    rolls = model.generate(3, 12, k=4)
    assert rolls.shape == (3, 12, 88) and set(rolls.unique().tolist()) <= {0.0, 1.0}
    top1 = model.generate(3, 12, k=4, mode="top1")
    assert torch.all(top1.sum(-1) == 1)


def test_bernoulli_baseline_and_accuracy_helpers():
    train = [np.array([[1, 0], [1, 1], [1, 0], [0, 0]], dtype=np.float32)]
    probs = fit_bernoulli(train, smoothing=0.0)
    assert probs.tolist() == [0.75, 0.25]
    ll = bernoulli_log_likelihood(np.array([[1, 0]]), probs)
    assert ll[0] == pytest.approx(math.log(0.75) + math.log(0.75))
    tp, fp, fn = accuracy_counts(np.array([[1, 1, 0]]), np.array([[1, 0, 1]]))
    assert (tp, fp, fn) == (1, 1, 1) and frame_accuracy(tp, fp, fn) == pytest.approx(1 / 3)
    assert math.isnan(frame_accuracy(0, 0, 0))


def test_likelihood_metrics_ais_agrees_with_exact_on_a_tiny_model():
    torch.manual_seed(7)
    model = RecurrentRBM(num_visible=88, rbm_hidden=8, rnn_hidden=6, cell="rnn")
    with torch.no_grad():
        model.weight.mul_(30.0)  # std 0.3: a coupled RBM, not the near-independent init
    rolls = [np.random.default_rng(i).random((9, 88)).__lt__(0.05).astype(np.float32) for i in range(3)]
    exact = rbm_likelihood_metrics(model, rolls, rolls, exact=True, accuracy_chains=2, gibbs_steps=2)
    ais = rbm_likelihood_metrics(model, rolls, rolls, num_chains=64, num_betas=300, accuracy_chains=2, gibbs_steps=2)
    assert exact["num_frames"] == 27 and exact["estimator"] == "exact"
    assert ais["loglik_per_frame"] == pytest.approx(exact["loglik_per_frame"], abs=0.05)
    assert ais["bernoulli_loglik_per_frame"] == exact["bernoulli_loglik_per_frame"] < 0
    assert 0.0 <= exact["frame_accuracy"] <= 1.0 or math.isnan(exact["frame_accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["rnnrbm-debug", "lstmrbm-debug"])
def test_two_rank_gloo_training_sampling_and_likelihood(preset, bach_shards, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    torchrun_train(preset, bach_shards, run_dir, "--set", "log.interval=1", steps=3)
    state = torch.load(
        run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip(), weights_only=True
    )
    assert state["discriminator"] == {} and "weight" in state["generator"]
    assert state["world_size"] == 2
    log_lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train_lines = [line for line in log_lines if line.get("event") == "train"]
    assert len(train_lines) == 3 and all(math.isfinite(line["stats/free_energy"]) for line in train_lines)
    songs = [read_midi(path) for path in sample_cli(run_dir, tmp_path / "samples")]
    assert any(len(song.notes) for song in songs)
    assert all(21 <= p <= 108 for song in songs for p in song.notes[:, 2])
    assert is_likelihood_run(run_dir)
    import musicgan.training.sampling  # noqa: F401 - provides metrics/runs.py its run loader (this test trains elsewhere)

    metrics = pianoroll_likelihood_metrics(
        run_dir, bach_shards, "valid", num_chains=8, num_betas=50, accuracy_chains=2, max_songs=2
    )
    for key in ("loglik_per_frame", "bernoulli_loglik_per_frame", "frame_accuracy"):
        assert key in metrics
    assert np.isfinite(metrics["loglik_per_frame"]) and metrics["loglik_per_frame"] < 0
    assert metrics["num_songs"] == 2 and metrics["num_frames"] > 0
    # The `musicgan evaluate` hook: figures for this run against shards, nothing for a folder.
    import musicgan.metrics.pianoroll as pianoroll
    from musicgan.metrics.evaluate import SET_METRICS, SetContext

    monkeypatch.setattr(pianoroll, "EVALUATE_CHAINS", 4)
    monkeypatch.setattr(pianoroll, "EVALUATE_BETAS", 20)
    hook = SET_METRICS["pianoroll_likelihood"]
    extra = hook(SetContext("run", "run", run_dir, [], bach_shards, "shards", "valid"))
    assert {"loglik_per_frame", "bernoulli_loglik_per_frame", "frame_accuracy"} <= set(extra)
    assert extra["bernoulli_loglik_per_frame"] < 0
    assert hook(SetContext("midi", "midi", tmp_path / "samples", [], bach_shards, "shards", "valid")) == {}
