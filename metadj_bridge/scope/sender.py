"""Flow-controlled parameter sending (design.md, scope-api.md §6): the asyncio driver.

Scope applies one data-channel message per generated chunk and keeps at most 8 waiting; when the queue
is full it drops the *newest* message. A sender at a fixed 30 Hz therefore builds up to 8 chunks of lag
and loses the latest knob position. This sender keeps the desired state and sends at most one message per
chunk, actions included: whatever changed meanwhile (knob values, a cache reset, a prompt transition, a
pause) is merged into that one message. What is sent and when lives in :mod:`.pacing` (pure); this module
owns the data channel and the one task that sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from metadj_bridge import parameters
from metadj_bridge.lifecycle import Lifecycle, cancel_and_wait
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope.pacing import (
    DISCRETE_KEYS,
    QUEUE_SLOTS,
    PacerConfig,
    ParameterState,
    SendPacer,
    carry_transition,
)

__all__ = ["DISCRETE_KEYS", "Channel", "PacerConfig", "ParameterSender", "ParameterState", "SendPacer", "SenderStats"]

log = logging.getLogger(__name__)

#: Seconds after this show's own ``paused: true`` during which a pause in Scope's log is taken for that one: the log
#: is read four times a second over the network, so the line can arrive after the show's resume went out.
OWN_PAUSE_ECHO_S = 2.0


class Channel(Protocol):
    """The part of aiortc's RTCDataChannel the sender uses."""

    @property
    def readyState(self) -> str: ...  # noqa: N802 - aiortc's name

    @property
    def bufferedAmount(self) -> int: ...  # noqa: N802

    def send(self, data: str) -> None: ...


# ----------------------------------------------------------------------------------- async driver


class ParameterMirror(Protocol):
    """Another sender that follows this one (a show's further screen)."""

    def apply(self, params: Mapping[str, Any]) -> None: ...

    def keep_clear(self, start: float, end: float) -> None: ...


@dataclass
class SenderStats:
    sent: int = 0
    merged: int = 0
    changes: int = 0
    rejected: int = 0
    interval: float = 0.0
    #: Messages that only repeated values already sent (the settle step).
    repeats: int = 0
    #: Messages Scope said (in its log) it dropped.
    drops_seen: int = 0
    #: Frames per chunk in force, and whether the bridge's table, the server's offer or drops said so.
    chunk_frames: int = 0
    chunk_source: str = ""


class ParameterSender:
    """Owns the desired state and pushes it over a data channel at Scope's pace.

    ``update()`` is cheap and may be called at any rate from the event loop (86 Hz analysis, 60 Hz
    knobs). The session calls ``attach()`` when a data channel opens, ``detach()`` when it is lost,
    ``on_frame()`` for every video frame that comes back and ``set_chunk_frames()`` with what the server's
    offer says of the pipeline's chunk.
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
        self._timer: asyncio.TimerHandle | None = None
        self._last_send = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._repeats = 0
        self._drops_seen = 0
        #: When the changes now pending began to wait (an isolated change goes at once, see ``_due``).
        self._pending_since = -math.inf
        #: When the next message goes, once fixed; and whether it is for changes (else a repeat only).
        self._target: float | None = None
        self._target_is_send = False
        self._target_urgent = False
        #: After a drop nothing is sent before this time, so Scope's queue can drain first.
        self._hold_until = -math.inf
        #: (start, end): messages without an action do not go in this span; they wait for its end (``keep_clear``).
        self._clear = (math.inf, math.inf)
        #: The prompt transition last sent and when it ends (``pacing.carry_transition``).
        self._transition: tuple[float, dict[str, Any]] | None = None
        self._life = Lifecycle("parameter sender")
        self._rejected = 0
        #: The ``paused`` value Scope was last told (the offer's, then each message's): None before any.
        self._paused_sent: Any = None
        #: When this show last sent ``paused: true`` (Scope logs it as any other pause).
        self._own_pause_at = -math.inf
        self.sent = 0
        #: Called with each message and its send time (the show log hooks in here).
        self.on_sent = on_sent
        #: More screens' feeds (``run/screens.py``): each is given what this sender is given, once checked.
        self.mirrors: list[ParameterMirror] = []

    # -------------------------------------------------------------- state in

    def update(self, params: Mapping[str, Any] | None = None, /, *, urgent: bool = False, **kwargs: Any) -> None:
        """Set desired values. Raises ``ParameterError`` (nothing applied) if any value is invalid.

        Every change, ``urgent`` or not, goes out in the next message the budget allows (at once when a chunk
        has passed since the last one); ``urgent`` is kept for callers that mark actions.
        """
        self.apply({**(params or {}), **kwargs}, urgent=urgent)

    def apply(
        self, params: Mapping[str, Any], *, urgent: bool = False, checked_by: ParameterSchema | None = None,
        again: bool = False,
    ) -> None:
        """Set desired values; ``checked_by`` is the schema they were already checked against, if any.

        Values are checked once: the mapping engine's output was made valid against its schema, so when that
        schema's rules are the ones in force here it is taken as it is; anything else is checked now (a server
        whose own schema is narrower than the one the engine used, or a caller with raw values).
        ``again`` sends the values even where Scope was sent them already (someone else changed them there).
        Raises ``ParameterError`` (nothing applied) if any value is invalid. ``urgent`` changes nothing: actions
        wait for the next slot like everything else, so they never overfill Scope's queue.
        """
        del urgent
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
        was_pending = self.state.has_pending
        for key, value in params.items():
            self.state.set(key, value, again=again)
        for mirror in self.mirrors:
            mirror.apply(params)
        if self.state.has_pending:
            if not was_pending:
                self._pending_since = self._clock()
            self._wake.set()

    def action(self, **kwargs: Any) -> None:
        """A discrete action, e.g. ``action(reset_cache=True)``: goes out in the next message."""
        self.update(kwargs, urgent=True)

    def keep_clear(self, start: float, end: float) -> None:
        """Send nothing but actions from ``start`` to ``end`` (clock times): changes and repeats wait for ``end``.

        Scope's queue is then empty at ``end - chunk`` and later, so an action sent meanwhile (the drop's cache
        reset) is taken by the first chunk after it arrives instead of waiting behind a message a chunk long.
        A later call replaces the span; ``keep_clear(inf, inf)`` ends it.
        """
        old_start, old_end = self._clear
        if (start, end) == self._clear or (abs(start - old_start) < 0.01 and abs(end - old_end) < 0.01):
            return  # the same span as the beat grid sways: no need to look again
        self._clear = (start, end)
        self._wake.set()
        for mirror in self.mirrors:
            mirror.keep_clear(start, end)

    def set_chunk_frames(self, frames: int | None, source: str = "offer") -> None:
        """The server's offer says a chunk has ``frames`` frames (None: it does not say; the table stays)."""
        before = (self.pacer.chunk_frames, self.pacer.chunk_source)
        self.pacer.set_chunk_frames(frames, source)
        if (self.pacer.chunk_frames, self.pacer.chunk_source) != before:
            log.debug("chunk: %d frames (from the server's %s)", self.pacer.chunk_frames, source)

    def on_dropped(self, count: int) -> None:
        """Scope logged ``count`` dropped messages: slow down, let its queue drain, then repair.

        The chunk is believed as long as the sends imply and at least twice as long (``SendPacer.widen``; once
        per drain: drops reported meanwhile were sent before), nothing goes out for the 8 chunks Scope's queue
        may hold, and then everything lasting is sent again.
        """
        if count <= 0:
            return
        self._drops_seen += count
        now = self._clock()
        if now >= self._hold_until:
            self.pacer.widen(now, count)
            self._hold_until = now + QUEUE_SLOTS * self.pacer.interval(now)
            self._target = None
            log.info("Scope dropped %d parameter message(s); sending at most one per %d frames from now on",
                     count, self.pacer.chunk_frames)
        self.state.resettle()
        self._wake.set()

    def on_paused_elsewhere(self) -> bool:
        """Scope logged a pause this show did not ask for (Scope's REST API, OSC ``/scope/paused``, another client):
        the show is not paused, so ``paused: false`` goes again in the next message (the seed's rule: keep
        ``paused: false`` in the updates). True when it was queued."""
        if self.state.desired.get("paused") is not False or self._paused_sent is not False:
            return False  # the show is paused, or its resume still waits to go (that is the answer)
        if self._clock() - self._own_pause_at < OWN_PAUSE_ECHO_S:
            return False  # the line may be the show's own pause, read after the resume that followed it went out
        self.apply({"paused": False}, checked_by=self.schema, again=True)
        return True

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
        # The pacer is not reset here: this session's first frames may have arrived before its channel opened,
        # and the first of them is where its chunks are counted from.
        if initial is not None:
            self.state.begin_session(initial)
            self._paused_sent = initial.get("paused")
        self._last_send = -math.inf
        self._hold_until = -math.inf  # a new session's queue is empty
        self._transition = None
        self._target = None
        self._wake.set()

    def detach(self) -> None:
        """The session is lost: its channel and its frames are done with."""
        self._channel = None
        self.pacer.reset()

    def on_frame(self, now: float | None = None) -> None:
        self.pacer.on_frame(self._clock() if now is None else now)

    # -------------------------------------------------------------- loop

    def start(self) -> None:
        """Start sending (a second start is harmless; a closed sender refuses)."""
        if self._life.begin():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="parameter-sender")

    async def aclose(self) -> None:
        self._life.end()
        self._cancel_timer()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def stats(self) -> SenderStats:
        return SenderStats(
            sent=self.sent,
            merged=self.state.merged,
            changes=self.state.changes,
            rejected=self._rejected,
            interval=self.pacer.interval(self._clock()),
            repeats=self._repeats,
            drops_seen=self._drops_seen,
            chunk_frames=self.pacer.chunk_frames,
            chunk_source=self.pacer.chunk_source,
        )

    async def _run(self) -> None:
        """Wake on a change (or the timer set for the next slot), send what is due, set the timer again.

        Waiting is a plain ``Event.wait()`` with a loop timer to set it, never ``asyncio.wait_for``: on Python
        3.11 that swallows a cancellation arriving in the same turn as the event, and ``aclose()`` would hang.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._cancel_timer()
                now = self._clock()
                due = self._due(now)
                if due is None:
                    continue
                if due <= now:
                    self._target = None
                    if self.send_now() is not None:
                        self._wake.set()  # look again: a repeat may be due a chunk from now
                else:
                    self._timer = loop.call_later(due - now, self._wake.set)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("parameter sender stopped unexpectedly")
            raise

    def _due(self, now: float) -> float | None:
        """When the next message should go, or None when nothing is to be sent (or no channel is open).

        The time for a message is fixed once (later changes ride along; recomputing it as the clock passes the
        aimed slot would push it a chunk on each time); a change arriving while only a repeat waits sets it anew.
        """
        if not self._channel_open():
            return None
        if now < self._hold_until and (self.state.has_pending or self.state.has_settle):
            return self._hold_until
        if self.state.has_pending:
            urgent = self.state.has_action
            if self._target is None or not self._target_is_send or (urgent and not self._target_urgent):
                # An action goes as soon as the budget allows, not at the slot aimed for the changes before it.
                isolated = urgent or self._pending_since >= self._last_send + self.pacer.interval(now)
                target = self.pacer.next_send_at(now, self._last_send, isolated=isolated, urgent=urgent)
                keep = self._target is not None and self._target_is_send
                self._target = min(self._target, target) if keep and self._target is not None else target
                self._target_is_send, self._target_urgent = True, urgent
            return self._target if urgent else self._cleared(self._target)
        if self.pacer.config.settle and self.state.has_settle:
            if self._target is None:
                self._target = max(now, self._last_send + self.pacer.interval(now))
                self._target_is_send = False
            return self._cleared(self._target)
        return None

    def _cleared(self, target: float) -> float:
        start, end = self._clear
        return end if start <= target < end else target

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _channel_open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def send_now(self) -> dict[str, Any] | None:
        """Send whatever is pending, now. Returns the message (None if nothing was due)."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return None
        repeat = not self.state.has_pending
        message = self.state.take_message(settle=self.pacer.config.settle)
        if message is None:
            return None
        self._repeats += repeat
        now = self._clock()
        message, self._transition = carry_transition(message, self._transition, now, self.pacer.interval(now))
        if not repeat and ("prompts" in message or "transition" in message):
            prompts = message.get("prompts") or message["transition"].get("target_prompts", [])
            log.debug("[Scope] Sending prompt: %s", parameters.describe_prompts(prompts))
        channel.send(json.dumps(message, separators=(",", ":")))
        self._paused_sent = message.get("paused", self._paused_sent)
        if self._paused_sent is True:
            self._own_pause_at = now
        self._last_send = now
        self.pacer.on_sent(now)
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(message, now)
        return message
