"""The trainer's full step against a bare hand-written PyTorch step of the same models.

musicgan's step is the real loop (`Trainer.run_epochs`): per-step reseeding, the phase
table's step function through the backend's wrappers, the one all-reduce of losses and
flags, freezing decision, clipping and SGD through the backend, step bookkeeping, the
progress bar and scalar logging (JSONL + TensorBoard) every `log.interval` steps. Only the
loader is replaced: every step gets the same pre-built batch (`replayed_batches`), so data
loading is excluded from both sides.

The bare step is the same math written out by hand on copies of the same networks: G's
free-running forward, D on real and (detached) fake in one batch, BCE and feature-matching
losses with the L2 penalty (G's from that same D forward, or from a second frozen one with
`model.crnngan_shared_d_forward=false`), then for G and for D: zero_grad, backward, clip_grad_norm_,
SGD step. `test_bench.py` holds the two equal (weights after a step) so the comparison is
of identical work.
"""

from __future__ import annotations

import copy
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from musicgan import losses
from musicgan.training.phases import frozen_parameters

# Config overrides that make the benchmarked step the paper's adversarial step at full
# length on every repetition: no MLE pretraining phase (epoch 0 is adversarial), the
# curriculum starts at its maximum (100 steps), and freezing is off so that both networks
# are updated at every step, as in the bare step (a frozen network would skip work).
ADVERSARIAL_FULL_LENGTH = ("train.pretrain_epochs=0", "train.freeze_d_threshold=0", "train.freeze_g_threshold=0")


class _ReplayLoader:
    """Yields one pre-built batch `num_batches` times; the loader interface the loop uses.

    Optionally measures the loop itself: `loop_s` gets the wall and `loop_cpu_s` the CPU
    seconds from handing out a batch to the request for the next one (one full loop
    iteration: step, bookkeeping, logging), and `between()` runs after each such iteration,
    outside the measured span (the bare step timed in alternation with the trainer's)."""

    num_skipped = 0
    num_shard_errors = 0

    def __init__(self, batch, num_batches: int, between=None, device: torch.device | None = None) -> None:
        self.batch = batch
        self.num_batches = num_batches
        self.between = between
        self.device = device
        self.loop_s: list[float] = []
        self.loop_cpu_s: list[float] = []

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        from musicgan.benchmarks.timing import sync

        for index in range(self.num_batches):
            if self.between is None:
                yield self.batch
                continue
            start, cpu_start = time.perf_counter(), time.process_time()
            yield self.batch
            sync(self.device)
            self.loop_s.append(time.perf_counter() - start)
            self.loop_cpu_s.append(time.process_time() - cpu_start)
            self.between()


@contextmanager
def replayed_batches(trainer, batch, between=None, device: torch.device | None = None):
    """Inside the block the trainer's loader (its `loader_factory` seam) replays `batch`
    (loader excluded); yields the list of replay loaders made (their `loop_s` when `between`
    is given)."""
    made: list[_ReplayLoader] = []

    def make(*args, num_batches, **kwargs):
        made.append(_ReplayLoader(batch, num_batches, between, device))
        return made[-1]

    original = trainer.loader_factory
    trainer.loader_factory = make
    try:
        yield made
    finally:
        trainer.loader_factory = original


def first_batch(trainer, seq_len: int):
    """One real batch from the trainer's own shards and representation (the replayed one)."""
    from musicgan.data.loader import make_loader

    cfg = trainer.cfg
    loader = make_loader(
        trainer.train_urls,
        trainer.representation,
        seq_len=seq_len,
        batch_size=cfg.data.batch_size,
        num_batches=1,
        seed=cfg.train.seed,
        epoch=0,
        rank=trainer.env.rank,
        world_size=trainer.env.world_size,
        num_workers=0,
    )
    return next(iter(loader))


def build_trainer(cfg, run_dir, env):
    """A real Trainer with its logger open (what `fit` does before the loop)."""
    from musicgan.training.logger import RunLogger
    from musicgan.training.loop import Trainer

    if env.is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)  # the logger's file lives there
    logger = RunLogger(
        Path(run_dir),
        enabled=env.is_main,
        total_steps=10**9,
        tensorboard=cfg.log.tensorboard,
        progress=cfg.log.progress,
    )
    trainer = Trainer(cfg, run_dir, env=env, logger=logger)
    trainer.prepare_run_dir()
    trainer.batches_per_epoch = 10**9  # one endless epoch: no end-of-epoch checkpoint or sampling
    return trainer


@contextmanager
def open_trainer(cfg, run_dir, env):
    """`build_trainer`, closed (logger, backend) however the block ends."""
    trainer = build_trainer(cfg, run_dir, env)
    try:
        yield trainer
    finally:
        trainer.logger.close()
        trainer.backend.close()


