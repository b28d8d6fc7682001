"""One WebRTC session of the emulator: a peer connection, its data channel and its pipeline.

Scope adopts whatever data channel the client opens (label not checked), reads one JSON object per
message (invalid JSON is logged and dropped) and feeds incoming video to the pipeline
(``scope-api.md`` §5-7). A session whose offer named no loaded pipeline still connects but has no
pipeline: it never sends a frame and ignores its messages, which is how Scope fails silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from metadj_bridge.emulator.netdelay import DelayedReceiver
from metadj_bridge.emulator.pipeline import SessionPipeline
from metadj_bridge.emulator.records import EventRecords, emulator_log
from metadj_bridge.emulator.track import EmulatedVideoTrack
from metadj_bridge.lifecycle import TaskGroupSet

if TYPE_CHECKING:
    from metadj_bridge.emulator.hostile import HostileMedia

logger = logging.getLogger(__name__)

#: Keys Scope's ``FrameProcessor.update_parameters`` consumes itself and never keeps in its parameters.
_NOT_KEPT = frozenset({
    "quantize_mode", "lookahead_ms", "output_sinks", "input_source", "modulations", "beat_cache_reset_rate",
    "node_id", "bpm", "beat_phase", "bar_position", "beat_count", "is_playing",
})
#: How long ``aclose`` waits for aiortc to close the peer connection before it lets the close finish on its own.
CLOSE_TIMEOUT_S = 5.0


class EmulatorSession:
    """Owns the peer connection and every task working for it; ``aclose`` ends them all."""

    def __init__(
        self,
        session_id: str,
        pc: RTCPeerConnection,
        pipeline: SessionPipeline | None,
        *,
        initial_parameters: dict[str, Any],
        records: EventRecords,
        emulator_id: str,
        hostile: HostileMedia | None = None,
    ) -> None:
        self.session_id = session_id
        #: Scope's ``FrameProcessor.parameters``: the offer's parameters with every message merged in as it
        #: arrives (before the queue, so also what the queue dropped; one-shots and ``paused`` stay).
        self.received_parameters = {k: v for k, v in initial_parameters.items() if k not in _NOT_KEPT}
        #: Input video frames received (Scope's ``frames_in``).
        self.frames_in = 0
        self.started = time.monotonic()
        self.pc = pc
        self.pipeline = pipeline
        self.has_input_track = False
        self.closed = False
        #: Scope's tempo sync, handed each message for the client's beat state (``emulator/tempo.py``).
        self.on_beat_state: Callable[[dict[str, Any]], str | None] | None = None
        #: Ended by ``DELETE /api/v1/webrtc/offer/{id}`` (not by a restart fault or the server closing).
        self.removed_by_delete = False
        self._records = records
        self._log = emulator_log(logger, emulator_id)
        # LoggerAdapter stands in for a Logger: failures keep the emulator's id, so its log tail shows them.
        self._tasks = TaskGroupSet(f"Session {session_id}", cast(logging.Logger, self._log))
        self._messages_ignored = 0
        #: The receive delays of an emulated far network (``netdelay``), dropped on close.
        self.net_delays: list[DelayedReceiver] = []
        self._hostile = hostile  # test-only (hostile.py)
        self.track = EmulatedVideoTrack(
            pipeline, records=records, has_input=lambda: self.has_input_track, emulator_id=emulator_id,
            rewrite_frame=hostile.frames if hostile is not None else None,
        )
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)

    @property
    def video_garbler(self) -> Callable[[], bool] | None:
        """Test-only (``hostile.py``): tells, for each video frame, whether its packets are garbled; None without
        ``EmulatorConfig.hostile``."""
        hostile = self._hostile
        return None if hostile is None else lambda: hostile.garble_video

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters as applied by the chunk loop (one-shots already consumed are gone)."""
        return self.pipeline.parameters if self.pipeline is not None else {}

    def frame_stats(self) -> dict[str, Any]:
        """One session's entry of ``GET /api/v1/session/metrics`` (``FrameProcessor.get_frame_stats``)."""
        elapsed = time.monotonic() - self.started
        frames_out = self.track.frames_out
        fps = self.pipeline.fps if self.pipeline is not None else None
        return {
            "frames_in": self.frames_in,
            "frames_out": frames_out,
            "elapsed_seconds": elapsed,
            "fps_in": self.frames_in / elapsed if elapsed > 0 else 0,
            "fps_out": frames_out / elapsed if elapsed > 0 else 0,
            # Scope reports 60 until it has measured a batch; a filter's pace is its input's.
            "pipeline_fps": fps if fps is not None else (frames_out / elapsed if frames_out and elapsed > 0 else 60.0),
            "output_sinks": {},
            "input_source_enabled": False,
            "input_source_type": "",
            "relay_mode": False,
        }

    def start(self) -> None:
        """Start the chunk loop (after the answer has been created)."""
        if self.pipeline is not None:
            self._tasks.spawn(self.pipeline.run(), "chunks")

    def set_video_stopped(self, stopped: bool) -> None:
        if self.pipeline is not None:
            self.pipeline.set_video_stopped(stopped)

    async def aclose(self) -> None:
        """Stop the tasks and close the peer connection; harmless when called again."""
        if self.closed:
            return
        self.closed = True
        for delay in self.net_delays:
            delay.cancel()
        await self._tasks.aclose()
        self.track.stop()
        # Shielded: aiortc may be closing this connection itself (remote DTLS close), and a
        # cancelled second close() would cancel the future the first one completes. Bounded, as the bridge's own
        # close is (scope.connection): the emulator's shutdown must not wait for ever on a transport that never
        # answers (a CI run saw a hostile data-channel test hang for 180 s, no thread of ours busy).
        try:
            await asyncio.wait_for(asyncio.shield(self.pc.close()), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._log.warning("Session %s: the peer connection did not close within %g s; left to close on its own",
                              self.session_id, CLOSE_TIMEOUT_S)

    # ---- peer connection events --------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self._log.info("Session %s: data channel %r opened", self.session_id, channel.label)
        channel.on("message", self._on_message)
        if self._hostile is not None and self._hostile.on_channel is not None:
            self._hostile.on_channel(channel)

    def _on_message(self, raw: str | bytes) -> None:
        if self.closed:
            return
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
            self._log.warning("Session %s: dropping data-channel message that is not JSON (%s): %.200r",
                              self.session_id, exc, raw)
            return
        if not isinstance(message, dict):
            self._log.warning("Session %s: dropping data-channel message that is not a JSON object: %.200r",
                              self.session_id, raw)
            return
        error = self.on_beat_state(message) if self.on_beat_state is not None else None
        if error is not None:
            self._log.error("Error handling parameter update: %s", error)  # Scope's words; the message is lost
            return
        self.apply(message)

    def apply(self, message: dict[str, Any]) -> None:
        """A parameter update, from the data channel or broadcast by ``POST /api/v1/session/parameters``."""
        if self.closed:
            return
        self.received_parameters.update({k: v for k, v in message.items() if k not in _NOT_KEPT})
        if self.pipeline is None:
            # No processor was started for this session, so Scope discards the update unseen.
            self._records.message_received(self.session_id, self._messages_ignored, message, dropped=False)
            self._messages_ignored += 1
            return
        self.pipeline.receive(message)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "video":
            return
        self.has_input_track = True
        # Always read: aiortc buffers decoded frames without limit when nobody does.
        self._tasks.spawn(self._read_input(track), "input")

    async def _read_input(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames_in += 1
            if self.pipeline is not None:
                self.pipeline.push_input(frame)  # type: ignore[arg-type]
