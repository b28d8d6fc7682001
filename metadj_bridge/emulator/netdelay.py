"""A far server's network, imitated: everything the emulator receives arrives ``delay`` seconds late.

The delay sits at the transport level, under DTLS: each datagram aioice hands up (SCTP data and SACKs, RTP and
RTCP) waits before the peer connection sees it, in arrival order. So the client's data-channel messages reach
the chunk loop late, the SACKs that answer them leave late, and the round trip the client's SCTP transport
measures (aiortc's smoothed RTT) contains the delay, as it would with a GPU server far away. STUN (ICE checks and
consent) is left alone, so connecting takes no longer than without the delay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

DataReceived = Callable[[bytes, int], None]


class DelayedReceiver:
    """Stands in for an aioice ``Connection.data_received``: the same calls, ``delay`` seconds later, in order.

    One loop timer at a time (for the oldest datagram waiting), never a task: nothing is left running when the
    connection closes, and equal due times cannot swap two datagrams.
    """

    def __init__(self, deliver: DataReceived, delay: float) -> None:
        self._deliver = deliver
        self._delay = delay
        self._waiting: deque[tuple[float, bytes, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, data: bytes, component: int) -> None:
        loop = asyncio.get_running_loop()
        self._waiting.append((loop.time() + self._delay, data, component))
        if self._timer is None:
            self._timer = loop.call_at(self._waiting[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._waiting and self._waiting[0][0] <= now:
            _, data, component = self._waiting.popleft()
            self._deliver(data, component)
        if self._waiting:
            self._timer = loop.call_at(self._waiting[0][0], self._flush)

    def cancel(self) -> None:
        """Drop what still waits (the connection is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.clear()


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections under ``pc``'s transports (one with BUNDLE), once a remote description is set."""
    dtls: list[Any] = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    found: list[Any] = []
    for transport in dtls:
        connection = getattr(getattr(transport, "transport", None), "_connection", None)
        if connection is not None and all(connection is not c for c in found):
            found.append(connection)
    return found


#: The first byte of a DTLS record carrying application data: under WebRTC, the SCTP of the data channel.
DTLS_APPLICATION_DATA = 23


def _lose(deliver: DataReceived) -> DataReceived:
    """``deliver`` without the datagrams that carry SCTP: ICE, the DTLS handshake and media still arrive."""

    def receive(data: bytes, component: int) -> None:
        if not data or data[0] != DTLS_APPLICATION_DATA:
            deliver(data, component)

    return receive


def delay_receive(pc: RTCPeerConnection, delay: float, *, lose_sctp: bool = False) -> list[DelayedReceiver]:
    """Make every datagram ``pc`` receives arrive ``delay`` seconds late; call after ``setRemoteDescription``.

    Returns the receivers, whose ``cancel()`` drops what still waits when the session closes. No delay: none.
    ``lose_sctp``: the data channel's packets are lost on the way (the fault ``lose_channel``).
    """
    if lose_sctp:
        for connection in _ice_connections(pc):
            connection.data_received = _lose(connection.data_received)
    if delay <= 0:
        return []
    receivers = []
    for connection in _ice_connections(pc):
        receiver = DelayedReceiver(connection.data_received, delay)
        connection.data_received = receiver  # aioice's protocol looks it up on every datagram
        receivers.append(receiver)
    return receivers
