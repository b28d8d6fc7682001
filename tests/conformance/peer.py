"""A plain aiortc client of one Scope session, for the conformance tests.

It does what the bridge does on the wire (``metadj_bridge.scope.connection``): a ``sendrecv`` video transceiver,
with or without an outgoing track, a ``parameters`` data channel made before the offer, the offer POSTed with the
``initialParameters`` the bridge builds (``metadj_bridge.scope.protocol``), and at the end a DELETE of the session
and a closed peer connection. Unlike the bridge it keeps the raw answer, every frame's arrival time and size, and
lets a test send any message, so the tests can check what the server does rather than what the bridge makes of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from metadj_bridge.scope import protocol
from metadj_bridge.scope.api import ScopeClient

OFFER = "/api/v1/webrtc/offer"


@dataclass
class Received:
    """What arrived on the server's video track."""

    times: list[float] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    #: The newest decoded picture, RGB.
    latest: np.ndarray | None = None

    def fps(self, since: float) -> float:
        """Frames per second among the frames that arrived after ``since`` (monotonic)."""
        recent = [t for t in self.times if t >= since]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])


class PatternTrack(VideoStreamTrack):
    """An outgoing camera stand-in at ``fps``: ``paint(index)`` gives each frame's RGB picture."""

    def __init__(self, paint: Callable[[int], np.ndarray], fps: float = 30.0) -> None:
        super().__init__()
        self._paint = paint
        self._period = 1.0 / fps
        self._index = 0
        self._began: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._began is None:
            self._began = time.monotonic()
        due = self._began + self._index * self._period
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self._paint(self._index), format="rgb24")
        frame.pts = int(self._index * self._period * 90_000)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._index += 1
        return frame


def flat(rgb: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """One flat colour, ``size`` as width x height."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = rgb
    return image


class Peer:
    """One WebRTC session with the server at ``url``; use ``session()`` so it always ends."""

    def __init__(self, url: str, *, track: MediaStreamTrack | None = None, codec: str | None = "video/H264") -> None:
        self.url = url
        self.track = track
        self.codec = codec
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel: RTCDataChannel | None = None
        self.answer: dict[str, Any] = {}
        self.session_id: str | None = None
        self.received = Received()
        self._reader: asyncio.Task[None] | None = None

    async def open(self, initial: dict[str, Any], *, within: float = 15.0) -> None:
        """Offer with ``initial`` as ``initialParameters``; return once connected with the channel open."""
        transceiver = self.pc.addTransceiver(self.track if self.track is not None else "video", direction="sendrecv")
        if self.codec:
            caps = RTCRtpSender.getCapabilities("video").codecs
            first = [c for c in caps if c.mimeType.lower() == self.codec.lower()]
            transceiver.setCodecPreferences(first + [c for c in caps if c not in first])
        self.channel = self.pc.createDataChannel("parameters", ordered=True)

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._reader = asyncio.ensure_future(self._read(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", "initialParameters": initial}
        async with httpx.AsyncClient(timeout=15) as http:
            response = await http.post(self.url + OFFER, json=body)
        assert response.status_code == 200, f"offer refused: HTTP {response.status_code} {response.text[:300]}"
        self.answer = response.json()
        self.session_id = str(self.answer["sessionId"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer["sdp"], type=self.answer["type"]))
        deadline = time.monotonic() + within
        while not (self.pc.connectionState == "connected" and self.channel.readyState == "open"):
            assert time.monotonic() < deadline, (
                f"no WebRTC connection within {within:g} s (connection {self.pc.connectionState}, "
                f"data channel {self.channel.readyState})"
            )
            await asyncio.sleep(0.02)

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                self.received.times.append(time.monotonic())
                self.received.sizes.add((frame.width, frame.height))
                self.received.latest = frame.to_ndarray(format="rgb24")
                self.on_image(self.received.latest)

    def on_image(self, image: np.ndarray) -> None:
        """Each frame's picture as it arrives (a subclass reads more from it)."""

    def send(self, message: dict[str, Any]) -> None:
        """One JSON message (compact) on the data channel."""
        assert self.channel is not None
        self.channel.send(json.dumps(message, separators=(",", ":")))

    async def wait_frames(self, count: int, within: float) -> None:
        """Wait until ``count`` frames have arrived in all; fail after ``within`` seconds."""
        deadline = time.monotonic() + within
        while len(self.received.times) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.received.times)} of {count} frames arrived within {within:g} s"
            )
            await asyncio.sleep(0.02)

    async def frames_during(self, seconds: float) -> int:
        """How many frames arrive in the next ``seconds``."""
        before = len(self.received.times)
        await asyncio.sleep(seconds)
        return len(self.received.times) - before

    async def close(self, *, delete_first: bool = True) -> int | None:
        """End the session: DELETE it on the server and close the peer (in that order unless told otherwise).

        Returns the DELETE's status code.
        """
        status = None
        if not delete_first:
            await self.pc.close()
        if self.session_id is not None:
            async with httpx.AsyncClient(timeout=15) as http:
                status = (await http.delete(f"{self.url}{OFFER}/{self.session_id}")).status_code
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        return status


def initial_parameters(pipeline_id: str, mode: str, **extra: Any) -> dict[str, Any]:
    """The ``initialParameters`` the bridge sends for ``pipeline_id`` in ``mode`` (plus ``extra``)."""
    params = protocol.build_initial_parameters(
        [pipeline_id], input_mode=mode, prompts="a conformance test", denoising_step_list=None
    )
    params.update(extra)
    return params


@contextlib.asynccontextmanager
async def session(
    url: str,
    pipeline_id: str,
    mode: str,
    *,
    track: MediaStreamTrack | None = None,
    codec: str | None = "video/H264",
    **extra: Any,
) -> AsyncIterator[Peer]:
    """An open session for a loaded ``pipeline_id``; DELETEd and closed on the way out, whatever happens."""
    peer = Peer(url, track=track, codec=codec)
    try:
        await peer.open(initial_parameters(pipeline_id, mode, **extra))
        yield peer
    finally:
        await peer.close()


async def ensure_loaded(url: str, pipeline_id: str, load_params: dict[str, Any] | None = None) -> None:
    """Load ``pipeline_id`` with the bridge's own client unless it is loaded already with these params."""
    async with ScopeClient(url) as client:
        await client.ensure_pipeline([pipeline_id], load_params or {}, timeout=60, poll_interval=0.05)


async def log_lines(url: str, since: int | None = None) -> tuple[list[str], int]:
    """The server's log lines (all of the last 1000, or those after byte ``since``) and the offset for the next."""
    params: dict[str, Any] = {"lines": 1000}
    if since:
        params["since_offset"] = since
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url + "/api/v1/logs/tail", params=params)
    response.raise_for_status()
    data = response.json()
    return [str(line) for line in data["lines"]], int(data["offset"])


def mean_rgb(image: np.ndarray, box: Sequence[int] | None = None) -> np.ndarray:
    """The mean colour of ``image`` (or of ``box`` = x0, y0, x1, y1 within it)."""
    if box is not None:
        x0, y0, x1, y1 = box
        image = image[y0:y1, x0:x1]
    return np.asarray(image.reshape(-1, 3).mean(axis=0))
