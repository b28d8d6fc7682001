"""The C audio libraries' own lines (Linux only): into the bridge's log instead of straight onto the terminal.

libasound prints lines such as ``ALSA lib seq_hw.c:466:(snd_seq_hw_open) open /dev/snd/seq failed: No such file
or directory``, and libjack ``Cannot connect to server socket err = No such file or directory``, to stderr from C,
whenever python-rtmidi, supriya-midi or PortAudio asks them for something this machine lacks. The bridge already
says what that means in its own words ("MIDI is off: ..."), and the raw lines break the live view.
:func:`route_native_messages` installs handlers in libasound (``snd_lib_error_set_handler``) and in every libjack
the process may load (the system's, and the copies the MIDI wheels carry: ``jack_set_error_function``,
``jack_set_info_function``) that log each message at DEBUG (seen with ``-v``). Elsewhere, or where a library is
not installed, they do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import os
import sys
import sysconfig
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


#: void handler(const char *message), for libjack's errors and information.
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


@_JACK_HANDLER
def _on_jack_message(message: bytes | None) -> None:
    try:
        log.debug("JACK: %s", _decode(message).strip())
    except Exception:  # noqa: BLE001, S110 - nothing may escape into C
        pass


_jack_libraries: list[Any] = []  # kept alive with the handler they call


def route_native_messages() -> None:
    """ALSA's and JACK's lines to the log (once; safe to call again)."""
    route_alsa_messages()
    route_jack_messages()


def jack_libraries() -> list[str]:
    """The libjack files this process may load: the system's and those bundled in the MIDI wheels."""
    found = [ctypes.util.find_library("jack") or "libjack.so.0"]
    site = sysconfig.get_paths()["purelib"]
    for wheel in ("python_rtmidi", "supriya_midi"):
        found += sorted(glob.glob(os.path.join(glob.escape(site), f"{wheel}*", "libjack*.so*")))
    return found


def route_jack_messages() -> int:
    """Install the handler in each libjack found; returns how many took it."""
    if not sys.platform.startswith("linux") or _jack_libraries:
        return len(_jack_libraries)
    for name in jack_libraries():
        try:
            library = ctypes.CDLL(name)
            library.jack_set_error_function(_on_jack_message)
            library.jack_set_info_function(_on_jack_message)
        except (OSError, AttributeError):
            continue
        _jack_libraries.append(library)
    return len(_jack_libraries)


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
