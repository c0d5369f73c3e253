"""Paths from the outside world: data folders, the shard names a manifest lists, file names.

Why one module: WebDataset opens what it is given as a URL, so a shard named `pipe:CMD`
runs CMD through a shell and `-` reads standard input. Everything musicgan hands to
WebDataset is therefore an absolute path of a regular file inside the data folder, made
here and nowhere else (`shard_path`); every path option (`--data`, `--set data.path`, a
config file's data path, `evaluate --reference`, Tune's `--data`) goes through
`resolve_data_dir`. A manifest is a hand-editable file and as untrusted as the shards.

File names are bytes on Linux: a name that is not UTF-8 reaches Python as a str with
surrogates that cannot be encoded (hashing, JSON, HTML and logs would fail on it), and a
newline in a name breaks one-line messages. `utf8_name` and `printable` make such names
safe to store and to show.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from musicgan.errors import DataError

# A URL scheme as urllib (and so WebDataset's gopen) reads one: "pipe:", "http:", "file:".
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
SYMLINKED_FOLDER = "symlinked folder, not followed (it may lead outside the input folder or loop)"


def _refuse_url(text: str, what: str) -> None:
    if text == "-" or _URL_SCHEME.match(text):
        raise DataError(f"{what} {printable(text)!r} is not a local path (URLs and '-' are refused)")


def resolve_data_dir(path) -> Path:
    """A data folder option as an absolute path with symlinks resolved (Ray trials chdir, and
    shard paths are checked against it); DataError for a URL or `-`. Existence is checked
    where the folder is read (`load_manifest`), so `--dry-run` works before `prepare`."""
    text = os.fspath(path)
    _refuse_url(str(text), "data folder")
    return Path(text).expanduser().resolve()


def shard_path(data_dir: Path, name, manifest: Path) -> str:
    """The absolute path of shard `name` listed in `manifest`: a relative name of a regular
    file inside `data_dir` (resolved), else a one-line DataError naming the manifest."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise DataError(f"{manifest} lists a shard that is not a file name: {name!r}")
    _refuse_url(name, f"{manifest} lists shard")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise DataError(f"{manifest} lists shard {printable(name)!r} outside its folder (absolute or '..')")
    path = (data_dir / pure).resolve()
    if not path.is_relative_to(data_dir):
        raise DataError(
            f"{manifest} lists shard {printable(name)!r}, a link to {printable(str(path))} outside {data_dir}"
        )
    try:
        mode = path.stat().st_mode
    except OSError:
        raise DataError(f"shard missing: {printable(str(path))} (listed in {manifest})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"shard {printable(str(path))} listed in {manifest} is not a regular file")
    return str(path)


def utf8_name(name: str) -> str:
    """`name` with bytes that are not UTF-8 written as \\xNN (unchanged for UTF-8 names)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def printable(name: str) -> str:
    """`utf8_name` with control characters (newline, tab, escape...) written as escapes: one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in utf8_name(name))


def local_shards(urls) -> list[str]:
    """`urls` as strings after checking that each is an absolute local path: the loader's
    last guard, for shard lists that did not come from `split_urls`."""
    paths = [os.fspath(u) for u in urls]
    for path in paths:
        _refuse_url(str(path), "shard")
        if not os.path.isabs(path):
            raise DataError(f"shard {printable(str(path))!r} is not an absolute path (use split_urls)")
    return [str(p) for p in paths]


def files_under(root: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], list[tuple[str, str]]]:
    """(every regular file under `root` whose suffix, in any letter case, is in `suffixes`,
    sorted; [(subfolder relative to root, reason)] for each subfolder not searched).

    Symlinked subfolders are not followed (they may lead out of the folder, or loop) and an
    unreadable one cannot be listed: both are returned with the reason, never left out
    silently. Symlinked files are read like any other file.
    """
    files, skipped = [], []

    def relative(path) -> str:
        return utf8_name(Path(path).relative_to(root).as_posix()) + "/"

    def unreadable(exc: OSError) -> None:
        skipped.append((relative(exc.filename), f"unreadable folder: {exc.strerror}"))

    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        for name in [n for n in subfolders if os.path.islink(os.path.join(folder, n))]:
            subfolders.remove(name)
            skipped.append((relative(os.path.join(folder, name)), SYMLINKED_FOLDER))
        files += [Path(folder, n) for n in names if Path(n).suffix.lower() in suffixes and Path(folder, n).is_file()]
    return sorted(files), sorted(skipped)
