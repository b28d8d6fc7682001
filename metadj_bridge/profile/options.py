"""The command lines' option types (``metadj-bridge`` and ``metadj-scope-emulator``): numbers, ports, prompts,
lengths of time and text checked as a profile's values are, each refused with argparse's own one-line usage error."""

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


def port(text: str) -> int:
    """A port option's value, 0-65535 (0: the system picks a free one); a number past it is refused rather than
    wrapped round by the socket layer (70000 would listen on 4464)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def text(value: str) -> str:
    """A name, a path, an address or a pattern given as text: empty, or only spaces, is refused as a profile refuses
    an empty string. A script's unset variable (``--output "$OUT"``) must not quietly mean "none" or the default;
    ``none`` says that where it is meant. Every option of the command lines without a type of its own gets this
    one (``ArgumentParser.register("type", None, text)``)."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: must not be empty")
    return value


def prompt(text: str) -> str:
    """A prompt given on the command line: not empty, and as long as a profile's may be
    (``themes.MAX_PROMPT_CHARS``)."""
    from metadj_bridge.profile.themes import MAX_PROMPT_CHARS

    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: an empty prompt; give the words Scope should paint")
    if len(text) > MAX_PROMPT_CHARS:
        raise argparse.ArgumentTypeError(f"a prompt of {len(text)} characters; Scope reads about the first "
                                         f"{MAX_PROMPT_CHARS} (512 tokens) and cuts the rest, so keep it shorter")
    return text


#: The longest length of time a command's option takes (a day): past it, a value is a slip (``doctor --listen
#: 1e300`` watched the video for ever, ``listen --duration 1e300`` never stopped), and a timeout handed to a thread
#: or a socket overflows long before 1e300 (``threading.Event.wait``: "timestamp out of range").
MAX_SECONDS = 24 * 3600


def seconds(text: str) -> float:
    """A length of time: a finite number more than 0 and at most a day (``number`` with bounds)."""
    value = number(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_SECONDS} seconds (a day)")
    return value
