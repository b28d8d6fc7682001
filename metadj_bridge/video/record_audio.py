"""The music in a recording: the audio the bridge heard, placed beside the frames the camera showed at that moment.

A recording's file time 0 is its first tick. A block of audio heard at ``time.monotonic()`` T belongs at file time
T - (first tick's time), where the frame shown at T also lands. :class:`AudioTimeline` decides where each block
goes. It places the first block by its heard time and every later one by the source's own sample count, so the
music plays on without a click; it writes silence where the count jumps (a source that skipped ahead, blocks the
recording could not take in time) and cuts what overlaps. The count is not always the truth: a sound card's clock
is not the computer's (over an hour it runs a few hundred milliseconds fast or slow), and a PortAudio input
overflow loses samples without a jump in the count. So the timeline compares each block's heard time with where
the count puts it and, once the earliest of those differences over :data:`DRIFT_WINDOW` passes
:data:`DRIFT_TOLERANCE`, moves the audio back in place with a short silence or cut (the earliest, because a block
is never heard before it was captured: callbacks and queues only ever add delay).

:class:`AudioTrack` is the codec side: AAC (Opus where this FFmpeg has no AAC encoder) at 48 kHz mono, resampled from
the source's rate, encoded and muxed by the recording's encoder thread beside the video. Its timestamps are its own
sample count. At the end the track is filled with silence up to the end of the video, so both end together.

The blocks come from anything with a ``take()`` that returns what has arrived (:class:`AudioFeed`): in a run, a
subscription to the audio analysis's tap (:mod:`metadj_bridge.inputs.audio_tap`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import OutputContainer

log = logging.getLogger(__name__)

#: Audio encoders a recording may use, best first (Opus only where this PyAV build has no AAC encoder).
AUDIO_CODECS = ("aac", "libopus", "opus")

#: The track's sample rate: AAC and Opus both take it, and so does every player.
TRACK_RATE = 48_000

#: How far the audio may stray from its heard time before it is moved back (well within a frame at 60 fps).
DRIFT_TOLERANCE = 0.010

#: Seconds of blocks over which the drift is measured (the earliest difference in this window counts). Short
#: enough that audio a live input lost without a trace (a PortAudio overflow loses samples from the count) is
#: back in place within a second; long enough that a few late callbacks move nothing.
DRIFT_WINDOW = 0.5

#: How far the sound may trail the picture before silence stands in for it (no music yet, or the music stopped),
#: so that the file stays interleaved. Audio heard longer ago than this when it comes is left out.
SILENCE_LAG = 3.0

#: Silence is written at most this many seconds at a time (an hour of it must not be one array).
_SILENCE_CHUNK = 1.0


class HeardAudio(Protocol):
    """A block of mono float32 samples from the source, and when its first sample was heard."""

    @property
    def samples(self) -> np.ndarray: ...
    @property
    def samplerate(self) -> int: ...
    @property
    def start(self) -> int: ...
    @property
    def heard_at(self) -> float: ...


class AudioFeed(Protocol):
    """Where the blocks come from. ``take()`` returns what has arrived, oldest first, and never blocks."""

    def take(self) -> Sequence[HeardAudio]: ...
    def close(self) -> None: ...


def pick_audio_codec() -> str | None:
    """AAC if this PyAV build can encode it, else Opus; None if neither (the recording then has no sound)."""
    for name in AUDIO_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001, S112 - PyAV raises different errors per version for a missing codec
            continue
        return name
    return None


class AudioTimeline:
    """Where each block of heard audio goes in the file, in samples at the source's rate (pure: no clock, no codec).

    ``origin`` is the ``time.monotonic()`` of file time 0. :meth:`place` returns ``(silence, skip)``: write
    ``silence`` zero samples, then the block's samples from index ``skip`` on (all of them skipped: none).
    """

    def __init__(self, origin: float, samplerate: int, *, tolerance: float = DRIFT_TOLERANCE,
                 window: float = DRIFT_WINDOW) -> None:
        self.origin = origin
        self.samplerate = samplerate
        self._tolerance = max(1, round(tolerance * samplerate))
        self._window = max(1, round(window * samplerate))
        #: Samples in the file so far (music and silence).
        self.written = 0
        #: Zero samples written for gaps and drift, and samples cut for overlaps and drift.
        self.filled = 0
        self.cut = 0
        #: Times the audio was moved back to its heard time.
        self.corrections = 0
        self._offset: int | None = None  # file position of source sample 0
        self._earliest: int | None = None  # the smallest (heard position - counted position) in this window
        self._seen = 0  # samples measured in this window

    def place(self, start: int, count: int, heard_at: float) -> tuple[int, int]:
        heard = round((heard_at - self.origin) * self.samplerate)
        first = self._offset is None
        if self._offset is None:
            self._offset = heard - start
        else:
            self._measure(heard - (start + self._offset), count)
        position = start + self._offset
        if position >= self.written:
            silence, skip = position - self.written, 0
        else:
            silence, skip = 0, min(count, self.written - position)
        if not first:  # the silence before the music began is no gap
            self.filled += silence
        self.cut += skip - min(count, max(0, -position))  # audio from before the first tick is no cut
        if skip < count:
            self.written = position + count
        return silence, skip

    def _measure(self, difference: int, count: int) -> None:
        self._earliest = difference if self._earliest is None else min(self._earliest, difference)
        self._seen += count
        if self._seen < self._window:
            return
        earliest, self._earliest, self._seen = self._earliest, None, 0
        if abs(earliest) > self._tolerance:
            assert self._offset is not None
            self._offset += earliest
            self.corrections += 1
            log.debug("recording audio moved %+.1f ms back to its heard time", 1000 * earliest / self.samplerate)

    def pad_to(self, seconds: float) -> int:
        """Silence (in samples) that makes the file's audio last ``seconds``."""
        end = round(seconds * self.samplerate)
        pad = max(0, end - self.written)
        self.written += pad
        return pad


