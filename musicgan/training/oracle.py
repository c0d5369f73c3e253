"""SeqGAN's synthetic oracle experiment (Yu et al. 2017, section 5): a randomly initialised
LSTM (the generator's architecture, every weight drawn from N(0, 1)) is the true data
distribution; it samples the training set, and a model is scored by NLL-oracle, the
oracle's mean per-token negative log-likelihood of the model's own samples (lower is
better; the random-G floor is an untrained generator's score).

`musicgan oracle --preset seqgan-oracle --seeds 0,1,2`: per seed, one oracle and one
training set; then the MLE model (every epoch `pretrain_g`) and SeqGAN (the family's phase
table) train on that same data for the same number of epochs, from the same initial
generator, and the three scores print side by side. Self-contained: the oracle's
sequences are streamed to the step engine directly as token batches (no shards: tokens of
a vocabulary of 500 are no music), in one process, through the same phase table, step
functions and DDP backend code as `musicgan train`.

Config read: model.seqgan_oracle_vocab, seqgan_oracle_samples (training set and scored
samples), curriculum.max_len (length), data.batch_size, train.epochs and every key the
seqgan family reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from musicgan.config import Config
from musicgan.data.loader import Batch
from musicgan.distributed.ddp import DDPBackend
from musicgan.distributed.env import DistEnv
from musicgan.errors import ConfigError
from musicgan.models.seqgan import SeqGenerator
from musicgan.presets import same_budget_mle
from musicgan.training import engine
from musicgan.training.families import get_family
from musicgan.training.phases import StepContext, phase_for_epoch

ORACLE_INIT_STD = 1.0  # the paper's oracle: N(0, 1) weights, a far from uniform distribution


@dataclass(frozen=True)
class OracleTokens:
    """The oracle's token space, in the place of a representation (the family reads these)."""

    vocab_size: int
    name: str = "oracle"


def make_oracle(cfg: Config, seed: int) -> SeqGenerator:
    torch.manual_seed(seed)
    m = cfg.model
    return SeqGenerator(m.seqgan_oracle_vocab, m.embedding_dim, m.g_hidden, init_std=ORACLE_INIT_STD).eval()


@torch.no_grad()
def oracle_nll(oracle: SeqGenerator, generator: SeqGenerator, num: int, length: int) -> float:
    """The oracle's mean per-token NLL of `num` samples of `generator`."""
    return float(-oracle.log_probs(generator.sample(num, length)).mean())


def train_on_oracle(cfg: Config, data: torch.Tensor, seed: int) -> SeqGenerator:
    """The seqgan family's phase table on `data` (N, T), one process; returns the trained G."""
    family = get_family(cfg)
    torch.manual_seed(seed)  # the same initial generator for MLE and SeqGAN
    networks = family.build_networks(OracleTokens(cfg.model.seqgan_oracle_vocab))
    backend = DDPBackend(
        DistEnv(0, 1, 0, torch.device("cpu"), False),
        grad_clip=cfg.optim.grad_clip,
        max_grad_norm=cfg.train.max_grad_norm,
    )
    backend.setup(networks, family.optimizers())
    ctx = StepContext(cfg, backend, torch.device("cpu"), data.shape[1])
    phases, batch_size = family.phases(), cfg.data.batch_size
    batches = max(1, len(data) // batch_size)
    run_rates = {name: backend.get_lr(name) for name in family.learning_rates()}
    for epoch in range(cfg.train.epochs):
        phase, start = phase_for_epoch(phases, epoch)
        order = torch.randperm(len(data))
        for index in range(batches):
            rows = data[order[index * batch_size : (index + 1) * batch_size]]
            batch = Batch(rows[..., None], torch.full((len(rows),), rows.shape[1]), ["oracle"] * len(rows))
            plan = engine.StepPlan.at(phase, (epoch - start) * batches + index)
            ctx.global_step = epoch * batches + index
            engine.set_learning_rates(backend, phase, ctx, run_rates)
            out = engine.forward(plan, ctx, batch)
            reduced = engine.reduce(out, stop=False, budget_spent=False, what="oracle step")
            report = engine.update(backend, plan, out, reduced, boundary=True, redo=None)
            engine.after_updates(plan, ctx, report)
    return networks["generator"].eval()


def oracle_scores(cfg: Config, seed: int) -> dict[str, float]:
    """{random, mle, seqgan}: NLL-oracle of each generator, one oracle and data set per seed."""
    if cfg.model.name != "seqgan":
        raise ConfigError(f"the oracle experiment trains model.name=seqgan, got {cfg.model.name!r}")
    oracle, length, num = make_oracle(cfg, seed), cfg.curriculum.max_len, cfg.model.seqgan_oracle_samples
    data = oracle.sample(num, length)
    torch.manual_seed(seed)
    untrained = get_family(cfg).build_networks(OracleTokens(cfg.model.seqgan_oracle_vocab))["generator"]
    scores = {"random": oracle_nll(oracle, untrained, num, length)}
    for label, run_cfg in (("mle", same_budget_mle(cfg)), ("seqgan", cfg)):
        scores[label] = oracle_nll(oracle, train_on_oracle(run_cfg, data, seed), num, length)
    return scores


def run_oracle(cfg: Config, seeds: list[int], echo: Callable[[str], None] = print) -> dict[int, dict[str, float]]:
    """Every seed's scores, one table row each as it finishes, then the means."""
    echo("seed  random-G   MLE   SeqGAN   (NLL-oracle, lower is better)")
    results = {}
    for seed in seeds:
        results[seed] = oracle_scores(cfg, seed)
        echo(f"{seed:4d}  {results[seed]['random']:8.3f}  {results[seed]['mle']:6.3f}  {results[seed]['seqgan']:7.3f}")
    means = {k: sum(r[k] for r in results.values()) / len(results) for k in ("random", "mle", "seqgan")}
    echo(f"mean  {means['random']:8.3f}  {means['mle']:6.3f}  {means['seqgan']:7.3f}")
    return results
