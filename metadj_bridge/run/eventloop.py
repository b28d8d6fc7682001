"""Which event loop runs the bridge: uvloop where it is installed (Linux and macOS), else asyncio's own.

Every control message and every frame wakes the event loop; uvloop's wake-ups cost less (measured by
``scripts/bench.py control``: about a point of one core less at 1,000 MIDI or OSC messages a second on a 2-core
machine). ``METADJ_EVENT_LOOP=asyncio`` forces asyncio's loop (uvloop has no Windows build).

Before the loop starts, the soft limit on open files is raised to FILE_LIMIT where the system has one and its hard
limit allows: macOS gives a process 256, and the Scope session, its WebRTC sockets, MIDI, the show log and every
page or OSC program connected to the bridge each hold some. On Windows there is no such limit to raise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: The soft limit on open files the bridge asks for (Linux desktops give 1024, macOS 256).
FILE_LIMIT = 4096


def loop_name() -> str:
    """"uvloop" or "asyncio": what :func:`run` will use."""
    if os.environ.get("METADJ_EVENT_LOOP", "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def raise_file_limit(wanted: int = FILE_LIMIT) -> int | None:
    """Raise the soft limit on open files to ``wanted`` (at most the hard limit; never lower it). The soft limit
    then, or None where the system has none (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a sandbox that refuses: the bridge runs with what it has
            return soft
        return target
    return soft


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the chosen loop, with the file limit raised first."""
    raise_file_limit()
    if loop_name() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)
