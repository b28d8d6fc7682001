"""Soak test: the standard show for an hour, with the bridge's RSS and open file descriptors every 10 s.

    python scripts/soak.py                   # one hour
    python scripts/soak.py --seconds 600     # ten minutes

The standard show: the bridge (``metadj-bridge run`` in its own process, the process measured) with the demo
track analysed in real time, a virtual MIDI controller moving a knob (30 messages/s, through a private JACK server
when ``jackd`` is installed), OSC at 30 messages/s, the parameter sender, and Scope's 1024x576 video shown at
30 fps on a stand-in camera (pyvirtualcam with the ``capture`` backend). Scope is the project's emulator in a
process of its own, at longlive's pace (12 frames per chunk at 20 fps). Not part of CI (it runs for an hour).
``scripts/bench.py daemon`` uses the same show for five minutes. Linux (reads /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sample:
    t: float
    cpu_s: float
    #: Resident memory; ``shm_mb`` of it is shared memory mapped from elsewhere (JACK's segment, when MIDI runs
    #: through JACK), ``own_mb`` the rest: what the bridge itself holds.
    rss_mb: float
    shm_mb: float
    fds: int

    @property
    def own_mb(self) -> float:
        return self.rss_mb - self.shm_mb


def sample(pid: int) -> Sample:
    """CPU seconds (user + system), resident memory and open file descriptors of a process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss_kb = shm_kb = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("RssShmem:"):
                shm_kb = int(line.split()[1])
    return Sample(time.monotonic(), cpu, rss_kb / 1024, shm_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")))


def slope_per_hour(samples: list[Sample], attr: str) -> float:
    """Least-squares growth of ``attr`` per hour (the first minute, while caches fill, left out)."""
    if len(samples) < 3:
        return 0.0
    t0 = samples[0].t
    pts = [(s.t - t0, float(getattr(s, attr))) for s in samples if s.t - t0 >= 60.0] or [
        (s.t - t0, float(getattr(s, attr))) for s in samples
    ]
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    var = sum((x - mx) ** 2 for x, _ in pts)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in pts) / var * 3600.0


def _profile(folder: Path, url: str, controller: str | None, osc_port: int) -> Path:
    midi = f'  midi: {{devices: ["{controller}"]}}\n' if controller else ""
    path = folder / "standard-show.yaml"
    path.write_text(
        f"""name: standard show
extends: {ROOT / "mappings" / "default.yaml"}
scope: {{url: {url}}}
inputs:
  audio: demo
{midi}  osc: {{port: {osc_port}}}
video: {{outputs: [vcam], backend: capture, size: [1024, 576], fps: 30}}
mappings:
  knob: {{source: midi.cc.1.19, target: prompt.mix}}
  fader: {{source: osc./composition/layers/1/video/opacity, target: kv_cache_attention_bias, combine: last}}
""",
        encoding="utf-8",
    )
    return path


def _wait_health(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the emulator at {url} did not answer within {timeout:g} s")


def _osc_sender(port: int, rate: float, stop: threading.Event) -> None:
    from pythonosc.osc_message_builder import OscMessageBuilder

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        i = 0
        start = time.monotonic()
        while not stop.is_set():
            builder = OscMessageBuilder("/composition/layers/1/video/opacity")
            builder.add_arg((i % 200) / 200)
            sock.sendto(builder.build().dgram, ("127.0.0.1", port))
            i += 1
            stop.wait(max(0.0, start + i / rate - time.monotonic()))


def _midi_sender(port: object, rate: float, stop: threading.Event) -> None:
    import mido

    i = 0
    start = time.monotonic()
    while not stop.is_set():
        port.send(mido.Message("control_change", channel=0, control=19, value=abs(i % 254 - 127)))  # type: ignore[attr-defined]
        i += 1
        stop.wait(max(0.0, start + i / rate - time.monotonic()))


@contextlib.contextmanager
def standard_show(rate: float = 30.0, quiet: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    """Start the far ends and the bridge; yields the bridge's process. Everything stops on exit."""
    sys.path.insert(0, str(ROOT))
    stack = contextlib.ExitStack()
    with stack, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = dict(os.environ, METADJ_SHOW_LOG="none")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        emulator = subprocess.Popen(
            [sys.executable, "-m", "metadj_bridge.emulator", "--host", "127.0.0.1", "--port", str(port),
             "--chunk-frames", "12", "--fps", "20"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        stack.callback(lambda: (emulator.terminate(), emulator.wait(10)))
        _wait_health(url)
        controller_name = None
        stop = threading.Event()
        import shutil

        if shutil.which("jackd"):
            import mido

            from tests.jackrig import JackServer

            jack = stack.enter_context(JackServer())
            env.update(JACK_DEFAULT_SERVER=jack.name, MIDO_BACKEND="mido.backends.rtmidi/UNIX_JACK")
            os.environ["JACK_DEFAULT_SERVER"] = jack.name
            backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
            controller = backend.open_output("knob", virtual=True, client_name="soakctrl")
            stack.callback(controller.close)
            controller_name = "soakctrl:knob"
        else:
            print("jackd is not installed: the show runs without MIDI (apt-get install jackd2)", file=sys.stderr)
        osc_port = free_port()
        profile = _profile(folder, url, controller_name, osc_port)
        bridge = subprocess.Popen(
            [sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--no-watch"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None,
        )

        def stop_bridge() -> None:
            bridge.terminate()
            try:
                bridge.wait(20)
            except subprocess.TimeoutExpired:
                bridge.kill()

        stack.callback(stop_bridge)
        time.sleep(8.0)  # started, streaming, tempo locked
        if bridge.poll() is not None:
            raise RuntimeError(f"the bridge exited at start with status {bridge.returncode}")
        senders = [threading.Thread(target=_osc_sender, args=(osc_port, rate, stop), daemon=True)]
        if controller_name:
            senders.append(threading.Thread(target=_midi_sender, args=(controller, rate, stop), daemon=True))
        for thread in senders:
            thread.start()

        def stop_senders() -> None:  # first of all: nothing may send on a port whose JACK server is going away
            stop.set()
            for thread in senders:
                thread.join(5)

        stack.callback(stop_senders)
        yield bridge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    args = parser.parse_args(argv)
    with standard_show() as bridge:
        samples = [sample(bridge.pid)]
        print(f"{'t (s)':>7} {'CPU %':>6} {'RSS MB':>8} {'own MB':>8} {'fds':>5}")
        end = samples[0].t + args.seconds
        while time.monotonic() < end and bridge.poll() is None:
            time.sleep(args.every)
            s = sample(bridge.pid)
            cpu = 100 * (s.cpu_s - samples[-1].cpu_s) / (s.t - samples[-1].t)
            samples.append(s)
            print(f"{s.t - samples[0].t:7.0f} {cpu:6.1f} {s.rss_mb:8.1f} {s.own_mb:8.1f} {s.fds:5d}", flush=True)
        if bridge.poll() is not None:
            print(f"the bridge exited with status {bridge.returncode}")
            return 1
    span = samples[-1].t - samples[0].t
    print(f"\nover {span / 60:.1f} min: RSS {samples[0].rss_mb:.1f} -> {samples[-1].rss_mb:.1f} MB "
          f"(own, without JACK's shared memory: {samples[0].own_mb:.1f} -> {samples[-1].own_mb:.1f} MB), growth "
          f"{slope_per_hour(samples, 'rss_mb'):+.1f} MB/h (target <= 10); fds {samples[0].fds} -> {samples[-1].fds}, "
          f"growth {slope_per_hour(samples, 'fds'):+.1f}/h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
