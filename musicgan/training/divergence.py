"""What the loop does with a step that diverged (`train.nonfinite`): skip it, roll back, or stop.

The step engine finds the divergence (a non-finite reduced value, or a backend refusing an
exploding gradient) from numbers every rank shares, so every rank lands here at the same
step. `engine.divergence_action` picks the action; this module carries it out: it logs the
batch's songs (all ranks'), counts a skipped step, or raises `Rollback` (the loop restarts
from the last checkpoint with lowered learning rates) or `DivergenceError`.
"""

from __future__ import annotations

from dataclasses import replace

from musicgan.distributed import collectives
from musicgan.errors import UserError
from musicgan.training import engine


class DivergenceError(UserError):
    """Training produced a non-finite loss or an exploding gradient and the policy is `stop`."""


class Rollback(Exception):
    """Restart the epoch loop from the last checkpoint with lowered learning rates."""


class DivergenceHandler:
    def __init__(self, policy: str, rollback_lr_factor: float) -> None:
        self.policy = policy
        self.rollback_lr_factor = rollback_lr_factor
        self.rolled_back_at: set[int] = set()  # steps that triggered a rollback

    def __call__(self, state, batch, what: str, last_checkpoint, logger) -> None:
        """A non-finite loss or exploding gradient at `state.step`, seen identically by every
        rank: returns after counting a skipped step, else raises Rollback or DivergenceError."""
        keys = collectives.all_gather_object(list(batch.keys), "batch sources")
        sources = sorted({k for rank_keys in keys for k in rank_keys})
        logger.event("divergence", state.step, what=what, policy=self.policy, sources=sources)
        message = (
            f"[musicgan] divergence at step {state.step}: {what}; batch songs: "
            f"{', '.join(sources[:8])}{' ...' if len(sources) > 8 else ''}"
        )
        action = engine.divergence_action(
            self.policy, has_checkpoint=last_checkpoint is not None, rolled_back_here=state.step in self.rolled_back_at
        )
        if action in ("skip", "skip-again"):
            state.skipped_steps += 1
            logger.message(
                message
                + (" -> step skipped" if action == "skip" else " -> diverged again after rolling back: step skipped")
            )
            return
        if action == "rollback":
            self.rolled_back_at.add(state.step)
            logger.message(
                message + f" -> rolling back to {last_checkpoint.name}, learning rates x{self.rollback_lr_factor}"
            )
            raise Rollback()
        last = last_checkpoint.name if last_checkpoint else "none written yet"
        raise DivergenceError(f"{message.removeprefix('[musicgan] ')}; stopped, last good checkpoint: {last}")

    def after_rollback(self, before, restored):
        """The restored state, with the learning rates lowered once more and the diverged step
        counted as skipped (both carry over from the state before the rollback)."""
        return replace(
            restored,
            lr_scale=before.lr_scale * self.rollback_lr_factor,
            skipped_steps=before.skipped_steps + 1,
        )
