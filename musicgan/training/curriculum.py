"""Sequence-length curriculum: the paper grows the window by 4 events per epoch up to 100."""

from __future__ import annotations

from musicgan.config import CurriculumConfig


def seq_len_for_epoch(cfg: CurriculumConfig, epoch: int, grows: bool = True) -> int:
    """min(start + growth * epoch, max_len); `grows=False` phases train at max_len."""
    if not grows:
        return cfg.max_len
    return min(cfg.start + cfg.growth * epoch, cfg.max_len)
