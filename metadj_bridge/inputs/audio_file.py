"""Reading audio files: any common format to mono float32, and errors that say what a file is and how to convert it.

WAV of 8, 16, 24 or 32-bit integer PCM or 32/64-bit floating point is read here (numpy, chunk by chunk, so a long
file costs little more memory than its samples). FLAC, MP3, Ogg Vorbis and Opus, AIFF, ADPCM and other compressed
WAV, RF64, W64, CAF and AU go through libsndfile, which the soundfile package bundles in its wheels for Linux,
macOS and Windows. What libsndfile does not read (AAC or ALAC in an M4A, raw AAC, WebM, Matroska, WMA, Monkey's
Audio, a video's sound) goes through FFmpeg (:mod:`audio_decode`, PyAV). A file none can read (a damaged file,
something that is not audio) is named from its first bytes and refused with an :class:`AudioFormatError` that
carries an ffmpeg command converting it to a WAV, and so is a file whose sample rate the analysis cannot work at.

Only regular files are opened: a FIFO would block ``open`` for ever and a device might never end, so both are
refused from ``stat`` first. :func:`read_audio_header` makes every check :func:`read_audio` makes before it reads
the samples (``check`` uses it on a profile's audio file), without reading the whole file.
"""

from __future__ import annotations

import logging
import os
import struct
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from metadj_bridge.errors import ConfigError, NotRegularFile, open_regular, printable, reason
from metadj_bridge.inputs.analysis_config import SAMPLERATE_RANGE
from metadj_bridge.inputs.audio_decode import NoAudio, decode_with_ffmpeg

__all__ = ["AudioFormatError", "read_audio", "read_audio_header", "read_demo_track"]

log = logging.getLogger(__name__)


class AudioFormatError(ConfigError):
    """An audio file that metadj-bridge cannot read: not audio, damaged, or in a format neither libsndfile nor FFmpeg
    knows."""


_SUPPORTED = "WAV, FLAC, MP3, Ogg, AIFF, AAC/M4A and the other formats of libsndfile and FFmpeg"
_FFMPEG = 'ffmpeg -i "{path}" -ar 44100 -ac 2 -c:a pcm_s16le out.wav'

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_WAV_CODECS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


def _format_error(path: Path, what: str) -> AudioFormatError:
    return AudioFormatError(
        f"{path}: {what}; metadj-bridge reads {_SUPPORTED}. Convert it with: {_FFMPEG.format(path=path)}"
    )


def _sniff(path: Path, head: bytes) -> str | None:
    """Name the kind of a file that is not a RIFF WAV, from its first bytes."""
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # an MPEG sync word with layer bits 00: ADTS
        return "an AAC file"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "an MP3 file"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "an AIFF file"
    if head[:4] == b"fLaC":
        return "a FLAC file"
    if head[:4] == b"OggS":
        return "an Ogg file"
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "a Matroska/WebM file"
    if head[:4] == b"0&\xb2u":
        return "a WMA/ASF file"
    if head[:4] == b"MAC ":
        return "a Monkey's Audio file"
    if head[:4] in (b"RF64", b"RIFX"):
        return f"a {head[:4].decode()} WAV"
    return None


#: What libsndfile cannot read at all: straight to FFmpeg.
_FFMPEG_ONLY = frozenset({"an AAC file", "an MP4/M4A file", "a Matroska/WebM file", "a WMA/ASF file",
                          "a Monkey's Audio file"})


@dataclass(frozen=True)
class _WavLayout:
    tag: int  # format tag, with WAVE_FORMAT_EXTENSIBLE resolved to its sub-format
    extensible: bool
    channels: int
    samplerate: int
    bits: int
    data_offset: int
    data_size: int


def _wav_layout(path: Path, f: BinaryIO, file_size: int) -> _WavLayout:
    """Walk the RIFF chunks for ``fmt `` and ``data`` (the stdlib reader in 3.11 refuses EXTENSIBLE headers)."""
    f.seek(12)
    fmt: tuple[int, int, int, int, bool] | None = None
    while True:
        header = f.read(8)
        if len(header) < 8:
            raise AudioFormatError(f"{path}: this WAV file has no audio data chunk (truncated or damaged)")
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"fmt ":
            body = f.read(size)
            if len(body) < 16:
                raise AudioFormatError(f"{path}: the WAV format chunk is damaged")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            extensible = tag == _EXTENSIBLE
            if extensible and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits, extensible)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError(f"{path}: the WAV data comes before its format chunk (damaged file)")
            tag, channels, rate, bits, extensible = fmt
            offset = f.tell()
            return _WavLayout(tag, extensible, channels, rate, bits, offset, min(size, file_size - offset))
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)


def _decode_pcm(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM samples of ``width`` bytes to float32 in [-1, 1)."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        # Put each 3-byte sample in the top of an int32, then shift back down: the sign comes along.
        packed = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(packed), 4), np.uint8)
        wide[:, 1:] = packed
        return (wide.view("<i4").reshape(-1) >> 8).astype(np.float32) / 8388608.0
    return (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)


