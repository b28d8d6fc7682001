"""Which event loop runs the bridge: uvloop where it is installed (Linux and macOS), else asyncio's own.

Every control message and every frame wakes the event loop; uvloop's wake-ups cost less (measured by
``scripts/bench.py control``: about a point of one core less at 1,000 MIDI or OSC messages a second on a 2-core
machine). ``METADJ_EVENT_LOOP=asyncio`` forces asyncio's loop (uvloop has no Windows build).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    """"uvloop" or "asyncio": what :func:`run` will use."""
    if os.environ.get("METADJ_EVENT_LOOP", "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    if loop_name() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)
