"""The far end of the conformance suite: a real Scope when ``METADJ_TEST_SCOPE=URL`` is set, else the emulator.

Without the variable the project's emulator runs as its own process (``python -m metadj_bridge.emulator``) on a
free port, in its default guise: a Scope 0.2.4 server with the GPU pipelines. With it, every test talks to that
server, which must be a Scope 0.2.4 that nobody else is using: Scope is single-session, so each test ends its
WebRTC session before the next starts, and tests that load pipelines replace whatever was loaded.

Tests pick their pipelines by what the server offers (``GET /api/v1/pipelines/schemas``): the weight-free ones
(passthrough, controller-viz) exist on every server, so most tests run against both far ends; a test that needs
a GPU pipeline skips, saying so, on a server that does not offer it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import free_port

#: The environment variable naming the Scope server to test instead of the emulator.
SCOPE_ENV = "METADJ_TEST_SCOPE"
#: Pipelines that only a server with a CUDA GPU registers (scope-api.md §10).
GPU_PIPELINES = ("longlive", "krea-realtime-video", "reward-forcing", "memflow", "streamdiffusionv2")


@pytest.fixture(scope="package")
def scope_url() -> Iterator[str]:
    """The base URL of the server under test."""
    given = os.environ.get(SCOPE_ENV, "").strip()
    if given:
        yield given.rstrip("/")
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "metadj_bridge.emulator", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            _wait_healthy(url, proc, errors)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], errors: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            errors.seek(0)
            raise RuntimeError(f"the emulator exited with {proc.returncode}: {errors.read().decode(errors='replace')}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the emulator did not answer /health within 30 s")


@pytest.fixture(scope="package")
def offered(scope_url: str) -> dict[str, Any]:
    """The server's pipeline schemas by id (``GET /api/v1/pipelines/schemas``)."""
    response = httpx.get(scope_url + "/api/v1/pipelines/schemas", timeout=15)
    response.raise_for_status()
    pipelines = response.json()["pipelines"]
    assert isinstance(pipelines, dict)
    return pipelines


def require(offered: dict[str, Any], pipeline_id: str) -> dict[str, Any]:
    """The schema entry of ``pipeline_id``; skips the test, saying why, when the server does not offer it."""
    entry = offered.get(pipeline_id)
    if entry is None:
        names = ", ".join(sorted(offered)) or "nothing"
        if pipeline_id in GPU_PIPELINES:
            pytest.skip(f"needs a GPU pipeline: the server offers only {names}")
        pytest.skip(f"needs the {pipeline_id} pipeline: the server offers only {names}")
    assert isinstance(entry, dict)
    return entry


def first_gpu_pipeline(offered: dict[str, Any], mode: str) -> str:
    """A GPU pipeline the server offers that supports ``mode``; skips the test when there is none."""
    for pipeline_id in GPU_PIPELINES:
        entry = offered.get(pipeline_id)
        if entry is not None and mode in entry.get("supported_modes", ()):
            return pipeline_id
    names = ", ".join(sorted(offered)) or "nothing"
    pytest.skip(f"needs a GPU pipeline: the server offers only {names}")
