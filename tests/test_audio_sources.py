"""Audio sources: reading audio files, the file source's clock, and live capture through a real JACK server."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from metadj_bridge.errors import EXIT_CONFIG, ConfigError
from metadj_bridge.inputs.audio import AudioBlock, WavFileSource
from metadj_bridge.inputs.audio_devices import InputDevice, find_input_device, list_input_devices, parse_channels
from metadj_bridge.inputs.audio_file import AudioFormatError, read_audio, read_audio_header
from metadj_bridge.inputs.live_audio import LiveInputSource
from tests.jackrig import JackPlayer, JackServer

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
HOP = 512
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo: named pipes are POSIX only")

# --------------------------------------------------------------------------------------------- audio files


def write_pcm(path: Path, frames: np.ndarray, rate: int, width: int) -> None:
    """Integer frames (n, channels) as a PCM WAV through the stdlib writer."""
    frames = frames.reshape(len(frames), -1)
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = frames.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raw = frames.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def riff(fmt: bytes, data: bytes) -> bytes:
    """A WAV file with a hand-made ``fmt `` chunk (what the stdlib writer cannot make)."""
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def extensible_fmt(subformat: int, bits: int, channels: int = 1, rate: int = 44100) -> bytes:
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    block = channels * bits // 8
    return struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + \
        struct.pack("<H", subformat) + guid_tail


def test_read_wav_16_bit_stereo_is_downmixed(tmp_path: Path) -> None:
    left = np.array([0, 16384, -32768, 32767, 100], np.int32)
    right = np.array([0, -16384, -32768, 32767, 300], np.int32)
    write_pcm(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, 2)
    samples, rate = read_audio(tmp_path / "s.wav")
    assert rate == 44100 and samples.dtype == np.float32
    np.testing.assert_allclose(samples, (left + right) / 2 / 32768, atol=1e-7)


def test_read_wav_24_bit_at_48k_keeps_every_bit(tmp_path: Path) -> None:
    ints = np.array([0, 1, -1, 8388607, -8388608, 4194304, -123456], np.int32)
    write_pcm(tmp_path / "s24.wav", np.stack([ints, ints], axis=1), 48000, 3)
    samples, rate = read_audio(tmp_path / "s24.wav")
    assert rate == 48000
    np.testing.assert_array_equal(samples, (ints / 8388608).astype(np.float32))
    assert samples.min() == -1.0 and samples.max() < 1.0


@pytest.mark.parametrize(("width", "full_scale"), [(1, 128), (4, 2**31)])
def test_read_wav_8_and_32_bit_integers(tmp_path: Path, width: int, full_scale: int) -> None:
    ints = np.array([0, full_scale // 2, -full_scale], np.int64)
    write_pcm(tmp_path / "s.wav", ints, 22050, width)
    samples, rate = read_audio(tmp_path / "s.wav")
    assert rate == 22050
    np.testing.assert_allclose(samples, [0.0, 0.5, -1.0], atol=1e-6)


def test_read_wav_extensible_pcm_header(tmp_path: Path) -> None:
    """Many DAWs write 24-bit files with WAVE_FORMAT_EXTENSIBLE, which Python 3.11's wave module refuses."""
    ints = np.array([0, 4194304, -8388608], "<i4")
    data = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    (tmp_path / "ext.wav").write_bytes(riff(extensible_fmt(1, 24), data))
    samples, rate = read_audio(tmp_path / "ext.wav")
    assert rate == 44100
    np.testing.assert_array_equal(samples, [0.0, 0.5, -1.0])


def float_fmt(bits: int, channels: int = 1, rate: int = 44100) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", 3, channels, rate, rate * block, block, bits)


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_read_floating_point_wav_keeps_its_values(tmp_path: Path, dtype: str) -> None:
    """DAWs export 32-bit float WAVs: read as stored, peaks over full scale and stereo included."""
    frames = np.array([[0.25, -0.75], [1.5, 0.5], [-2.0, 0.0]], dtype)
    bits = 8 * np.dtype(dtype).itemsize
    (tmp_path / "plain.wav").write_bytes(riff(float_fmt(bits, 2), frames.tobytes()))
    (tmp_path / "ext.wav").write_bytes(riff(extensible_fmt(3, bits, channels=2, rate=48000), frames.tobytes()))
    for name, want_rate in (("plain.wav", 44100), ("ext.wav", 48000)):
        samples, rate = read_audio(tmp_path / name)
        assert rate == want_rate and samples.dtype == np.float32
        np.testing.assert_allclose(samples, [-0.25, 1.0, -1.0])