def open_audio_track(container: OutputContainer, path: object) -> AudioTrack | None:
    """The audio track of the recording to ``path``, added to ``container``; None (said why) when none can be made."""
    codec = pick_audio_codec()
    if codec is None:
        log.warning("recording %s has no sound: this PyAV build has neither an AAC nor an Opus encoder", path)
        return None
    try:
        return AudioTrack(container, codec, name=str(path))
    except (OSError, ValueError, av.FFmpegError) as exc:
        log.warning("recording %s has no sound: the %s encoder did not open (%s)", path, codec, exc)
        return None


class AudioTrack:
    """The recording's audio stream: adds it to ``container`` (before the first mux), then places, resamples,
    encodes and muxes the blocks it is given. Used from the recording's encoder thread, then by its close()."""

    def __init__(self, container: OutputContainer, codec: str, *, rate: int = TRACK_RATE, name: str = "") -> None:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, AudioStream)
        stream.layout = "mono"
        stream.time_base = Fraction(1, rate)
        stream.bit_rate = 128_000
        stream.codec_context.open()
        self.codec = codec
        self.rate = rate
        self.name = name
        self._container = container
        self._stream = stream
        self._format = "fltp" if "fltp" in {f.name for f in stream.codec_context.codec.audio_formats or ()} else "flt"
        self._frame_size = stream.codec_context.frame_size or 1024
        self._timeline: AudioTimeline | None = None
        self._resampler: av.AudioResampler | None = None
        self._source_rate = 0
        self._pts = 0
        self._waiting: list[HeardAudio] = []  # heard after the end of the picture so far
        self.failed = False
        self.blocks = 0
        self.foreign = 0  # blocks at another rate than the first (cannot be placed; left out)

    @property
    def seconds(self) -> float:
        """Audio encoded so far, in seconds."""
        return self._pts / self.rate

    @property
    def timeline(self) -> AudioTimeline | None:
        return self._timeline

    def stats(self) -> dict[str, Any]:
        """The audio fields of the recording's stats."""
        timeline = self._timeline
        rate = timeline.samplerate if timeline is not None else 1
        return {
            "audio_codec": self.codec,
            "audio_seconds": self.seconds,
            "audio_filled": timeline.filled / rate if timeline is not None else 0.0,
            "audio_cut": timeline.cut / rate if timeline is not None else 0.0,
        }

    def pump(self, feed: AudioFeed | None, origin: float | None, until: float) -> None:
        """The audio heard since the last call, into the file (file time 0 is ``origin``, once known), up to
        ``until`` seconds (the end of the picture so far: the sound never runs ahead of it; the rest waits).
        Silence fills in up to :data:`SILENCE_LAG` behind the picture when nothing (or nothing more) is heard."""
        if origin is None or self.failed:
            return
        try:
            blocks, self._waiting = [*self._waiting, *(feed.take() if feed is not None else ())], []
            for n, heard in enumerate(blocks):
                if heard.heard_at - origin >= until:
                    self._waiting = blocks[n:]
                    blocks = blocks[:n]
                    break
            self.add(blocks, origin)
            self.keep_up(until - SILENCE_LAG)
        except (OSError, av.FFmpegError) as exc:  # a full disk: the picture's next write says so, in one line
            self.failed = True
            log.debug("recording %s: the sound stopped after %.1f s: %s", self.name, self.seconds, exc)
        except Exception:  # the picture goes on without sound rather than stopping
            self.failed = True
            log.exception("recording %s: the sound stopped after %.1f s", self.name, self.seconds)

    def finish(self, feed: AudioFeed | None, origin: float | None, seconds: float, *, ok: bool = True) -> None:
        """The last audio heard, then silence up to ``seconds`` (the video's end); closes ``feed``. ``ok`` False:
        the file is lost anyway (the video failed), only close the feed."""
        if ok:
            self.pump(feed, origin, seconds)
        if feed is not None:
            feed.close()
        self._waiting = []
        if self.failed or not ok:
            return
        try:
            self.end(seconds)
        except Exception:
            log.exception("recording %s: the sound could not be finished", self.name)

    def add(self, blocks: Sequence[HeardAudio], origin: float) -> None:
        """Place ``blocks`` (heard audio, oldest first) on the file's timeline, whose time 0 is ``origin``."""
        for block in blocks:
            if self._timeline is None:
                self._start(origin, block.samplerate)
            assert self._timeline is not None
            if block.samplerate != self._source_rate:
                self.foreign += 1
                continue
            samples = np.asarray(block.samples, np.float32).reshape(-1)
            silence, skip = self._timeline.place(block.start, len(samples), block.heard_at)
            self._silence(silence)
            if skip < len(samples):
                self._feed(samples[skip:])
            self.blocks += 1

    def end(self, seconds: float) -> None:
        """Fill with silence up to ``seconds`` (the video's end), flush the resampler and the encoder."""
        self.keep_up(seconds)
        if self._resampler is not None:
            for frame in self._resampler.resample(None):
                self._encode(frame)
        for packet in self._stream.encode(None):
            self._container.mux(packet)

    def keep_up(self, seconds: float) -> None:
        """Silence up to ``seconds`` of file time, where nothing was written yet."""
        if seconds <= 0:
            return
        if self._timeline is not None:
            self._silence(self._timeline.pad_to(seconds))
            return
        # No music yet, so no source rate to resample from: whole frames of silence at the track's own rate.
        frames = int(seconds * self.rate - self._pts) // self._frame_size
        for _ in range(max(0, frames)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, self._frame_size), np.float32), format=self._format,
                                               layout="mono")
            frame.sample_rate = self.rate
            self._encode(frame)

    def _start(self, origin: float, source_rate: int) -> None:
        self._source_rate = source_rate
        self._timeline = AudioTimeline(origin, source_rate)
        self._timeline.written = round(self._pts * source_rate / self.rate)  # the silence before the music
        self._resampler = av.AudioResampler(format=self._format, layout="mono", rate=self.rate,
                                            frame_size=self._frame_size)

    def _silence(self, count: int) -> None:
        chunk = round(_SILENCE_CHUNK * self._source_rate)
        while count > 0:
            self._feed(np.zeros(min(count, chunk), np.float32))
            count -= chunk

    def _feed(self, samples: np.ndarray) -> None:
        assert self._resampler is not None
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._source_rate
        for out in self._resampler.resample(frame):
            self._encode(out)

    def _encode(self, frame: av.AudioFrame) -> None:
        frame.pts = self._pts  # the track's own sample count: it never drifts from what was written
        frame.time_base = self._stream.time_base
        self._pts += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
