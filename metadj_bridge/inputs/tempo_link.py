"""Ableton Link as a tempo source, through aalink (an optional extra: ``pip install "metadj-bridge[link]"``).

The bridge joins the Link session as a follower: it reads the session's tempo, beat and (with start/stop
sync) transport, and never changes the session tempo unless the profile allows it. About 20 times a second
a named asyncio task samples the session and hands a ``TempoReading(source="link")`` to a callback. A
session without other peers is only our own clock, so by default nothing is reported until a peer is there,
and the arbiter falls back to the next source.

Link has no follower role of its own: when two sessions meet, the older session's timeline wins (within
about 0.5 s, the lower session id). Joining a running DJ app therefore adopts its tempo; but if the bridge
was running alone long before the DJ app starts, the DJ app adopts the bridge's starting tempo (``bpm``)
once. Start the bridge after the DJ software, or set ``bpm`` to the set's tempo.

aalink reads Link's clock (CLOCK_MONOTONIC_RAW on Linux), which drifts from ``time.monotonic()``; each
reading therefore pairs Link's beat with ``time.monotonic()`` sampled at the same moment.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from typing import Any

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.lifecycle import Lifecycle, cancel_and_wait
from metadj_bridge.signals import InputSink, TempoReading

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "metadj-bridge[link]"'


def load_aalink() -> Any:
    """The aalink module, or a ConfigError that says how to install it."""
    try:
        return importlib.import_module("aalink")
    except ImportError as exc:
        raise ConfigError(
            f"Ableton Link needs the aalink package, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from exc



class LinkSource:
    """One Link session member. ``await start()``, readings go to ``sink.tempo``, ``await aclose()``."""

    def __init__(
        self,
        sink: InputSink | None = None,
        *,
        bpm: float = 120.0,
        beats_per_bar: int = 4,
        allow_tempo_changes: bool = False,
        start_stop_sync: bool = False,
        require_peers: bool = True,
        rate_hz: float = 20.0,
    ) -> None:
        if not 20 <= bpm <= 999:
            raise ConfigError(f"Link tempo {bpm:g} BPM: must be 20-999")
        if not 1 <= beats_per_bar <= 16:
            raise ConfigError(f"Link quantum (beats per bar) {beats_per_bar}: must be 1-16")
        if not 1 <= rate_hz <= 200:
            raise ConfigError(f"Link reading rate {rate_hz:g} Hz: must be 1-200")
        self.sink = sink
        self._listener_warning = RateLimitedWarning(log, "Link reading listener errors")
        self.bpm = bpm
        self.beats_per_bar = beats_per_bar
        self.allow_tempo_changes = allow_tempo_changes
        self.start_stop_sync = start_stop_sync
        self.require_peers = require_peers
        self.rate_hz = rate_hz
        self._life = Lifecycle("LinkSource")
        self.latest: TempoReading | None = None
        self._link: Any = None
        self._task: asyncio.Task[None] | None = None
        self._peers = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._life.closed:
            self._life.begin()  # raises: closed
        if self._life.running:
            return
        aalink = load_aalink()
        try:
            link = aalink.Link(self.bpm)
        except TypeError:  # aalink before 0.2 wants the loop
            link = aalink.Link(self.bpm, asyncio.get_running_loop())
        link.quantum = self.beats_per_bar
        link.start_stop_sync_enabled = self.start_stop_sync
        link.enabled = True
        self._link = link
        self._life.begin()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="link-tempo")
        log.info("Ableton Link enabled (follower%s)", ", may change the tempo" if self.allow_tempo_changes else "")

    async def aclose(self) -> None:
        """Leave the session; safe to call twice."""
        if not self._life.end():
            return
        task, self._task = self._task, None
        await cancel_and_wait(task)
        link, self._link = self._link, None
        if link is not None:
            link.enabled = False

    async def __aenter__(self) -> LinkSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ session

    @property
    def enabled(self) -> bool:
        return self._link is not None and bool(self._link.enabled)

    @property
    def num_peers(self) -> int:
        """Other apps in the Link session (0 when not running)."""
        return int(self._link.num_peers) if self._link is not None else 0

    def set_tempo(self, bpm: float) -> None:
        """Change the session tempo: only when the profile allows it, since it moves every peer."""
        if not self.allow_tempo_changes:
            raise ConfigError(
                f"Link tempo change to {bpm:g} BPM refused: the bridge follows the Link session "
                "(allow tempo changes in the profile to lead it)"
            )
        if not 20 <= bpm <= 999:
            raise ConfigError(f"Link tempo {bpm:g} BPM: must be 20-999")
        if self._link is None:
            raise RuntimeError("LinkSource is not running")
        self._link.tempo = bpm

    def reading(self) -> TempoReading | None:
        """Sample the session now; None when not running, or alone and ``require_peers``."""
        link = self._link
        if link is None:
            return None
        peers = int(link.num_peers)
        if peers != self._peers:
            log.info("Ableton Link: %d peer%s", peers, "" if peers == 1 else "s")
            self._peers = peers
        if self.require_peers and peers == 0:
            return None
        now = time.monotonic()
        beat = float(link.beat)
        tempo = float(link.tempo)
        playing = bool(link.playing) if self.start_stop_sync else True
        return TempoReading("link", tempo, now, beat, self.beats_per_bar, playing)

    async def _run(self) -> None:
        period = 1.0 / self.rate_hz
        try:
            while True:
                reading = self.reading()
                if reading is not None:
                    self.latest = reading
                    if self.sink is not None:
                        try:
                            self.sink.tempo(reading)
                        except Exception as exc:  # 20 times a second: one traceback, then a count
                            self._listener_warning.listener_failed(self.sink, exc)
                await asyncio.sleep(period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Ableton Link reader stopped")
