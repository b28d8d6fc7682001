"""The tempo hub: every tempo reading in, one beat grid out, and the one place that counts beats.

Readings arrive through the signal board (Link, MIDI clock, OSC tempo, the audio beat tracker); the arbiter
picks one source (Link > MIDI clock > OSC > audio, or the profile's ``inputs.tempo.prefer``). The show asks
:meth:`TempoHub.tick` for the grid at each engine step; a new whole beat (and bar) becomes a ``tempo.beat``
(``tempo.bar``) trigger on the board (counted when the output grid reaches it, or the steering source's own grid
does if that comes first: its beat heard early is not counted late while the output's phase glides onto it), the
grid's BPM and phase become ``tempo.bpm`` and ``tempo.phase``, and the beat goes to OSC out. A 20 Hz task keeps
the status view's tempo and OSC out's BPM and Scope state current.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from metadj_bridge.inputs.tempo_sources import ArbiterConfig, TempoArbiter
from metadj_bridge.signals import Signal, SignalBoard, TempoReading, TempoState, Trigger

if TYPE_CHECKING:
    from metadj_bridge.outputs.osc_out import OscOutput

__all__ = ["TempoHub"]

#: How often the status view and OSC out hear the tempo and the Scope state.
PUBLISH_RATE_HZ = 20.0


class TempoHub:
    """Owns the arbiter and the beat count; publishes beats on ``board``. Event loop only."""

    def __init__(
        self,
        board: SignalBoard,
        config: ArbiterConfig | None = None,
        *,
        osc_out: OscOutput | None = None,
        scope_state: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.arbiter = TempoArbiter(config)
        self.board = board
        self.osc_out = osc_out
        #: What the Scope session's state is now, for OSC out (set once the session exists).
        self.scope_state = scope_state
        self._clock = clock
        board.on_tempo(self.reading)
        #: The grid at the latest tick or publication (None before the first).
        self.state: TempoState | None = None
        #: Whole beats counted so far on the output grid, and bars begun (None before the first). A bar begins where
        #: the source says (``TempoState.bar``): when it moves its count, the next bar begins on its new one, and the
        #: bars go on counting up by one.
        self.beat: int | None = None
        self.bar: int | None = None
        self._grid_bar: int | None = None
        #: When the latest beat was counted (monotonic), for the status view's beat light.
        self.beat_at = -1.0
        self._last_scope_state: str | None = None

    def reading(self, reading: TempoReading) -> None:
        self.arbiter.update(reading)

    def pin_downbeat(self, now: float) -> bool:
        """The beat nearest ``now`` begins a bar (a performer's "this is the one"); False without a beat grid yet."""
        return self.arbiter.pin_downbeat(now)

    def tick(self, now: float) -> TempoState:
        """The grid at ``now``; counts a new beat and bar, firing them on the board. Called once per show step."""
        state = self.state = self.arbiter.state(now)
        if state.source is None:  # no live source: the grid runs on, but nothing is counted
            return state
        board = self.board
        board.set(Signal("tempo.bpm", float(state.bpm), now))
        board.set(Signal("tempo.phase", float(state.phase), now))
        # A beat is counted when the output reaches it or the steering source's own grid does, whichever comes first:
        # a source that re-times its beats earlier (the audio tracker hearing the beat come early) has it counted at
        # once, while the output's phase glides onto the new grid over the blend.
        counted = state
        if (lead := self.arbiter.lead(now)) > 0.0:
            counted = dataclasses.replace(state, beat=state.beat + lead,
                                          bar_position=(state.bar_position + lead) % state.beats_per_bar)
        beat = math.floor(counted.beat)
        bar = counted.bar
        if self.beat is not None and beat < self.beat:  # the source re-timed back after its beat was counted
            return state
        # More than one whole beat since the last step: they went by while the show stood still (the bridge frozen,
        # the computer asleep). None is fired late, off the beat; the count takes up the grid's.
        if self.beat is not None and self.beat < beat <= self.beat + 1:
            board.fire(Trigger("tempo.beat", now, {"beat": beat}))
            if self.bar is not None and self._grid_bar is not None and bar > self._grid_bar:
                self.bar += 1
                board.fire(Trigger("tempo.bar", now, {"bar": self.bar}))
            self.beat_at = now
            if self.osc_out is not None:
                self.osc_out.set_beat(beat, counted.bar_position)
        self.beat, self._grid_bar = beat, bar
        if self.bar is None:
            self.bar = bar
        return state

    async def run(self) -> None:
        """Keep the status view's tempo and OSC out's BPM and Scope state current, until cancelled."""
        while True:
            now = self._clock()
            state = self.state = self.arbiter.state(now)
            if self.osc_out is not None:
                if state.source is not None:
                    self.osc_out.set_bpm(state.bpm)
                scope_state = self.scope_state() if self.scope_state is not None else None
                if scope_state is not None and scope_state != self._last_scope_state:
                    self._last_scope_state = scope_state
                    self.osc_out.set_scope_state(scope_state)
            await asyncio.sleep(1.0 / PUBLISH_RATE_HZ)
