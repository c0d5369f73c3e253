"""The schedule rules that whole runs depend on, tested on their own: which phase an epoch
belongs to (`phase_for_epoch`) and where a gradient-accumulation window closes
(`Trainer._closes_window`, on a real Trainer without running it)."""

from __future__ import annotations

import pytest

from musicgan.training.phases import Phase, phase_for_epoch


def _no_step(ctx, batch):  # the schedule never calls a phase's step function
    raise AssertionError("not called")


PRETRAIN = Phase("pretrain", 2, ("generator",), _no_step)
WARMUP = Phase("warmup", 1, ("discriminator",), _no_step)
ADVERSARIAL = Phase("adversarial", None, ("generator", "discriminator"), _no_step)


@pytest.mark.parametrize(
    "epoch, name, start",
    [
        (0, "pretrain", 0),
        (1, "pretrain", 0),
        (2, "warmup", 2),
        (3, "adversarial", 3),
        (50, "adversarial", 3),
    ],
)
def test_phase_for_epoch_walks_the_table_and_the_open_ended_phase_runs_on(epoch, name, start):
    phase, first_epoch = phase_for_epoch([PRETRAIN, WARMUP, ADVERSARIAL], epoch)
    assert (phase.name, first_epoch) == (name, start)


def test_phase_for_epoch_past_a_finite_table_stays_in_its_last_phase():
    # Every phase has a length and the run is longer: the last phase goes on, from its own start.
    phase, first_epoch = phase_for_epoch([PRETRAIN, WARMUP], 7)
    assert (phase.name, first_epoch) == ("warmup", 2)


def test_phase_for_epoch_skips_phases_of_zero_epochs():
    no_pretraining = Phase("pretrain", 0, ("generator",), _no_step)
    phase, first_epoch = phase_for_epoch([no_pretraining, ADVERSARIAL], 0)
    assert (phase.name, first_epoch) == ("adversarial", 0)


@pytest.fixture
def trainer(midi_folder_shards, tmp_path):
    from musicgan.distributed.env import init_distributed
    from musicgan.presets import get_preset
    from musicgan.training.loop import Trainer

    cfg = get_preset("debug")
    cfg.data.path = str(midi_folder_shards)
    cfg.log.progress = cfg.log.tensorboard = False
    built = Trainer(cfg, tmp_path / "run", env=init_distributed())
    yield built
    built.backend.close()


def _closing_steps(trainer, grad_accum: int, checkpoint_every: int, batches_per_epoch: int, total: int) -> list[int]:
    """Step counts (1-based) after which the optimizers step, walking `total` steps."""
    trainer.cfg.dist.grad_accum = grad_accum
    trainer.cfg.log.checkpoint_every = checkpoint_every
    trainer.batches_per_epoch, trainer.total_steps = batches_per_epoch, total
    closing = []
    for step in range(total):
        trainer.state.step, trainer.state.batch_in_epoch = step, step % batches_per_epoch
        if trainer._closes_window():
            closing.append(step + 1)
    return closing


def test_without_accumulation_every_step_closes_its_window(trainer):
    assert _closing_steps(trainer, 1, 0, 7, 14) == list(range(1, 15))


def test_accumulation_windows_also_close_at_epoch_ends_and_the_last_step(trainer):
    # Every 3 steps, and at the epoch end (7) and the run's end (14), so no checkpoint
    # (written at those points) holds half a window; counting stays global (9 after 7).
    assert _closing_steps(trainer, 3, 0, 7, 14) == [3, 6, 7, 9, 12, 14]


def test_accumulation_windows_close_before_every_periodic_checkpoint(trainer):
    assert _closing_steps(trainer, 3, 5, 7, 14) == [3, 5, 6, 7, 9, 10, 12, 14]


def test_a_run_capped_mid_window_closes_at_its_last_step(trainer):
    assert _closing_steps(trainer, 4, 0, 100, 10) == [4, 8, 10]
