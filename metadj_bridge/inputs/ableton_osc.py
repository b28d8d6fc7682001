"""AbletonOSC's listen requests, sent by the bridge so that Live reports what the show profile reads.

AbletonOSC (the remote script for Ableton Live) only reports what it was asked to watch. With the ``ableton``
OSC preset the bridge asks for the song's tempo, beat and transport, plus every track and clip property a
mapping or switch of the profile reads (``osc./live/track/get/playing_slot_index/1`` asks for
``/live/track/start_listen/playing_slot_index 1``). It asks at start, again whenever AbletonOSC announces
itself (``/live/startup``, after Live reloads the script), and every ``refresh`` seconds in case Live was
started after the bridge. AbletonOSC replies to the asking computer on port 11001, the port the ``ableton``
profile listens on.

:func:`listen_requests` is pure; :class:`AbletonListenRequests` sends them over UDP without blocking.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Iterable

from metadj_bridge.lifecycle import cancel_and_wait
from metadj_bridge.outputs.osc_out import build_message

log = logging.getLogger(__name__)

#: Where AbletonOSC listens.
ABLETON_OSC_PORT = 11000
#: Always asked for: the tempo source and the transport.
SONG_REQUESTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("/live/song/start_listen/tempo", ()),
    ("/live/song/start_listen/beat", ()),
    ("/live/song/start_listen/is_playing", ()),
)
_TRACK = re.compile(r"^osc\./live/track/get/([a-z_]+)/(\d+)$")
_CLIP = re.compile(r"^osc\./live/clip/get/([a-z_]+)/(\d+)/(\d+)$")


def listen_requests(names: Iterable[str]) -> list[tuple[str, tuple[int, ...]]]:
    """The listen requests that make AbletonOSC report every signal and trigger in ``names`` (pure).

    ``names`` are what a show profile reads (``ShowProfile.names_read()``).
    """
    requests = list(SONG_REQUESTS)
    for name in names:
        request: tuple[str, tuple[int, ...]]
        if (m := _TRACK.match(name)) is not None:
            request = (f"/live/track/start_listen/{m.group(1)}", (int(m.group(2)),))
        elif (m := _CLIP.match(name)) is not None:
            request = (f"/live/clip/start_listen/{m.group(1)}", (int(m.group(2)), int(m.group(3))))
        else:
            continue
        if request not in requests:
            requests.append(request)
    return requests


class AbletonListenRequests:
    """Sends :func:`listen_requests` to AbletonOSC at ``host``; ``again()`` re-sends (on ``/live/startup``)."""

    def __init__(self, requests: Iterable[tuple[str, tuple[int, ...]]], host: str = "127.0.0.1",
                 port: int = ABLETON_OSC_PORT, refresh: float = 30.0) -> None:
        self.requests = list(requests)
        self.host = host
        self.port = port
        self.refresh = refresh
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(self.host, self.port), family=socket.AF_INET
        )
        self._task = loop.create_task(self._run(), name="ableton-listen-requests")
        log.info("asking AbletonOSC at %s:%d for %d values", self.host, self.port, len(self.requests))

    def again(self) -> None:
        """Send every request now (AbletonOSC restarted, or the profile changed)."""
        if self._transport is None:
            return
        for address, args in self.requests:
            try:
                self._transport.sendto(build_message(address, args))
                self.sent += 1
            except OSError as exc:  # nothing listens yet (ICMP refused): Live is not up, the next round tries again
                log.debug("AbletonOSC request %s not sent: %s", address, exc)

    def update(self, requests: Iterable[tuple[str, tuple[int, ...]]]) -> None:
        """Another profile took over: ask for what it reads."""
        self.requests = list(requests)
        self.again()

    async def _run(self) -> None:
        while True:
            self.again()
            await asyncio.sleep(self.refresh)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
