"""The bridge's own measure of its delay from sending a change to the frame at the output that shows it.

A ``quantize`` with ``lookahead_ms: auto`` releases a held change this long before its beat or bar, so the
picture changes on the beat instead of a second after it. The delay, for a change made at time c:

- **send wait**: from c until the sender lets the message go (at once for an isolated change; else the slot
  before the next chunk boundary, ``pacing.SendPacer``);
- **round trip and take wait**: Scope takes one message per chunk, right after it hands the last chunk's frames
  to its video track, so a message sent at s is taken at the first chunk boundary that, seen here (where that
  chunk's first frame arrives), comes at or after ``s + rtt + video_delay`` (the way out, then the way back of
  the frames, with their encode, jitter buffer and decode). The wait is that boundary minus s, predicted from
  the boundaries the pacer has seen;
- **chunk**: the chunk that took the message is generated for a chunk period before its first frame leaves;
- **output**: the bridge's own output clock holds a frame until its next tick (``video/clock.py``).

The round trip is aiortc's smoothed SCTP round trip (``RTCSctpTransport._srtt``, from the SACKs that answer
our data-channel messages), so it holds the real path to the server, or the health poll's round trip before
any SACK came. Each part is a median over a window, so one late frame or one slow SACK moves nothing. Frame
stamps are not used: a real Scope has none (the bench and the tests use them to check this estimate).

Before anything is measured the estimate is a prior: a 50 ms round trip, the pacer's believed chunk period
(the bridge's table chunk at the assumed 15 fps: 0.8 s for the Wan pipelines), half a chunk of take wait and
half an output tick.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from metadj_bridge.scope.sender import ParameterSender

#: Round trip assumed before one is measured (a server on the same network or a near cloud region).
PRIOR_RTT = 0.05
#: Samples kept per part (about a minute of changes at one per bar).
WINDOW = 32
#: How often the show's per-step call looks at the round trip and the chunk period again.
LOOK_EVERY = 0.25


@dataclass(frozen=True, slots=True)
class DelayEstimate:
    """The delay from a change to its frame at the output, in seconds, and its parts."""

    send_wait: float
    rtt: float
    #: From the message reaching Scope until the chunk that takes it begins (the way back of the frames included).
    take_wait: float
    chunk: float
    output: float
    #: False while a part still rests on the prior (no round trip, chunk or send seen yet).
    measured: bool

    @property
    def total(self) -> float:
        return self.send_wait + self.rtt + self.take_wait + self.chunk + self.output

    def as_dict(self) -> dict[str, Any]:
        return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()},
                "total": round(self.total, 4)}


class _Median:
    """The median of the last ``WINDOW`` samples (None without any)."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=WINDOW)

    def add(self, value: float) -> None:
        self._samples.append(value)

    def get(self) -> float | None:
        return statistics.median(self._samples) if self._samples else None

    def __len__(self) -> int:
        return len(self._samples)


class DelayModel:
    """The arithmetic: samples of each part in, the estimate out. No clock, no I/O."""

    def __init__(self, *, video_delay: float = 0.1, output_prior: float = 0.0) -> None:
        self.video_delay = video_delay
        self.output_prior = output_prior
        self.rtt = _Median()
        self.chunk = _Median()
        self.output = _Median()
        self.send_wait = _Median()
        #: Boundary minus send time, minus the round trip in force at the send.
        self.take_wait = _Median()

    def sent(self, now: float, changed_at: float, boundary: float | None, rtt: float) -> None:
        """A message carrying a change made at ``changed_at`` went at ``now``; ``boundary`` is the first chunk
        boundary predicted at or after ``now + rtt + video_delay`` (None: not known yet)."""
        self.send_wait.add(max(0.0, now - changed_at))
        if boundary is not None:
            self.take_wait.add(max(0.0, boundary - now - rtt))

    def estimate(self, prior_chunk: float) -> DelayEstimate:
        """The medians, each part falling back to its prior: ``prior_chunk`` is the believed chunk period."""
        rtt, chunk, take = self.rtt.get(), self.chunk.get(), self.take_wait.get()
        chunk_s = chunk if chunk is not None else prior_chunk
        output = self.output.get()
        return DelayEstimate(
            send_wait=self.send_wait.get() or 0.0,
            rtt=rtt if rtt is not None else PRIOR_RTT,
            take_wait=take if take is not None else self.video_delay + chunk_s / 2,
            chunk=chunk_s,
            output=output if output is not None else self.output_prior,
            measured=rtt is not None and chunk is not None and take is not None,
        )


