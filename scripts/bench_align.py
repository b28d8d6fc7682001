"""``bench.py align``: bar-quantised changes at the virtual camera, ``lookahead_ms: auto`` beside a fixed 0.

Each setting runs against its own emulator process with 0.6 s chunks (12 frames at 20 fps) and an added round
trip (``--delay-ms``, default 150: everything the emulator receives arrives that late, SACKs included). The
bridge side is the real one: a ``ShowRunner`` stepping a profile whose ``tempo.beat`` trigger is quantised to
the bar and steps ``base_seed``, a ``ParameterSender`` and ``ScopeSession``, the output clock with the virtual
camera sink on the ``capture`` pyvirtualcam backend, and the ``ShowLatency`` that ``run`` wires for the auto
lookahead. The tempo is a steady 123 BPM grid (bars drift against the chunks, so every phase comes up) and the
bench fires ``tempo.beat`` on each beat as the tempo hub would.

For each change (a new ``base_seed``): the bar it was aimed at (the bar nearest its send time plus the lookahead
in force), the chunk that applied it (the emulator's own log) and the first camera frame stamped with that chunk
or a later one. Figures per setting: offset of that frame from its bar (median, p90, max of the absolute value,
share within one chunk period and within half), and the bridge's delay estimate (no stamps used) beside the true
delay from send to camera. Targets (issue 14 item 6): auto within one chunk for every change, median within half.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_scope
import httpx
import numpy as np

from metadj_bridge.emulator.stamp import read_stamp
from metadj_bridge.profile import load_profile
from metadj_bridge.run.parts import open_latency
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from metadj_bridge.signals import TempoState, Trigger
from metadj_bridge.video.capture import register_capture_backend
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.vcam import VirtualCameraSink

CHUNK_FRAMES, FPS = 12, 20.0
CHUNK_S = CHUNK_FRAMES / FPS
BPM, BEATS_PER_BAR = 123.0, 4
SIZE = (320, 192)
CAMERA_FPS = 30.0

PROFILE = """\
themes:
  night: {{prompts: [neon rain over a dancefloor]}}
mappings:
  bar_seed:
    trigger: tempo.beat
    transforms: [{{quantize: {quantize}}}]
    target: action.seed_step
"""


@dataclass
class Outcome:
    setting: str
    offsets: list[float] = field(default_factory=list)
    true_delays: list[float] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)
    unmatched: int = 0
    #: The true delay in parts, from the emulator's log (one clock for every process on Linux): send to arrival,
    #: arrival to the chunk taking it, and from there to the camera.
    true_parts: list[tuple[float, float, float]] = field(default_factory=list)
    parts: dict[str, Any] = field(default_factory=dict)


def emulator(delay_ms: float) -> Any:
    """The emulator in its own process with 0.6 s chunks and ``--delay-ms``."""
    return bench_scope.emulator(CHUNK_FRAMES, FPS, "--delay-ms", str(delay_ms))


class Grid:
    """A steady tempo from ``origin``: bars at ``origin + k * bar_s``."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.beat_s = 60.0 / BPM
        self.bar_s = BEATS_PER_BAR * self.beat_s

    def __call__(self, now: float) -> TempoState:
        beat = (now - self.origin) / self.beat_s
        return TempoState(BPM, beat, beat % 1.0, beat % BEATS_PER_BAR, BEATS_PER_BAR, "bench", True)

    def nearest_bar(self, t: float) -> float:
        return self.origin + round((t - self.origin) / self.bar_s) * self.bar_s


async def fire_beats(show: ShowRunner, grid: Grid) -> None:
    """``tempo.beat`` on every beat of the grid, as the tempo hub fires it."""
    k = math.ceil((time.monotonic() - grid.origin) / grid.beat_s)
    while True:
        at = grid.origin + k * grid.beat_s
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        show.board.fire(Trigger("tempo.beat", at, {"beat": k}))
        k += 1


def read_camera(backend: Any, seen: dict[int, tuple[float, int]]) -> None:
    """Stamps of the camera frames not read yet: index -> (send time, chunk index)."""
    for record in backend.frames():
        if record.index in seen or record.data is None:
            continue
        y = backend.i420_planes(record.data)[0]
        stamp = read_stamp(np.repeat(y[..., None], 3, axis=2))
        if stamp is not None:
            seen[record.index] = (record.t, stamp[0])


