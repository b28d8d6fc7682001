"""``python -m metadj_bridge.emulator``: the Scope emulator on its own, e.g. for a test to kill."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from metadj_bridge.emulator.cli import add_arguments, run_from_args
from metadj_bridge.errors import MetaDJError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metadj_bridge.emulator",
        description="Serve Daydream Scope 0.2.4's HTTP + WebRTC API with frames that visibly follow the parameters.",
    )
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("aiortc", "aioice", "av"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return asyncio.run(run_from_args(args))
    except MetaDJError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
