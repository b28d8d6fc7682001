"""``metadj-bridge check PROFILE...``: load each profile without connecting to anything and say what is wrong."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.loader import load_profile


def run_check(paths: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``ok  <path> (<n> themes, <m> mappings)`` per good file, ``error: <message>`` per bad one; 0 when all good."""
    out = out or sys.stdout
    err = err or sys.stderr
    failed = 0
    for path in paths:
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            failed += 1
            print(f"error: {exc}", file=err)
            continue
        print(f"ok  {path} ({len(profile.themes)} themes, {len(profile.mappings)} mappings)", file=out)
    return 1 if failed else 0
