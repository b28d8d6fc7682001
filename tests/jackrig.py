"""A JACK server with the dummy driver and a JACK client that plays audio into it: the far end of live-audio tests.

How the routing works (measured with jackd2 1.9 and PortAudio 19.6 on Debian):

* ``jackd -n <name> --no-realtime -d dummy`` has ``system:capture_*`` ports that only ever carry silence and
  ``system:playback_*`` ports that go nowhere, so a sound "played to the speakers" never reaches a capture.
* PortAudio's JACK host API lists that server as one device, ``system``. Opening an input stream registers a JACK
  client (``PortAudio``; JACK renames it if the name is taken) with input ports ``in_0``, ``in_1`` ... and
  connects them to ``system:capture_1``, ``system:capture_2`` ... (the ports exist only while a stream is open).
* :class:`JackPlayer` therefore connects its output port straight to those PortAudio input ports
  (:meth:`JackPlayer.connect_to_captures`). JACK sums connections, and the capture ports add silence, so the
  capture holds exactly what was played. The player runs first in the graph, so a sample reaches the PortAudio
  callback in the same JACK cycle in which the player wrote it.

PortAudio and the JACK server must be started and stopped in a fixed order, or the process aborts:
PortAudio only sees a JACK server that runs when it initialises, and PortAudio's ``Pa_Terminate`` asserts that
closing its JACK client succeeds, which fails once that server has gone (``pa_jack.c: Terminate: Assertion
`err == 0' failed``, also at interpreter exit). :func:`portaudio_on` re-initialises PortAudio against a server
and, on the way out, terminates it while the server still runs. A test that stops a server PortAudio uses must
run in a subprocess.

libjack adds one more rule: once a server has gone, the next client any part of the process opens makes libjack
delete every client of the old server, so closing one of those afterwards crashes. :meth:`JackPlayer.close`
leaves a client of a stopped server alone.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pytest

SAMPLERATE = 44100
PERIOD = 256

_names = itertools.count()


def unique_server_name() -> str:
    return f"metadj-test-{os.getpid()}-{next(_names)}"


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when the thread that started it ends, so a test run
    that is killed leaves no jackd behind (start servers from a long-lived thread)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _jack() -> Any:
    import jack  # type: ignore[import-untyped]  # JACK-Client, a test dependency

    return jack


class JackServer:
    """``jackd`` with the dummy driver under a unique name; a context manager that never leaves a process behind."""

    def __init__(self, name: str | None = None, *, samplerate: int = SAMPLERATE, period: int = PERIOD) -> None:
        if shutil.which("jackd") is None:
            pytest.skip("jackd not installed: apt-get install jackd2")
        self.name = name or unique_server_name()
        self.samplerate = samplerate
        self.period = period
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 10.0) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"JACK server {self.name!r} is already running")
        jack = _jack()
        cmd = ["jackd", "-n", self.name, "--no-realtime",
               "-d", "dummy", "-r", str(self.samplerate), "-p", str(self.period)]
        self._close_log()
        self._log = tempfile.TemporaryFile()
        # preexec_fn only calls prctl, which is safe between fork and exec even with threads running.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                message = f"jackd exited with {self.proc.returncode}: {self.log()}"
                self.stop()
                raise RuntimeError(message)
            try:
                probe = jack.Client("metadj-probe", servername=self.name, no_start_server=True)
            except jack.JackOpenError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"JACK server {self.name!r} did not accept clients within {timeout:g} s"
                    ) from None
                time.sleep(0.03)
                continue
            probe.close()
            return self

    def stop(self) -> None:
        """SIGTERM (a clean shutdown that tells every client), SIGKILL if it hangs."""
        self._close_log()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @contextlib.contextmanager
    def stalled(self, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
        """The server stopped (SIGSTOP) for ``seconds``, as a machine that stalls it would: no process cycle runs, so
        nothing drains the clients' MIDI buffers. A process of its own wakes it (SIGCONT), because a JACK call that
        waits for the server may hold the GIL and so stop this one; the block gets that process (done: the server
        runs again). Leaving the block wakes the server in any case."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(signal.SIGSTOP)
        waker = subprocess.Popen(["sh", "-c", f"sleep {seconds:g}; kill -CONT {self.proc.pid}"],
                                 stdin=subprocess.DEVNULL)
        try:
            yield waker
        finally:
            self.proc.send_signal(signal.SIGCONT)
            waker.kill()
            waker.wait()

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read().decode(errors="replace"))

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def reinit_portaudio() -> None:
    """Make PortAudio re-scan host APIs and devices (it only looks once, at initialisation)."""
    import sounddevice as sd  # type: ignore[import-untyped]

    sd._terminate()
    sd._initialize()


