"""Run logging on rank 0: JSON lines (log.jsonl), TensorBoard scalars/images, a progress bar.

Other ranks get a `RunLogger(enabled=False)` whose methods do nothing, so the loop calls
the same methods on every rank without branching on the rank.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("musicgan")


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def step_scalars(values: dict, state, trained: list[str], **train: float) -> dict:
    """One train row: the step's reduced values (bare stat names under stats/), `train/*`,
    and per trained network whether it was held and how many updates it has taken
    (`state` is the loop's TrainState)."""
    row = {(k if "/" in k else f"stats/{k}"): v for k, v in values.items()}
    row.update({f"train/{k}": v for k, v in train.items()})
    row.update({f"freeze/{n}": float(n in state.held) for n in trained})
    row.update({f"updates/{n}": state.updates.get(n, 0) for n in trained})
    return row


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        total_steps: int,
        tensorboard: bool,
        progress: bool,
        initial_step: int = 0,
    ) -> None:
        self.enabled = enabled
        self.jsonl = None
        self.writer = None
        self.bar = None
        if not enabled:
            return
        self.jsonl = open(run_dir / "log.jsonl", "a", buffering=1)  # appends across resumes
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a core dependency; tolerate a trimmed install
                log.warning("tensorboard is not installed: scalars go to log.jsonl only")
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps,
                initial=initial_step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                disable=None,
            )

    @classmethod
    def for_run(cls, run_dir: Path, log_cfg, enabled: bool, total_steps: int, initial_step: int) -> "RunLogger":
        """The trainer's logger: TensorBoard and the progress bar as the config's `log` section says."""
        return cls(
            run_dir,
            enabled=enabled,
            total_steps=total_steps,
            tensorboard=log_cfg.tensorboard,
            progress=log_cfg.progress,
            initial_step=initial_step,
        )

    def event(self, kind: str, step: int, **fields) -> None:
        """One JSON line: {"event": kind, "step": step, "time": ..., **fields}."""
        if not self.enabled:
            return
        record = {"event": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in fields.items()})
        self.jsonl.write(json.dumps(record) + "\n")

    def scalars(self, step: int, values: dict[str, float], **fields) -> None:
        if not self.enabled:
            return
        self.event("train", step, **fields, **values)
        if self.writer is not None:
            for key, value in values.items():
                value = _plain(value)
                if isinstance(value, (int, float)) and value is not None:
                    self.writer.add_scalar(key, value, step)

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        """(H, W, 3) uint8 image, e.g. a piano roll of a generated sample."""
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def progress(self, steps: int = 1, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(steps)
            if postfix:
                self.bar.set_postfix(
                    {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in postfix.items()}, refresh=False
                )

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def skipped_samples(self, state, skipped: int, shard_errors: int) -> None:
        """An epoch's corrupt samples (all ranks; `state.skipped_samples` the run's total so far):
        a message when there were any, a `data` event always."""
        total = state.skipped_samples
        if skipped or shard_errors:
            self.message(
                f"[musicgan] epoch {state.epoch}: {skipped} corrupt samples skipped "
                f"({total} in total), {shard_errors} unreadable shard reads"
            )
        self.event(
            "data",
            state.step,
            epoch=state.epoch,
            skipped_samples=skipped,
            skipped_samples_total=total,
            shard_errors=shard_errors,
        )

    def stopped(self, step: int, reason: str, checkpoint: Path) -> None:
        self.event("stopped", step, reason=reason, checkpoint=str(checkpoint))
        self.message(
            f"[musicgan] stopped at step {step} ({reason}); checkpoint {checkpoint}. "
            f"Resume with the same command plus --resume."
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
