"""Functions that prepare's worker processes must import by name: kept in a module that
imports nothing heavy (no torch), because spawned workers re-import it."""

from __future__ import annotations

import os

from musicgan.data import prepare


def die_on_poison(job):
    """A parser that kills its worker process outright on one file (as an OOM kill would)."""
    if job[0].source.startswith("poison"):
        os._exit(9)
    return prepare._load(job)
