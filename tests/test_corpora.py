"""Input specs: MIDI folders and the music21 bundled corpora."""

from __future__ import annotations

import numpy as np
import pytest
from midi_factory import make_song, write_corpus_folder, write_song

from musicgan.data.corpora import MUSIC21_CORPORA, _abc_tune_text, list_items, load_item
from musicgan.errors import DataError, MidiError


def test_folder_items_are_recursive_any_case_sorted_and_relative(tmp_path):
    layout = write_corpus_folder(tmp_path, num_valid=6, with_malformed=False)
    items = list_items(str(tmp_path))
    sources = [item.source for item in items]
    assert sources == sorted(layout["valid"])  # notes.txt and cover.png are not listed
    assert "nested/deeper/d.midi" in sources and "B.MID" in sources and "e.mId" in sources
    assert all(item.kind == "midi" and item.path.startswith("/") for item in items)
    song = load_item(items[0])
    assert song.source == items[0].source and song.num_notes > 0 and song.corpus == ""


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_items(str(tmp_path / "missing"))
    write_song(tmp_path / "x.mid", make_song())
    with pytest.raises(DataError, match="not a folder"):
        list_items(str(tmp_path / "x.mid"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list_items(str(empty)) == []


def test_unknown_corpus_lists_valid_names():
    with pytest.raises(DataError) as info:
        list_items("music21:mozart-symphonies")
    for name in MUSIC21_CORPORA:
        assert f"music21:{name}" in str(info.value)


def test_bach_corpus_holds_the_chorales():
    items = list_items("music21:bach")
    sources = [item.source for item in items]
    assert len(items) >= 360 and sources == sorted(sources) and len(set(sources)) == len(sources)
    assert "music21:bach/bwv66.6" in sources and "music21:bach/bwv846" not in sources  # a prelude, not a chorale
    assert all(item.kind == "music21" for item in items)


def test_chorale_conversion_matches_music21s_own_midi_export():
    """Our direct score walk must give the notes music21's MIDI writer gives (checked through
    our MIDI reader), including repeats expanded as the writer does (bwv103.6 has repeats)."""
    import music21

    from musicgan.data.midi import read_midi_bytes

    items = {item.source: item for item in list_items("music21:bach")}
    for name in ("music21:bach/bwv66.6", "music21:bach/bwv103.6"):
        item = items[name]
        song = load_item(item, "music21:bach")
        score = music21.converter.parse(item.path, forceSource=True, storePickle=False)
        reference = read_midi_bytes(music21.midi.translate.streamToMidiFile(score).writestr())
        assert song.source == name and song.corpus == "music21:bach"
        assert song.notes.shape == reference.notes.shape
        np.testing.assert_allclose(song.notes[:, :3], reference.notes[:, :3], atol=2e-3)
        assert song.time_signatures[0][1:] == (4, 4)
    assert load_item(items["music21:bach/bwv66.6"]).tempos == [(0.0, 96.0)]  # its metronome mark


def test_essen_tunes_are_split_out_of_multi_tune_abc_files():
    items = list_items("music21:essen")
    assert len(items) > 5000
    first = items[0]
    assert first.tune is not None and first.source.endswith(f"/{first.tune}")
    text = _abc_tune_text(first.path, first.tune)
    assert text.count("\nX:") + text.startswith("X:") == 1  # exactly one tune
    song = load_item(first, "music21:essen")
    assert song.num_notes > 5 and song.pitches.min() > 20
    with pytest.raises(MidiError, match="not found"):
        _abc_tune_text(first.path, 10**6)


def test_key_estimate_agrees_with_music21_on_chorales():
    """Our numpy Krumhansl-Schmuckler (used to transpose piano rolls to C) against music21's."""
    import music21

    from musicgan.data.representations import estimate_key

    items = list_items("music21:bach")[::80][:5]
    for item in items:
        expected = music21.converter.parse(item.path).analyze("key.krumhanslschmuckler")
        assert estimate_key(load_item(item)) == (expected.tonic.pitchClass, expected.mode), item.source
