#!/usr/bin/env python3
"""The whole daemon's CPU and memory while it drives several screens (issue 18), each on an emulator of its own.

    python scripts/bench_screens.py [--screens 3] [--size 1024x576] [--fps 20] [--seconds 30]

Starts one ``python -m metadj_bridge.emulator`` process per screen (their CPU is not the daemon's and is not
counted), then ``metadj-bridge run`` with a profile of that many screens: the demo track, each screen at the size
given with a virtual camera on pyvirtualcam's capture backend (a real ``Camera``; the frames go nowhere), and the
web page's preview fed as always. Once every screen streams, the daemon's CPU time and memory are read from
``/proc`` (Linux) over ``--seconds``; the frames each screen received and showed are read from ``/status``.
Prints the CPU as a share of one core, the resident memory (now and at its peak) and each screen's rates.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_health(url: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the emulator at {url} did not answer within {limit:.0f} s")


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return dict(json.load(answer))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, resident at its peak) in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def profile_text(urls: list[str], width: int, height: int) -> str:
    def video(i: int) -> str:
        return f"{{outputs: [vcam], backend: capture, device: screen{i}}}"

    lines = [
        f'scope: {{url: "{urls[0]}", resolution: [{width}, {height}]}}',
        f"video: {video(0)}",
        "themes:",
        "  neon: {prompts: [neon city at night, rain on glass]}",
        "  storm: {prompts: [a storm over the harbour]}",
        "screens:",
    ]
    for i, url in enumerate(urls[1:], start=1):
        lines.append(f'  screen{i}: {{scope: {{url: "{url}"}}, video: {video(i)}}}')
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screens", type=int, default=3)
    parser.add_argument("--size", default="1024x576")
    parser.add_argument("--fps", type=float, default=None, help="the emulators' frame rate (default: the pipeline's)")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not Path("/proc/self/stat").exists():
        raise SystemExit("this benchmark reads the daemon's CPU and memory from /proc (Linux)")
    width, height = (int(v) for v in args.size.lower().split("x"))
    emulators: list[subprocess.Popen[bytes]] = []
    bridge: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            urls = []
            for _ in range(args.screens):
                port = free_port()
                extra = ["--fps", str(args.fps)] if args.fps else []
                emulators.append(subprocess.Popen(
                    [sys.executable, "-m", "metadj_bridge.emulator", "--port", str(port), *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                urls.append(f"http://127.0.0.1:{port}")
            for url in urls:
                wait_health(url)
            profile = Path(tmp) / "screens.yaml"
            profile.write_text(profile_text(urls, width, height))
            http = free_port()
            bridge = subprocess.Popen(
                [sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--http-port", str(http),
                 "--show-log", "none", "--no-watch"],
                stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "bridge.log", "wb"), cwd=tmp)  # noqa: SIM115
            deadline = time.monotonic() + 90
            while True:
                try:
                    snap = status(http)
                    screens = snap.get("screens") or []
                    if len(screens) == args.screens and all(s["state"] == "streaming" and s["frames_in"] > 0
                                                            for s in screens):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or bridge.poll() is not None:
                    raise SystemExit("the screens did not all stream within 90 s:\n"
                                     + (Path(tmp) / "bridge.log").read_text()[-3000:])
                time.sleep(0.5)
            time.sleep(3.0)  # past the first chunks and the tempo lock
            before, t0 = cpu_seconds(bridge.pid), time.monotonic()
            first = {s["name"]: s for s in status(http)["screens"]}
            time.sleep(args.seconds)
            after, t1 = cpu_seconds(bridge.pid), time.monotonic()
            last = {s["name"]: s for s in status(http)["screens"]}
            rss, peak = memory_mb(bridge.pid)
        finally:
            if bridge is not None and bridge.poll() is None:
                bridge.terminate()
                bridge.wait(timeout=30)
            for emulator in emulators:
                emulator.terminate()
                emulator.wait(timeout=30)
    span = t1 - t0
    print(f"screens: {args.screens} at {width}x{height}, {span:.0f} s measured, emulators at "
          f"{args.fps or 'the pipeline'} fps, outputs: vcam (capture backend) + the web preview each")
    print(f"  daemon CPU {100 * (after - before) / span:.1f}% of one core; memory {rss:.0f} MB now, {peak:.0f} MB peak")
    for name, end in last.items():
        start = first[name]
        frames_in = (end["frames_in"] - start["frames_in"]) / span
        shown = (end["frames_shown"] - start["frames_shown"]) / span
        print(f"  {name:8s} {end['state']:10s} in {frames_in:5.1f} fps   out {shown:5.1f} fps   "
              f"repeats {end['repeats'] - start['repeats']}   slates {end['slates'] - start['slates']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