def _sine(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "fmt", "subtype"),
    [("s.flac", "FLAC", "PCM_16"), ("s.mp3", "MP3", None), ("s.ogg", "OGG", "VORBIS"), ("s.aiff", "AIFF", "PCM_24"),
     ("adpcm.wav", "WAV", "MS_ADPCM"), ("s.opus", "OGG", "OPUS")],
)
def test_compressed_and_other_formats_are_decoded(tmp_path: Path, name: str, fmt: str, subtype: str | None) -> None:
    """libsndfile (soundfile) writes each file, metadj-bridge reads it back: the rate, the length (an MP3
    encoder pads a few frames) and the tone, its level and pitch, with the stereo channels averaged."""
    import soundfile

    rate = 48000 if subtype == "OPUS" else 44100
    left = _sine(2.0, rate)
    path = tmp_path / name
    soundfile.write(path, np.stack([left, left], axis=1), rate, format=fmt, subtype=subtype)
    samples, got_rate = read_audio(path)
    assert got_rate == rate
    assert abs(len(samples) - len(left)) <= 0.05 * rate
    middle = samples[rate // 2 : rate // 2 + rate]
    assert float(np.sqrt(np.mean(middle**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    peak_hz = float(np.argmax(np.abs(np.fft.rfft(middle)))) * rate / len(middle)
    assert peak_hz == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("track.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400), "an MP3 file"),
        ("track.aiff", b"FORM" + struct.pack(">I", 100) + b"AIFFCOMM" + bytes(92), "an AIFF file"),
        ("track.flac", b"fLaC" + bytes(100), "a FLAC file"),
        ("track.m4a", struct.pack(">I", 32) + b"ftypM4A " + bytes(200), "an MP4/M4A file"),
        ("notes.wav", b"these are my set notes, not audio\n" * 4, "not an audio file"),
        ("adpcm.wav", riff(struct.pack("<HHIIHH", 2, 1, 44100, 22000, 256, 4), b"\x07" * 7), "MS ADPCM"),
        ("empty.wav", b"", "empty"),
    ],
)
def test_unreadable_files_say_what_they_are_and_how_to_convert(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioFormatError) as caught:
        read_audio(path)
    message = str(caught.value)
    assert str(path) in message and says in message
    if says != "empty":
        assert "ffmpeg -i" in message and "FLAC, MP3" in message


def test_a_long_quiet_flac_is_read_whole(tmp_path: Path) -> None:
    """Two minutes of silence and then a tone make a FLAC of more than 64 frames a byte, past what the reader
    first believes of a header: it grows the array and keeps every sample, the tone at the end included."""
    import soundfile

    rate = 44100
    samples = np.zeros(120 * rate, np.float32)
    samples[-rate:] = _sine(1.0, rate)
    path = tmp_path / "quiet.flac"
    soundfile.write(path, samples, rate)
    assert len(samples) > 64 * path.stat().st_size
    read, got_rate = read_audio(path)
    assert got_rate == rate and len(read) == len(samples)
    np.testing.assert_allclose(read, samples, atol=1e-4)


def test_a_flac_whose_header_claims_a_day_of_audio_plays_the_second_it_holds(tmp_path: Path) -> None:
    """A hostile header (2^36 - 1 frames in STREAMINFO for one second of audio): libsndfile refuses it, FFmpeg reads
    the second that is there; neither reader allocates what the header promises (at most 64 frames a byte of file
    at first: 2^36 float32 samples would be 256 GB)."""
    import soundfile

    path = tmp_path / "liar.flac"
    soundfile.write(path, _sine(1.0, 44100), 44100)
    data = bytearray(path.read_bytes())
    data[21] |= 0x0F  # STREAMINFO's total samples: the low 4 bits of byte 21 and bytes 22-25
    data[22:26] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    with soundfile.SoundFile(path) as snd:
        assert snd.frames == 2**36 - 1
    samples, rate = read_audio(path)
    assert rate == 44100 and len(samples) == 44100
    np.testing.assert_allclose(samples, _sine(1.0, 44100), atol=1e-4)


def test_without_libsndfile_a_flac_is_read_by_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the soundfile package cannot be imported, WAVs still read here and a FLAC through FFmpeg."""
    import soundfile

    soundfile.write(tmp_path / "s.flac", _sine(0.5, 44100), 44100)
    write_pcm(tmp_path / "s.wav", np.array([0, 16384, -32768]), 44100, 2)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # what an absent package looks like to import
    np.testing.assert_array_equal(read_audio(tmp_path / "s.wav")[0], [0.0, 0.5, -1.0])
    samples, rate = read_audio(tmp_path / "s.flac")
    assert rate == 44100
    np.testing.assert_allclose(samples, _sine(0.5, 44100), atol=1e-4)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such audio file"):
        read_audio(tmp_path / "nope.wav")
    with pytest.raises(ConfigError, match="no such audio file"):
        WavFileSource(tmp_path / "nope.wav", hop_size=HOP)


def listen(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metadj_bridge", "listen", "--json", "--file", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


@needs_fifo
def test_a_fifo_or_a_device_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer for ever; /dev/zero never ends. Both are refused from stat."""
    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    proc = listen(fifo)
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert proc.stderr.strip() == f"error: {fifo}: a named pipe (FIFO), not an audio file; give a file saved on " \
                                  "disk (WAV, FLAC, MP3, Ogg, AIFF, AAC/M4A and the other formats of libsndfile and " \
                                  "FFmpeg)"
    for read in (read_audio, read_audio_header):
        with pytest.raises(ConfigError, match="a named pipe"):
            read(fifo)
        with pytest.raises(ConfigError, match="is a folder, not an audio file"):
            read(tmp_path)
        if os.path.exists("/dev/zero"):
            with pytest.raises(ConfigError, match="^/dev/zero: a device, not an audio file"):
                read("/dev/zero")
    with pytest.raises(ConfigError, match="a named pipe"):
        WavFileSource(fifo, hop_size=HOP)


def test_a_file_name_the_system_refuses_is_a_config_error(tmp_path: Path) -> None:
    """A NUL byte (from a profile's "\\0") and a name longer than the system allows: one line each, the NUL shown."""
    for read in (read_audio, read_audio_header):
        with pytest.raises(ConfigError, match=r"a\\x00b\.wav: not a usable file name \(embedded null byte\)$"):
            read(tmp_path / "a\0b.wav")
        with pytest.raises(ConfigError, match="cannot open the audio file: File name too long"):
            read(tmp_path / ("x" * 5000 + ".wav"))


@pytest.mark.parametrize("rate", [1, 100, 4000, 10_000_000])
@pytest.mark.parametrize("kind", ["wav", "aiff"])
def test_a_sample_rate_the_analysis_cannot_use_names_the_file(tmp_path: Path, rate: int, kind: str) -> None:
    """A header that says 100 Hz or 10 MHz: the error names the file and the rates that work, before the samples
    are read, from read_audio, read_audio_header and listen --file alike."""
    import soundfile

    path = tmp_path / f"rate{rate}.{kind}"
    if kind == "wav":
        path.write_bytes(riff(struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16), bytes(2000)))
    else:
        soundfile.write(path, np.zeros(1000, np.float32), rate, format="AIFF")
    expected = f"{path}: the file's sample rate is {rate} Hz; metadj-bridge analyses audio at 8000-384000 Hz"
    for read in (read_audio, read_audio_header):
        with pytest.raises(AudioFormatError) as caught:
            read(path)
        assert str(caught.value).startswith(expected) and "ffmpeg -i" in str(caught.value)
    if rate == 100:
        proc = listen(path)
        assert proc.returncode == EXIT_CONFIG
        assert proc.stderr.strip().startswith(f"error: {expected}"), proc.stderr


def test_the_header_is_read_without_the_samples(tmp_path: Path) -> None:
    """read_audio_header gives the rate of a good file (WAV and libsndfile formats) and the errors read_audio gives
    before it decodes: an empty file, a WAV without samples, a file that is not audio."""
    import soundfile

    write_pcm(tmp_path / "s.wav", np.zeros((4410, 2), np.int16), 48000, 2)
    soundfile.write(tmp_path / "s.flac", _sine(0.5, 22050, amplitude=0.2), 22050)
    assert read_audio_header(tmp_path / "s.wav") == 48000
    assert read_audio_header(tmp_path / "s.flac") == 22050
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "silent.wav").write_bytes(riff(struct.pack("<HHIIHH", 1, 1, 44100, 88200, 2, 16), b""))
    (tmp_path / "notes.wav").write_bytes(b"these are my set notes, not audio\n" * 4)
    for name, says in (("empty.wav", "the file is empty"), ("silent.wav", "holds no audio"),
                       ("notes.wav", "not an audio file")):
        for read in (read_audio, read_audio_header):
            with pytest.raises(AudioFormatError, match=says):
                read(tmp_path / name)


def test_float_samples_beyond_float32_become_infinite_without_numpy_warnings(tmp_path: Path) -> None:
    """64-bit float WAVs hold values float32 cannot (1e300), and a stereo float32 file at its largest overflows
    the downmix: they read as infinite (the analysis counts and silences them, with its own warning), and numpy's
    RuntimeWarnings never reach the terminal (warnings are errors in these tests)."""
    big = np.zeros(2000)
    big[100:110] = 1e300
    big[200] = -1e300
    (tmp_path / "f64.wav").write_bytes(riff(float_fmt(64), big.astype("<f8").tobytes()))
    loud = np.full((1000, 2), 3.4e38, np.float32)
    (tmp_path / "f32.wav").write_bytes(riff(float_fmt(32, channels=2), loud.astype("<f4").tobytes()))
    samples, _ = read_audio(tmp_path / "f64.wav")
    assert np.isposinf(samples[100:110]).all() and np.isneginf(samples[200]) and samples[300] == 0.0
    samples, _ = read_audio(tmp_path / "f32.wav")
    assert np.isinf(samples).all()


# --------------------------------------------------------------------------------------------- file source


def ramp(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float32) / n).astype(np.float32)