@contextlib.contextmanager
def portaudio_on(server: JackServer) -> Iterator[None]:
    """PortAudio sees ``server`` (and only it) inside the block; PortAudio lets go of it before the server stops."""
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    try:
        reinit_portaudio()
        yield
    finally:
        import sounddevice as sd  # type: ignore[import-untyped]

        try:
            if not server.running:
                # PortAudio holds a dead JACK client now; terminating it (even at exit) would abort the process.
                atexit.unregister(sd._exit_handler)
                raise RuntimeError(f"JACK server {server.name!r} stopped while PortAudio used it; stop servers "
                                   "that PortAudio saw in a subprocess (see test_audio_sources.py)")
            sd._terminate()  # closes PortAudio's JACK client while its server can still answer
            server.stop()
            sd._initialize()  # JACK_DEFAULT_SERVER still names the stopped server: no JACK host API
        finally:
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous


@dataclass(frozen=True)
class Cycle:
    """One JACK process cycle of the player: which samples it wrote, at which frame and when."""

    first: int  # index into the played array of the cycle's first sample
    frames: int
    frame_time: int  # JACK frame time of the cycle's first sample (``last_frame_time``)
    monotonic: float  # time.monotonic() at the start of the cycle


class JackPlayer:
    """A JACK client that plays a mono numpy array or WAV file into the server in real time.

    Every cycle that carries audio is recorded in :attr:`cycles`, so a test can tell the JACK frame and the
    monotonic time at which each sample was played (:meth:`played_frame`, :meth:`played_at`).
    """

    def __init__(self, server: JackServer, name: str = "metadj-player") -> None:
        jack = _jack()
        self.server = server
        self.client = jack.Client(name, servername=server.name, no_start_server=True)
        self._server_pid = server.proc.pid if server.proc is not None else None
        self._shut_down = threading.Event()
        self.client.set_shutdown_callback(lambda status, reason: self._shut_down.set())
        self.port = self.client.outports.register("out")
        self.samplerate = int(self.client.samplerate)
        self.cycles: list[Cycle] = []
        self._lock = threading.Lock()
        self._data = np.zeros(0, np.float32)
        self._pos = 0
        self._done = threading.Event()
        self._done.set()
        self._stall = 0.0
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        if self._stall:
            stall, self._stall = self._stall, 0.0
            time.sleep(stall)
        out = self.port.get_array()
        # Non-blocking: if the main thread holds the lock (a new play() is being set up), play silence this cycle.
        if not self._lock.acquire(blocking=False):
            out.fill(0.0)
            return
        try:
            pos, data = self._pos, self._data
            n = max(0, min(frames, len(data) - pos))
            if n:
                start = time.monotonic() - self.client.frames_since_cycle_start / self.samplerate
                self.cycles.append(Cycle(pos, n, self.client.last_frame_time, start))
                out[:n] = data[pos : pos + n]
            out[n:] = 0.0
            self._pos = pos + n
            if self._pos >= len(data):
                self._done.set()
        finally:
            self._lock.release()

    def capture_ports(self) -> list[Any]:
        """Input ports of other clients that are not hardware (with the dummy driver: PortAudio's ``in_N``)."""
        own = self.client.name + ":"
        return [
            port
            for port in self.client.get_ports(is_audio=True, is_input=True)
            if not port.is_physical and not port.name.startswith(own)
        ]

    def connect_to_captures(self, timeout: float = 5.0) -> list[str]:
        """Connect the output to every capturing port (waits until a capture stream has registered its ports)."""
        deadline = time.monotonic() + timeout
        while not (ports := self.capture_ports()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no capture ports appeared on JACK server {self.server.name!r} within {timeout:g} s"
                )
            time.sleep(0.02)
        for port in ports:
            if port.name not in {p.name for p in self.client.get_all_connections(self.port)}:
                self.client.connect(self.port, port)
        return [port.name for port in ports]

    def play(self, audio: np.ndarray | str | Path) -> None:
        """Start playing from the next cycle; a WAV path is read with the project's reader."""
        if isinstance(audio, (str, Path)):
            from metadj_bridge.inputs.audio_file import read_audio

            data, rate = read_audio(audio)
            if rate != self.samplerate:
                raise ValueError(f"{audio}: {rate} Hz, but the JACK server runs at {self.samplerate} Hz")
        else:
            data = np.asarray(audio, np.float32).reshape(-1)
        with self._lock:
            self._data = np.ascontiguousarray(data, np.float32)
            self._pos = 0
            self.cycles = []
            self._done.clear()

    def stall(self, seconds: float) -> None:
        """Block the JACK graph once for ``seconds``: clients after this one, PortAudio's included, get no
        callback meanwhile. The closest the dummy driver comes to a device that stops delivering audio."""
        self._stall = seconds

    def wait(self, timeout: float) -> None:
        if not self._done.wait(timeout):
            raise AssertionError(f"playback did not finish within {timeout:g} s")

    def played_frame(self, index: int) -> int:
        """JACK frame time at which sample ``index`` of the played array went out."""
        cycle = self._cycle_of(index)
        return cycle.frame_time + index - cycle.first

    def played_at(self, index: int) -> float:
        """time.monotonic() of the start of the JACK cycle that carried sample ``index`` (the moment a capture
        client downstream can first have it)."""
        return self._cycle_of(index).monotonic

    def played_time(self, index: int) -> float:
        """The sample's own moment on a steady clock: its cycle's start plus its offset in that cycle."""
        cycle = self._cycle_of(index)
        return cycle.monotonic + (index - cycle.first) / self.samplerate

    def _cycle_of(self, index: int) -> Cycle:
        for cycle in self.cycles:
            if cycle.first <= index < cycle.first + cycle.frames:
                return cycle
        raise IndexError(f"sample {index} has not been played")

    @property
    def server_gone(self) -> bool:
        """The server this client was made on has stopped (even if one with the same name runs again)."""
        proc = self.server.proc
        return self._shut_down.is_set() or proc is None or proc.pid != self._server_pid or proc.poll() is not None

    def close(self) -> None:
        if self.server_gone:
            # Never touch a client whose server went away: as soon as any other client of this process connects
            # to a new server, libjack deletes the old client objects, and closing one again crashes.
            self.client._ptr = _jack()._ffi.NULL  # also keeps jack.Client.__del__ away from it
            return
        with contextlib.suppress(Exception):
            self.client.deactivate()
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def midi_backend(api: str = "UNIX_JACK") -> str:
    """mido's backend name for MIDI tests on ``api``: python-rtmidi's where it is installed (Python 3.11/3.12), else
    the bridge's own supriya-midi backend (3.13 and newer, where python-rtmidi has no wheel)."""
    from importlib.util import find_spec

    module = "mido.backends.rtmidi" if find_spec("rtmidi") is not None else "metadj_bridge.inputs.mido_supriya"
    return f"{module}/{api}"


@contextlib.contextmanager
def jack_for_midi() -> Iterator[JackServer]:
    """A private JACK server that MIDI opened in this process uses (both RtMidi bindings find it through
    ``JACK_DEFAULT_SERVER``, set while it runs and put back after). For a module-scoped fixture."""
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    with JackServer(period=256) as server:
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        try:
            yield server
        finally:
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous
