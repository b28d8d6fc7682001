"""Option types shared by the command lines (``metadj-bridge`` and ``metadj-scope-emulator``)."""

from __future__ import annotations

import argparse
import math


def number(text: str) -> float:
    """A number option's value (seconds, frames a second, BPM, milliseconds): NaN and infinity are refused with
    argparse's own one-line error, as a word is."""
    value = float(text)  # a ValueError: argparse says "invalid number value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
