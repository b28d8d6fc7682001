"""``bench.py scope``: flow control against the emulator, the seed's sender beside ParameterSender, in one run.

Every scenario runs each sender against its own emulator process (``python -m metadj_bridge.emulator
--chunk-frames N --fps F``) for ``--seconds`` (default 240), after a random wait of up to one chunk (a random
start phase):

- sweep: a knob moved at 60 Hz; then one final value.
- default show: ``run`` itself (the bundled default profile driven by the demo track).
- sweep + reset: the sweep with ``reset_cache`` on every beat at 124 BPM.
- believes 4 / makes 12 and believes 12 / makes 4: the bridge's table is wrong (the offer does not say).
- 56 fps: a fast pipeline (4 frames per chunk at 56 fps).
- isolated moves: one knob move every 3 s; the plain send-on-change sender is the yardstick here.

Senders: "seed 30 Hz" is the original every-tick design (what changed goes out on each 30 Hz tick, no repeats,
deaf to drops); "ParameterSender" is the flow-controlled one; "send-on-change" sends every change at once.

Figures, all from the emulator's log (``GET /_emulator/log``: when each message was received, applied or
dropped; ``time.monotonic()``, one clock for every process on Linux): messages sent and dropped; the final
value applied how many chunks after the last change; the lag from a change to the chunk that applies it (or a
later value of the same key), median and p95, in chunks. Targets: 0 dropped, final <= 2 chunks, median lag
<= 1.5 chunks, isolated moves no later than send-on-change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import math
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope.pacing import DISCRETE_KEYS
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig

BEAT = 60 / 124
FINAL = 0.0123457


@dataclass(frozen=True)
class Scenario:
    name: str
    drive: str  # "sweep", "resets", "run", "isolated"
    believed: int  # frames per chunk the bridge believes (its table)
    chunk: int  # frames per chunk the emulator makes
    fps: float
    senders: tuple[str, ...] = ("seed", "flow")


SCENARIOS = (
    Scenario("sweep 60 Hz", "sweep", 12, 12, 20),
    Scenario("default show (run)", "run", 12, 12, 20),
    Scenario("sweep + reset every beat", "resets", 12, 12, 20),
    Scenario("believes 4, makes 12", "sweep", 4, 12, 20),
    Scenario("believes 12, makes 4", "sweep", 12, 4, 20),
    Scenario("56 fps (4 frames)", "sweep", 4, 4, 56),
    Scenario("isolated moves", "isolated", 12, 12, 20, ("onchange", "flow")),
)
#: Every bench sender made, newest last (``run`` makes its own).
MADE: list[ParameterSender] = []
LABELS = {"seed": "seed 30 Hz", "flow": "ParameterSender", "onchange": "send-on-change"}


@dataclass
class Outcome:
    sender: str
    changes: int
    sent: int
    dropped: int
    final_chunks: float | None  # None: never applied; nan: not measured
    lag_p50: float
    lag_p95: float
    wait_p50: float  # median time a message waited in Scope's queue, in chunks
    chunk_frames: str
    #: Changes applied by the first chunk that began after them, of all changes (the isolated-move figure).
    first_chunk: tuple[int, int] = (0, 0)


def sender_class(kind: str) -> type[ParameterSender]:
    """A ParameterSender of ``kind`` that records each change (time, key, value) for the lag figures."""

    class BenchSender(ParameterSender):
        def __init__(self, schema: ParameterSchema | None = None, pacer: PacerConfig | None = None,
                     **kwargs: Any) -> None:
            pacer = pacer or PacerConfig()
            if kind == "seed":
                pacer = dataclasses.replace(pacer, min_interval=1 / 30, max_interval=1 / 30, align=False, settle=False,
                                            queue_model=False)
            elif kind == "onchange":
                pacer = dataclasses.replace(pacer, min_interval=1e-3, max_interval=1e-3, align=False, settle=False,
                                            queue_model=False)
            super().__init__(schema, pacer, **kwargs)
            self.changes_log: list[tuple[float, str, str]] = []
            MADE.append(self)

        def on_dropped(self, count: int) -> None:
            if kind == "flow":
                super().on_dropped(count)

        def apply(self, params: Mapping[str, Any], *, urgent: bool = False,
                  checked_by: ParameterSchema | None = None) -> None:
            now = time.monotonic()
            for key, value in params.items():
                if key not in DISCRETE_KEYS and self.state.desired.get(key) != value:
                    self.changes_log.append((now, key, _key_value(value)))
            super().apply(params, urgent=urgent, checked_by=checked_by)

    return BenchSender


def _key_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def emulator(chunk: int, fps: float, *extra: str) -> Any:
    """The emulator in its own process with that chunk and pace (and ``extra`` arguments); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "metadj_bridge.emulator", "--host", "127.0.0.1", "--port", str(port),
           "--chunk-frames", str(chunk), "--fps", str(fps), "--load-seconds", "0.2", *extra]
    proc = await asyncio.to_thread(subprocess.Popen, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(url + "/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


# ------------------------------------------------------------------------------------------- drives


async def drive_sweep(sender: ParameterSender, seconds: float, rng: random.Random, resets: bool) -> None:
    """A knob at 60 Hz (unique values), ``reset_cache`` on every beat when ``resets``; then FINAL."""
    used: set[float] = set()
    start = time.monotonic()
    end, next_beat = start + seconds, start + rng.uniform(0, BEAT)
    while time.monotonic() < end:
        value = round(rng.random(), 6)
        if value in used or value == FINAL:
            continue
        used.add(value)
        sender.update(noise_scale=value)
        if resets and time.monotonic() >= next_beat:
            sender.action(reset_cache=True)
            next_beat += BEAT
        await asyncio.sleep(1 / 60)
    sender.update(noise_scale=FINAL)


async def drive_isolated(sender: ParameterSender, seconds: float, rng: random.Random) -> None:
    """One knob move every 3 s (plus up to a second, so moves fall at every phase of the chunk)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sender.update(noise_scale=round(rng.random(), 6))
        await asyncio.sleep(3 + rng.random())
    sender.update(noise_scale=FINAL)


async def session_run(url: str, kind: str, scenario: Scenario, seconds: float, rng: random.Random) -> ParameterSender:
    sender = sender_class(kind)(pacer=PacerConfig(chunk_frames=scenario.believed))
    config = SessionConfig(url=url, pipeline_ids=["longlive"], load_params={"width": 320, "height": 192},
                           prompts="benchmark", ice_servers=[], no_frame_timeout=10.0)
    session = ScopeSession(config, sender)
    await session.start()
    try:
        await session.wait_streaming(timeout=30)
        while session.frames_received < 2 * scenario.chunk:  # noqa: ASYNC110 - steady state first; no event for it
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0, scenario.chunk / scenario.fps))  # a random start phase
        if scenario.drive == "isolated":
            await drive_isolated(sender, seconds, rng)
        else:
            await drive_sweep(sender, seconds, rng, resets=scenario.drive == "resets")
        await _await_final(url, max(5.0, 12 * scenario.chunk / scenario.fps))
    finally:
        await session.aclose()
    return sender


async def _await_final(url: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            log = (await http.get("/_emulator/log")).json()
            if any(e["message"].get("noise_scale") == FINAL for e in log["applied"]):
                await asyncio.sleep(0.5)
                return
            await asyncio.sleep(0.1)


async def show_run(url: str, kind: str, seconds: float) -> ParameterSender:
    """``run`` itself with the default profile and the demo track, its sender swapped for ``kind``'s."""
    from metadj_bridge.run import bridge
    from metadj_bridge.run.plan import RunOptions

    cls = sender_class(kind)
    original = bridge.ParameterSender
    bridge.ParameterSender = cls  # type: ignore[misc]
    try:
        options = RunOptions(scope_url=url, duration=seconds, output="none", show_log="none", watch=False,
                             rehearse=False)
        await bridge.run_bridge(options, status_stream=io.StringIO())
    finally:
        bridge.ParameterSender = original  # type: ignore[misc]
    return MADE[-1]


# ------------------------------------------------------------------------------------------- figures


def lags(changes: list[tuple[float, str, str]], log: Mapping[str, list[dict[str, Any]]]) -> list[float]:
    """Seconds from each change to the first applied message carrying that value or a later one of its key.

    An applied message carries, for each key in it, the newest change to that value made before the message
    reached the emulator (messages leave Scope's queue in the order they arrived, dropped ones never enter it).
    """
    by_key: dict[str, list[tuple[float, str]]] = {}
    for t, key, value in changes:
        by_key.setdefault(key, []).append((t, value))
    out: list[float] = []
    for key, key_changes in by_key.items():
        stamps: list[tuple[float, float]] = []  # (applied at, newest change carried so far)
        newest = -1.0
        for arrived, applied_at, message in _applied_with_arrival(log):
            if key not in message:
                continue
            value = _key_value(message[key])
            carried = [t for t, v in key_changes if v == value and t <= arrived]
            newest = max(newest, max(carried) if carried else -1.0)
            stamps.append((applied_at, newest))
        j = 0
        for t, _ in key_changes:
            while j < len(stamps) and stamps[j][1] < t:
                j += 1
            if j < len(stamps):
                out.append(stamps[j][0] - t)
    return out


def _applied_with_arrival(log: Mapping[str, list[dict[str, Any]]]) -> list[tuple[float, float, dict[str, Any]]]:
    """(arrived, applied, message) for every applied message, in order."""
    dropped = {(e["session_id"], e["index"]) for e in log["dropped"]}
    kept = [e for e in log["received"] if (e["session_id"], e["index"]) not in dropped]
    return [(r["t"], a["t"], a["message"]) for r, a in zip(kept, log["applied"], strict=False)
            if r["session_id"] == a["session_id"]]


async def outcome(url: str, kind: str, sender: Any, chunk_s: float) -> Outcome:
    async with httpx.AsyncClient(base_url=url) as http:
        log = (await http.get("/_emulator/log")).json()
    changes = sender.changes_log
    lag = [x / chunk_s for x in lags(changes, log)]
    final: float | None = float("nan")
    last = [t for t, k, v in changes if k == "noise_scale" and v == _key_value(FINAL)]
    if last:
        hits = [e["t"] for e in log["applied"] if e["message"].get("noise_scale") == FINAL]
        final = (hits[0] - last[-1]) / chunk_s if hits else None
    stats = sender.stats()
    return Outcome(LABELS[kind], len(changes), stats.sent, len(log["dropped"]), final,
                   statistics.median(lag) if lag else float("nan"), _p95(lag), _queue_wait(log) / chunk_s,
                   f"{stats.chunk_frames} ({stats.chunk_source})", _first_chunk(changes, log))


def _first_chunk(changes: list[tuple[float, str, str]], log: Mapping[str, list[dict[str, Any]]]) -> tuple[int, int]:
    """How many changes the first chunk that began after them applied, of how many were applied at all.

    The chunk starts come from the emulator's log (each applied message's chunk index and time): the period from
    the first and last of them, the phase as their median. A change applied a chunk later than that missed a
    chunk it could have made: the yardstick for isolated moves, free of where in the chunk each move fell.
    """
    applied = [e for e in log["applied"] if isinstance(e.get("chunk"), int)]
    if len(applied) < 2 or applied[-1]["chunk"] == applied[0]["chunk"]:
        return (0, 0)
    period = (applied[-1]["t"] - applied[0]["t"]) / (applied[-1]["chunk"] - applied[0]["chunk"])
    t0 = statistics.median(e["t"] - e["chunk"] * period for e in applied)
    made = total = 0
    for (t, _key, _value), lag in zip(changes, lags(changes, log), strict=False):
        first = t0 + math.ceil((t - t0) / period) * period
        total += 1
        made += (t + lag) - first < 0.5 * period
    return (made, total)


def _queue_wait(log: Mapping[str, list[dict[str, Any]]]) -> float:
    """Median seconds from a message's arrival to its application."""
    waits = [applied - arrived for arrived, applied, _ in _applied_with_arrival(log)]
    return statistics.median(waits) if waits else float("nan")


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _print(scenario: Scenario, rows: list[Outcome]) -> None:
    chunk_ms = 1000 * scenario.chunk / scenario.fps
    print(f"\n{scenario.name}: emulator {scenario.chunk} frames at {scenario.fps:g} fps = {chunk_ms:.0f} ms chunks; "
          f"bridge believes {scenario.believed}")
    header = (f"  {'sender':<16} {'changes':>7} {'sent':>6} {'dropped':>7} {'final (chunks)':>14} "
              f"{'lag p50':>8} {'lag p95':>8} {'queue wait':>10}  chunk in force")
    print(header)
    for r in rows:
        if r.final_chunks is None:
            final = "LOST"
        elif r.final_chunks != r.final_chunks:
            final = "-"
        else:
            final = f"{r.final_chunks:.1f}"
        print(f"  {r.sender:<16} {r.changes:>7} {r.sent:>6} {r.dropped:>7} {final:>14} "
              f"{r.lag_p50:>8.2f} {r.lag_p95:>8.2f} {r.wait_p50:>10.2f}  {r.chunk_frames}")
    if scenario.drive == "isolated" and len(rows) == 2:
        a, b = rows
        print(f"  isolated move applied after (median): {a.sender} {a.lag_p50 * chunk_ms:.0f} ms, "
              f"{b.sender} {b.lag_p50 * chunk_ms:.0f} ms (where in the chunk each move fell differs per run)")
        for r in rows:
            print(f"  {r.sender}: applied by the first chunk that began after the move: "
                  f"{r.first_chunk[0]} of {r.first_chunk[1]}")


async def bench_scope(args: argparse.Namespace) -> None:
    seconds = 30.0 if args.quick else args.seconds
    rng = random.Random(args.seed)
    chosen = [s for s in SCENARIOS if not args.only or any(word in s.name for word in args.only)]
    print(f"{seconds:g} s per scenario and sender; lags and the final value in chunks of the emulator's pace; "
          f"targets: 0 dropped, final <= 2, lag p50 <= 1.5")
    logging.getLogger("metadj_bridge").setLevel(logging.ERROR)
    for scenario in chosen:
        rows = []
        for kind in scenario.senders:
            async with emulator(scenario.chunk, scenario.fps) as url:
                if scenario.drive == "run":
                    sender = await show_run(url, kind, seconds)
                else:
                    sender = await session_run(url, kind, scenario, seconds, rng)
                rows.append(await outcome(url, kind, sender, scenario.chunk / scenario.fps))
        _print(scenario, rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=240.0, help="per scenario and sender (default 240)")
    parser.add_argument("--quick", action="store_true", help="30 s per scenario and sender")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one each run)")
    parser.add_argument("--only", action="append", default=[], metavar="WORD",
                        help="only the scenarios whose name contains WORD (repeatable)")
