"""Audio files libsndfile does not read (M4A, raw AAC, WebM, Matroska, WMA, a video's sound), decoded by FFmpeg
through PyAV. Every file here is encoded by FFmpeg (PyAV) in the test, then read back through the project's reader."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from metadj_bridge.errors import EXIT_CONFIG
from metadj_bridge.inputs.audio_decode import MAX_GAP_S, NoAudio, decode_with_ffmpeg
from metadj_bridge.inputs.audio_file import AudioFormatError, read_audio, read_audio_header


def sine(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def clicks(seconds: float, rate: int, bpm: float) -> np.ndarray:
    """A low click on every beat, like a kick drum."""
    x = np.zeros(int(seconds * rate), np.float32)
    n = 2000
    shape = (np.exp(-np.arange(n) / 300) * np.sin(2 * np.pi * 60 * np.arange(n) / rate)).astype(np.float32)
    for t in np.arange(0.0, seconds, 60.0 / bpm):
        i = int(t * rate)
        m = min(n, len(x) - i)
        x[i : i + m] += 0.5 * shape[:m]
    return x


def encode(path: Path, fmt: str, codec: str, mono: np.ndarray, rate: int, *, video: bool = False) -> None:
    """``mono`` as both channels of a stereo ``codec`` stream in a ``fmt`` container (with a small video stream
    beside it when ``video``)."""
    container = av.open(str(path), "w", format=fmt)
    audio = container.add_stream(codec, rate=rate)
    audio.layout = "stereo"
    audio.bit_rate = 128_000
    picture = None
    if video:
        picture = container.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
    size = 1024
    planes = np.stack([mono, mono]).astype(np.float32)
    for i, start in enumerate(range(0, len(mono), size)):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes[:, start : start + size]), format="fltp",
                                           layout="stereo")
        frame.sample_rate = rate
        for packet in audio.encode(frame):
            container.mux(packet)
        if picture is not None and i % max(1, rate // size // 10) == 0:
            image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), format="rgb24")
            for packet in picture.encode(image):
                container.mux(packet)
    for stream in (audio, picture):
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    container.close()


def assert_is_the_tone(samples: np.ndarray, rate: int, seconds: float) -> None:
    # Encoders add up to two frames of priming (raw AAC keeps it: no header says how long it is).
    assert -0.01 * rate <= len(samples) - seconds * rate <= 2048 + 0.05 * rate
    middle = samples[rate // 2 : rate // 2 + rate]
    assert float(np.sqrt(np.mean(middle**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    peak_hz = float(np.argmax(np.abs(np.fft.rfft(middle)))) * rate / len(middle)
    assert peak_hz == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize(
    ("name", "fmt", "codec", "rate"),
    [("s.m4a", "mp4", "aac", 44100), ("alac.m4a", "mp4", "alac", 44100), ("s.aac", "adts", "aac", 48000),
     ("s.webm", "webm", "libopus", 48000), ("s.mka", "matroska", "ac3", 48000), ("s.wma", "asf", "wmav2", 44100)],
)
def test_formats_libsndfile_does_not_read_are_decoded_by_ffmpeg(
    tmp_path: Path, name: str, fmt: str, codec: str, rate: int
) -> None:
    path = tmp_path / name
    encode(path, fmt, codec, sine(2.0, rate), rate)
    samples, got_rate = read_audio(path)
    assert got_rate == rate and samples.dtype == np.float32
    assert_is_the_tone(samples, rate, 2.0)
    assert read_audio_header(path) == rate


def test_a_video_files_sound_track_is_read_and_a_silent_video_is_refused(tmp_path: Path) -> None:
    with_sound, without = tmp_path / "clip.mp4", tmp_path / "silent.mp4"
    encode(with_sound, "mp4", "aac", sine(2.0, 44100), 44100, video=True)
    assert_is_the_tone(read_audio(with_sound)[0], 44100, 2.0)

    container = av.open(str(without), "w", format="mp4")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(10):
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    for read in (read_audio, read_audio_header):
        with pytest.raises(AudioFormatError, match=r"an MP4/M4A file, and it cannot be decoded: it holds no audio "
                                                   r"stream \(only video\)"):
            read(without)


def test_a_damaged_stretch_in_an_m4a_becomes_silence_and_later_beats_keep_their_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Random bytes over 2 KB in the middle of an M4A: the packets there do not decode. One warning names the file
    and what was skipped; the length is the file's own, and the last second is where it was."""
    rate = 44100
    tone = sine(6.0, rate)
    path = tmp_path / "damaged.m4a"
    encode(path, "mp4", "aac", tone, rate)
    whole, _ = read_audio(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        samples, got_rate = read_audio(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: ") and "damaged packet" in warnings[0]
    assert "s of silence in their place" in warnings[0]
    assert got_rate == rate and len(samples) == len(whole)
    np.testing.assert_allclose(samples[-rate:], whole[-rate:], atol=1e-4)
    assert 0.01 < float(np.mean(samples == 0.0)) < 0.5  # the stretch is silence, the rest is the tone


def test_truncated_files_play_what_they_hold_or_say_why_they_cannot(tmp_path: Path) -> None:
    """Raw AAC cut in half plays its first half. An M4A whose index (at the end) is cut off cannot be opened, and
    the error says so, what the file is and how to convert it."""
    rate = 44100
    aac, m4a = tmp_path / "cut.aac", tmp_path / "cut.m4a"
    encode(aac, "adts", "aac", sine(4.0, rate), rate)
    encode(m4a, "mp4", "aac", sine(4.0, rate), rate)
    aac.write_bytes(aac.read_bytes()[: aac.stat().st_size // 2])
    m4a.write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 2])
    samples, _ = read_audio(aac)
    assert 1.8 * rate < len(samples) < 2.2 * rate
    with pytest.raises(AudioFormatError) as caught:
        read_audio(m4a)
    assert str(caught.value).startswith(f"{m4a}: this is an MP4/M4A file, and it cannot be decoded: FFmpeg cannot "
                                        "open it")
    assert 'ffmpeg -i "' in str(caught.value)


def test_raw_aac_is_named_as_aac_not_mp3(tmp_path: Path) -> None:
    """An ADTS sync word with nothing after it: the error says AAC (the sync word is MPEG's, the layer bits AAC's)."""
    path = tmp_path / "broken.aac"
    path.write_bytes(b"\xff\xf1\x50\x80" + bytes(400))
    with pytest.raises(AudioFormatError, match="this is an AAC file, and it cannot be decoded"):
        read_audio(path)


def test_an_aac_rate_the_analysis_cannot_use_is_refused_before_the_samples(tmp_path: Path) -> None:
    path = tmp_path / "low.m4a"
    encode(path, "mp4", "aac", sine(1.0, 7350), 7350)
    for read in (read_audio, read_audio_header):
        with pytest.raises(AudioFormatError, match="the file's sample rate is 7350 Hz; metadj-bridge analyses audio "
                                                   "at 8000-384000 Hz"):
            read(path)


def stamped(path: Path, rate: int, seconds: float, ahead_s: Callable[[int], float]) -> np.ndarray:
    """A 16-bit mono tone in Matroska, in 0.1 s frames, frame ``i`` stamped ``ahead_s(i)`` later than it plays."""
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("pcm_s16le", rate=rate)
    stream.layout = "mono"
    tone = (sine(seconds, rate) * 32767).astype(np.int16)
    for i, start in enumerate(range(0, len(tone), rate // 10)):
        frame = av.AudioFrame.from_ndarray(tone[None, start : start + rate // 10], format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = start + int(ahead_s(i) * rate)
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return tone


def test_timestamps_that_jump_further_than_a_gap_are_not_filled(tmp_path: Path) -> None:
    """A Matroska file whose second half is stamped an hour later (a broken or hostile stream): the reader does not
    allocate an hour of silence; it plays both halves back to back."""
    path = tmp_path / "jump.mka"
    tone = stamped(path, 48000, 2.0, lambda i: 3600.0 if i >= 10 else 0.0)
    samples, got_rate = read_audio(path)
    assert got_rate == 48000 and len(samples) == len(tone)


def test_many_jumps_each_within_a_gap_add_no_more_silence_than_the_audio_heard(tmp_path: Path) -> None:
    """Every 0.1 s frame stamped 0.9 of MAX_GAP_S after the one before (each jump a gap it fills): filled one by
    one that would be 3 minutes of zeros for 2 s of audio. The silence never outgrows the audio heard before it."""
    path = tmp_path / "jumps.mka"
    tone = stamped(path, 48000, 2.0, lambda i: 0.9 * MAX_GAP_S * i)
    samples, _ = read_audio(path)
    assert len(tone) <= len(samples) <= 2 * len(tone)
    assert float(np.mean(samples == 0.0)) <= 0.5


def test_listen_hears_the_beat_of_an_m4a(tmp_path: Path) -> None:
    """The whole path a performer takes: ``listen --file set.m4a`` prints beats at the track's tempo."""
    rate = 44100
    path = tmp_path / "set.m4a"
    encode(path, "mp4", "aac", clicks(12.0, rate, 120.0), rate)
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "listen", "--json", "--file", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    beats = [json.loads(line) for line in proc.stdout.splitlines() if '"beat"' in line]
    assert len(beats) >= 12
    assert beats[-1]["bpm"] == pytest.approx(120.0, abs=0.5)


def test_a_text_file_named_m4a_is_still_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.m4a"
    path.write_text("these are my set notes, not audio\n" * 20)
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "listen", "--json", "--file", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr.startswith(f"error: {path}: this is not an audio file"), proc.stderr


def test_a_playlist_or_concat_list_in_disguise_fetches_nothing(tmp_path: Path) -> None:
    """FFmpeg can follow an HLS playlist to a URL or a concat list to other files. A file that is one of those is
    refused, whatever its name, and the HTTP server it names hears no request."""
    import http.server
    import threading

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        song = tmp_path / "song.m4a"
        encode(song, "mp4", "aac", sine(1.0, 44100), 44100)
        url = f"http://127.0.0.1:{server.server_address[1]}/seg.aac"
        playlist = tmp_path / "set.mp3"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{url}\n#EXT-X-ENDLIST\n")
        concat = tmp_path / "set.flac"
        concat.write_text(f"ffconcat version 1.0\nfile {song}\nfile {url}\n")
        named = tmp_path / "set.m3u8"
        named.write_text(playlist.read_text())
        for path in (playlist, concat, named):
            with pytest.raises(AudioFormatError, match="not an audio file"):
                read_audio(path)
        # FFmpeg follows a playlist whose handle is named .m3u8; the decoder's allow-list stops it all the same.
        with named.open("rb") as handle, pytest.raises(NoAudio, match="FFmpeg cannot open it"):
            decode_with_ffmpeg(handle, lambda rate: None)
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []
