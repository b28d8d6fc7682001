"""Flow-controlled parameter sending (design.md, scope-api.md §6).

Scope applies one data-channel message per generated chunk and keeps at most 8 waiting; when the queue
is full it drops the *newest* message. A sender at a fixed 30 Hz therefore builds up to 8 chunks of lag
and loses the latest knob position. This sender keeps the desired state, merges every change since the
last send into one message, and sends about one message per chunk that Scope consumes, estimated from
the video frames coming back. Discrete actions (cache reset, a pulse, a theme switch) skip the wait and go
out in the very next message.

``ParameterState`` and ``SendPacer`` are pure (values and times in, values out); ``ParameterSender`` is
the thin asyncio driver that owns a data channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from metadj_bridge import parameters
from metadj_bridge.lifecycle import Lifecycle, cancel_and_wait
from metadj_bridge.parameters import ONE_SHOT_KEYS, ParameterSchema

log = logging.getLogger(__name__)

#: Keys that act once and are not part of the lasting state: Scope's one-shots plus ``transition``,
#: whose target becomes the current prompts once it completes.
DISCRETE_KEYS = ONE_SHOT_KEYS | {"transition"}


class Channel(Protocol):
    """The part of aiortc's RTCDataChannel the sender uses."""

    @property
    def readyState(self) -> str: ...  # noqa: N802 - aiortc's name

    @property
    def bufferedAmount(self) -> int: ...  # noqa: N802

    def send(self, data: str) -> None: ...


# ----------------------------------------------------------------------------------- pure parts


class ParameterState:
    """The desired parameter state and what has changed since the last message.

    Continuous keys keep their latest value only; a value that returns to what Scope already has
    is not sent again. Discrete keys (one-shots, transitions) go into the next message exactly once.
    """

    def __init__(self) -> None:
        self.desired: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}
        self._pending: dict[str, Any] = {}
        self._discrete: dict[str, Any] = {}
        self._changes_since_send = 0
        self.changes = 0
        self.merged = 0

    def set(self, key: str, value: Any) -> None:
        """Record a new desired value (already checked)."""
        if key in DISCRETE_KEYS:
            self._discrete[key] = value
            if key == "transition":
                # Scope makes the target current when the transition ends, so that is the lasting state.
                target = value.get("target_prompts", [])
                self.desired["prompts"] = target
                self._sent["prompts"] = target
                self._pending.pop("prompts", None)
            self._count_change()
            return
        self.desired[key] = value
        if key in self._sent and self._sent[key] == value:
            self._pending.pop(key, None)
        else:
            self._pending[key] = value
        if key == "prompts":
            # Prompts without a transition cancel a pending transition on Scope's side (§6).
            self._discrete.pop("transition", None)
        self._count_change()

    def _count_change(self) -> None:
        self.changes += 1
        self._changes_since_send += 1

    @property
    def has_pending(self) -> bool:
        return bool(self._pending or self._discrete)

    def take_message(self) -> dict[str, Any] | None:
        """Everything that changed since the last message, merged into one; None when nothing did."""
        if not self.has_pending:
            return None
        message = dict(self._pending)
        message.update(self._discrete)
        self._sent.update(self._pending)
        self._pending.clear()
        self._discrete.clear()
        self.merged += max(0, self._changes_since_send - 1)
        self._changes_since_send = 0
        return message

    def snapshot(self) -> dict[str, Any]:
        """The lasting state, for a new session's ``initialParameters``."""
        return dict(self.desired)

    def begin_session(self, initial: Mapping[str, Any]) -> None:
        """A new session started from ``initial`` (an earlier ``snapshot()``).

        Scope has that state; anything changed since the snapshot is still pending. Actions from before
        the session are void: a cache reset or a pulse means nothing to a fresh session.
        """
        self._sent = dict(initial)
        self._pending = {k: v for k, v in self.desired.items() if k not in self._sent or self._sent[k] != v}
        self._discrete.clear()
        self._changes_since_send = len(self._pending)


@dataclass
class PacerConfig:
    """Bounds for the send interval, in seconds.

    ``min_interval`` keeps the sender from exceeding the seed's 30 Hz even on a fast pipeline;
    ``max_interval`` keeps a change from waiting too long when the estimate says Scope is slow or the
    video has stopped.
    """

    min_interval: float = 1 / 30
    max_interval: float = 2.0
    chunk_frames: int = 12
    #: Frame rate assumed until frames come back (a GPU pipeline typically gives 15-25 fps).
    assumed_fps: float = 15.0
    #: Window over which the returning frame rate is measured.
    window: float = 3.0
    #: Aim sends just before Scope's next chunk boundary (see ``SendPacer.next_send_at``).
    align: bool = True
    #: How early before the predicted boundary to send, as a fraction of the chunk period; the
    #: measured round trip to Scope is added on top.
    align_margin: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError(
                f"sender rate bounds: min_interval {self.min_interval} must be > 0 "
                f"and <= max_interval {self.max_interval}"
            )
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames {self.chunk_frames} must be >= 1")


class SendPacer:
    """Estimates when Scope takes its next message: once per chunk of ``chunk_frames`` frames.

    Scope takes a message from its queue right after it hands a chunk's frames to the video track,
    so the first frame of each chunk to arrive here marks a boundary (a little late, by the network
    and the track's pacing). A change sent just before the next boundary is applied by the next chunk
    with everything else that changed meanwhile; one sent just after a boundary waits a whole chunk.
    If the frame count drifts from Scope's chunks, the phase is simply random, as without aiming.
    """

    def __init__(self, config: PacerConfig | None = None) -> None:
        self.config = config or PacerConfig()
        self._frames: deque[float] = deque()
        self._count = 0
        self._boundary: float | None = None
        self.rtt = 0.0

    def on_frame(self, now: float) -> None:
        self._frames.append(now)
        horizon = now - self.config.window
        while self._frames and self._frames[0] < horizon:
            self._frames.popleft()
        if self._count % self.config.chunk_frames == 0:
            self._boundary = now
        self._count += 1

    def reset(self) -> None:
        self._frames.clear()
        self._count = 0
        self._boundary = None

    def set_rtt(self, rtt: float) -> None:
        """The latest measured round trip to Scope, in seconds (smoothed)."""
        self.rtt = rtt if self.rtt == 0.0 else 0.8 * self.rtt + 0.2 * rtt

    def next_send_at(self, now: float, last_send: float) -> float:
        """When the next message should go out; never more than one per chunk period."""
        interval = self.interval(now)
        earliest = last_send + interval
        fps = self.fps(now)
        if not self.config.align or self._boundary is None or fps is None or interval >= self.config.max_interval:
            return earliest
        period = self.config.chunk_frames / fps
        if period < self.config.min_interval * 2:
            return earliest  # too fast to aim at; the floor rules
        margin = min(0.6 * period, self.config.align_margin * period + self.rtt)
        # The first aimed slot after now that keeps sends at least half a chunk apart: one per boundary.
        floor = max(now, last_send + 0.5 * period)
        first_slot = self._boundary - margin
        k = max(0, math.ceil((floor - first_slot) / period))
        return first_slot + k * period

    def fps(self, now: float) -> float | None:
        """Frames per second coming back, or None without enough recent evidence."""
        frames = self._frames
        if len(frames) < 3 or now - frames[-1] > max(1.0, 3 * (frames[-1] - frames[0]) / (len(frames) - 1)):
            return None
        span = frames[-1] - frames[0]
        if span < 0.25:
            return None
        return (len(frames) - 1) / span

    def interval(self, now: float) -> float:
        """Seconds between messages: one chunk period, clamped to the configured bounds."""
        cfg = self.config
        fps = self.fps(now)
        if fps is None:
            fps = cfg.assumed_fps if not self._frames else cfg.chunk_frames / cfg.max_interval
        period = cfg.chunk_frames / fps if fps > 0 else math.inf
        return min(cfg.max_interval, max(cfg.min_interval, period))


# ----------------------------------------------------------------------------------- async driver


@dataclass
class SenderStats:
    sent: int = 0
    merged: int = 0
    changes: int = 0
    rejected: int = 0
    interval: float = 0.0


