"""User-facing errors: the CLI prints `error: <message>` (one line, no traceback) and exits 2.

Raise `UserError` (or a subclass) for anything the user can fix: bad paths, bad configs,
unusable input. Use `assert` only for internal invariants.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for the
    one-line errors of the CLI and of messages passed between ranks."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class UserError(Exception):
    """A problem the user can fix; its message is one human-readable line."""


class ConfigError(UserError):
    """An invalid config key or value; the message names the key."""


class DataError(UserError):
    """Missing or unusable input data (MIDI folder, corpus, shards)."""


class MidiError(DataError):
    """A MIDI file that cannot be used; the message is the one-line reason for `skipped`."""


class SongSkipped(DataError):
    """A song a representation cannot encode (wrong metre, wrong number of parts...); the
    message is the one-line reason the loader counts and logs. Other songs still load."""
