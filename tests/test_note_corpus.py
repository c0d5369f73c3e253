"""soundfont:notes: the single-note corpus (one song per program and pitch), its options and audio."""

from __future__ import annotations

import numpy as np
import pytest

from musicgan.audio import find_soundfont, from_pcm16
from musicgan.data.corpora import corpus_name, list_items, load_item
from musicgan.data.loader import iter_songs
from musicgan.data.note_corpus import ORGANS
from musicgan.data.prepare import prepare_dataset
from musicgan.data.shards import split_urls
from musicgan.errors import DataError

RATE = 8000


def test_the_default_set_is_the_acoustic_families_without_organs_at_pitches_24_to_84():
    items = list_items("soundfont:notes")
    programs = sorted({item.program for item in items})
    assert len(items) == 72 * 61 and {item.pitch for item in items} == set(range(24, 85))
    assert programs == [p for p in range(80) if p not in ORGANS]
    assert {0, 24, 40, 56, 73, 79} <= set(programs)  # piano, guitar, violin, trumpet, flute, ocarina: kept
    assert not set(programs) & set(range(16, 24)) and max(programs) < 80  # organs and synths: not
    assert len({item.program for item in list_items("soundfont:notes?programs=all-acoustic")}) == 80
    assert [item.source for item in items] == sorted(item.source for item in items)


def test_a_note_is_one_song_held_then_released_with_its_labels():
    item = list_items("soundfont:notes?programs=40&pitches=62&velocity=90&seconds=2&hold=1.5")[0]
    song = load_item(item, corpus_name("soundfont:notes?programs=40"))
    assert song.notes[:, :6].tolist() == [[0.0, 1.5, 62.0, 90.0, 40.0, 0.0]]  # onset .. is_drum
    assert song.length_s == 2.0 and song.labels == {"pitch": 62, "program": 40, "velocity": 90}
    assert song.corpus == "soundfont:notes" and song.source == "soundfont:notes/program040/pitch062"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("soundfont:notes?programs=0-200", "programs must lie in 0-127"),
        ("soundfont:notes?pitches=a-b", "pitches must be numbers and ranges"),
        ("soundfont:notes?hold=5&seconds=4", "hold <= seconds"),
        ("soundfont:notes?seconds=0", "seconds must be seconds in (0, 20]"),
        ("soundfont:notes?colour=red", "unknown option 'colour'"),
        ("soundfont:notes?programs", "options must look like"),
        ("soundfont:chords", "unknown corpus soundfont:chords; valid: soundfont:notes"),
    ],
)
def test_bad_note_options_are_one_line_errors(spec, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list_items(spec)


@pytest.mark.skipif(find_soundfont() is None, reason="needs fluidsynth + fluid-soundfont-gm")
def test_prepared_notes_sound_at_their_pitch_for_their_length(tmp_path):
    spec = "soundfont:notes?programs=0,73&pitches=60,67&seconds=1&hold=0.75"
    manifest = prepare_dataset(spec, tmp_path, workers=2, ratios=(1, 0, 0), progress=False, audio_rate=RATE)
    assert manifest["corpus"] == "soundfont:notes" and manifest["input"] == spec
    songs = list(iter_songs(split_urls(tmp_path, "train")))
    assert sorted((s.labels["program"], s.labels["pitch"]) for s in songs) == [(0, 60), (0, 67), (73, 60), (73, 67)]
    for song in songs:
        audio = from_pcm16(song.audio).astype(np.float64)
        assert len(audio) == RATE and song.audio_rate == RATE  # seconds=1, release included
        held = audio[int(0.1 * RATE) : int(0.7 * RATE)]
        spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held)), 1 << 16))
        peak_hz = np.argmax(spectrum) * RATE / (1 << 16)
        # The strongest partial is the fundamental or an octave of it: the pitch class must match.
        assert round(12 * np.log2(peak_hz / 440.0) + 69) % 12 == song.labels["pitch"] % 12, peak_hz
        tail = audio[-int(0.05 * RATE) :]
        assert np.sqrt(np.mean(tail**2)) < np.sqrt(np.mean(held**2)) / 10  # released, not held to the end