def sctp_rtt(pc: Any) -> float | None:
    """aiortc's smoothed round trip of ``pc``'s SCTP association, in seconds (None before a SACK came back)."""
    sctp = getattr(pc, "sctp", None)
    srtt = getattr(sctp, "_srtt", None)
    return float(srtt) if isinstance(srtt, (int, float)) and srtt >= 0 else None


class ShowLatency:
    """Keeps a ``DelayModel`` fed from a running show: call it every engine step for the delay in seconds.

    ``pc`` gives the session's peer connection (None between sessions); ``output_delay`` the output clock's
    median delay from a frame's arrival to the sinks, in seconds (None: no clock or no frame yet). It listens to
    the sender's ``on_sent`` and passes each call on to the listener set before it (the show log).
    """

    def __init__(
        self,
        sender: ParameterSender,
        pc: Callable[[], Any],
        output_delay: Callable[[], float | None] | None = None,
        *,
        output_prior: float = 0.0,
    ) -> None:
        self._sender = sender
        self._pc = pc
        self._output_delay = output_delay
        self.model = DelayModel(video_delay=sender.pacer.config.video_delay, output_prior=output_prior)
        self._seen_changes = sender.state.changes
        self._changed_at: float | None = None
        self._next_look = -1.0
        self._estimate: DelayEstimate | None = None
        self._rtt_now = PRIOR_RTT
        self._forward = sender.on_sent
        sender.on_sent = self._on_sent

    def __call__(self, now: float) -> float:
        """The delay in force at ``now`` (the show calls this every step; the parts are looked at 4 times a second)."""
        self._look_for_changes(now)
        if now >= self._next_look or self._estimate is None:
            self._next_look = now + LOOK_EVERY
            self._sample(now)
            self._estimate = self.model.estimate(self._sender.pacer.interval(now))
        return self._estimate.total

    @property
    def estimate(self) -> DelayEstimate | None:
        """The latest estimate (None before the first call)."""
        return self._estimate

    def _sample(self, now: float) -> None:
        pacer = self._sender.pacer
        rtt = sctp_rtt(self._pc())
        if rtt is None and pacer.rtt > 0:
            rtt = pacer.rtt  # the health poll's round trip, until SACKs tell
        if rtt is not None:
            self.model.rtt.add(rtt)
            self._rtt_now = rtt
        fps = pacer.fps(now)
        if fps is not None:
            self.model.chunk.add(pacer.chunk_frames / fps)
        if self._output_delay is not None:
            output = self._output_delay()
            if output is not None:
                self.model.output.add(output)

    def _look_for_changes(self, now: float, *, sending: bool = False) -> None:
        """Note when a change began to wait; forget it when it went without a message (a value set back)."""
        state = self._sender.state
        if state.changes != self._seen_changes:
            self._seen_changes = state.changes
            if self._changed_at is None and (sending or state.has_pending):
                self._changed_at = now
        elif self._changed_at is not None and not sending and not state.has_pending:
            self._changed_at = None

    def _on_sent(self, message: dict[str, Any], now: float) -> None:
        if self._forward is not None:
            self._forward(message, now)
        self._look_for_changes(now, sending=True)  # a change made this step, sent at once
        if self._changed_at is None:
            return  # a repeat of values already sent: no change waited for it
        pacer = self._sender.pacer
        boundary = pacer.next_boundary(now + self._rtt_now + pacer.config.video_delay, now)
        self.model.sent(now, self._changed_at, boundary, self._rtt_now)
        self._changed_at = None
