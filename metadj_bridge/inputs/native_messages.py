"""ALSA's own error lines (Linux only): into the bridge's log instead of straight onto the terminal.

libasound prints lines such as ``ALSA lib seq_hw.c:466:(snd_seq_hw_open) open /dev/snd/seq failed: No such file
or directory`` to stderr from C, whenever python-rtmidi or PortAudio asks it for something this machine lacks.
The bridge already says what that means in its own words ("MIDI is off: ..."), and the raw line breaks the live
view. :func:`route_alsa_messages` installs an error handler in libasound (``snd_lib_error_set_handler``) that
logs each message at DEBUG (seen with ``-v``). Elsewhere, or where libasound is not installed, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

#: void handler(const char *file, int line, const char *function, int err, const char *fmt, ...). The variadic
#: tail is not read: the fixed arguments say which call failed and why.
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)

_installed: Any = None  # the handler, kept alive as long as libasound may call it


def _decode(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else "?"


@_HANDLER
def _on_alsa_error(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    try:
        reason = _decode(fmt) + (f": {os.strerror(abs(err))}" if err else "")
        log.debug("ALSA %s (%s:%d): %s", _decode(function), _decode(file), line, reason)
    except Exception:  # noqa: BLE001, S110 - nothing may escape into C
        pass


def route_alsa_messages() -> bool:
    """Install the handler once; True when libasound now reports through the log."""
    global _installed
    if _installed is not None:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("asound") or "libasound.so.2"
    try:
        library = ctypes.CDLL(name)
        library.snd_lib_error_set_handler(_on_alsa_error)
    except (OSError, AttributeError):
        return False  # no libasound here: nothing will print either
    _installed = (library, _on_alsa_error)
    return True
