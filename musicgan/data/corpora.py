"""Song sources: a folder of MIDI files, or a corpus bundled with the music21 package.

This is the only module that imports music21 (lazily: a MIDI-folder prepare never pays the
~0.5 s import). `list_items(spec)` enumerates what an input holds, cheaply and in a stable
order; `load_item(item)` turns one item into a `Song` and is what prepare's worker
processes run (a music21 score takes 0.05-0.3 s to parse, so this is parallelised).

Input specs:
    /path/to/folder      every *.mid / *.midi (any letter case), recursive, sorted by path;
                         source = the path relative to the folder, with "/" separators
    music21:NAME         NAME in MUSIC21_CORPORA; source = "music21:<name>/<piece>[/<tune>]"
    soundfont:notes[?..] one song per (program, pitch) to render (musicgan.data.note_corpus)

music21 scores are converted by walking the score directly (notes, chords, ties joined,
metronome marks -> tempo map) instead of going through music21's MIDI writer and back:
the writer crashes on ~15% of the Essen folk songs ("TimeSignature ... already found in this
Stream", music21 10.5) and costs another 0.1-0.5 s per score. The Song then passes the
same checks as a MIDI file would (no notes -> skipped with a reason).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicgan.data.bounds import checked_span, is_metre
from musicgan.data.note_corpus import SOUNDFONT_PREFIX, note_items, note_song
from musicgan.data.paths import files_under, utf8_name
from musicgan.data.song import DEFAULT_BPM, NUM_NOTE_COLUMNS, Song, Track
from musicgan.errors import DataError, MidiError

MIDI_SUFFIXES = (".mid", ".midi")
MUSIC21_PREFIX = "music21:"
DEFAULT_VELOCITY = 90  # music21's own default when a score has no dynamics

# name -> (corpus sub-folder, description). "bach" is special: only its chorale scores.
MUSIC21_CORPORA = {
    "bach": ("bach", "Bach chorale harmonisations (409 scores; the 371 Riemenschneider chorales are 350 of them)"),
    "essen": ("essenFolksong", "Essen folk song collection, ABC (a subset of ~8,500 tunes)"),
    "palestrina": ("palestrina", "Palestrina masses, Humdrum (~1,300 movements)"),
    "ryans-mammoth": ("ryansMammoth", "Ryan's Mammoth Collection of fiddle tunes, ABC"),
    "oneills": ("oneills1850", "O'Neill's 1850 Irish tunes, ABC"),
    "monteverdi": ("monteverdi", "Monteverdi madrigals, MusicXML"),
    "trecento": ("trecento", "Trecento (14th-century Italian) pieces, MusicXML"),
    "airds": ("airdsAirs", "Aird's Airs, ABC"),
}
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi")


@dataclass(frozen=True)
class SongItem:
    """One song to load: a MIDI file, a score file, or tune `tune` of an ABC file."""

    source: str  # stable id: relative path or music21 corpus id
    path: str  # absolute file path
    kind: str  # "midi" or "music21"
    tune: int | None = None  # ABC reference number (X:) within a multi-tune file
    skip: str = ""  # why this entry cannot be loaded (a folder not searched, a clashing name)


def _music21():
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - core dependency
        raise DataError("music21 is not installed: run ./launch/setup") from exc
    return music21


def corpus_name(spec: str) -> str:
    """ "music21:bach" -> "music21:bach", "soundfont:notes?..." -> "soundfont:notes"; a folder -> ""."""
    return spec.partition("?")[0] if spec.startswith((MUSIC21_PREFIX, SOUNDFONT_PREFIX)) else ""


def list_items(spec: str) -> list[SongItem]:
    """Every song an input spec holds, in a deterministic order (sorted by source)."""
    if spec.startswith(MUSIC21_PREFIX):
        return _music21_items(spec[len(MUSIC21_PREFIX) :])
    if spec.startswith(SOUNDFONT_PREFIX):
        return note_items(spec)
    root = Path(spec)
    if not root.exists():
        raise DataError(f"input does not exist: {spec}")
    if not root.is_dir():
        raise DataError(f"input is not a folder: {spec} (give a folder of MIDI files or music21:NAME)")
    files, folders_skipped = files_under(root, MIDI_SUFFIXES)
    items = [SongItem(source=name, path=str(root / name), kind="midi", skip=reason) for name, reason in folders_skipped]
    for path in files:
        items.append(
            SongItem(source=utf8_name(path.relative_to(root).as_posix()), path=str(path.resolve()), kind="midi")
        )
    return _unique_sources(sorted(items, key=lambda item: item.source))


def _unique_sources(items: list[SongItem]) -> list[SongItem]:
    """Two files whose names read the same once bytes that are not UTF-8 are written as \\xNN
    would share a key (WebDataset would merge their samples): the second is skipped."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.source in seen and not item.skip:
            items[i] = dataclasses.replace(
                item,
                skip="another file has this name once bytes that are not UTF-8 "
                "are written as \\xNN: rename one of them",
            )
        seen.add(item.source)
    return items