def run_trainer_steps(trainer, batch, steps: int, between=None) -> tuple[list[float], list[float]]:
    """`steps` more iterations of the real training loop on the replayed batch, in one
    `run_epochs` call. With `between`, each of the first steps - 1 iterations is timed
    (wall and CPU seconds; the loop does not ask for a batch after its last step) and
    `between()` runs after each; returns (wall seconds, CPU seconds) per timed iteration."""
    trainer.state.batch_in_epoch = 0  # the replayed stream restarts; nothing to skip
    trainer.total_steps = trainer.state.step + steps
    with replayed_batches(trainer, batch, between, trainer.env.device) as made:
        finished = trainer.run_epochs()
    assert finished and trainer.state.step == trainer.total_steps
    return made[-1].loop_s, made[-1].loop_cpu_s


# -- the bare step ------------------------------------------------------------------------------
@dataclass
class BareNets:
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ddp_g: torch.nn.Module | None = None  # DDP wrappers at world size > 1
    ddp_d: torch.nn.Module | None = None


def bare_copies(trainer, distributed: bool = False) -> BareNets:
    """Deep copies of the trainer's networks (same weights) with plain SGD optimizers."""
    o = trainer.cfg.optim
    generator = copy.deepcopy(trainer.backend.module("generator"))
    discriminator = copy.deepcopy(trainer.backend.module("discriminator"))
    nets = BareNets(
        generator,
        discriminator,
        torch.optim.SGD(generator.parameters(), lr=o.g_lr, momentum=o.momentum),
        torch.optim.SGD(discriminator.parameters(), lr=o.d_lr, momentum=o.momentum),
    )
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        from musicgan.distributed.dispatch import MethodDispatch

        ids = [generator.dense.weight.device.index] if generator.dense.weight.is_cuda else None
        with warnings.catch_warnings():  # broadcast_buffers=False is deliberate (docs/distributed-pitfalls.md, DDP)
            warnings.simplefilter("ignore", FutureWarning)
            nets.ddp_g = DDP(MethodDispatch(generator), device_ids=ids, broadcast_buffers=False)
            nets.ddp_d = DDP(MethodDispatch(discriminator), device_ids=ids, broadcast_buffers=False)
    return nets


def _l2(module: torch.nn.Module, scale: float) -> torch.Tensor:
    return scale * sum(p.square().sum() for p in module.parameters()) / 2


def bare_step(nets: BareNets, batch, cfg, device: torch.device) -> tuple[float, float]:
    """One adversarial step of the paper's recipe written out by hand; (g_loss, d_loss)."""
    generator, discriminator = nets.generator, nets.discriminator
    run_g = nets.ddp_g or (lambda method, *a: generator(*a))
    run_d = nets.ddp_d or (lambda method, *a: discriminator(*a))
    real = batch.x.to(device)  # (B, T, F)
    lengths = batch.lengths.to(device)
    batch_size, seq_len = real.shape[0], real.shape[1]
    real_w = losses.valid_steps(lengths, seq_len).to(real.dtype)  # (B, T)

    shared = cfg.model.crnngan_shared_d_forward
    fake = run_g("forward", batch_size, seq_len)  # (B, T, F)
    fake_leaf = fake.detach().requires_grad_(shared)
    both = torch.cat([real, fake_leaf])
    logits, features = run_d("forward", both, torch.cat([lengths, torch.full_like(lengths, seq_len)]))
    real_bce = F.binary_cross_entropy_with_logits(logits[:batch_size], torch.ones_like(real_w), reduction="none")
    fake_bce = F.binary_cross_entropy_with_logits(logits[batch_size:], torch.zeros_like(real_w), reduction="none")
    d_loss = (real_bce * real_w).sum() / real_w.sum().clamp_min(1.0) + fake_bce.mean()

    if shared:  # G's loss from the same forward (musicgan's default)
        fake_features = features[batch_size:]
    else:
        with frozen_parameters(discriminator):
            _, fake_features = discriminator(fake, None)
    # Feature matching (batch means per step over the real rows' valid steps).
    w = real_w.unsqueeze(-1)  # (B, T, 1)
    rows = w.sum(0).clamp_min(1.0)  # (T, 1)
    per_step = ((features[:batch_size].detach() * w).sum(0) / rows - (fake_features * w).sum(0) / rows).square().sum(-1)
    steps = (w.sum(0).squeeze(-1) > 0).to(per_step.dtype)
    g_loss = (per_step * steps).sum() / steps.sum().clamp_min(1.0)

    if shared:
        # Its gradient w.r.t. the fakes (input gradients only: D's weights get none), pushed
        # into G by a surrogate whose gradient is exactly that; the value stays g_loss's.
        (fake_grad,) = torch.autograd.grad(g_loss, fake_leaf, retain_graph=True)
        surrogate = (fake * fake_grad).sum()
        g_loss = surrogate + (g_loss - surrogate).detach()
    l2, clip = cfg.optim.l2, cfg.optim.grad_clip
    g_total = g_loss + _l2(generator, l2)
    d_total = d_loss + _l2(discriminator, l2)
    for module, optimizer, loss in ((generator, nets.opt_g, g_total), (discriminator, nets.opt_d, d_total)):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
    return float(g_total.detach()), float(d_total.detach())
