"""Test-only: what a broken or hostile Scope (a rented GPU box gone wrong) could send back, for the hostile tests.

:class:`HostileMedia` goes into ``EmulatorConfig.hostile``. Nothing else sets it (``metadj-bridge emulate`` has no
flag for it): while it is None, as by default, the emulator sends exactly what it always does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import av
from aiortc import RTCDataChannel

from metadj_bridge.emulator.encoder import ScopeH264Encoder, ScopeVp8Encoder

#: Bytes of each encoded packet left as they are: VP8's payload descriptor (4 with aiortc's picture id) and the
#: start of its frame header; H264's NAL and FU-A headers. What follows is garbled.
_KEEP = {"vp8": 6, "h264": 2}


@dataclass
class HostileMedia:
    """What the emulated server does wrong. Each field is off when None or False."""

    #: ``frames(frame, index)`` -> the frame to send instead of the index-th one (another size, pixel format, pts),
    #: after the track has drawn and stamped it.
    frames: Callable[[av.VideoFrame, int], av.VideoFrame] | None = None
    #: Garble every encoded video packet past its headers: the packets arrive, no picture decodes.
    garble_video: bool = False
    #: Told of each session's data channel as it opens, to send whatever a hostile server would on it.
    on_channel: Callable[[RTCDataChannel], None] | None = None


def _garble(payloads: list[bytes], keep: int) -> list[bytes]:
    return [p[:keep] + os.urandom(max(0, len(p) - keep)) for p in payloads]


class GarblingVp8Encoder(ScopeVp8Encoder):
    """Scope's VP8 encoder whose packets keep their headers and lose their picture."""

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = super().encode(frame, force_keyframe)
        return _garble(payloads, _KEEP["vp8"]), timestamp


class GarblingH264Encoder(ScopeH264Encoder):
    """Scope's H264 encoder whose packets keep their headers and lose their picture."""

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = super().encode(frame, force_keyframe)
        return _garble(payloads, _KEEP["h264"]), timestamp
