"""The analyzer worker and the sound-check commands (`listen`, `devices`) on generated audio."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from metadj_bridge.errors import EXIT_CONFIG
from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis_config import hop_size_for
from metadj_bridge.inputs.analyzer import AudioAnalyzer, AudioUpdate, deliver
from metadj_bridge.inputs.audio import WavFileSource
from metadj_bridge.inputs.evaluation import f_measure
from metadj_bridge.signals import AUDIO_SIGNALS, SignalBoard, Trigger
from metadj_bridge.soundcheck.listen import BeatSummary


@pytest.fixture(scope="module")
def house() -> synth.Track:
    return synth.render(synth.TrackSpec("house-126", "house", 126, 12, seed=5))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metadj_bridge", *args], capture_output=True, text=True, timeout=120)


async def test_worker_hands_every_beat_to_the_loop_even_when_updates_merge(house: synth.Track) -> None:
    source = WavFileSource(house.samples, house.samplerate, hop_size=hop_size_for(house.samplerate), realtime=False)
    updates: list[AudioUpdate] = []
    threads: set[str] = set()
    board = SignalBoard()
    triggers: list[Trigger] = []
    board.on_trigger(triggers.append)

    def on_update(update: AudioUpdate) -> None:
        threads.add(threading.current_thread().name)
        updates.append(update)
        deliver(update, board)
        if len(updates) % 50 == 1:
            # A slow listener (a heavy mapping): it holds the loop on purpose, as such a listener would, so the
            # worker runs ahead and its updates must merge. Without it a fast machine's loop keeps up and nothing
            # merges, which is not the case under test. Keeping the loop busy with many short tasks instead holds
            # the GIL, and the worker starves (tried: the file was not analysed within 60 s); a sleep lets it run.
            time.sleep(0.05)

    analyzer = AudioAnalyzer(source, on_update=on_update)
    await analyzer.start()
    assert analyzer.finished is not None
    await asyncio.wait_for(analyzer.finished, 60)
    await analyzer.aclose()
    await analyzer.aclose()  # closing twice is harmless
    assert threads == {threading.main_thread().name}  # delivered on the event loop's thread only
    hops = updates[-1].hops
    hop = hop_size_for(house.samplerate)
    assert hops == -(-len(house.samples) // hop)  # every hop, the last one padded
    # A fast file floods the loop: updates merge (latest wins) but no beat is lost.
    assert len(updates) < hops and sum(u.merged for u in updates) == hops
    beats = np.array([t.t for t in triggers if t.name == "audio.beat"])
    assert f_measure(house.beats, beats).f_measure >= 0.95
    assert any(t.name == "audio.onset" for t in triggers)
    assert set(AUDIO_SIGNALS) <= set(board.values)
    assert board.get("audio.bpm") == pytest.approx(126, abs=0.5)
    assert all(0.0 <= board.get(name) <= 1.0 for name in AUDIO_SIGNALS if name != "audio.bpm")


async def test_a_failing_listener_does_not_stop_the_analysis(
    house: synth.Track, caplog: pytest.LogCaptureFixture
) -> None:
    source = WavFileSource(house.samples[: 44100 * 4], house.samplerate, hop_size=512, realtime=False)
    calls = {"n": 0}

    def broken(update: AudioUpdate) -> None:
        calls["n"] += 1
        raise RuntimeError("listener exploded")

    analyzer = AudioAnalyzer(source, on_update=broken)
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.inputs.analyzer"):
        await analyzer.start()
        assert analyzer.finished is not None
        await asyncio.wait_for(analyzer.finished, 30)
        await analyzer.aclose()
    assert calls["n"] >= 2 and analyzer.error is None
    # Every failure was seen, but only the first was logged with its traceback (the rest are counted).
    failures = [r for r in caplog.records if "audio update listener errors" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_realtime_file_reaches_the_loop_at_the_hop_rate(house: synth.Track) -> None:
    source = WavFileSource(house.samples, house.samplerate, hop_size=512, realtime=True)
    seen: list[AudioUpdate] = []
    analyzer = AudioAnalyzer(source, on_update=seen.append)
    await analyzer.start()
    await asyncio.sleep(1.0)
    await analyzer.aclose()
    hops = seen[-1].hops
    # About 86 hops a second in real time (a broad band: the machine is shared), each one delivered.
    assert 40 <= hops <= 100
    assert sum(u.merged for u in seen) == hops


def test_listen_json_prints_beats_and_onsets(tmp_path: Path) -> None:
    track = synth.render(synth.FIXTURE_SPECS[4])  # off-beat bass, the raw tracker's trap
    wav = synth.write_wav(tmp_path / "offbeat.wav", track.samples, track.samplerate, bits=24)
    proc = cli("listen", "--file", str(wav), "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records and all(set(r) == {"t", "event", "bpm", "confidence"} for r in records if r["event"] == "onset")
    assert all(set(r) == {"t", "event", "bpm", "confidence", "beat_in_bar"} for r in records if r["event"] == "beat")
    assert {r["event"] for r in records} == {"beat", "onset"}
    # Each beat line carries the grid's tempo when that beat fell, not the state when the line was printed: a
    # second run (where the hops come batched differently) prints the same beat lines.
    again = cli("listen", "--file", str(wav), "--json")
    assert [r for r in records if r["event"] == "beat"] == [
        r for r in map(json.loads, again.stdout.splitlines()) if r["event"] == "beat"]
    assert {r["beat_in_bar"] for r in records if r["event"] == "beat"} == {0, 1, 2, 3}
    for kind in ("beat", "onset"):  # each kind in time order
        times = [r["t"] for r in records if r["event"] == kind]
        assert times == sorted(times)
    beats = np.array([r["t"] for r in records if r["event"] == "beat"])
    assert f_measure(track.beats, beats).f_measure >= 0.95
    assert records[-1]["bpm"] == pytest.approx(126, abs=0.5)


def test_listen_reads_an_mp3(tmp_path: Path) -> None:
    """A performer's MP3 plays like its WAV: the same tempo and beats (the encoder's delay is a few ms)."""
    import soundfile

    track = synth.render(synth.FIXTURE_SPECS[3])
    path = tmp_path / "house.mp3"
    soundfile.write(path, track.samples, track.samplerate, format="MP3")
    proc = cli("listen", "--file", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    beats = [r for r in map(json.loads, proc.stdout.splitlines()) if r["event"] == "beat"]
    assert f_measure(track.beats, np.array([r["t"] for r in beats])).f_measure >= 0.95
    assert beats[-1]["bpm"] == pytest.approx(track.spec.bpm, abs=0.5)


def test_listen_follows_a_recording_at_8khz(tmp_path: Path) -> None:
    """A phone or headset recording at 8 kHz (nothing above 4 kHz) is heard: the high band moves down, with a
    warning that says so, and the beats are the track's."""
    import soundfile

    track = synth.render(synth.HELDOUT_SPECS[4])  # offbeat bass: the kick alone says where the beat is
    spectrum = np.fft.rfft(track.samples.astype(np.float64))
    n = len(track.samples) * 8000 // track.samplerate
    samples = np.fft.irfft(spectrum[: n // 2 + 1], n) * n / len(track.samples)  # band-limited to 4 kHz
    path = tmp_path / "phone.wav"
    soundfile.write(path, samples.astype(np.float32), 8000, subtype="PCM_16")
    proc = cli("listen", "--file", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "8000 Hz" in proc.stderr and "high band starts at 3000 Hz" in proc.stderr
    beats = [r for r in map(json.loads, proc.stdout.splitlines()) if r["event"] == "beat"]
    assert f_measure(track.beats, np.array([r["t"] for r in beats])).f_measure >= 0.95
    assert beats[-1]["bpm"] == pytest.approx(track.spec.bpm, abs=0.5)


def test_listen_prints_a_line_per_beat_with_its_place_in_the_bar(tmp_path: Path) -> None:
    """Without --json (and not on a terminal): one line per beat, its BPM and where it falls in the bar, the one
    every fourth beat of a 4/4 track (here read from a FLAC)."""
    import soundfile

    track = synth.render(synth.FIXTURE_SPECS[3])
    path = tmp_path / "house.flac"
    soundfile.write(path, track.samples, track.samplerate)
    proc = cli("listen", "--file", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("beat ")]
    assert len(lines) >= 0.9 * len(track.beats)
    places = [int(line[line.index("bar") + 2]) for line in lines]
    assert set(places) == {1, 2, 3, 4}
    late = places[len(places) // 2 :]  # the bar count settled: 1, 2, 3, 4 in turn
    assert all(b == a % 4 + 1 for a, b in zip(late, late[1:], strict=False))
    assert float(lines[-1][lines[-1].index("BPM") - 1]) == pytest.approx(track.spec.bpm, abs=0.5)
    # and at the end, what it heard in one line
    first = float(lines[0][3])
    assert proc.stdout.splitlines()[-1] == (f"heard {len(lines)} beats from {first:.2f} s; "
                                            f"{float(lines[-1][5]):.1f} BPM at the last one, 4 beats a bar")


def test_the_closing_line_gives_the_bar_most_bars_had() -> None:
    """One bar the tracker corrected (5 beats, then 3) is not the metre; a waltz after the last 4/4 bars is, once
    most of the last eight bars are in 3."""

    def heard(places: list[int]) -> str:
        summary = BeatSummary()
        for i, place in enumerate(places):
            summary.add(2.0 + 0.5 * i, 120.0, place)
        return summary.line()

    assert heard([0, 1, 2, 3] * 4 + [0, 1, 2, 3, 4, 0, 1, 2] + [0, 1, 2, 3] * 3) == (
        "heard 36 beats from 2.00 s; 120.0 BPM at the last one, 4 beats a bar")
    assert heard([0, 1, 2, 3] * 3 + [0, 1, 2] * 6).endswith(", 3 beats a bar")
    assert heard([1, 2, 3, 0, 1]) == "heard 5 beats from 2.00 s; 120.0 BPM at the last one"  # no whole bar yet
    # one whole bar, or bars that all differ, say nothing of the metre
    assert heard([0, 1, 2, 3, 2, 3, 0]).endswith("BPM at the last one, the bar not settled")
    assert heard([0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4, 0]).endswith(", the bar not settled")
    assert heard([0, 1, 2, 3, 0, 1, 2, 3, 0]).endswith(", 4 beats a bar")


def test_listen_says_when_it_heard_no_beat(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    synth.write_wav(path, np.zeros(44100 * 3, np.float32), 44100)
    proc = cli("listen", "--file", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["heard no beat"]


def test_listen_into_a_reader_that_goes_away_stops_quietly(tmp_path: Path) -> None:
    """`listen --json | head -1`: the broken pipe ends listen without a traceback, and it exits 0."""
    track = synth.render(synth.FIXTURE_SPECS[3])
    wav = synth.write_wav(tmp_path / "house.wav", track.samples, track.samplerate)
    proc = subprocess.Popen([sys.executable, "-m", "metadj_bridge", "listen", "--file", str(wav), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert json.loads(first)["event"] in ("beat", "onset")
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 64, "MP3"),
        (b"FORM\x00\x00\x00\x10AIFFCOMM", "AIFF"),
    ],
)
def test_listen_unsupported_files_get_an_error_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "track.bin"
    path.write_bytes(content)
    proc = cli("listen", "--file", str(path))
    assert proc.returncode == EXIT_CONFIG  # the file given cannot work: 78, not a failure a retry could fix
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "WAV" in last
    assert "Traceback" not in proc.stderr


def test_listen_missing_file_is_an_error_line(tmp_path: Path) -> None:
    proc = cli("listen", "--file", str(tmp_path / "nope.wav"))
    assert proc.returncode == EXIT_CONFIG and proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_devices_lists_inputs_or_says_there_are_none() -> None:
    proc = cli("devices")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Audio inputs:\n")
    assert len(proc.stdout.splitlines()) >= 2