def _shown(path: Path) -> str:
    """The path for an error line: control characters and NUL bytes escaped."""
    text = str(path)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _open_audio_file(path: Path) -> BinaryIO:
    """The file open for reading, once it is known to be a regular file (``errors.open_regular``)."""
    try:
        return os.fdopen(open_regular(path), "rb")
    except NotRegularFile as exc:
        if exc.kind == "a folder":
            raise ConfigError(f"{_shown(path)}: is a folder, not an audio file") from None
        raise ConfigError(f"{_shown(path)}: {exc.kind}, not an audio file; give a file saved on disk ({_SUPPORTED})"
                          ) from None
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{_shown(path)}: no such audio file") from None
    except ValueError as exc:  # a NUL byte in the name
        raise ConfigError(f"{_shown(path)}: not a usable file name ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{_shown(path)}: cannot open the audio file: {exc.strerror or exc}") from None


def _check_samplerate(path: Path, samplerate: int) -> None:
    lo, hi = SAMPLERATE_RANGE
    if not lo <= samplerate <= hi:
        raise AudioFormatError(f"{path}: the file's sample rate is {samplerate} Hz; metadj-bridge analyses audio at "
                               f"{lo}-{hi} Hz (44100 or 48000 are usual). Convert it with: {_FFMPEG.format(path=path)}")


def _identify(path: Path, f: BinaryIO) -> tuple[_WavLayout | None, str | None]:
    """A WAV numpy reads (its layout, checked), or None and what the first bytes say the file is (for libsndfile)."""
    file_size = os.fstat(f.fileno()).st_size
    if file_size == 0:
        raise AudioFormatError(f"{path}: the file is empty (0 bytes)")
    head = f.read(12)
    if not (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        return None, _sniff(path, head)
    layout = _wav_layout(path, f, file_size)
    readable_bits = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}.get(layout.tag, ())
    if layout.bits in readable_bits and layout.channels >= 1:
        _check_samplerate(path, layout.samplerate)
        if layout.data_size // (layout.bits // 8 * layout.channels) == 0:
            raise AudioFormatError(f"{path}: the WAV file holds no audio (0 samples)")
        return layout, None
    codec = {_PCM: "PCM", _FLOAT: "floating-point", **_WAV_CODECS}.get(layout.tag, f"format {layout.tag:#06x}")
    return None, f"a WAV of {layout.bits}-bit {codec} audio"  # libsndfile reads ADPCM, A-law, mu-law and more


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 (channels averaged) and its sample rate.

    Integer PCM comes out in [-1, 1); floating-point audio as it is stored (it may exceed 1; what float32 cannot
    hold becomes infinite, and the analysis counts and silences it). Raises :class:`ConfigError` for a missing
    file, a name the system refuses or something that is not a regular file, and :class:`AudioFormatError` for a
    file that cannot be decoded or has a sample rate the analysis cannot use, with a command that converts it.
    """
    path = Path(path)
    with _open_audio_file(path) as f:
        layout, kind = _identify(path, f)
        if layout is not None:
            return _read_wav_data(f, layout), layout.samplerate
        return _decode(path, f, kind)


def read_demo_track() -> tuple[np.ndarray, int]:
    """The bundled demo track's samples and rate: generated into the user's cache folder on first use and read from
    there. A cache folder that cannot be written (a read-only home, a service user without one, a file in its
    place) costs one warning: the track is generated for this run only, and the show starts anyway."""
    from metadj_bridge.inputs import synth

    try:
        return read_audio(synth.demo_track_path())
    except OSError as exc:
        log.warning("the demo track cannot be kept in %s (%s); it is generated for this run only",
                    printable(str(synth.cache_dir())), reason(exc))
    return synth.render(synth.DEMO_SPEC).samples, synth.SAMPLERATE


def read_audio_header(path: str | os.PathLike[str]) -> int:
    """The sample rate of an audio file, after the checks :func:`read_audio` makes before it reads the samples
    (libsndfile formats: the header and a first block decoded); raises the same errors."""
    path = Path(path)
    with _open_audio_file(path) as f:
        layout, kind = _identify(path, f)
        if layout is not None:
            return layout.samplerate
        return _decode(path, f, kind, first_block_only=True)[1]


class _NotForLibsndfile(Exception):
    """libsndfile cannot read this file (or cannot be loaded here); FFmpeg gets its turn."""


def _decode(path: Path, f: BinaryIO, kind: str | None, *, first_block_only: bool = False) -> tuple[np.ndarray, int]:
    """A file that is not a WAV numpy reads: libsndfile, then FFmpeg; ``kind`` names it in errors (None: its first
    bytes say nothing)."""
    if kind not in _FFMPEG_ONLY:
        try:
            return _read_with_libsndfile(path, first_block_only=first_block_only)
        except _NotForLibsndfile:
            pass
    try:
        got = decode_with_ffmpeg(f, lambda rate: _check_samplerate(path, rate), first_block_only=first_block_only)
    except NoAudio as exc:
        if kind is None:
            raise _format_error(path, f"this is not an audio file, or not in a format libsndfile or FFmpeg knows "
                                f"({exc})") from None
        raise _format_error(path, f"this is {kind}, and it cannot be decoded: {exc} (damaged, truncated, or an "
                            "encoding neither libsndfile nor FFmpeg reads)") from None
    if got.damaged and not first_block_only:
        filled = f", {got.silence_s:.1f} s of silence in their place" if got.silence_s >= 0.05 else ""
        log.warning("%s: %d damaged packet%s skipped%s; the rest plays", _shown(path), got.damaged,
                    "" if got.damaged == 1 else "s", filled)
    return got.samples, got.samplerate


def _read_wav_data(f: BinaryIO, layout: _WavLayout) -> np.ndarray:
    width = layout.bits // 8
    frame_bytes = width * layout.channels
    frames = layout.data_size // frame_bytes
    out = np.empty(frames, np.float32)
    reader = _wave_reader(f, layout)
    step = 1 << 18  # frames per read: keeps the peak memory of a one-hour file near the output itself
    for start in range(0, frames, step):
        n = min(step, frames - start)
        raw = reader(n * frame_bytes)
        n = len(raw) // frame_bytes
        raw = raw[: n * frame_bytes]
        # Floating-point samples beyond float32 (or summing beyond it) become infinite without numpy's warning:
        # the analysis counts them and says so once.
        with np.errstate(over="ignore", invalid="ignore"):
            if layout.tag == _FLOAT:
                samples = np.frombuffer(raw, "<f4" if width == 4 else "<f8").astype(np.float32)
            else:
                samples = _decode_pcm(raw, width)
            if layout.channels > 1:
                samples = samples.reshape(n, layout.channels).mean(axis=1)
        out[start : start + n] = samples
        if n < step:
            out = out[: start + n]
            break
    return out


def _read_with_libsndfile(path: Path, *, first_block_only: bool = False) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (the soundfile package), block by block; raises :class:`_NotForLibsndfile` when it
    cannot. ``first_block_only``: the header and one block, to check the file."""
    try:
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the package is there but its libsndfile cannot be loaded
        log.debug("soundfile unavailable: %s", exc)
        raise _NotForLibsndfile from None
    try:
        with soundfile.SoundFile(path) as snd:
            samplerate = int(snd.samplerate)
            _check_samplerate(path, samplerate)
            if first_block_only:
                first = snd.read(1024, dtype="float32", always_2d=True)
                if len(first) == 0:
                    raise AudioFormatError(f"{path}: the file holds no audio (0 samples)")
                return first.mean(axis=1), samplerate
            # Into one array of the length the header gives (a one-hour set is 600 MB of float32: no second copy),
            # cut if the stream ends early. A header that promises more than 64 frames a byte (Opus at 6 kbit/s) is
            # not believed at first: the array starts there and grows by an eighth at a time (a long FLAC of near
            # silence really is that small).
            samples = np.empty(min(max(0, int(snd.frames)), 64 * os.path.getsize(path)), np.float32)
            filled = 0
            for block in snd.blocks(1 << 18, dtype="float32", always_2d=True):
                n = len(block)
                if filled + n > len(samples):
                    samples = np.concatenate([samples[:filled], np.empty(max(n, len(samples) // 8), np.float32)])
                with np.errstate(over="ignore", invalid="ignore"):  # see _read_wav_data
                    np.mean(block, axis=1, out=samples[filled : filled + n])
                filled += n
    except (RuntimeError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        log.debug("libsndfile cannot read %s: %s", path, exc)
        raise _NotForLibsndfile from None
    if filled == 0:
        raise AudioFormatError(f"{path}: the file holds no audio (0 samples)")
    samples = samples[:filled]
    return samples, samplerate


def _wave_reader(f: BinaryIO, layout: _WavLayout) -> Callable[[int], bytes]:
    """A function that returns the next ``n`` bytes of sample data."""
    if not layout.extensible:
        try:
            f.seek(0)
            reader = wave.open(f, "rb")  # plain PCM headers: the stdlib reader
            frame_bytes = reader.getsampwidth() * reader.getnchannels()
            return lambda n: reader.readframes(n // frame_bytes)
        except (wave.Error, EOFError):
            pass  # WAVE_FORMAT_EXTENSIBLE before Python 3.12: read the data chunk found by _wav_layout
    f.seek(layout.data_offset)
    remaining = [layout.data_size]

    def read(n: int) -> bytes:
        data = f.read(min(n, remaining[0]))
        remaining[0] -= len(data)
        return bytes(data)

    return read