def test_file_source_fast_mode_positions_and_end(tmp_path: Path) -> None:
    ints = (np.arange(1300) - 650).astype(np.int32)
    write_pcm(tmp_path / "r.wav", ints, 44100, 2)
    with WavFileSource(tmp_path / "r.wav", hop_size=HOP, realtime=False) as source:
        blocks = [source.read(timeout=1.0) for _ in range(3)]
        assert source.read(timeout=1.0) is None
        assert source.read(timeout=1.0) is None  # stays at the end
    assert [b.start for b in blocks if b] == [0, 512, 1024]
    joined = np.concatenate([b.samples for b in blocks if b])
    assert all(b is not None and b.samples.shape == (HOP,) and b.samples.dtype == np.float32 for b in blocks)
    np.testing.assert_allclose(joined[:1300], ints / 32768, atol=1e-7)
    assert not joined[1300:].any()  # the last hop is padded with silence
    assert source.blocks == 3 and source.samplerate == 44100 and source.hop_size == HOP


def test_file_source_loops_with_growing_positions() -> None:
    data = ramp(1000)
    source = WavFileSource(data, 8000, hop_size=HOP, loop=True, realtime=False)
    source.start()
    blocks = [source.read(1.0) for _ in range(5)]
    source.close()
    assert [b.start for b in blocks if b] == [0, 512, 1024, 1536, 2048]
    joined = np.concatenate([b.samples for b in blocks if b])
    np.testing.assert_array_equal(joined, data[np.arange(5 * HOP) % 1000])


