"""Command line of the emulator: ``metadj-bridge emulate`` and ``python -m metadj_bridge.emulator``.

``add_arguments`` fills a parser (the main CLI's ``emulate`` subcommand, or the standalone one in
``__main__``); ``run_from_args`` serves until SIGINT/SIGTERM or until it is cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from metadj_bridge.emulator import catalogue
from metadj_bridge.emulator.config import (
    DEFAULT_FPS,
    DEFAULT_LOAD_SECONDS,
    DEFAULT_PORT,
    DEFAULT_STALE_SECONDS,
    EmulatorConfig,
)
from metadj_bridge.emulator.server import ScopeEmulator
from metadj_bridge.lifecycle import stop_signals
from metadj_bridge.profile.options import number, port, text

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options; every one maps to an ``EmulatorConfig`` field."""
    parser.add_argument("--host", type=text, default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, as Scope)")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT,
                        help=f"TCP port; 0 picks a free one (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        metavar="N",
        help="frames per generated chunk, one parameter message applied per chunk "
        "(default: the loaded pipeline's, 12 for longlive, 4 for passthrough)",
    )
    parser.add_argument("--fps", type=number, default=None,
                        help=f"force this many frames per second for every pipeline (default: each pipeline's own "
                        f"pace: {DEFAULT_FPS:g} for the Wan pipelines, 56 for controller-viz, the input's rate for "
                        "passthrough and the other video filters)")
    parser.add_argument("--cpu-only", action="store_true",
                        help="imitate a Scope without CUDA: only the weight-free pipelines are offered and the GPU "
                        "ones fail to load as there (\"No module named 'flash_attn'\")")
    parser.add_argument("--legacy-api", action="store_true",
                        help="answer like Scope before 2026-01-14: the load body needs 'pipeline_id'")
    parser.add_argument("--load-seconds", type=number, default=DEFAULT_LOAD_SECONDS, metavar="S",
                        help=f"how long a GPU pipeline's load takes; weight-free ones load at once "
                        f"(default: {DEFAULT_LOAD_SECONDS:g})")
    parser.add_argument("--slow-load", type=number, default=0.0, metavar="S", help="fault: add S seconds to every load")
    parser.add_argument("--fail-load", action="store_true", help="fault: every pipeline load fails")
    parser.add_argument(
        "--stale-seconds",
        type=number,
        default=DEFAULT_STALE_SECONDS,
        metavar="S",
        help=f"how long status polls show the old pipeline after a load request (default: {DEFAULT_STALE_SECONDS:g})",
    )
    parser.add_argument("--delay-ms", type=number, default=0.0, metavar="MS",
                        help="imitate a far server: everything the server receives (data-channel messages, SACKs, "
                        "RTCP) arrives MS milliseconds late, so the client's round trip grows by MS (default: 0)")


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The config the parsed options describe; raises ``ConfigError`` for impossible values."""
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        chunk_frames=args.chunk_frames,
        fps=args.fps,
        cpu_only=args.cpu_only,
        legacy_api=args.legacy_api,
        load_seconds=args.load_seconds,
        slow_load=args.slow_load,
        fail_load=args.fail_load,
        stale_seconds=args.stale_seconds,
        delay_ms=args.delay_ms,
    )


async def run_from_args(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM (exit code 0) or until cancelled (re-raised)."""
    config = config_from_args(args)
    stop = asyncio.Event()
    with stop_signals(stop.set):  # none on Windows, or off the main thread
        async with ScopeEmulator(config) as emulator:
            logger.info("Scope emulator serving at %s; %s; Ctrl+C to stop", emulator.url, imitation(config))
            await stop.wait()
            logger.info("Scope emulator stopping")
    return 0


def imitation(config: EmulatorConfig) -> str:
    """What the emulator imitates, in one line: the server kind, its pipelines and their pace."""
    kind = "a CPU-only server" if config.cpu_only else "a GPU server"
    pace = f"{config.fps:g} fps for every pipeline" if config.fps else "each pipeline at its own pace"
    chunk = f", {config.chunk_frames} frames per chunk" if config.chunk_frames else ""
    legacy = ", legacy load body" if config.legacy_api else ""
    legacy += f", {config.delay_ms:g} ms added to what it receives" if config.delay_ms else ""
    return (f"imitates Scope {catalogue.VERSION} on {kind} offering {', '.join(catalogue.offered(config.cpu_only))} "
            f"({pace}{chunk}{legacy}); each session logs the pipeline it imitates")
