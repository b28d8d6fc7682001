"""Scope's tempo sync, as far as a client sees it (``src/scope/server/tempo_sync.py``, ``tempo_router.py``).

``GET /api/v1/tempo/status``, ``POST /api/v1/tempo/enable`` and ``/disable``, ``GET /api/v1/tempo/sources``, and
the beat state a client sends over the data channel (``bpm``, ``beat_phase``, ``bar_position``, ``beat_count``,
``is_playing``). Checked on a real Scope 0.2.4 with Ableton Link installed (``aalink``):

- off at start: ``{"enabled": false, "source": null, "beats_per_bar": 4, "beat_state": null}``;
- ``enable {"source": "link", "bpm": 124}`` answers the status with ``source {"type": "link", "num_peers": 0}``;
  the Link beat then runs at that tempo with ``is_playing`` false (no peer plays);
- a client's state (``bpm`` and ``beat_phase`` both needed) replaces the source's for 2 s, unextrapolated, with
  ``"source": "client"``; it is kept even while sync is off, but only shown while on;
- MIDI clock needs the ``midi`` extra: 400 ``Required dependency not installed: ...`` (as on a Scope without it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from metadj_bridge.emulator.validation import BODY_UNPARSED, RequestRejected

__all__ = ["BEAT_STATE_KEYS", "EmulatedTempoSync", "add_tempo_routes"]

BEAT_STATE_KEYS = frozenset({"bpm", "beat_phase", "bar_position", "beat_count", "is_playing"})
#: Scope's CLIENT_BEAT_STATE_STALE_SECONDS.
CLIENT_STALE_SECONDS = 2.0


class EmulatedTempoSync:
    """``clock``: seconds for ages (monotonic: the wall clock may be set back or forward meanwhile)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.enabled = False
        self.beats_per_bar = 4
        self._bpm = 120.0
        self._started = 0.0
        self._client: dict[str, Any] | None = None
        self._client_at = 0.0
        #: Client beat states taken (for tests).
        self.client_updates = 0

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "source": {"type": "link", "num_peers": 0} if self.enabled else None,
            "beats_per_bar": self.beats_per_bar,
            "beat_state": self.beat_state(),
        }

    def beat_state(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        now = self._clock()
        if self._client is not None and now - self._client_at < CLIENT_STALE_SECONDS:
            return {**self._client, "source": "client"}
        beats = (now - self._started) * self._bpm / 60.0
        return {"bpm": self._bpm, "beat_phase": round(beats % 1.0, 6), "bar_position": round(beats % 1.0, 6),
                "beat_count": 0, "is_playing": False, "source": "link"}

    def enable(self, body: object) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise RequestRejected(422, "Input should be a valid dictionary or object to extract fields from")
        source = body.get("source")
        if source not in ("link", "midi_clock"):
            raise RequestRejected(422, "Input should be 'link' or 'midi_clock'")
        bpm = body.get("bpm", 120.0)
        per_bar = body.get("beats_per_bar", 4)
        if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not 20 <= bpm <= 300:
            raise RequestRejected(422, "bpm: Input should be between 20 and 300")
        if isinstance(per_bar, bool) or not isinstance(per_bar, int) or not 1 <= per_bar <= 16:
            raise RequestRejected(422, "beats_per_bar: Input should be between 1 and 16")
        if source == "midi_clock":
            raise RequestRejected(400, "Required dependency not installed: No module named 'mido'")
        self.enabled, self._bpm, self.beats_per_bar = True, float(bpm), per_bar
        self._started = self._clock()
        return self.status()

    def disable(self) -> dict[str, Any]:
        self.enabled = False
        self._client = None
        return self.status()

    @staticmethod
    def sources() -> dict[str, Any]:
        return {"sources": {"link": {"available": True, "name": "Ableton Link"},
                            "midi_clock": {"available": False, "name": "MIDI Clock",
                                           "install_hint": "uv sync --extra midi"}}}

    def take_client_state(self, message: Mapping[str, Any]) -> str | None:
        """A data-channel message's beat state, as Scope's ``update_client_beat_state`` keeps it. Returns the error
        when a value cannot be converted: Scope then loses the whole message ("Error handling parameter update")."""
        if "bpm" not in message or "beat_phase" not in message:
            return None
        try:
            phase = float(message["beat_phase"])
            state = {
                "bpm": float(message["bpm"]),
                "beat_phase": phase,
                "bar_position": float(message.get("bar_position", phase)),
                "beat_count": int(message.get("beat_count", 0)),
                "is_playing": bool(message.get("is_playing", True)),
            }
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: a beat_count of 1e999 (inf)
            return str(exc)
        self._client, self._client_at = state, self._clock()
        self.client_updates += 1
        return None


def add_tempo_routes(router: web.UrlDispatcher, tempo: EmulatedTempoSync) -> None:
    """Scope's ``/api/v1/tempo/*`` endpoints on the emulator's router."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response(tempo.status())

    async def enable(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except RecursionError:  # as Scope's Starlette answers a body nested too deeply
            raise RequestRejected(400, BODY_UNPARSED) from None
        except ValueError:
            raise RequestRejected(422, "JSON decode error") from None
        return web.json_response(tempo.enable(body))

    async def disable(request: web.Request) -> web.Response:
        return web.json_response(tempo.disable())

    async def sources(request: web.Request) -> web.Response:
        return web.json_response(tempo.sources())

    router.add_get("/api/v1/tempo/status", status)
    router.add_post("/api/v1/tempo/enable", enable)
    router.add_post("/api/v1/tempo/disable", disable)
    router.add_get("/api/v1/tempo/sources", sources)
