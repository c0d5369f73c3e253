"""Real chorales for representation tests, parsed once per session (music21 parsing costs
0.1-0.3 s a score; several test files read the same few)."""

from __future__ import annotations

import functools

from musicgan.data.corpora import list_items, load_item
from musicgan.data.song import Song


@functools.lru_cache(maxsize=None)
def chorale(stem: str) -> Song:
    """The Song of music21's chorale `stem` (e.g. "bwv101.7"); callers must not modify it."""
    item = next(i for i in list_items("music21:bach") if i.source == f"music21:bach/{stem}")
    return load_item(item, "music21:bach")