def _music21_items(name: str) -> list[SongItem]:
    if name not in MUSIC21_CORPORA:
        valid = ", ".join(MUSIC21_PREFIX + n for n in MUSIC21_CORPORA)
        raise DataError(f"unknown corpus music21:{name}; valid names: {valid}")
    music21 = _music21()
    corpus_dir = Path(music21.__file__).parent / "corpus"
    folder = corpus_dir / MUSIC21_CORPORA[name][0]
    items = []
    if name == "bach":
        # Every chorale harmonisation music21 ships: bwvNNN(.N) scores, MusicXML preferred over
        # the three Humdrum duplicates; not bwv846 (a WTC prelude) nor the .rntxt analyses.
        # (The Riemenschneider list names 371 chorales but only 350 distinct files: all in here.)
        stems = {}
        for path in sorted(folder.iterdir()):
            suffix = path.suffix.lower()
            if suffix in (".mxl", ".xml", ".krn") and path.stem.startswith("bwv") and path.stem != "bwv846":
                if path.stem not in stems or suffix != ".krn":
                    stems[path.stem] = path
        for stem, path in stems.items():
            items.append(SongItem(source=f"{MUSIC21_PREFIX}bach/{stem}", path=str(path), kind="music21"))
    else:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in SCORE_SUFFIXES or not path.is_file():
                continue
            stem = path.relative_to(folder).with_suffix("").as_posix()
            if path.suffix.lower() == ".abc":
                for tune in _abc_tune_numbers(path):
                    items.append(SongItem(f"{MUSIC21_PREFIX}{name}/{stem}/{tune}", str(path), "music21", tune))
            else:
                items.append(SongItem(f"{MUSIC21_PREFIX}{name}/{stem}", str(path), "music21"))
    unique = {item.source: item for item in items}  # duplicated X: numbers keep the first tune
    return sorted(unique.values(), key=lambda item: item.source)


_ABC_TUNE_START = re.compile(r"(?m)^X:[ \t]*(\d+)")


def _read_abc(path) -> str:
    return Path(path).read_text(encoding="latin-1")  # the corpus' ABC files are latin-1


def _abc_tune_numbers(path) -> list[int]:
    seen, numbers = set(), []
    for match in _ABC_TUNE_START.finditer(_read_abc(path)):
        number = int(match.group(1))
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    return numbers


def _abc_tune_text(path, tune: int) -> str:
    """The file header (lines before the first X:) plus the text of tune `tune` only: parsing
    one tune instead of a 300-tune file makes each item ~0.05 s instead of seconds."""
    text = _read_abc(path)
    starts = list(_ABC_TUNE_START.finditer(text))
    header = text[: starts[0].start()] if starts else ""
    for i, match in enumerate(starts):
        if int(match.group(1)) == tune:
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            return header + text[match.start() : end]
    raise MidiError(f"tune X:{tune} not found")


