"""Scope's video bitrate for the emulator's outgoing track.

Scope 0.2.4 patches aiortc's encoder constants for its whole process (``src/scope/server/webrtc.py``):
7 Mbit/s to start with, kept between 5 and 10 Mbit/s whatever the receiver's bandwidth estimate says.
aiortc's own default (0.5-1.5 Mbit/s for VP8, 0.5-3 for H264) makes rehearsal pictures blocky.

The emulator usually shares its process with the bridge's own aiortc peer connections, so it must
not patch the modules: it gives only its own senders an encoder whose bitrate stays in Scope's range.
That needs aiortc internals (the sender's private encoder slot); if they change, the sender keeps
aiortc's default encoder and a debug line says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamTrack

logger = logging.getLogger(__name__)

#: Scope's ``DEFAULT_BITRATE``, ``MIN_BITRATE`` and ``MAX_BITRATE`` (bit/s).
SCOPE_BITRATE = 7_000_000
SCOPE_MIN_BITRATE = 5_000_000
SCOPE_MAX_BITRATE = 10_000_000


def _clamp(bitrate: int) -> int:
    return max(SCOPE_MIN_BITRATE, min(int(bitrate), SCOPE_MAX_BITRATE))


class ScopeVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with Scope's bitrate range."""

    def __init__(self) -> None:
        super().__init__()
        self.target_bitrate = SCOPE_BITRATE

    @property
    def target_bitrate(self) -> int:
        return int(self._Vp8Encoder__target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._Vp8Encoder__target_bitrate = _clamp(bitrate)


class ScopeH264Encoder(H264Encoder):
    """aiortc's H264 encoder with Scope's bitrate range."""

    def __init__(self) -> None:
        super().__init__()
        self.target_bitrate = SCOPE_BITRATE

    @property
    def target_bitrate(self) -> int:
        return int(self._H264Encoder__target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._H264Encoder__target_bitrate = _clamp(bitrate)


def use_scope_bitrate(
    pc: RTCPeerConnection, track: MediaStreamTrack, *, garble: Callable[[], bool] | None = None
) -> Any | None:
    """Give the sender of ``track`` Scope's encoder; call after the answer is set. Returns the encoder or None.
    ``garble`` (test-only, ``hostile.py``): one whose packets carry no picture that decodes while it says so."""
    from metadj_bridge.emulator.hostile import GarblingH264Encoder, GarblingVp8Encoder

    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        codecs = getattr(transceiver, "_codecs", None)
        if sender.track is not track or not codecs or not hasattr(sender, "_RTCRtpSender__encoder"):
            continue
        mime = codecs[0].mimeType.lower()
        encoder: Any
        if mime == "video/vp8":
            encoder = GarblingVp8Encoder(garble) if garble else ScopeVp8Encoder()
        elif mime == "video/h264":
            encoder = GarblingH264Encoder(garble) if garble else ScopeH264Encoder()
        else:
            return None
        sender._RTCRtpSender__encoder = encoder
        return encoder
    logger.debug("Could not give the video sender Scope's bitrate (aiortc internals changed?)")
    return None