def test_file_source_realtime_releases_hops_at_the_real_rate() -> None:
    source = WavFileSource(ramp(44100 * 3), 44100, hop_size=HOP)
    source.start()
    t0 = time.monotonic()
    blocks: list[AudioBlock] = []
    while time.monotonic() - t0 < 1.0:
        block = source.read(timeout=1.0)
        assert block is not None
        blocks.append(block)
    source.close()
    assert 75 <= len(blocks) <= 95  # 86.1 hops per second
    assert [b.start for b in blocks] == [i * HOP for i in range(len(blocks))]
    # Each hop leaves when its last sample would have arrived from a device, scheduled by sample count.
    for block in blocks:
        assert block.captured_at is not None
        due = t0 + (block.start + HOP) / 44100
        assert abs(block.captured_at - due) < 0.02
    late = time.monotonic() - blocks[-1].captured_at  # type: ignore[operator]
    assert late < 0.05


def test_file_source_reader_that_falls_behind_skips_to_now() -> None:
    source = WavFileSource(ramp(44100 * 5), 44100, hop_size=HOP, max_backlog=0.1)
    source.start()
    time.sleep(0.5)
    block = source.read(timeout=1.0)
    source.close()
    assert block is not None and block.start == source.dropped
    assert 0.35 < block.start / 44100 < 0.55  # the newest hop a device would have delivered, not the first
    np.testing.assert_array_equal(block.samples, ramp(44100 * 5)[block.start : block.start + HOP])


