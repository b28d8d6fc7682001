"""The bridge's event loop: uvloop where installed, asyncio's own on request."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys

import pytest

from metadj_bridge.run import eventloop


async def _which() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_loop_can_be_forced_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METADJ_EVENT_LOOP", "asyncio")
    assert eventloop.loop_name() == "asyncio"
    assert eventloop.run(_which()).startswith("asyncio")


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (Windows has no build)")
def test_uvloop_runs_the_bridge_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METADJ_EVENT_LOOP", raising=False)
    assert eventloop.loop_name() == "uvloop"
    assert eventloop.run(_which()).startswith("uvloop")


_LOW_LIMIT = """
import asyncio, resource, sys
from metadj_bridge.run import eventloop
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # macOS's default

async def limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

print(eventloop.run(limit()), hard)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no soft limit on open files to raise")
def test_a_low_limit_on_open_files_is_raised_before_the_show_starts() -> None:
    import resource

    out = subprocess.run([sys.executable, "-c", _LOW_LIMIT], capture_output=True, text=True, timeout=60, check=True)
    now, hard = (int(x) for x in out.stdout.split())
    wanted = eventloop.FILE_LIMIT if hard == resource.RLIM_INFINITY else min(eventloop.FILE_LIMIT, hard)
    assert wanted > 256  # else this machine cannot show it
    assert now == wanted


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no soft limit on open files")
def test_a_limit_already_higher_is_never_lowered() -> None:
    import resource as res

    soft, hard = res.getrlimit(res.RLIMIT_NOFILE)
    assert eventloop.raise_file_limit(16) == soft
    assert res.getrlimit(res.RLIMIT_NOFILE) == (soft, hard)
