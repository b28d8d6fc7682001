"""Fixtures: the project's Scope emulator as the far end, in-process or as its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator
from tests.helpers import free_port, wait_for  # noqa: F401 - re-exported for tests
from tests.hostile_http import HostileServer

#: Test processes at most (pytest-xdist's ``-n auto``, set in pyproject.toml): every test file starts its own
#: emulators, JACK servers and ports, so files run side by side, one process per core up to this many.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One process against a real Scope (``METADJ_TEST_SCOPE``): it is one server, and the tests load its pipelines
    one after another. Else one per core, at most MAX_WORKERS."""
    if os.environ.get("METADJ_TEST_SCOPE"):
        return 0
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _show_logs_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every `run` in the tests (in-process or a subprocess) writes its show log here, not into the home folder."""
    previous = os.environ.get("METADJ_SHOW_LOG")
    os.environ["METADJ_SHOW_LOG"] = str(tmp_path_factory.mktemp("show-logs") / "show.jsonl")
    yield
    if previous is None:
        os.environ.pop("METADJ_SHOW_LOG", None)
    else:
        os.environ["METADJ_SHOW_LOG"] = previous


#: Small frames keep the encoder and decoder cheap on a 2-core machine.
SMALL = {"width": 256, "height": 144}


@pytest.fixture
async def make_emulator() -> AsyncIterator[Callable[..., Awaitable[ScopeEmulator]]]:
    """Start in-process emulators with the given EmulatorConfig fields; all are closed afterwards."""
    started: list[ScopeEmulator] = []

    async def make(**overrides: Any) -> ScopeEmulator:
        fields: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "chunk_frames": 4, "fps": 20.0, "load_seconds": 0.1}
        fields.update(overrides)
        emu = ScopeEmulator(EmulatorConfig(**fields))
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        await emu.aclose()


@pytest.fixture
async def emulator(make_emulator: Callable[..., Awaitable[ScopeEmulator]]) -> ScopeEmulator:
    return await make_emulator()


class EmulatorProcess:
    """``python -m metadj_bridge.emulator`` in its own process, so a test can kill it like a crash."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = list(args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    async def start(self) -> None:
        cmd = [sys.executable, "-m", "metadj_bridge.emulator", "--host", "127.0.0.1", "--port", str(self.port),
               *self.args]
        self._close_stderr()
        self._stderr = tempfile.TemporaryFile()
        self.proc = await asyncio.to_thread(subprocess.Popen, cmd, stdout=subprocess.DEVNULL, stderr=self._stderr)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self._stderr.seek(0)
                    err = self._stderr.read().decode(errors="replace")
                    raise RuntimeError(f"emulator exited with {self.proc.returncode}: {err}")
                try:
                    if (await http.get(self.url + "/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("emulator process did not become healthy within 30 s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to the client, exactly like a crashed server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if os.name != "nt" else signal.CTRL_BREAK_EVENT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_stderr()
        return self.proc.returncode

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@pytest.fixture
def emulator_process() -> Iterator[Callable[..., EmulatorProcess]]:
    made: list[EmulatorProcess] = []

    def make(*args: str) -> EmulatorProcess:
        proc = EmulatorProcess(*args)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


async def emulator_get(url: str, path: str) -> Any:
    async with httpx.AsyncClient() as http:
        response = await http.get(url + path)
        response.raise_for_status()
        return response.json()


async def emulator_fault(url: str, **faults: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(url + "/_emulator/faults", json=faults)
        response.raise_for_status()


@pytest.fixture
def jack_server() -> Iterator[Any]:
    """A private JACK server (dummy driver) that PortAudio sees as the input device ``system``.

    JACK_DEFAULT_SERVER names it for the test and PortAudio is re-initialised; afterwards PortAudio lets go of it
    before it stops (tests/jackrig.py explains the order). Close every LiveInputSource inside the test.
    """
    from tests.jackrig import JackServer, portaudio_on

    with JackServer() as server, portaudio_on(server):
        yield server


@pytest.fixture
async def schemas_server() -> AsyncIterator[list[Any]]:
    """A real HTTP server for ``GET /api/v1/pipelines/schemas``: it answers whatever the test puts in ``answer[0]``
    (None: 404; a string: that JSON text as it is, for numbers no encoder writes); ``answer[1]`` is its URL."""
    from aiohttp import web

    answer: list[Any] = [{"pipelines": {}}, ""]

    async def schemas(request: web.Request) -> web.Response:
        if answer[0] is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        if isinstance(answer[0], str):
            return web.json_response(text=answer[0])
        return web.json_response(answer[0])

    app = web.Application()
    app.router.add_get("/api/v1/pipelines/schemas", schemas)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    answer[1] = f"http://127.0.0.1:{port}"
    yield answer
    await runner.cleanup()


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[..., Awaitable[HostileServer]]]:
    """Start real misbehaving HTTP servers (tests/hostile_http.py) in a mode; all are closed afterwards."""
    made: list[HostileServer] = []

    async def make(mode: str, upstream: str | None = None, **options: Any) -> HostileServer:
        server = HostileServer(mode, upstream, **options)
        await server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        await server.aclose()