def test_file_source_lifecycle() -> None:
    source = WavFileSource(ramp(100), 100, hop_size=1000)  # the first hop is due after 10 s
    with pytest.raises(RuntimeError, match="before start"):
        source.read()
    source.start()
    with pytest.raises(RuntimeError, match="already started"):
        source.start()
    with pytest.raises(TimeoutError):
        source.read(timeout=0.05)
    results: list[object] = []
    reader = threading.Thread(target=lambda: results.append(source.read()))
    reader.start()
    time.sleep(0.1)
    source.close()  # wakes the blocked reader
    reader.join(timeout=2)
    assert not reader.is_alive() and results == [None]
    source.close()
    assert source.read() is None
    with pytest.raises(RuntimeError, match="closed"):
        source.start()


@pytest.mark.parametrize("hop", [0, -5, 512.0, True])
def test_hop_size_must_be_a_positive_count(hop: object) -> None:
    with pytest.raises(ConfigError, match="hop_size"):
        WavFileSource(ramp(10), 100, hop_size=hop)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- device choice (pure)

DEVICES = [
    InputDevice(0, "Built-in Microphone", "Core Audio", 1, 48000.0, is_default=True),
    InputDevice(1, "BlackHole 2ch", "Core Audio", 2, 48000.0),
    InputDevice(2, "Scarlett 18i8 USB", "Core Audio", 18, 44100.0),
    InputDevice(3, "Scarlett 18i8 USB", "JACK Audio Connection Kit", 18, 44100.0),
]


def test_device_by_index_name_or_default() -> None:
    assert find_input_device(1, DEVICES).name == "BlackHole 2ch"
    assert find_input_device("1", DEVICES).name == "BlackHole 2ch"
    assert find_input_device("blackhole", DEVICES).index == 1
    assert find_input_device(None, DEVICES).index == 0
    # Same device under two host APIs: the default host API's copy wins.
    assert find_input_device("scarlett", DEVICES).index == 2


def test_device_without_a_match_lists_the_inputs() -> None:
    with pytest.raises(ConfigError) as caught:
        find_input_device("vb-cable", DEVICES)
    message = str(caught.value)
    assert "'vb-cable'" in message and "[1] BlackHole 2ch - Core Audio, 2 in, 48000 Hz" in message
    with pytest.raises(ConfigError, match="no input device has that number"):
        find_input_device(9, DEVICES)
    with pytest.raises(ConfigError, match="no input devices"):
        find_input_device("anything", [])
    with pytest.raises(ConfigError, match="matches 2 inputs"):
        find_input_device("L", DEVICES[1:3])


