"""The pure half of the parameter sender: what to send (``ParameterState``) and when (``SendPacer``).

Scope takes **one** data-channel message per generated chunk and keeps at most 8 waiting; a message that
arrives when 8 wait is dropped (scope-api.md §6). So the sender keeps a budget of one message per chunk for
everything it sends, one-shot actions included, and merges whatever changed meanwhile into that message.

- The chunk is learned from the server, not trusted from the bridge's table: the offer's ``chunk_frames``
  (``GET /api/v1/pipelines/schemas``) replaces the table's value when the server states it; the chunk's
  duration is that many of the frames that actually arrive (their measured rate); and when Scope's log says it
  dropped a message (``dropwatch.py``) the chunk is believed as long as the sends since the queue was last
  empty imply, and at least twice as long (``SendPacer.widen``). Nothing else a Scope 0.2.4 says reveals the
  chunk: its schemas carry no chunk size and its video track paces frames evenly.
- The chunk boundaries are counted from the first frame of the session (not from when the data channel
  opened, which may come after it), and counted again from the first frame after a silence.
- A model of Scope's queue (one message in per send, one out per chunk, counted 5% slow) keeps the budget: a
  message goes only when the last one is believed taken, so a slot is skipped now and then and nothing
  waits in the queue for a whole session.
- An isolated change goes out at once when the budget allows; changes that keep coming wait for the slot just
  before the next boundary, so the message carries the newest values when Scope takes it.
- Settling: every key sent is sent once more, one message later. The repeat rides along with the next message
  when there is one, or goes alone a chunk after the last message once changes stop, so a message Scope dropped
  for any reason is repaired within about two chunks. Repeats carry values Scope already has otherwise, which
  it merges without effect.

Values and times in, values out: no clock, no I/O; ``sender.ParameterSender`` drives these on the event loop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metadj_bridge.parameters import ONE_SHOT_KEYS

#: Keys that act once and are not part of the lasting state: Scope's one-shots plus ``transition``,
#: whose target becomes the current prompts once it completes.
DISCRETE_KEYS = ONE_SHOT_KEYS | {"transition"}

#: The client beat state Scope's tempo sync reads (§9): sent whole whenever one of them changes.
BEAT_STATE_KEYS = frozenset({"bpm", "beat_phase", "bar_position", "beat_count", "is_playing"})

#: Lasting keys never repeated by the settle step: Scope adds up ``ctrl_input`` mouse moves, and a mode switch
#: resets the cache (§6).
NO_SETTLE_KEYS = frozenset({"ctrl_input", "input_mode"})

#: The share of chunks the queue model counts as taking a message (see ``SendPacer.backlog``).
DRAIN = 0.95

#: Messages Scope's parameter queue holds (§6).
QUEUE_SLOTS = 8

#: The ``PacerConfig.gather`` a running bridge uses: a few analysis hops, far below Scope's wait for its next chunk.
GATHER = 0.06

#: Sends this many believed chunks apart begin a new run: Scope's queue had emptied in between.
RUN_GAP_CHUNKS = 8

#: The longest chunk ever believed, in frames, whoever says so (a server's schema, the drops): a longer one would
#: hold every message back for minutes (a billion frames: years), and beyond a float's range it cannot be counted.
MAX_CHUNK_FRAMES = 1000


def carry_transition(message: dict[str, Any], running: tuple[float, dict[str, Any]] | None, now: float,
                     period: float) -> tuple[dict[str, Any], tuple[float, dict[str, Any]] | None]:
    """Keep a prompt transition going through later prompt changes; returns (message, transition running).

    ``running`` is (when it ends, the transition) for the last one sent. Scope moves a transition one step per
    chunk and cancels it when prompts arrive without one (§6), so prompts sent before it ends go out as a
    transition to them over the steps left (at least one): the morph carries on towards the new prompts from
    where it is instead of snapping.
    """
    transition = message.get("transition")
    if transition is not None:
        steps = int(transition.get("num_steps", 0) or 0)
        return message, ((now + steps * period, transition) if steps > 0 else None)
    if running is None or now >= running[0]:
        return message, None
    prompts = message.get("prompts")
    if prompts is None:
        return message, running
    left = max(1, math.ceil((running[0] - now) / period)) if period > 0 else 1
    carried = {**running[1], "target_prompts": prompts, "num_steps": left}
    return {**message, "transition": carried}, (running[0], carried)


class ParameterState:
    """The desired parameter state, what has changed since the last message, and what still needs a repeat.

    Continuous keys keep their latest value only; a value that returns to what Scope already has is not sent
    again. Discrete keys (one-shots, transitions) go into the next message exactly once. A lasting key sent in
    message n is repeated in message n+1 or later (``take_message(settle=True)``), once.
    """

    def __init__(self) -> None:
        self.desired: dict[str, Any] = {}
        self._sent: dict[str, Any] = {}
        self._pending: dict[str, Any] = {}
        self._discrete: dict[str, Any] = {}
        #: key -> number of the message that last carried a new value for it (not yet repeated).
        self._unsettled: dict[str, int] = {}
        self._seq = 0
        #: The lasting prompts came from a transition (repeating them would cut it short).
        self._prompts_by_transition = False
        self._changes_since_send = 0
        self.changes = 0
        self.merged = 0

    def set(self, key: str, value: Any, *, again: bool = False) -> None:
        """Record a new desired value (already checked); ``again`` sends it even when Scope was sent it already."""
        if key in DISCRETE_KEYS:
            self._discrete[key] = value
            if key == "transition":
                # Scope makes the target current when the transition ends, so that is the lasting state.
                # Repeating ``prompts`` would cut the transition short, so prompts are not settled after it.
                target = value.get("target_prompts", [])
                self.desired["prompts"] = target
                self._sent["prompts"] = target
                self._pending.pop("prompts", None)
                self._unsettled.pop("prompts", None)
                self._prompts_by_transition = True
            self._count_change()
            return
        self.desired[key] = value
        if key in self._sent and self._sent[key] == value and not again:
            self._pending.pop(key, None)
        else:
            self._pending[key] = value
        if key == "prompts":
            pending = self._discrete.get("transition")
            if pending is not None:
                # Prompts alone would cancel the transition on Scope's side (§6): the morph waiting to go out
                # heads for these prompts instead (an intensity or knob move during a theme change).
                self._discrete["transition"] = {**pending, "target_prompts": value}
                self._sent["prompts"] = value
                self._pending.pop("prompts", None)
                self._unsettled.pop("prompts", None)
            else:
                self._prompts_by_transition = False
        self._count_change()

    def _count_change(self) -> None:
        self.changes += 1
        self._changes_since_send += 1

    @property
    def has_pending(self) -> bool:
        """A change or an action waits to be sent."""
        return bool(self._pending or self._discrete)

    @property
    def has_action(self) -> bool:
        """A one-shot (a cache reset, a transition, a pause switch ...) waits to be sent."""
        return bool(self._discrete)

    @property
    def has_settle(self) -> bool:
        """A key sent in an earlier message still waits for its repeat."""
        return any(n < self._seq for n in self._unsettled.values())

    def take_message(self, *, settle: bool = False) -> dict[str, Any] | None:
        """Everything that changed since the last message, merged into one; None when nothing is due.

        With ``settle`` the message also repeats each key that an earlier message carried and nothing has
        repeated since (and is that repeat alone when nothing changed).
        """
        riders: dict[str, Any] = {}
        for key in [k for k in self._unsettled if k not in self.desired]:
            del self._unsettled[key]
        if settle:
            riders = {k: self.desired[k] for k, n in self._unsettled.items()
                      if n < self._seq and k not in self._pending and k in self.desired}
        if not (self.has_pending or riders):
            return None
        message = {**riders, **self._pending, **self._discrete}
        if not BEAT_STATE_KEYS.isdisjoint(message):
            # Scope takes a client's beat state only whole (bpm and beat_phase at least): it goes together.
            message.update({k: self.desired[k] for k in BEAT_STATE_KEYS if k in self.desired and k not in message})
        for key in riders:
            del self._unsettled[key]
        for key in self._pending:
            if key not in NO_SETTLE_KEYS:
                self._unsettled[key] = self._seq
        self._sent.update(self._pending)
        self._pending.clear()
        self._discrete.clear()
        self._seq += 1
        self.merged += max(0, self._changes_since_send - 1)
        self._changes_since_send = 0
        return message

    def resettle(self) -> None:
        """Scope dropped something: every lasting key it should have is due once more (see ``take_message``)."""
        for key in self._sent:
            if key in self.desired and key not in NO_SETTLE_KEYS and key not in self._pending:
                if key != "prompts" or not self._prompts_by_transition:
                    self._unsettled[key] = self._seq - 1

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
        self._unsettled.clear()
        self._changes_since_send = len(self._pending)


@dataclass
class PacerConfig:
    """Bounds for the send interval, in seconds, and what is assumed until the server says otherwise.

    ``min_interval`` keeps the sender from exceeding the seed's 30 Hz even on a fast pipeline;
    ``max_interval`` keeps a change from waiting too long when the estimate says Scope is slow or the
    video has stopped.
    """

    min_interval: float = 1 / 30
    max_interval: float = 2.0
    #: Frames per chunk until the server's offer says (the bridge's table value).
    chunk_frames: int = 12
    #: Frame rate assumed until frames come back (a GPU pipeline typically gives 15-25 fps).
    assumed_fps: float = 15.0
    #: Window over which the returning frame rate is measured.
    window: float = 3.0
    #: Aim sends just before Scope's next chunk boundary (see ``SendPacer.next_send_at``).
    align: bool = True
    #: How early before the predicted boundary to send, as a fraction of the chunk period; the
    #: measured round trip to Scope and ``video_delay`` are added on top.
    align_margin: float = 0.2
    #: How long Scope's frames take to reach us, beyond the round trip (encode, jitter buffer, decode): the
    #: boundary is seen that much after Scope took its message.
    video_delay: float = 0.1
    #: Repeat every sent key once, a message later (see the module's docstring).
    settle: bool = True
    #: Keep the model of Scope's queue (``SendPacer.backlog``); off, only the interval bounds pace the sends.
    queue_model: bool = True
    #: A frame after this many seconds without one starts a chunk (Scope's output had run dry).
    restart_gap: float = 1.0
    #: An isolated change waits this long for companions of the same moment (a bar's seed step and the drop's
    #: cache reset that the kick brings a few hops later), so they go as one message rather than two, the
    #: second a chunk behind the first in Scope's queue. The bridge runs with ``GATHER``.
    gather: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError(
                f"sender rate bounds: min_interval {self.min_interval} must be > 0 "
                f"and <= max_interval {self.max_interval}"
            )
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames {self.chunk_frames} must be >= 1")


class SendPacer:
    """When Scope takes its next message: once per chunk of ``chunk_frames`` frames.

    Scope takes a message from its queue right after it hands a chunk's frames to the video track, so the
    first frame of each chunk to arrive here marks a boundary (a little late, by the network and the track's
    pacing). A change sent just before the next boundary is applied by the next chunk with everything else
    that changed meanwhile; one sent just after a boundary waits a whole chunk.
    """

    def __init__(self, config: PacerConfig | None = None) -> None:
        self.config = config or PacerConfig()
        #: Frames per chunk in force, and where that figure came from ("table", "offer" or "drops").
        self.chunk_frames = self.config.chunk_frames
        self.chunk_source = "table"
        self._frames: deque[float] = deque()
        self._count = 0
        self._boundary: float | None = None
        self._last_frame: float | None = None
        self._backlog = 0.0
        self._backlog_at = 0.0
        self.rtt = 0.0
        #: When each message of the current run went (sends with no long gap between them; see ``widen``).
        self._run: list[float] = []

    def set_chunk_frames(self, frames: int | None, source: str = "offer") -> None:
        """The server said how many frames a chunk has; ignored when it did not (None), or said a number no chunk
        has (below 1, above :data:`MAX_CHUNK_FRAMES`)."""
        if frames is None or not 1 <= frames <= MAX_CHUNK_FRAMES:
            return
        if frames != self.chunk_frames or source != self.chunk_source:
            # Frames are still counted from the same chunk start, which begins a chunk of any size; the
            # latest boundary is the frame that began the current chunk of the new size.
            self.chunk_frames = frames
            self.chunk_source = source
            back = (self._count - 1) % frames
            self._boundary = self._frames[-1 - back] if self._count and back < len(self._frames) else None

    def widen(self, now: float | None = None, dropped: int = 0) -> None:
        """Scope dropped ``dropped`` messages, seen at ``now``: its chunk takes longer than believed.

        Believed from then on: the chunk that the current run of sends implies, with a tenth to spare, and at
        least twice the old belief. When the run began Scope's queue was empty; now it is full (8 waiting), so
        Scope took (sent - dropped - 8) messages meanwhile, one per chunk. Drops Scope has not logged yet make
        that count high and the estimate short, which the doubling covers. Without a run long enough to tell
        (another client filled the queue, say), only the doubling. The run ends here: the sender holds back
        until the queue has drained (``ParameterSender.on_dropped``).
        """
        frames = 2 * self.chunk_frames
        implied = self._implied_chunk(now, dropped) if now is not None else None
        if implied is not None:
            frames = max(frames, implied)
        self._run.clear()
        self.set_chunk_frames(min(frames, MAX_CHUNK_FRAMES), "drops")

    def _implied_chunk(self, now: float, dropped: int) -> int | None:
        fps = self.fps(now)
        taken = len(self._run) - dropped - QUEUE_SLOTS
        if fps is None or taken < 2:
            return None
        return math.ceil(1.1 * fps * (now - self._run[0]) / taken)

    def on_frame(self, now: float) -> None:
        """A frame arrived at ``now``: the rate, and the chunk boundaries counted from the session's start."""
        if self._last_frame is None or now - self._last_frame > self.config.restart_gap:
            self._count = 0  # the first frame of the session, or the first after a silence, starts a chunk
        self._last_frame = now
        self._frames.append(now)
        horizon = now - self.config.window
        while self._frames and self._frames[0] < horizon:
            self._frames.popleft()
        if self._count % self.chunk_frames == 0:
            self._boundary = now
        self._count += 1

    def reset(self) -> None:
        """The session is over: its frames say nothing of the next one's."""
        self._frames.clear()
        self._count = 0
        self._boundary = None
        self._last_frame = None
        self._backlog = 0.0
        self._run.clear()

    def set_rtt(self, rtt: float) -> None:
        """The latest measured round trip to Scope, in seconds (smoothed)."""
        self.rtt = rtt if self.rtt == 0.0 else 0.8 * self.rtt + 0.2 * rtt

    def on_sent(self, now: float) -> None:
        """A message went out at ``now``: one more in the model of Scope's queue."""
        if self._run and now - self._run[-1] > max(1.0, RUN_GAP_CHUNKS * self._take_period(now)):
            self._run.clear()
        if len(self._run) < 10_000:
            self._run.append(now)
        if not self.config.queue_model:
            return
        self._backlog = self.backlog(now) + 1.0
        self._backlog_at = now

    def backlog(self, now: float) -> float:
        """Messages believed still waiting in Scope's queue: each send adds one, each chunk takes one.

        Chunks are counted a little slow (``DRAIN``), so sending at every boundary builds up a small excess that
        makes the sender skip a slot now and then: a message left waiting by a wrong guess drains instead of
        adding a chunk of lag for the rest of the session.
        """
        if self._backlog <= 0.0:
            return 0.0
        return max(0.0, self._backlog - DRAIN * (now - self._backlog_at) / self._take_period(now))

    def _take_period(self, now: float) -> float:
        fps = self.fps(now)
        return self.chunk_frames / fps if fps is not None else self.interval(now)

    def _free_at(self, now: float, level: float) -> float:
        """When the modelled queue is down to ``level`` messages (``now`` at the latest: it never rises)."""
        excess = self.backlog(now) - level
        return now if excess <= 0 else now + excess * self._take_period(now) / DRAIN

    def next_send_at(self, now: float, last_send: float, *, isolated: bool = False, urgent: bool = False) -> float:
        """When the next message may go.

        An ``isolated`` change (it came when a chunk had already passed since the last message) goes at once:
        Scope applies it with its next chunk either way, and a wrong boundary estimate cannot delay it. Changes
        that kept coming wait for the slot just before the next chunk boundary, at most one message per boundary
        (sooner than a whole interval after the last message, or later), so the message carries the newest
        values when Scope takes it. Without a boundary to aim at: one interval after the last message. Either
        way only while the model of Scope's queue (``backlog``) says the last message has been taken.

        An ``urgent`` message (it carries an action: a cache reset, a transition) does not wait for the interval:
        Scope takes it with the first chunk after it arrives unless the message before is still queued, which
        waiting could not avoid either (Scope's chunks cannot be seen); it goes once the queue is believed to
        hold at most one message.
        """
        if urgent:  # no gather: what comes with an action was handed over in the same step
            return max(now, last_send + self.config.min_interval, self._free_at(now, 1.0))
        interval = self.interval(now)
        earliest = max(last_send + interval, self._free_at(now, 0.0))
        if isolated and now >= earliest:
            return now + self.config.gather
        aimed = self._aimed_slot(now, last_send, interval)
        return max(now, earliest) if aimed is None else aimed

    def _aimed_slot(self, now: float, last_send: float, interval: float) -> float | None:
        fps = self.fps(now)
        if not self.config.align or self._boundary is None or fps is None or interval >= self.config.max_interval:
            return None
        period = self.chunk_frames / fps
        if period < self.config.min_interval * 2:
            return None  # too fast to aim at; the floor rules
        margin = self.config.align_margin * period + self.rtt + self.config.video_delay
        if margin > 0.6 * period:
            return None  # the frames come back too late to tell this chunk's boundary from the next one's
        # The first aimed slot that keeps sends at least half a chunk apart (one per boundary) and comes when the
        # modelled queue holds at most half a message (so a slot is skipped now and then; see ``backlog``).
        floor = max(now, last_send + 0.5 * period, self._free_at(now, 0.5))
        first_slot = self._boundary - margin
        k = max(0, math.ceil((floor - first_slot) / period))
        return first_slot + k * period

    def next_boundary(self, at: float, now: float) -> float | None:
        """The first chunk boundary (as its first frame arrives here) at or after ``at``, counted on from the latest
        one seen; None before a boundary and a frame rate are known (``scope/latency.py`` reads this)."""
        fps = self.fps(now)
        if self._boundary is None or fps is None:
            return None
        period = self.chunk_frames / fps
        return self._boundary + max(0, math.ceil((at - self._boundary) / period - 1e-9)) * period

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
            fps = cfg.assumed_fps if not self._frames else self.chunk_frames / cfg.max_interval
        period = self.chunk_frames / fps if fps > 0 else math.inf
        return min(cfg.max_interval, max(cfg.min_interval, period))
