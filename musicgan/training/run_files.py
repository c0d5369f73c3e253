"""A run directory as every rank of a run sees it: claim it, save and restore checkpoints, and
write the markers that say how the run ended (stopped.json, finished.json).

checkpoint.py holds the file format and the single-process file operations; this module adds
what a distributed run needs on top: rank 0 alone touches the files, and every outcome (a
refused directory, the checkpoint chosen for a resume, a failed write) is broadcast, so all
ranks go on or fail together instead of one of them waiting in the next collective until
the timeout. Every method is called on every rank.
"""

from __future__ import annotations

import json
from pathlib import Path

from musicgan.config import Config
from musicgan.distributed import collectives
from musicgan.distributed.env import DistEnv
from musicgan.errors import UserError
from musicgan.training import checkpoint as ckpt


class RunFiles:
    def __init__(
        self, run_dir: Path, cfg: Config, env: DistEnv, backend, network_names: tuple[str, ...], representation
    ) -> None:
        self.run_dir = run_dir
        self.cfg = cfg
        self.env = env
        self.backend = backend
        self.network_names = network_names
        self.representation = representation

    def prepare(self, resume: bool, overwrite: bool) -> None:
        """Rank 0 claims the run directory (see checkpoint.claim_run_dir); a refusal reaches
        every rank. A running run is neither stopped nor finished: a stale marker of an
        earlier invocation (e.g. before the run was extended) must not decide a requeue."""
        error = None
        if self.env.is_main:
            try:
                ckpt.claim_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / "config.json").write_text(self.cfg.to_json() + "\n")
                for marker in ("stopped.json", "finished.json"):
                    (self.run_dir / marker).unlink(missing_ok=True)
            except UserError as exc:
                error = str(exc)
            except OSError as exc:
                error = f"cannot prepare run directory {self.run_dir}: {exc}"
        error = collectives.broadcast_object(error, "run directory")
        if error:
            raise UserError(error)

    def latest_valid(self) -> Path | None:
        """The newest checkpoint that loads, chosen (and announced) by rank 0 for every rank; None if none."""
        chosen = None
        if self.env.is_main:
            found = ckpt.find_latest_valid(self.run_dir)
            chosen = str(found[0]) if found else None
            print(
                f"[musicgan] resuming from {chosen}"
                if chosen
                else "[musicgan] no checkpoint to resume: starting fresh",
                flush=True,
            )
        chosen = collectives.broadcast_object(chosen, "checkpoint choice")
        return None if chosen is None else Path(chosen)

    def restore(self, path: Path) -> dict:
        """Load `path` into the networks, optimizers, backend extras and representation; returns
        the checkpoint's dict (the loop's counters are in it: TrainState.from_checkpoint)."""
        state = ckpt.load_checkpoint(path)
        hint = ckpt.model_differences(state.get("config", {}), self.cfg.to_dict())
        for name in self.network_names:
            ckpt.load_network(
                self.backend.module(name), ckpt.network_state(state, name), name=name, source=path, hint=hint
            )
        self.backend.load_optimizer_state(state.get("optimizers", {}))
        self.backend.load_extra(ckpt.checkpoint_dir(self.run_dir), path.stem)
        if "representation" in state:
            self.representation.load_state_dict(state["representation"])
        return state

    def save(self, step: int, loop_state: dict) -> Path:
        """Checkpoint `step` with the loop's counters (`loop_state`, TrainState.to_dict). DeepSpeed
        engines save on all ranks; rank 0 writes the .pt; a failure ends every rank at once."""
        tag = Path(ckpt.checkpoint_name(step)).stem
        self.backend.save_extra(ckpt.checkpoint_dir(self.run_dir), tag)
        path = ckpt.checkpoint_dir(self.run_dir) / ckpt.checkpoint_name(step)
        error = None
        if self.env.is_main:
            path, error = ckpt.save_or_error(
                self.run_dir, lambda: self.checkpoint_state(loop_state), step, self.cfg.log.keep
            )
        error = collectives.broadcast_object(error, "checkpoint result")
        if error:
            raise ckpt.CheckpointWriteError(error)
        return path

    def checkpoint_state(self, loop_state: dict) -> dict:
        return {
            **ckpt.pack_networks({n: self.backend.module(n).state_dict() for n in self.network_names}),
            "optimizers": self.backend.optimizer_state(),
            "representation": self.representation.state_dict(),
            "config": self.cfg.to_dict(),
            "world_size": self.env.world_size,
            "backend": self.backend.name,
            **loop_state,
        }

    def mark_finished(self, loop_state: dict) -> None:
        if self.env.is_main:
            (self.run_dir / "finished.json").write_text(json.dumps(loop_state) + "\n")

    def mark_stopped(self, step: int, reason: str, checkpoint: Path) -> None:
        if self.env.is_main:
            (self.run_dir / "stopped.json").write_text(
                json.dumps({"step": step, "reason": reason, "checkpoint": str(checkpoint)}) + "\n"
            )