def test_channel_choice() -> None:
    assert parse_channels(None, 18) == (0, 1)
    assert parse_channels(None, 1) == (0,)
    assert parse_channels("3-4", 18) == (2, 3)
    assert parse_channels("1, 2", 2) == (0, 1)
    assert parse_channels(2, 2) == (1,)
    assert parse_channels("all", 3) == (0, 1, 2)
    for bad in ("5", "left", "4-3", [0]):
        with pytest.raises(ConfigError, match="channels"):
            parse_channels(bad, 4)


def test_listing_without_any_input_does_not_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.jackrig import reinit_portaudio, unique_server_name

    monkeypatch.setenv("JACK_DEFAULT_SERVER", unique_server_name())  # no such server: no JACK host API
    reinit_portaudio()
    devices = list_input_devices()
    assert all(isinstance(d, InputDevice) and not d.is_jack for d in devices)


# --------------------------------------------------------------------------------------------- live capture


def read_for(source: LiveInputSource, seconds: float) -> list[AudioBlock]:
    blocks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        block = source.read(timeout=2.0)
        assert block is not None
        blocks.append(block)
    return blocks


def clicks_and_tone(n: int, clicks: np.ndarray, tone_at: int | None = None) -> np.ndarray:
    """Full-scale one-sample clicks, and a 100 ms 440 Hz burst at ``tone_at``."""
    signal = np.zeros(n, np.float32)
    if tone_at is not None:
        burst = np.arange(4410)
        signal[tone_at : tone_at + len(burst)] = 0.4 * np.sin(2 * np.pi * 440 * burst / 44100)
    signal[clicks] = 1.0
    return signal