class ParameterSender:
    """Owns the desired state and pushes it over a data channel at Scope's pace.

    ``update()`` is cheap and may be called at any rate from the event loop (86 Hz analysis, 60 Hz
    knobs). The session calls ``attach()`` when a data channel opens, ``detach()`` when it is lost and
    ``on_frame()`` for every video frame that comes back.
    """

    def __init__(
        self,
        schema: ParameterSchema | None = None,
        pacer: PacerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_sent: Callable[[dict[str, Any], float], None] | None = None,
    ) -> None:
        self.schema = schema or ParameterSchema("unknown")
        #: (schema a caller checked against, the schema in force, the keys on which their rules agree).
        self._agreeing: tuple[ParameterSchema, ParameterSchema, frozenset[str]] | None = None
        self.state = ParameterState()
        self.pacer = SendPacer(pacer)
        self._clock = clock
        self._channel: Channel | None = None
        self._wake = asyncio.Event()
        self._urgent = False
        self._last_send = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._life = Lifecycle("parameter sender")
        self._rejected = 0
        self.sent = 0
        #: Called with each message and its send time (the show log hooks in here).
        self.on_sent = on_sent

    # -------------------------------------------------------------- state in

    def update(self, params: Mapping[str, Any] | None = None, /, *, urgent: bool = False, **kwargs: Any) -> None:
        """Set desired values. Raises ``ParameterError`` (nothing applied) if any value is invalid.

        ``urgent`` sends with the very next message instead of waiting for the next chunk.
        """
        self.apply({**(params or {}), **kwargs}, urgent=urgent)

    def apply(
        self, params: Mapping[str, Any], *, urgent: bool = False, checked_by: ParameterSchema | None = None
    ) -> None:
        """Set desired values; ``checked_by`` is the schema they were already checked against, if any.

        Values are checked once: the mapping engine's output was made valid against its schema, so when that
        schema's rules are the ones in force here it is taken as it is; anything else is checked now (a server
        whose own schema is narrower than the one the engine used, or a caller with raw values).
        Raises ``ParameterError`` (nothing applied) if any value is invalid.
        """
        trusted = self._agreeing_keys(checked_by) if checked_by is not None else frozenset()
        if checked_by is not self.schema and not trusted.issuperset(params):
            checked: dict[str, Any] = {}
            try:
                for key, value in params.items():
                    checked[key] = value if key in trusted else self.schema.check(key, value)
            except Exception:
                self._rejected += 1
                raise
            params = checked
        for key, value in params.items():
            self.state.set(key, value)
            if key in DISCRETE_KEYS or key == "paused":
                urgent = True
        if self.state.has_pending:
            self._urgent = self._urgent or urgent
            self._wake.set()

    def action(self, **kwargs: Any) -> None:
        """A discrete action, e.g. ``action(reset_cache=True)``: goes out in the next message."""
        self.update(kwargs, urgent=True)

    def set_schema(self, schema: ParameterSchema) -> None:
        self.schema = schema

    def _agreeing_keys(self, checked_by: ParameterSchema) -> frozenset[str]:
        """The keys whose rules are the same in ``checked_by`` and in the schema in force (cached per pair)."""
        cached = self._agreeing
        if cached is not None and cached[0] is checked_by and cached[1] is self.schema:
            return cached[2]
        here = self.schema.specs
        keys = frozenset(k for k, spec in checked_by.specs.items() if here.get(k) == spec)
        self._agreeing = (checked_by, self.schema, keys)
        return keys

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    # -------------------------------------------------------------- session hooks

    def attach(self, channel: Channel, initial: Mapping[str, Any] | None = None) -> None:
        """A new session's channel is open; ``initial`` is the ``snapshot()`` its offer carried."""
        self._channel = channel
        self.pacer.reset()
        if initial is not None:
            self.state.begin_session(initial)
        self._last_send = -math.inf
        self._urgent = self.state.has_pending
        self._wake.set()

    def detach(self) -> None:
        self._channel = None

    def on_frame(self, now: float | None = None) -> None:
        self.pacer.on_frame(self._clock() if now is None else now)

    # -------------------------------------------------------------- loop

    def start(self) -> None:
        """Start sending (a second start is harmless; a closed sender refuses)."""
        if self._life.begin():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="parameter-sender")

    async def aclose(self) -> None:
        self._life.end()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def stats(self) -> SenderStats:
        return SenderStats(
            sent=self.sent,
            merged=self.state.merged,
            changes=self.state.changes,
            rejected=self._rejected,
            interval=self.pacer.interval(self._clock()),
        )

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                # Wait for the send slot, fixed once per message; an urgent update ends the wait early.
                target = self.pacer.next_send_at(self._clock(), self._last_send)
                while self.state.has_pending and self._channel_open() and not self._urgent:
                    wait = target - self._clock()
                    if wait <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait)
                    self._wake.clear()
                if self.state.has_pending and self._channel_open():
                    self.send_now()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("parameter sender stopped unexpectedly")
            raise

    def _channel_open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def send_now(self) -> dict[str, Any] | None:
        """Send whatever is pending, now. Returns the message (None if nothing was due)."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return None
        message = self.state.take_message()
        self._urgent = False
        if message is None:
            return None
        now = self._clock()
        if "prompts" in message or "transition" in message:
            prompts = message.get("prompts") or message["transition"].get("target_prompts", [])
            log.debug("[Scope] Sending prompt: %s", parameters.describe_prompts(prompts))
        channel.send(json.dumps(message, separators=(",", ":")))
        self._last_send = now
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(message, now)
        return message
