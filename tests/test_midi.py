"""MIDI reading/writing: round trips, tempo maps, drums, and every kind of broken file."""

from __future__ import annotations

import time

import numpy as np
import pytest
from midi_factory import make_song, malformed_files, note, simple_midi, smf, tempo_event, track, write_song

from musicgan.data.midi import midi_bytes, read_midi, read_midi_bytes, synthesize_sine, write_midi
from musicgan.data.song import Song
from musicgan.errors import DataError, MidiError


def test_write_read_round_trip_is_exact_on_the_tick_grid(tmp_path):
    song = make_song(seed=3, num_onsets=60, program=5)
    path = write_song(tmp_path / "x.mid", song)
    back = read_midi(path, source="x.mid")
    assert back.source == "x.mid"
    assert back.notes.shape == song.notes.shape
    np.testing.assert_allclose(back.notes[:, :6], song.notes[:, :6], atol=1e-6)
    assert (back.track_ids == 0).all()  # one instrument in the file
    assert back.tempos == [(0.0, 120.0)]
    assert back.time_signatures == [(0.0, 4, 4)]


def test_midi_bytes_equals_written_file(tmp_path):
    song = make_song(seed=4)
    write_midi(song, tmp_path / "a.mid")
    assert (tmp_path / "a.mid").read_bytes() == midi_bytes(song)


def test_tempo_changes_are_honoured_from_raw_bytes():
    # 480 ticks/quarter; 120 bpm, then 60 bpm from tick 960 (= 1.0 s).
    events = tempo_event(0, 500_000) + note(0, 480, 60) + tempo_event(480, 1_000_000) + note(480, 480, 62)
    song = read_midi_bytes(smf([track(events)]))
    # note 1 at 0.0 s for 0.5 s; tempo change at 1.0 s; note 2 one beat later at 60 bpm = 2.0 s, lasts 1.0 s
    np.testing.assert_allclose(song.notes[:, :3], [[0.0, 0.5, 60], [2.0, 1.0, 62]], atol=1e-9)
    assert [(round(t, 6), round(b, 6)) for t, b in song.tempos] == [(0.0, 120.0), (1.0, 60.0)]


def test_tempo_map_survives_write_and_read(tmp_path):
    song = Song.from_columns(
        [0.0, 0.5, 1.0, 2.0],
        [0.5, 0.5, 1.0, 1.0],
        [60, 62, 64, 65],
        [90, 91, 92, 93],
        tempos=[(0.0, 120.0), (1.0, 60.0)],
        time_signatures=[(0.0, 3, 4)],
    )
    back = read_midi_bytes(midi_bytes(song))
    np.testing.assert_allclose(back.notes[:, :6], song.notes[:, :6], atol=1e-6)  # track: -1 written, 0 read
    assert [(round(t, 6), round(b, 6)) for t, b in back.tempos] == [(0.0, 120.0), (1.0, 60.0)]
    assert back.time_signatures == [(0.0, 3, 4)]


def test_drums_are_kept_with_their_flag():
    piano = make_song(seed=1, num_onsets=8)
    drums = Song.from_columns([0.0, 0.5], [0.25, 0.25], [36, 38], [100, 100], is_drum=[1, 1])
    both = Song(np.concatenate([piano.notes, drums.notes]))
    back = read_midi_bytes(midi_bytes(both))
    assert back.num_notes == both.num_notes
    assert set(back.notes[back.is_drum][:, 2].astype(int)) == {36, 38}
    assert not back.notes[~back.is_drum][:, 5].any()


def test_drums_only_is_rejected_unless_allowed():
    data = smf([track(note(0, 240, 36, channel=9))])
    with pytest.raises(MidiError, match="only drum"):
        read_midi_bytes(data)
    assert read_midi_bytes(data, allow_drums_only=True).is_drum.all()


@pytest.mark.parametrize("name", sorted(malformed_files()))
def test_malformed_files_raise_a_one_line_reason_quickly(name):
    data, reason = malformed_files()[name]
    start = time.perf_counter()
    with pytest.raises(MidiError) as info:
        read_midi_bytes(data, source=name)
    assert reason in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200
    assert isinstance(info.value, DataError)  # the CLI prints UserErrors in one line
    assert time.perf_counter() - start < 2.0  # bounded time (and memory: no 2 GB tick table)


def test_oversized_file_is_rejected_without_reading(tmp_path):
    path = tmp_path / "huge.mid"
    with open(path, "wb") as f:
        f.write(simple_midi())
        f.truncate(5 * 1024 * 1024)
    with pytest.raises(MidiError, match="MiB"):
        read_midi(path)


def test_missing_file_is_a_midi_error(tmp_path):
    with pytest.raises(MidiError, match="cannot read"):
        read_midi(tmp_path / "nope.mid")


def test_riff_wrapped_midi_is_read():
    data = simple_midi()
    riff = b"RIFF" + len(data).to_bytes(4, "little") + b"RMIDdata" + len(data).to_bytes(4, "little") + data
    assert read_midi_bytes(riff).num_notes == 3


def test_vendor_chunks_and_trailing_bytes_are_ignored():
    data = simple_midi()
    vendor = b"XFIH" + (4).to_bytes(4, "big") + b"\x01\x02\x03\x04"
    song = read_midi_bytes(data[:14] + vendor + data[14:] + b"\x00" * 7)
    np.testing.assert_array_equal(song.notes, read_midi_bytes(data).notes)


def test_synthesize_sine_gives_bounded_audio_of_the_song_length():
    song = make_song(seed=2, num_onsets=10)
    audio = synthesize_sine(song, sample_rate=8000)
    assert audio.dtype == np.float32
    assert song.end_time * 8000 <= len(audio) <= (song.end_time + 1.5) * 8000  # pretty_midi adds a 1 s tail
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0