# -- loading (runs in worker processes) ------------------------------------------------------
def load_item(item: SongItem, corpus: str = "") -> Song:
    """Read one item into a Song; raises MidiError(reason) when it is unusable."""
    if item.skip:
        raise MidiError(item.skip)
    if item.kind == "note":
        return note_song(item, corpus)
    if item.kind == "midi":
        from musicgan.data.midi import read_midi

        song = read_midi(item.path, source=item.source)
        return song.replace(corpus=corpus)
    return _load_score(item, corpus)


def _load_score(item: SongItem, corpus: str) -> Song:
    try:
        song = score_to_song(_parse_score(item), source=item.source, corpus=corpus)
    except MidiError:
        raise
    except Exception as exc:  # music21 raises many exception types on odd scores
        text = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise MidiError(f"music21 could not read the score: {type(exc).__name__}: {text}") from None
    return checked_span(song)


def _parse_score(item: SongItem):
    """The item's music21 Score, repeats expanded as the song plays them."""
    music21 = _music21()
    if item.tune is not None:
        score = music21.converter.parse(
            _abc_tune_text(item.path, item.tune), format="abc", forceSource=True, storePickle=False
        )
    else:
        score = music21.converter.parse(item.path, forceSource=True, storePickle=False)
    if isinstance(score, music21.stream.Opus):
        score = score.scores[0] if score.scores else score
    if _has_repeats(music21, score):  # expandRepeats costs ~half the parse even when there are none
        try:  # play repeats as written, as music21's MIDI writer does
            score = score.expandRepeats()
        except Exception:  # badly formed repeat marks: keep the score as notated
            pass
    return score


def _has_repeats(music21, score) -> bool:
    kinds = (music21.bar.Repeat, music21.repeat.RepeatExpression, music21.spanner.RepeatBracket)
    return any(isinstance(element, kinds) for element in score.recurse())


def score_to_song(score, source: str = "", corpus: str = "") -> Song:
    """A music21 Score (or Part) -> Song: ties joined, grace notes dropped, repeats as given
    (load_item expands them first), tempo from metronome marks (120 bpm when there are none),
    velocity from the note's volume (90 when unset), program from each part's instrument,
    track = part index in score order, downbeat = start of measure 1 (after any pickup)."""
    music21 = _music21()
    tempos = _tempo_map(score)
    timing = Song(np.zeros((0, NUM_NOTE_COLUMNS)), tempos=tempos)
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    rows: list[list[float]] = []  # [start_ql, end_ql, pitch, velocity, program, track]
    tracks = []
    for index, part in enumerate(parts):
        instrument = part.getInstrument(returnDefault=True)
        program = instrument.midiProgram if instrument is not None and instrument.midiProgram is not None else 0
        tracks.append(Track(_part_name(part, index), int(np.clip(program, 0, 127)), False))
        open_ties: dict[int, int] = {}  # pitch -> row of the note a tie continues
        for element in part.flatten().notes:
            quarter_length = float(element.duration.quarterLength)
            if quarter_length <= 0 or not hasattr(element, "pitches"):
                continue  # grace notes; unpitched percussion
            velocity = element.volume.velocity if element.volume.velocity is not None else DEFAULT_VELOCITY
            start = float(element.offset)
            end = start + quarter_length
            # Ties joined by hand: music21's stripTies() costs as much as parsing the file.
            tones = (
                [(element.pitch.midi, element.tie)]
                if not hasattr(element, "notes")
                else [(n.pitch.midi, n.tie or element.tie) for n in element.notes]
            )
            for midi, tie in tones:
                kind = tie.type if tie is not None else None
                if kind in ("continue", "stop") and midi in open_ties:
                    rows[open_ties[midi]][1] = end
                    if kind == "stop":
                        del open_ties[midi]
                    continue
                rows.append([start, end, float(midi), float(velocity), float(program), float(index)])
                if kind in ("start", "continue"):
                    open_ties[midi] = len(rows) - 1
                else:
                    open_ties.pop(midi, None)
    if not rows:
        raise MidiError("no notes")
    table = np.array(rows, dtype=np.float64)
    onset = timing.beats_to_seconds(table[:, 0])
    offset = timing.beats_to_seconds(table[:, 1])
    notes = np.stack(
        [
            onset,
            offset - onset,
            np.clip(table[:, 2], 0, 127),
            np.clip(table[:, 3], 1, 127),
            np.clip(table[:, 4], 0, 127),
            np.zeros(len(table)),
            table[:, 5],
        ],
        axis=1,
    )
    signatures = []
    for ts in parts[0].flatten().getElementsByClass(music21.meter.TimeSignature):
        entry = (float(timing.beats_to_seconds(float(ts.offset))), int(ts.numerator), int(ts.denominator))
        if is_metre(*entry[1:]) and (not signatures or signatures[-1][1:] != entry[1:]):
            signatures.append(entry)
    downbeat_s = float(timing.beats_to_seconds(_first_downbeat_quarters(music21, parts[0])))
    return Song(
        notes=notes,
        tempos=tempos,
        time_signatures=signatures,
        source=source,
        corpus=corpus,
        tracks=tracks,
        downbeat_s=downbeat_s,
    )


