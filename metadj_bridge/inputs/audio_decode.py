"""Audio files libsndfile does not read, decoded with FFmpeg through PyAV (already installed for Scope's video).

Performers' music is often AAC or Apple Lossless in an M4A (what a music store sells), raw AAC (ADTS), Opus or
Vorbis in WebM or Matroska, WMA, Monkey's Audio, or the sound track of a video file. :mod:`audio_file` reads WAV
itself and everything libsndfile knows through soundfile; what is left comes here: the first audio stream of the
file, every channel averaged to mono float32 at the stream's own sample rate.

FFmpeg may only use the demuxers of audio and video files (DEMUXERS) and no protocol: a playlist (HLS, DASH), a
concat list or an SDP file named like a song would otherwise make it fetch URLs, read other files or open sockets.

A damaged packet is skipped and counted, and silence takes its place where the timestamps of what follows say how
long it was (up to MAX_GAP_S), so a file with a bad stretch still plays what it holds, and every beat after it
keeps its time in the file (raw AAC has no timestamps: there the damaged stretch is left out). A file with no
audio stream, or nothing decodable, is refused. The file is read from the handle :mod:`audio_file` opened after
checking that it is a regular file, never by name again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

__all__ = ["Decoded", "NoAudio", "decode_with_ffmpeg"]

log = logging.getLogger(__name__)

#: How many frames a byte of file is believed to hold before the array grows (see audio_file's libsndfile path).
_FRAMES_PER_BYTE = 64
#: A jump in the timestamps up to this long is filled with silence (a damaged packet, a gap in the stream); a
#: longer one (a broken or hostile timestamp) is not, and all the silence together never outgrows the audio heard
#: before it, so no file can make the reader allocate hours of zeros, however many jumps it holds.
MAX_GAP_S = 10.0
#: Jumps under this are rounding, not gaps.
MIN_GAP_S = 0.005
#: The FFmpeg demuxers allowed: files that hold their audio themselves.
DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "aac", "matroska,webm", "asf", "ape", "mp3", "flac", "ogg", "wav", "w64",
            "aiff", "caf", "au", "ac3", "eac3", "dts", "truehd", "mlp", "tta", "wv", "mpc", "mpc8", "amr", "avi", "flv",
            "mpeg", "mpegts", "dsf", "tak", "shn", "xwma", "rm", "voc")
_OPEN_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "none"}
#: Resamplers kept at once (one per layout, sample format and rate the stream has used).
_RESAMPLERS = 4


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # mono float32
    samplerate: int
    damaged: int  # packets that did not decode (or the container breaking off)
    silence_s: float  # seconds of silence put in their place


class NoAudio(Exception):
    """FFmpeg cannot make audio of this file; the message says why, in a few words."""


def _stream_of(container: Any) -> Any:
    streams = list(container.streams.audio)
    if not streams:
        kinds = sorted({s.type for s in container.streams} - {"audio"})
        raise NoAudio("it holds no audio stream" + (f" (only {' and '.join(kinds)})" if kinds else ""))
    return streams[0]


def _mono(frame: Any, resamplers: dict[tuple[str, int, int], Any], rate: int) -> np.ndarray:
    """One decoded frame as mono float32 at ``rate``: planar float through FFmpeg's resampler (a new one whenever
    the stream changes its layout, format or rate midway), then the channels averaged as the WAV reader does."""
    import av

    key = (frame.format.name, frame.layout.nb_channels, frame.sample_rate)
    resampler = resamplers.get(key)
    if resampler is None:
        if len(resamplers) >= _RESAMPLERS:  # a stream that changes its layout at every frame keeps only a few
            resamplers.clear()
        resampler = resamplers[key] = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
    parts = [out.to_ndarray() for out in resampler.resample(frame)]
    if not parts:
        return np.zeros(0, np.float32)
    planes = np.concatenate(parts, axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        return planes.mean(axis=0).astype(np.float32, copy=False)


def decode_with_ffmpeg(f: BinaryIO, check_rate: Callable[[int], None], *, first_block_only: bool = False) -> Decoded:
    """The file's first audio stream, decoded.

    ``check_rate`` is called with the rate of the first decoded audio (before the rest is decoded) and may raise.
    ``first_block_only``: stop after the first decoded samples, to check a file without reading it all. Raises
    :class:`NoAudio` when FFmpeg cannot open the file, finds no audio stream in it or decodes nothing.
    """
    import av

    f.seek(0)
    try:
        container = av.open(f, mode="r", options=_OPEN_OPTIONS)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        log.debug("FFmpeg cannot open the file: %s", exc)
        raise NoAudio("FFmpeg cannot open it") from None
    with container:
        stream = _stream_of(container)
        out = _Output(os.fstat(f.fileno()).st_size)
        resamplers: dict[tuple[str, int, int], Any] = {}
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except (av.error.FFmpegError, ValueError):
                    out.damaged += 1
                    continue
                for frame in frames:
                    if out.rate == 0:
                        check_rate(int(frame.sample_rate))
                        out.start(stream, int(frame.sample_rate))
                    out.add(_mono(frame, resamplers, out.rate), frame)
                if first_block_only and out.filled:
                    break
        except (av.error.FFmpegError, ValueError) as exc:  # the container itself breaks off: keep what came before
            out.damaged += 1
            log.debug("FFmpeg stopped reading after %d samples: %s", out.filled, exc)
    if out.filled == 0:
        raise NoAudio("no audio in it decodes")
    return Decoded(out.samples[: out.filled], out.rate, out.damaged, out.silence / out.rate)


class _Output:
    """The mono samples as they come, in an array that grows by an eighth when it must, with silence where the
    timestamps jump (see MAX_GAP_S)."""

    def __init__(self, file_size: int) -> None:
        self.file_size = file_size
        self.samples = np.zeros(0, np.float32)
        self.filled = self.silence = self.damaged = self.rate = 0
        self.origin: int | None = None

    def start(self, stream: Any, rate: int) -> None:
        self.rate = rate
        self.samples = np.empty(_expected_frames(stream, rate, self.file_size), np.float32)

    def add(self, block: np.ndarray, frame: Any) -> None:
        if frame.pts is not None and frame.time_base is not None:
            at = int(round(float(frame.pts * frame.time_base) * self.rate))
            if self.origin is None:
                self.origin = at - self.filled
            gap = at - self.origin - self.filled
            heard = self.filled - self.silence
            if MIN_GAP_S * self.rate < gap <= MAX_GAP_S * self.rate and self.silence + gap <= heard:
                self._append(np.zeros(gap, np.float32))
                self.silence += gap
            elif abs(gap) > MIN_GAP_S * self.rate:  # a jump not filled (or back): later frames count from here
                self.origin += gap
        self._append(block)

    def _append(self, block: np.ndarray) -> None:
        n = len(block)
        if self.filled + n > len(self.samples):
            grown = np.empty(self.filled + max(n, len(self.samples) // 8), np.float32)
            grown[: self.filled] = self.samples[: self.filled]
            self.samples = grown
        self.samples[self.filled : self.filled + n] = block
        self.filled += n


def _expected_frames(stream: Any, rate: int, size: int) -> int:
    """How many frames to allocate first: what the stream's duration says, but never more than 64 a byte of file
    (a header may lie; the array grows by an eighth when the audio runs longer)."""
    frames = 0
    if stream.duration is not None and stream.time_base is not None:
        frames = int(float(stream.duration * stream.time_base) * rate)
    return max(0, min(frames, _FRAMES_PER_BYTE * size))
