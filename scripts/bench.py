#!/usr/bin/env python3
"""Benchmarks for metadj-bridge.

    python scripts/bench.py scope [--seconds 20] [--chunk-frames 12] [--fps 20]

``scope``: against the emulator (its own process, a GPU-like chunk time), side by side in one run,
(a) a fixed 30 Hz sender as the seed had it and (b) the flow-controlled ParameterSender, both driven by
the same 60 Hz knob sweep. Reports messages sent and dropped, the delay from a knob change to the chunk
that applies it (median and p95), and whether the final state arrived.

Delay of a change = start of the first chunk that applies that value or a later one, minus the moment
the knob moved. The emulator stamps chunks with time.monotonic(), which on Linux is one clock for
every process on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from metadj_bridge.scope.sender import PacerConfig, ParameterSender  # noqa: E402
from metadj_bridge.scope.session import ScopeSession, SessionConfig  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Result:
    name: str
    changes: int
    sent: int
    dropped: int
    delay_median_ms: float
    delay_p95_ms: float
    final_arrived: bool
    final_delay_ms: float | None
    max_queue: int
    mean_queue: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def run_sender(name: str, url: str, pacer: PacerConfig, seconds: float, seed: int) -> Result:
    sender = ParameterSender(pacer=pacer)
    config = SessionConfig(
        url=url,
        pipeline_ids=["longlive"],
        load_params={"width": 320, "height": 192},
        prompts="benchmark",
        ice_servers=[],
        no_frame_timeout=10.0,
    )
    session = ScopeSession(config, sender)
    await session.start()
    try:
        await session.wait_streaming(timeout=30)
        while session.frames_received < 2 * pacer.chunk_frames:  # steady state first
            await asyncio.sleep(0.05)
        sid = session.session_id
        rng = random.Random(seed)
        changes: list[tuple[float, float]] = []  # (time, value), values unique
        used: set[float] = set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = round(rng.random(), 6)
            if value in used:
                continue
            used.add(value)
            changes.append((time.monotonic(), value))
            sender.update(noise_scale=value)
            await asyncio.sleep(1 / 60)
        final = 0.0123457
        final_t = time.monotonic()
        changes.append((final_t, final))
        sender.update(noise_scale=final)
        arrived_at: float | None = None
        async with httpx.AsyncClient(base_url=url) as http:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                log = (await http.get("/_emulator/log")).json()
                hit = [e for e in log["applied"] if e["session_id"] == sid and e["message"].get("noise_scale") == final]
                if hit:
                    arrived_at = hit[0]["t"]
                    break
                await asyncio.sleep(0.1)
            log = (await http.get("/_emulator/log")).json()
        applied = [e for e in log["applied"] if e["session_id"] == sid and "noise_scale" in e["message"]]
        dropped = [e for e in log["dropped"] if e["session_id"] == sid]
        # Scope's queue depth as each message arrives (dropped ones never entered it).
        dropped_idx = {e["index"] for e in dropped}
        events = [(e["t"], 1) for e in log["received"] if e["session_id"] == sid and e["index"] not in dropped_idx]
        events += [(e["t"], -1) for e in log["applied"] if e["session_id"] == sid]
        depth, depths = 0, []
        for _, step in sorted(events):
            depth += step
            if step > 0:
                depths.append(depth)
        change_time = {v: t for t, v in changes}
        # For each applied chunk: the time of the newest change it carries.
        applied_pairs = [(e["t"], change_time.get(e["message"]["noise_scale"], -1.0)) for e in applied]
        delays: list[float] = []
        j = 0
        for t_change, _ in changes:
            while j < len(applied_pairs) and applied_pairs[j][1] < t_change:
                j += 1
            if j < len(applied_pairs):
                delays.append(applied_pairs[j][0] - t_change)
        return Result(
            name=name,
            changes=len(changes),
            sent=sender.sent,
            dropped=len(dropped),
            delay_median_ms=1000 * statistics.median(delays) if delays else float("nan"),
            delay_p95_ms=1000 * percentile(delays, 0.95),
            final_arrived=arrived_at is not None,
            final_delay_ms=None if arrived_at is None else 1000 * (arrived_at - final_t),
            max_queue=max(depths, default=0),
            mean_queue=statistics.fmean(depths) if depths else 0.0,
        )
    finally:
        await session.aclose()


async def bench_scope(args: argparse.Namespace) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "metadj_bridge.emulator", "--host", "127.0.0.1", "--port", str(port),
        "--chunk-frames", str(args.chunk_frames), "--fps", str(args.fps), "--load-seconds", "0.2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(url + "/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        chunk = args.chunk_frames / args.fps
        print(f"emulator: {args.chunk_frames} frames per chunk at {args.fps:g} fps = {chunk * 1000:.0f} ms per chunk; "
              f"knob sweep at 60 Hz for {args.seconds:g} s, 8-message queue")
        results = []
        fixed = PacerConfig(min_interval=1 / 30, max_interval=1 / 30, chunk_frames=args.chunk_frames)
        flow = PacerConfig(chunk_frames=args.chunk_frames)
        for name, pacer in (("fixed 30 Hz (seed)", fixed), ("ParameterSender", flow)):
            results.append(await run_sender(name, url, pacer, args.seconds, seed=11))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    header = (
        f"{'sender':<20} {'changes':>7} {'sent':>6} {'dropped':>7} {'queue max/mean':>14} "
        f"{'delay p50':>10} {'delay p95':>10} {'final state':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        final = f"yes {r.final_delay_ms:.0f} ms" if r.final_arrived else "NO (lost)"
        print(
            f"{r.name:<20} {r.changes:>7} {r.sent:>6} {r.dropped:>7} {r.max_queue:>9d}/{r.mean_queue:<4.1f} "
            f"{r.delay_median_ms:>8.0f}ms "
            f"{r.delay_p95_ms:>8.0f}ms {final:>14}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    scope = sub.add_parser("scope", help="fixed 30 Hz sender vs ParameterSender against the emulator")
    scope.add_argument("--seconds", type=float, default=20.0)
    scope.add_argument("--chunk-frames", type=int, default=12)
    scope.add_argument("--fps", type=float, default=20.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.bench == "scope":
        asyncio.run(bench_scope(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