async def run_setting(setting: str, quantize: str, delay_ms: float, seconds: float, folder: Path) -> Outcome:
    slug = "auto" if quantize == "bar" else "fixed0"
    path = folder / f"{slug}.yaml"
    path.write_text(PROFILE.format(quantize=quantize))
    profile = load_profile(path)
    outcome = Outcome(setting)
    device = f"align-{slug}"
    backend_cls = register_capture_backend("align-capture", keep_pixels=240)
    async with emulator(delay_ms) as url:
        sender = ParameterSender(pacer=PacerConfig(chunk_frames=CHUNK_FRAMES))
        sends: list[tuple[float, int, float]] = []  # (send time, base_seed, lookahead in force)
        grids: list[Grid] = []  # the steady grid, once the stream is steady; no tempo before
        show = ShowRunner(profile, sender, tempo=lambda now: grids[0](now) if grids else None)
        initial = show.initial_parameters()
        sender.update(initial)
        session = ScopeSession(SessionConfig(
            url=url, pipeline_ids=["longlive"], load_params={"width": SIZE[0], "height": SIZE[1]},
            prompts=initial.get("prompts") or "", ice_servers=[], no_frame_timeout=10.0), sender)
        clock = OutputClock(SIZE[0], SIZE[1], CAMERA_FPS, [VirtualCameraSink(device=device, backend="align-capture")])
        await clock.start()
        session.add_frame_listener(clock.push)
        latency = None

        def on_sent(message: dict[str, Any], now: float) -> None:
            if "base_seed" in message and (not sends or sends[-1][1] != message["base_seed"]):
                estimate = latency.estimate if latency is not None and slug == "auto" else None
                lookahead = estimate.total if estimate is not None else 0.0
                sends.append((now, int(message["base_seed"]), lookahead))

        sender.on_sent = on_sent
        latency = open_latency(sender, session, clock)
        show.latency = latency
        await session.start()
        seen: dict[int, tuple[float, int]] = {}
        tasks: list[asyncio.Task[None]] = []
        try:
            await session.wait_streaming(timeout=30)
            await asyncio.sleep(3.0)  # steady state: a few chunks seen, a round trip measured
            grid = Grid(time.monotonic() + 0.3)
            grids.append(grid)
            tasks = [asyncio.create_task(show.run()), asyncio.create_task(fire_beats(show, grid))]
            backend = backend_cls.devices[device]
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.sleep(0.5)
                read_camera(backend, seen)
            for task in tasks:
                task.cancel()
            await asyncio.sleep(2.5)  # the last change reaches the camera
            read_camera(backend, seen)
            async with httpx.AsyncClient() as http:
                log = (await http.get(url + "/_emulator/log")).json()
        finally:
            for task in tasks:
                task.cancel()
            await session.aclose()
            await clock.aclose()
        estimate = latency.estimate
        outcome.parts = estimate.as_dict() if estimate is not None else {}
    _match(outcome, sends, log, seen, grid)
    return outcome


def _match(outcome: Outcome, sends: list[tuple[float, int, float]], log: dict[str, Any],
           seen: dict[int, tuple[float, int]], grid: Grid) -> None:
    """Each sent seed -> the chunk that applied it -> the first camera frame of that chunk or a later one."""
    applied: dict[int, tuple[int, float]] = {}
    received: dict[int, float] = {}
    for entry in log["applied"]:
        seed = entry["message"].get("base_seed")
        if seed is not None and seed not in applied:
            applied[int(seed)] = (int(entry["chunk"]), float(entry["t"]))
    for entry in log["received"]:
        seed = entry["message"].get("base_seed")
        if seed is not None and seed not in received:
            received[int(seed)] = float(entry["t"])
    frames = sorted(seen.values())
    for sent_at, seed, lookahead in sends:
        chunk, taken = applied.get(seed, (None, math.nan))
        shown = next((t for t, c in frames if chunk is not None and c >= chunk and t >= sent_at), None)
        if shown is None:
            outcome.unmatched += 1
            continue
        arrived = received.get(seed, math.nan)
        outcome.true_parts.append((arrived - sent_at, taken - arrived, shown - taken))
        outcome.offsets.append(shown - grid.nearest_bar(sent_at + lookahead))
        outcome.true_delays.append(shown - sent_at)
        outcome.estimates.append(lookahead)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_outcomes(outcomes: list[Outcome], delay_ms: float) -> None:
    print(f"align: {CHUNK_S:.2f} s chunks ({CHUNK_FRAMES} frames at {FPS:g} fps), +{delay_ms:g} ms round trip, "
          f"{BPM:g} BPM, bar-quantised seed steps to the virtual camera ({CAMERA_FPS:g} fps, capture backend)")
    print(f"  {'setting':<22}{'changes':>8}{'median |off|':>14}{'p90 |off|':>11}{'max |off|':>11}"
          f"{'median off':>12}{'<=1 chunk':>11}{'<=1/2':>8}")
    for o in outcomes:
        if not o.offsets:
            print(f"  {o.setting:<22}  no change reached the camera ({o.unmatched} unmatched)")
            continue
        absolute = [abs(x) for x in o.offsets]
        within = sum(a <= CHUNK_S for a in absolute) / len(absolute)
        half = sum(a <= CHUNK_S / 2 for a in absolute) / len(absolute)
        print(f"  {o.setting:<22}{len(o.offsets):>8}{statistics.median(absolute):>13.3f}s{_pct(absolute, 0.9):>10.3f}s"
              f"{max(absolute):>10.3f}s{statistics.median(o.offsets):>+11.3f}s{within:>10.0%}{half:>8.0%}"
              + (f"  ({o.unmatched} unmatched)" if o.unmatched else ""))
    for o in outcomes:
        if o.true_delays:
            print(f"  {o.setting}: true delay send -> camera median {statistics.median(o.true_delays):.3f} s "
                  f"(p10 {_pct(o.true_delays, 0.1):.3f}, p90 {_pct(o.true_delays, 0.9):.3f}); the bridge's estimate "
                  f"{o.parts.get('total', float('nan')):.3f} s = " + ", ".join(
                      f"{k} {v:.3f}" for k, v in o.parts.items() if k not in ("total", "measured")))
        if o.true_parts:
            way, wait, rest = (statistics.median(p[i] for p in o.true_parts) for i in range(3))
            print(f"    true parts (emulator log), medians: send -> server {way:.3f}, server queue wait {wait:.3f}, "
                  f"chunk taken -> camera {rest:.3f}")
    print("  target: auto, every change within one chunk period of its bar, median within half a chunk")


async def bench_align(args: argparse.Namespace) -> None:
    outcomes = []
    with tempfile.TemporaryDirectory() as folder:
        for setting, quantize in (("auto", "bar"), ("fixed lookahead_ms: 0", "{to: bar, lookahead_ms: 0}")):
            outcomes.append(await run_setting(setting, quantize, args.delay_ms, args.seconds, Path(folder)))
    print_outcomes(outcomes, args.delay_ms)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=50.0, help="seconds of bars per setting (default 50)")
    parser.add_argument("--delay-ms", type=float, default=150.0, help="added round trip in ms (default 150)")
