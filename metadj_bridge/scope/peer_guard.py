"""What Scope's side of the WebRTC connection may get wrong, said in one sentence, without ending the show.

- **Its answer sends no video** (its video m-line ``recvonly`` or ``inactive``): the session would connect and wait
  for a first frame that cannot come. :func:`check_answer_sends_video` refuses it at once.
- **The connection fails**: aiortc only says "failed". :func:`failure_reason` says which layer: ICE (no address in
  the answer answered) or DTLS (the certificate does not match the answer's fingerprint, or the handshake broke off).
- **Video that arrives but never decodes** (garbage, or a form aiortc cannot decode): the watchdog's "no video frame"
  would blame the pipeline. :class:`UndecodedVideo` counts the video packets since the newest decoded frame, and
  :func:`silent_video` says the video is broken when packets kept coming.
- **The data channel**: Scope's server-to-client messages (scope-api.md §6: ``stream_stopped``,
  ``parameters_updated``, ``tempo_update``, ``change_scheduled``, ``change_applied``) are JSON text the bridge does
  not act on: a stopped stream shows in its frames, Scope's pace in its frames and its log. But aiortc decodes every
  text message as UTF-8 and believes every channel-control (DCEP) message, inside the task that reads the whole
  connection: a text message that is not UTF-8, or an ACK for a channel nobody opened, raises there, which ends the
  DTLS transport and the video with it, a traceback in the log (aiortc 1.16). :func:`guard_data_channel` catches
  such a message where aiortc hands it over, drops it and says so rate-limited, and the session goes on.

The guard needs aiortc internals (the SCTP transport's ``_data_channel_receive``); if they change, it is left out
and a debug line says so.
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from metadj_bridge.errors import RateLimitedWarning, ScopeBadAnswerError, ScopeSessionError
from metadj_bridge.scope.http_errors import exception_reason

log = logging.getLogger(__name__)

#: Video packets since the newest frame from which on the video counts as arriving but broken (the last frame's own
#: packets may trail it; a real stream sends dozens a second).
BROKEN_VIDEO_PACKETS = 10

#: Packets count as still arriving when the last came this recently (seconds; a stream sends some with every frame).
STILL_ARRIVING = 2.0

#: Our side's direction after the answer -> what Scope's answer said of its video.
_ANSWERED = {"sendonly": "recvonly", "inactive": "inactive"}


def check_answer_sends_video(transceiver: RTCRtpTransceiver, where: str) -> None:
    """ScopeSessionError when Scope's answer, now applied to ``transceiver``, says it will send no video."""
    direction = transceiver.currentDirection
    if direction in ("sendrecv", "recvonly"):
        return
    answered = _ANSWERED.get(direction or "", "missing")
    raise ScopeSessionError(
        f"Scope at {where} answered the WebRTC offer with its video {answered} (it would send no picture); "
        "a new session is tried"
    )


def failure_reason(pc: RTCPeerConnection) -> str:
    """Why ``pc`` failed, by layer, for the one line that says the session was lost."""
    if pc.iceConnectionState == "failed":
        return ("WebRTC connection failed (ICE found no route to Scope: no address in its answer answered; for a "
                "remote Scope this usually means a TURN server is needed)")
    transports = [t.sender.transport for t in pc.getTransceivers() if t.sender.transport is not None]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    if any(t.state == "failed" for t in transports):
        return ("WebRTC connection failed (the DTLS handshake with Scope failed: its certificate does not match the "
                "fingerprint in its answer, or it broke the handshake off)")
    return "WebRTC connection failed"


async def video_packets(pc: RTCPeerConnection | None) -> int:
    """RTP packets of video ``pc`` has received so far (aiortc's inbound-rtp statistics)."""
    total = 0
    for receiver in pc.getReceivers() if pc is not None else ():
        if receiver.track is not None and receiver.track.kind == "video":
            report = await receiver.getStats()
            total += sum(getattr(s, "packetsReceived", 0) for s in report.values() if s.type == "inbound-rtp")
    return total


class UndecodedVideo:
    """The video packets received since the newest decoded frame, sampled by the session's watchdog, as long as they
    are still arriving (the packets of a last frame that never completed, then silence, are missing video)."""

    def __init__(self) -> None:
        self._frame = 0.0  # the newest frame's time when last sampled
        self._packets_then = 0
        self._packets = 0
        self._grew_at = float("-inf")

    def sample(self, packets: int, last_frame: float, now: float) -> int:
        """``packets`` received so far (:func:`video_packets`) and the newest frame's time, at ``now``."""
        if last_frame != self._frame:
            self._frame, self._packets_then = last_frame, packets
        if packets > self._packets:
            self._packets, self._grew_at = packets, now
        return packets - self._packets_then if now - self._grew_at < STILL_ARRIVING else 0


def silent_video(what: str, undecoded: int, hint: str = "") -> str:
    """The watchdog's reason to rebuild a session without frames: ``what`` (e.g. "no video frame for 5 s"), and
    whether Scope's video kept arriving without decoding (then the video is broken, not missing)."""
    if undecoded >= BROKEN_VIDEO_PACKETS:
        return (f"connected, but {what}: the {undecoded} video packets Scope sent meanwhile decode into no picture "
                "(its video is broken, or in a form aiortc cannot decode)")
    return f"connected, but {what}{f' {hint}' if hint else ''}"


def guard_data_channel(pc: RTCPeerConnection, where: str, warning: RateLimitedWarning) -> bool:
    """Make what Scope sends on ``pc``'s data channels unable to end the connection (call after
    ``createDataChannel``): a message aiortc cannot take is dropped and noted on ``warning``. False if aiortc's
    internals have changed and nothing is guarded."""
    sctp = pc.sctp
    receive = getattr(sctp, "_data_channel_receive", None)
    if sctp is None or receive is None:
        log.debug("the data channel is not guarded against messages aiortc cannot read (aiortc internals changed?)")
        return False

    async def guarded(stream_id: int, pp_id: int, data: bytes) -> None:
        try:
            await receive(stream_id, pp_id, data)
        except Exception as exc:  # noqa: BLE001 - anything the far end sends: a bad message must not end the session
            error = ScopeBadAnswerError(
                f"Scope at {where} sent a data-channel message the bridge cannot read ({len(data)} bytes, "
                f"{exception_reason(exc)}); dropped"
            )
            warning.note(str(error))

    sctp._data_channel_receive = guarded  # type: ignore[method-assign]
    return True