def _part_name(part, index: int) -> str:
    """The part's printed name ("Soprano"), else its id, else "Part N"."""
    for name in (getattr(part, "partName", None), getattr(part, "id", None)):
        if isinstance(name, str) and name.strip():
            return " ".join(name.split())
    return f"Part {index + 1}"


def _first_downbeat_quarters(music21, part) -> float:
    """Offset in quarter notes of measure 1: after a pickup (measure 0, or a first measure
    padded on the left) the second measure; 0.0 when the part has no measures."""
    measures = list(part.getElementsByClass(music21.stream.Measure))
    if not measures:
        return 0.0
    numbered_one = next((m for m in measures if m.number == 1), None)
    if numbered_one is not None and numbered_one is not measures[0]:
        return float(numbered_one.offset)
    if len(measures) > 1 and float(measures[0].paddingLeft or 0.0) > 0.0:
        return float(measures[1].offset)
    return float(measures[0].offset)


def music21_beat_chords(item: SongItem) -> dict[int, tuple[int, str]]:
    """music21's own chord analysis of a score, the reference for musicgan.data.chords:
    {quarter beat: (root pitch class, "major" | "minor")} for every whole beat of the
    chordified score where the sounding chord is a major or minor triad (other beats left out)."""
    music21 = _music21()
    score = _parse_score(item)
    labels = {}
    for chord in score.chordify().flatten().getElementsByClass(music21.chord.Chord):
        start, stop = float(chord.offset), float(chord.offset + chord.duration.quarterLength)
        for beat in range(int(np.ceil(start)), int(np.ceil(stop))):
            if chord.isMajorTriad() or chord.isMinorTriad():
                labels[beat] = (chord.root().pitchClass, "major" if chord.isMajorTriad() else "minor")
    return labels


def _tempo_map(score) -> list[tuple[float, float]]:
    """[(time_s, quarter bpm)] from the score's metronome marks."""
    try:
        boundaries = score.metronomeMarkBoundaries()
    except Exception:  # scores without any mark or with odd ones: music21's default
        return [(0.0, DEFAULT_BPM)]
    tempos, seconds = [], 0.0
    for start, end, mark in boundaries:
        bpm = mark.getQuarterBPM() if mark is not None else None
        bpm = float(bpm) if bpm and bpm > 0 else DEFAULT_BPM
        if not tempos or tempos[-1][1] != bpm:
            tempos.append((seconds, bpm))
        seconds += float(end - start) * 60.0 / bpm
    return tempos or [(0.0, DEFAULT_BPM)]