def test_live_capture_through_jack_matches_what_was_played(jack_server: JackServer) -> None:
    clicks = np.array([3000, 7411, 12000, 30000, 33333, 40000])
    played = clicks_and_tone(44100, clicks, tone_at=20000)
    with LiveInputSource("system", hop_size=HOP) as source, JackPlayer(jack_server) as player:
        assert source.samplerate == 44100 and source.device.is_jack
        player.connect_to_captures()
        player.play(played)
        blocks = read_for(source, 1.3)
    assert [b.start for b in blocks] == [i * HOP for i in range(len(blocks))]
    captured = np.concatenate([b.samples for b in blocks])
    found = np.flatnonzero(captured > 0.5)
    assert len(found) == len(clicks)
    offsets = found - clicks
    # The constant latency (a few periods), nothing else. On a loaded 2-core machine the JACK graph can skip
    # PortAudio's callback once (an xrun): the capture then loses exactly one period (256 frames), which
    # neither side can prevent. Anything that is not whole periods would be our re-blocking going wrong.
    start = int(offsets[0])
    slips = (start - offsets) % 256
    assert np.all((slips <= 2) | (slips >= 254)), offsets
    # At most one xrun in 1.3 s: the clicks after it all keep the new offset, so the offset moves once at most.
    assert np.count_nonzero(np.abs(np.diff(offsets)) > 2) <= 1, offsets
    slipped = np.abs(offsets - start) > 2
    if not slipped.any():
        np.testing.assert_allclose(captured[start : start + len(played)], played, atol=1e-6)  # float32 untouched
    else:  # untouched up to the last click before the xrun, and again from the first click after it
        first = int(np.argmax(slipped))
        before, after = int(clicks[first - 1]) + 1, int(clicks[first])
        np.testing.assert_allclose(captured[start : start + before], played[:before], atol=1e-6)
        shifted = int(offsets[first])
        tail = min(len(played), len(captured) - shifted)
        np.testing.assert_allclose(captured[shifted + after : shifted + tail], played[after:tail], atol=1e-6)
    assert source.dropped == 0
    latencies = [blocks[f // HOP].captured_at - player.played_at(int(c)) for f, c in zip(found, clicks, strict=True)]  # type: ignore[operator]
    # Played sample -> its hop handed out; includes waiting for the rest of the hop (see with --log-cli-level=INFO).
    log.info("capture latency: median %.2f ms, max %.2f ms", 1000 * np.median(latencies), 1000 * max(latencies))
    assert 0 <= np.median(latencies) < 0.05


def test_live_device_by_name_and_index(jack_server: JackServer) -> None:
    (device,) = [d for d in list_input_devices() if d.is_jack]
    assert device.name == "system" and device.channels == 2 and device.default_samplerate == 44100
    for choice in ("SYST", device.index, str(device.index)):
        source = LiveInputSource(choice, hop_size=HOP, channels="1")
        assert source.device == device
        source.close()
    with pytest.raises(ConfigError) as caught:
        LiveInputSource("Scarlett", hop_size=HOP)
    assert "'Scarlett'" in str(caught.value)
    assert f"[{device.index}] system - JACK Audio Connection Kit" in str(caught.value)
    with pytest.raises(ConfigError, match=r"within this device's inputs \(1-2\)"):
        LiveInputSource("system", hop_size=HOP, channels="3")


def test_live_reader_that_falls_behind_jumps_over_what_it_missed(jack_server: JackServer) -> None:
    with LiveInputSource("system", hop_size=HOP, max_backlog=0.2) as source:
        time.sleep(0.6)  # nobody reads: the callback keeps 0.2 s and skips the rest
        blocks = read_for(source, 0.3)
    starts = np.array([b.start for b in blocks])
    jumps = np.diff(starts)
    assert source.dropped > 0.2 * 44100 and jumps.max() == HOP + source.dropped
    assert (jumps[jumps != jumps.max()] == HOP).all() and starts[0] == 0


def test_live_source_close_wakes_the_reader_and_is_safe_twice(jack_server: JackServer) -> None:
    source = LiveInputSource("system", hop_size=HOP)
    source.start()
    seen: list[AudioBlock] = []
    reader = threading.Thread(target=lambda: seen.extend(source))
    reader.start()
    time.sleep(0.3)
    source.close()
    reader.join(timeout=3)
    assert not reader.is_alive() and len(seen) > 10
    source.close()
    assert source.read() is None
    with pytest.raises(RuntimeError, match="closed"):
        source.start()


def test_live_device_that_stops_delivering_gives_silence_then_comes_back(
    jack_server: JackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge.inputs.live_audio")
    with LiveInputSource("system", hop_size=HOP, loss_timeout=0.3, reopen_interval=0.3) as source, \
            JackPlayer(jack_server) as player:
        player.connect_to_captures()
        read_for(source, 0.2)
        assert source.problems() == []
        player.stall(1.2)
        blocks, problems_while_lost, end = [], [], time.monotonic() + 2.0
        while time.monotonic() < end:
            blocks.append(source.read(timeout=2.0))
            if blocks[-1].lost and not problems_while_lost:
                problems_while_lost = source.problems()  # the status shows the loss while it lasts
        assert source.connected and source.problems() == []  # ... and not a moment after
        assert len(problems_while_lost) == 1 and "lost" in problems_while_lost[0], problems_while_lost
        player.connect_to_captures()  # PortAudio's reopened stream has new ports
        clicks = np.array([2000, 9000])
        player.play(clicks_and_tone(11025, clicks))
        after = read_for(source, 0.5)
    lost = [b for b in blocks if b.lost]
    assert lost and not any(b.samples.any() for b in lost)
    gaps = np.diff([b.captured_at for b in lost])  # type: ignore[arg-type]
    assert abs(np.median(gaps) - HOP / 44100) < 0.002  # made up at the hop rate
    everything = blocks + after
    assert [b.start for b in everything] == [everything[0].start + i * HOP for i in range(len(everything))]
    assert not after[-1].lost and (np.concatenate([b.samples for b in after]) > 0.5).sum() == 2
    # Audio a loaded machine's JACK drops on the way is its own rate-limited line ("is losing audio"), not the loss
    # of the device: only the device's lines are counted here.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "is losing audio" not in r.getMessage()]
    assert len(warnings) == 1 and "lost" in warnings[0].getMessage()
    assert getattr(warnings[0], "problem", None)  # a state's warning: the status's recent list leaves it out
    assert sum("is back" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == 1


def test_a_device_that_overflows_block_after_block_is_one_warning_naming_it(
    jack_server: JackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each stall of the JACK graph is an xrun, which PortAudio reports to the next callback as an input overflow:
    audio was lost. Said once, with the device and the count, however many blocks overflow."""
    caplog.set_level(logging.INFO, logger="metadj_bridge.inputs.live_audio")
    with LiveInputSource("system", hop_size=HOP) as source, JackPlayer(jack_server) as player:
        player.connect_to_captures()
        read_for(source, 0.2)
        for _ in range(8):
            player.stall(0.05)
            read_for(source, 0.1)
        assert source.connected  # an overflow is no loss of the device
    assert source.overflows >= 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("audio input system is losing audio: input overflow (1 since the start"), warnings


SERVER_LOSS = """
import json, logging, os, sys, time
import numpy as np
from tests.jackrig import JackPlayer, JackServer

warnings = []
class Collect(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            warnings.append(record.getMessage())
logging.getLogger("metadj_bridge").addHandler(Collect())

server = JackServer().start()
os.environ["JACK_DEFAULT_SERVER"] = server.name
from metadj_bridge.inputs.live_audio import LiveInputSource

def read_for(seconds):
    blocks, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        blocks.append(source.read(timeout=2.0))
    return blocks

source = LiveInputSource("system", hop_size=512, loss_timeout=0.3)
source.start()
player = JackPlayer(server)
player.connect_to_captures()
player.play(np.full(44100 * 20, 0.25, np.float32))
before = read_for(0.4)
server.stop()
player.close()
during = read_for(1.0)
server.start()
after = read_for(1.0)
source.close()
source.close()
server.stop()
blocks = before + during + after
print(json.dumps({
    "heard_before": bool(any(b.samples.max() > 0.2 for b in before)),
    "lost": sum(b.lost for b in blocks),
    "silent_when_lost": all(not b.samples.any() for b in blocks if b.lost),
    "contiguous": [b.start for b in blocks] == [i * 512 for i in range(len(blocks))],
    "rate": len(during + after) / 2.0,
    "still_lost_after_restart": all(b.lost for b in after),
    "warnings": warnings,
}))
"""


def test_jack_server_stopping_gives_silence_one_warning_and_a_clean_exit() -> None:
    """Runs in its own process: after a JACK server loss PortAudio can never be terminated in that process."""
    JackServer()  # skips when jackd is not installed
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SERVER_LOSS], cwd=ROOT, env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert result["heard_before"] and result["silent_when_lost"] and result["contiguous"]
    # Silence at the hop rate (86/s); a loaded machine makes a reader catch up in bursts, so allow a band.
    assert result["lost"] > 100 and 70 <= result["rate"] <= 110
    # A restarted server with the same name is out of reach (see metadj_bridge/inputs/live_audio.py).
    assert result["still_lost_after_restart"]
    # One warning for the loss. A loaded machine may also drop a block before it (an xrun, said once on its own:
    # test_a_device_that_overflows_block_after_block_is_one_warning_naming_it); nothing else.
    lost = [w for w in result["warnings"] if "input overflow" not in w]
    overflows = [w for w in result["warnings"] if "input overflow" in w]
    assert len(lost) == 1 and len(overflows) <= 1, result["warnings"]
    assert "JACK server stopped" in lost[0] and "restart metadj-bridge" in lost[0]


def test_device_names_with_terminal_escapes_are_shown_escaped_in_errors() -> None:
    """A device's name comes from the system (a USB descriptor, a JACK client): shown raw, an escape in it would
    clear or recolour the performer's terminal."""
    hostile = InputDevice(5, "Mic\x1b[2J\x1b[31m\r\nfake line", "ALSA\x07", 2, 48000.0)
    for wanted in ("vb-cable", 9):
        with pytest.raises(ConfigError) as caught:
            find_input_device(wanted, [*DEVICES, hostile])
        message = str(caught.value)
        assert "\x1b" not in message and "\r" not in message and "\x07" not in message
        assert "[5] Mic\\x1b[2J\\x1b[31m\\r\\nfake line - ALSA\\x07, 2 in" in message
    assert hostile.label == "Mic\\x1b[2J\\x1b[31m\\r\\nfake line" and find_input_device(5, [hostile]) == hostile
