"""Piano-roll likelihood benchmarks for RNN-RBM / LSTM-RBM runs (docs/metrics.md, last part).

Protocol (Boulanger-Lewandowski et al. 2012): 88-key binary frames (MIDI 21-108), songs
transposed to C major / C minor, one frame per quarter note for chorales -- whatever the
run's own piano-roll representation says, since the run was trained on it. Every song of
the split is read whole, frame by frame:

loglik_per_frame            mean over all frames of log P(v_t | v_<t) in nats. For an RBM
                            family, log P = -F_t(v_t) - log Z_t with log Z_t of every frame's
                            conditional RBM estimated by annealed importance sampling
                            (`musicgan.models.rbm.ais_log_partition`: base = the frame's RBM
                            with W = 0, `num_betas` inverse temperatures, `num_chains` chains,
                            log of the mean importance weight). The AIS log Z is biased low
                            in expectation, so this figure is slightly optimistic;
                            `loglik_ais_stderr` is the mean per-frame standard error.
bernoulli_loglik_per_frame  the same for independent per-key Bernoullis fitted on the train
                            split (add-one smoothing), the sanity baseline.
frame_accuracy              TP / (TP + FP + FN) summed over all frames (Bay et al. 2009), the
                            prediction of frame t from v_<t being the keys whose probability,
                            averaged over `accuracy_chains` Gibbs chains of sample_gibbs_steps
                            sweeps from zeros, exceeds 0.5 (the generation procedure).
bernoulli_frame_accuracy    the baseline's: keys with train frequency above 0.5 (usually none).

`pianoroll_likelihood_metrics(run, shards)` is what `musicgan evaluate` calls for runs whose
model family is in `LIKELIHOOD_FAMILIES`; `rbm_likelihood_metrics` is the pure core.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from musicgan.errors import UserError
from musicgan.metrics.runs import load_run

LIKELIHOOD_FAMILIES = ("rnnrbm", "lstmrbm")
# AIS settings of `musicgan evaluate`: on the chorale valid split (~2,000 frames) this is a
# few CPU minutes; the AIS standard error is reported next to the figure.
EVALUATE_CHAINS = 16
EVALUATE_BETAS = 200


def fit_bernoulli(rolls: list[np.ndarray], smoothing: float = 1.0) -> np.ndarray:
    """Per-key on-probability (V,) over all frames of `rolls` (each (T, V)), add-`smoothing`."""
    frames = sum(len(r) for r in rolls)
    on = sum(r.sum(axis=0) for r in rolls) if rolls else 0.0
    return (np.asarray(on, dtype=np.float64) + smoothing) / (frames + 2.0 * smoothing)


def bernoulli_log_likelihood(roll: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """log P(v_t) per frame (T,) of a roll (T, V) under independent keys with P(on) = probs."""
    roll = roll.astype(np.float64)
    return roll @ np.log(probs) + (1.0 - roll) @ np.log1p(-probs)


def accuracy_counts(predicted: np.ndarray, target: np.ndarray) -> tuple[int, int, int]:
    """(TP, FP, FN) summed over frames of two boolean rolls (T, V)."""
    predicted, target = predicted.astype(bool), target.astype(bool)
    return (int((predicted & target).sum()), int((predicted & ~target).sum()), int((~predicted & target).sum()))


def frame_accuracy(tp: int, fp: int, fn: int) -> float:
    """TP / (TP + FP + FN); NaN when nothing was predicted or present."""
    total = tp + fp + fn
    return tp / total if total else math.nan


@torch.no_grad()
def rbm_likelihood_metrics(
    model,
    rolls: list[np.ndarray],
    train_rolls: list[np.ndarray],
    *,
    num_chains: int = 32,
    num_betas: int = 500,
    accuracy_chains: int = 10,
    gibbs_steps: int = 25,
    seed: int = 0,
    exact: bool = False,
) -> dict:
    """The metrics of the module docstring for a `RecurrentRBM` on `rolls` (list of (T, 88)).

    exact=True computes log Z by enumeration instead of AIS (tiny RBMs only: tests).
    """
    from musicgan.models.rbm import ais_log_partition, exact_log_partition, free_energy

    rolls = [r for r in rolls if len(r)]
    if not rolls:
        raise UserError("no non-empty piano rolls to evaluate")
    torch.manual_seed(seed)
    model.eval()
    device = model.weight.device
    neg_free_energy, all_bv, all_bh = [], [], []
    tp = fp = fn = 0
    for roll in rolls:
        v = torch.as_tensor(roll, dtype=torch.float32, device=device)  # (T, V)
        bv_t, bh_t = model.conditional_biases(v[None])
        all_bv.append(bv_t[0])
        all_bh.append(bh_t[0])
        neg_free_energy.append(-free_energy(v, model.weight, bv_t[0], bh_t[0]).double())
        predicted = model.predict_frames(v, k=gibbs_steps, num_chains=accuracy_chains).cpu().numpy()
        counts = accuracy_counts(predicted, roll > 0.5)
        tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    bv, bh = torch.cat(all_bv), torch.cat(all_bh)  # (N, V), (N, H): every frame of every song
    if exact:
        log_z, stderr = exact_log_partition(model.weight, bv, bh), torch.zeros(bv.shape[0], dtype=torch.float64)
    else:
        log_z, stderr = ais_log_partition(model.weight, bv, bh, num_chains=num_chains, num_betas=num_betas)
    loglik = torch.cat(neg_free_energy).cpu() - log_z.cpu()  # (N,)

    probs = fit_bernoulli([r.astype(np.float64) for r in train_rolls])
    base = np.concatenate([bernoulli_log_likelihood(r, probs) for r in rolls])
    base_pred = np.broadcast_to(probs > 0.5, (1, probs.shape[0]))
    base_counts = np.sum([accuracy_counts(np.repeat(base_pred, len(r), 0), r > 0.5) for r in rolls], axis=0)
    return {
        "loglik_per_frame": float(loglik.mean()),
        "loglik_ais_stderr": float(stderr.mean()),
        "bernoulli_loglik_per_frame": float(base.mean()),
        "frame_accuracy": frame_accuracy(tp, fp, fn),
        "bernoulli_frame_accuracy": frame_accuracy(*(int(c) for c in base_counts)),
        "num_songs": len(rolls),
        "num_frames": int(loglik.shape[0]),
        "estimator": "exact" if exact else f"ais(chains={num_chains}, betas={num_betas})",
    }


def _split_rolls(shard_dir, split: str, representation, max_songs: int | None = None) -> list[np.ndarray]:
    from musicgan.data.loader import iter_encoded
    from musicgan.data.shards import split_urls

    rolls = []
    for _, roll in iter_encoded(split_urls(shard_dir, split), representation):
        if len(roll):
            rolls.append(roll)
        if max_songs is not None and len(rolls) >= max_songs:
            break
    return rolls


def run_model_name(run_dir_or_checkpoint) -> str | None:
    """`model.name` of a run (directory with config.json, or one of its checkpoints); None
    when there is no readable config."""
    path = Path(run_dir_or_checkpoint)
    run_dir = path if path.is_dir() else path.parent.parent
    config = run_dir / "config.json"
    if not config.is_file():
        return None
    try:
        saved = json.loads(config.read_text())
    except (OSError, ValueError):  # ValueError: bad JSON, or bytes that are not UTF-8
        return None
    model = saved.get("model") if isinstance(saved, dict) else None  # a hand-edited file may hold anything
    name = model.get("name") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


def is_likelihood_run(run_dir_or_checkpoint) -> bool:
    """True when the run (directory with config.json, or a checkpoint's run) is an RBM family."""
    return run_model_name(run_dir_or_checkpoint) in LIKELIHOOD_FAMILIES


def pianoroll_likelihood_metrics(
    run_dir_or_checkpoint,
    shard_dir,
    split: str = "valid",
    *,
    num_chains: int = EVALUATE_CHAINS,
    num_betas: int = EVALUATE_BETAS,
    accuracy_chains: int = 10,
    max_songs: int | None = None,
    seed: int = 0,
) -> dict:
    """Load an RNN-RBM / LSTM-RBM run (directory: newest valid checkpoint; or a .pt file) and
    score `split` of `shard_dir` against the Bernoulli baseline fitted on its train split."""
    path = Path(run_dir_or_checkpoint)
    run_dir, checkpoint = (path.parent.parent, path) if path.is_file() else (path, None)
    cfg, _family, representation, networks, ckpt_path = load_run(run_dir, checkpoint)
    if cfg.model.name not in LIKELIHOOD_FAMILIES:
        raise UserError(
            f"piano-roll likelihood needs an RBM run ({', '.join(LIKELIHOOD_FAMILIES)}), "
            f"got model.name={cfg.model.name!r}"
        )
    rolls = _split_rolls(shard_dir, split, representation, max_songs)
    train_rolls = _split_rolls(shard_dir, "train", representation)
    metrics = rbm_likelihood_metrics(
        networks["generator"],
        rolls,
        train_rolls,
        num_chains=num_chains,
        num_betas=num_betas,
        accuracy_chains=accuracy_chains,
        gibbs_steps=cfg.model.sample_gibbs_steps,
        seed=seed,
    )
    metrics.update({"split": split, "checkpoint": str(ckpt_path)})
    return metrics


def pianoroll_set_metric(context) -> dict:
    """`musicgan evaluate` hook (metrics.evaluate.register_set_metric): the likelihood metrics
    of an RNN-RBM / LSTM-RBM run against a shard reference's split; {} for anything else
    (MIDI folders, other model families, MIDI-folder references)."""
    if context.kind != "run" or context.reference_kind != "shards" or not is_likelihood_run(context.path):
        return {}
    metrics = pianoroll_likelihood_metrics(
        context.path, context.reference, context.split, num_chains=EVALUATE_CHAINS, num_betas=EVALUATE_BETAS
    )
    keys = (
        "loglik_per_frame",
        "loglik_ais_stderr",
        "bernoulli_loglik_per_frame",
        "frame_accuracy",
        "bernoulli_frame_accuracy",
        "num_frames",
    )
    return {key: float(metrics[key]) for key in keys}
