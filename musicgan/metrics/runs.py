"""Loading a trained run, for the set-level metrics that score a run's model and not only its
samples: the RNN-RBM piano-roll likelihood (pianoroll.py), MuseGAN's freshly generated bars
(musegan.py) and BLEU through the run's fitted token vocabulary (bleu.py).

Loading a run needs the family registry, which lives in training/; metrics/ sits below
training/ and never imports it, not even inside a function (tests/test_imports.py). So the
dependency points the other way: `musicgan.training.sampling` hands its `load_run` in here
when it is imported, and the metrics call `load_run` below. `musicgan evaluate` and every
caller that trained or sampled in the same process have imported it by then; a Python caller
that only imported metrics/ gets a one-line error naming the import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from musicgan.errors import UserError

# (run_dir, checkpoint or None) -> (config, family, representation, networks, checkpoint path)
RunLoader = Callable[[Path, "Path | None"], tuple]
_loader: RunLoader | None = None


def provide_run_loader(loader: RunLoader) -> None:
    """Called once by musicgan.training.sampling at import."""
    global _loader
    _loader = loader


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple:
    """(config, family, representation, networks in eval mode, checkpoint path) of a run: its
    newest valid checkpoint, or `checkpoint` when given."""
    if _loader is None:
        raise UserError(
            f"scoring the model of run {run_dir} needs musicgan.training: import musicgan.training.sampling first"
        )
    return _loader(Path(run_dir), None if checkpoint is None else Path(checkpoint))
