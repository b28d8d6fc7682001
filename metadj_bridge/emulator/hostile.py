"""Test-only: what a broken or hostile Scope (a rented GPU box gone wrong) could send back, for the hostile tests.

:class:`HostileMedia` goes into ``EmulatorConfig.hostile``. Nothing else sets it (``metadj-bridge emulate`` has no
flag for it): while it is None, as by default, the emulator sends exactly what it always does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
from aiortc import RTCDataChannel

from metadj_bridge.emulator.encoder import ScopeH264Encoder, ScopeVp8Encoder

#: Bytes of each VP8 packet left as they are: its payload descriptor (4 with aiortc's picture id) and the start of the
#: frame header. What follows is garbled.
_VP8_KEEP = 6
#: H264 NAL unit types that carry a picture (non-IDR and IDR slices): garbled past their header byte. The parameter
#: sets stay intact, so the decoder starts and fails on every picture.
_H264_SLICES = (1, 5)


@dataclass
class HostileMedia:
    """What the emulated server does wrong. Each field is off when None or False."""

    #: ``frames(frame, index)`` -> the frame to send instead of the index-th one (another size, pixel format, pts),
    #: after the track has drawn and stamped it.
    frames: Callable[[av.VideoFrame, int], av.VideoFrame] | None = None
    #: While true, garble every encoded video packet past its headers: the packets arrive, no picture decodes.
    garble_video: bool = False
    #: Told of each session's data channel as it opens, to send whatever a hostile server would on it.
    on_channel: Callable[[RTCDataChannel], None] | None = None


def _garble(data: bytes, keep: int) -> bytes:
    return data[:keep] + os.urandom(max(0, len(data) - keep))


class GarblingVp8Encoder(ScopeVp8Encoder):
    """Scope's VP8 encoder whose packets keep their headers and lose their picture while ``garble()`` says so."""

    def __init__(self, garble: Callable[[], bool]) -> None:
        super().__init__()
        self._garble = garble

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = super().encode(frame, force_keyframe)
        if not self._garble():
            return payloads, timestamp
        return [_garble(p, _VP8_KEEP) for p in payloads], timestamp


class GarblingH264Encoder(ScopeH264Encoder):
    """Scope's H264 encoder whose pictures are garbled past their NAL header while ``garble()`` says so."""

    def __init__(self, garble: Callable[[], bool]) -> None:
        super().__init__()
        self._garble = garble

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        garble = self._garble()
        for nal in super()._encode_frame(frame, force_keyframe):
            yield _garble(nal, 1) if garble and nal and nal[0] & 0x1F in _H264_SLICES else nal
