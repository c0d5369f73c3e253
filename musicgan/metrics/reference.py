"""The real songs `musicgan evaluate` compares against, and how they are read.

A shard split (through the manifest) or a folder of MIDI files, read with bad files skipped
and logged (`read_song_or_none`, `midi_files`: generated folders are read the same way),
optionally cropped to one window of N notes per song (`crop_window`; `window_exclusions`
names the features the crop fixes), summarised as `SetStatistics` and cached by content
hash (`musicgan.metrics.cache`).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicgan.data.paths import files_under, printable, resolve_data_dir
from musicgan.data.song import Song
from musicgan.errors import DataError, MidiError
from musicgan.metrics import cache
from musicgan.metrics.distributions import SetStatistics, compute_statistics

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
NUM_REFERENCE_EXAMPLES = 2


# -- reading MIDI (generated folders as well as real ones) -------------------------------------
def read_song_or_none(path) -> Song | None:
    """A MIDI file as a Song, or None (logged) when it cannot be read; runs in pool workers."""
    from musicgan.data.midi import read_midi

    try:
        return read_midi(path, source=printable(Path(path).name))
    except (MidiError, OSError) as exc:
        log.warning("skipping %s: %s", printable(str(path)), exc)
        return None


def midi_files(folder: Path) -> list[Path]:
    files, skipped = files_under(folder, MIDI_SUFFIXES)
    for name, reason in skipped:
        log.warning("skipping %s in %s: %s", name, printable(str(folder)), reason)
    return files


# -- cropping: one window per real song and the features it fixes ------------------------------
def crop_window(song: Song, num_notes: int | None, seed: int = 0) -> Song:
    """One window of `num_notes` consecutive notes (onset order) of a song, starting at a
    random note (seeded by `seed` and the song's source, so the choice is reproducible in
    any process), moved to start at the beginning of its bar with the tempo and time
    signature in force there. Songs with at most `num_notes` notes come back unchanged.

    Why: features like note count and pitch range grow with length, so generated excerpts
    must be compared with real excerpts of the same size (the C-RNN-GAN paper measures
    100-event windows of real songs for the same reason).
    """
    if not num_notes or song.num_notes <= num_notes:
        return song
    rng = np.random.default_rng([seed, zlib.crc32(song.source.encode())])
    start = int(rng.integers(0, song.num_notes - num_notes + 1))
    notes = song.notes[start : start + num_notes].copy()
    bar = song.bar_length_beats() or 4.0
    first_beat = float(song.seconds_to_beats(notes[0, 0]))
    shift = float(song.beats_to_seconds(np.floor(first_beat / bar) * bar))
    notes[:, 0] -= shift
    in_force = [b for t, b in song.tempos if t <= shift][-1:] or [song.tempos[0][1]]
    tempos = [(0.0, in_force[0])] + [(t - shift, b) for t, b in song.tempos if t > shift]
    signatures = [(0.0, n, d) for t, n, d in song.time_signatures if t <= shift][-1:]
    signatures += [(t - shift, n, d) for t, n, d in song.time_signatures if t > shift]
    return song.replace(notes=notes, tempos=tempos, time_signatures=signatures, source=f"{song.source}@{start}")


# Below this many notes per window the histogram features of real songs are so noisy that
# uniformly random notes overlap them (random-vs-train 0.48 at 16 notes on the full Bach
# corpus, <= 0.39 from 32 notes up): the report warns, the numbers stay as they are.
MIN_RELIABLE_WINDOW = 32

WINDOW_NOTE_COUNT_REASON = (
    "fixed by the window construction: every reference window holds exactly {n} notes "
    "(shorter songs whole), so the feature measures the crop, not the music"
)


def window_exclusions(window_notes: int | None) -> dict[str, str]:
    """{feature: reason} left out of the headline numbers (overlap_area_mean, kl_mean,
    realism, frechet) when the reference is cropped to `window_notes`-note windows.

    Why note_count: with windows, every reference song has N notes (songs shorter than N
    are kept whole), and N itself is the generated set's median, so the feature compares
    the crop with the crop. On the full Bach corpus it scored OA 1.000 for random notes
    and for real songs alike at N <= 80 (all distances 0), lifting random-vs-train from
    0.35 to 0.43 at N = 48, and its near-zero reference std made the z-scored Frechet
    vector hinge on a single short song. Whole songs (no window) keep every feature.
    """
    return {"note_count": WINDOW_NOTE_COUNT_REASON.format(n=window_notes)} if window_notes else {}


def fixed_length_exclusions(reference: SetStatistics) -> dict[str, str]:
    """`window_exclusions` for a reference made of fixed-length excerpts (the Ray Tune
    objective's windows of L steps of a one-note-per-step representation): when every
    reference song holds the same number of notes, note_count is fixed by the excerpting,
    not by the music. Piano-roll excerpts (note counts vary) keep every feature."""
    counts = reference.features["note_count"][:, 0]
    if len(counts) < 2 or not np.all(counts == counts[0]):
        return {}
    return window_exclusions(int(counts[0]))


# -- loading: the statistics of a shard split or a MIDI folder, cached --------------------------
@dataclass(frozen=True)
class _ReadCropped:
    """Picklable reader for pool workers: a MIDI path -> cropped Song (or None)."""

    num_notes: int | None
    seed: int

    def __call__(self, path) -> Song | None:
        song = read_song_or_none(path)
        return None if song is None else crop_window(song, self.num_notes, self.seed)


def _shard_songs(urls: list[str], max_songs: int | None, num_notes: int | None = None, seed: int = 0):
    from musicgan.data.loader import iter_songs

    for i, song in enumerate(iter_songs(urls)):
        if max_songs and i >= max_songs:
            return
        yield crop_window(song, num_notes, seed)


@dataclass
class Reference:
    kind: str  # "shards" or "midi"
    path: Path
    split: str
    stats: SetStatistics
    examples: list[Song]
    cache_key: str
    cache_hit: bool
    seconds: float
    window_notes: int | None = None


def load_reference(
    reference: str,
    split: str,
    max_songs: int | None,
    workers: int | None,
    cache_root: Path | None = None,
    window_notes: int | None = None,
    seed: int = 0,
) -> Reference:
    """Statistics of the real songs, a shard split (via the manifest) or a MIDI folder,
    optionally cropped to one window of `window_notes` notes per song (`crop_window`)."""
    path = resolve_data_dir(reference)
    start = time.perf_counter()
    window = {"window_notes": window_notes, "window_seed": seed} if window_notes else {}
    if (path / "manifest.json").is_file():
        from musicgan.data.shards import MANIFEST, split_urls

        urls = split_urls(path, split)
        key = cache.content_hash([path / MANIFEST, *urls], kind="shards", split=split, max_songs=max_songs, **window)

        def compute():
            songs = _shard_songs(urls, max_songs, window_notes, seed)
            return compute_statistics(songs, workers, keep_songs=NUM_REFERENCE_EXAMPLES)

        kind = "shards"
    elif path.is_dir():
        files = midi_files(path)
        if not files:
            raise DataError(f"reference {path} is neither a shard folder (no manifest.json) nor a folder of MIDI files")
        files = files[:max_songs] if max_songs else files
        key = cache.content_hash(files, kind="midi", max_songs=max_songs, **window)

        def compute():
            return compute_statistics(
                files, workers, read=_ReadCropped(window_notes, seed), keep_songs=NUM_REFERENCE_EXAMPLES
            )

        kind = "midi"
    else:
        raise DataError(f"reference not found: {path}")
    stats, examples, hit = cache.cached_statistics(key, compute, cache_root)
    if stats.num_songs == 0:
        raise DataError(f"reference {path} (split {split!r}) holds no readable songs")
    return Reference(kind, path, split, stats, examples, key, hit, time.perf_counter() - start, window_notes)
