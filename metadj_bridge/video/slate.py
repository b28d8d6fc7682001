"""The slate: what the camera shows when Scope has nothing to show, with the reason in plain words.

A dark picture with one short line of text, drawn with Pillow once per text and size and kept as I420, so
showing it costs no drawing. OBS keeps a live source; the performer sees why there is no picture.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metadj_bridge.video.convert import BLACK_UV, BLACK_Y, check_output_size

WAITING = "waiting for Scope..."
RECONNECTING = "reconnecting to Scope..."
STOPPED = "Scope stopped sending video"

#: Text height as a fraction of the picture height, and its bounds in pixels.
TEXT_FRACTION = 0.05
MIN_TEXT_PX = 10
MAX_TEXT_PX = 48
#: Text luma (limited range white is 235; a little dimmer reads as a status, not as content).
TEXT_Y = 200


@functools.lru_cache(maxsize=16)
def slate_i420(text: str, width: int, height: int) -> np.ndarray:
    """The slate as a read-only (height * 3 / 2, width) I420 array: dark, the text centred in grey."""
    check_output_size(width, height)
    size = int(min(MAX_TEXT_PX, max(MIN_TEXT_PX, height * TEXT_FRACTION)))
    font = ImageFont.load_default(size=size)
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (width - (right - left)) // 2 - left
    y = (height - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=255, font=font)
    alpha = np.asarray(image, dtype=np.uint16)
    canvas = np.empty((height * 3 // 2, width), np.uint8)
    canvas[:height] = (BLACK_Y + (alpha * (TEXT_Y - BLACK_Y) + 127) // 255).astype(np.uint8)
    canvas[height:] = BLACK_UV
    canvas.setflags(write=False)
    return canvas


class SessionLike(Protocol):
    """What the slate reads of a :class:`~metadj_bridge.scope.session.ScopeSession`."""

    @property
    def state(self) -> enum.Enum: ...

    @property
    def frames_received(self) -> int: ...


def reason_from_session(session: SessionLike) -> Callable[[], str | None]:
    """A ``reason`` callable for :class:`~metadj_bridge.video.clock.OutputClock` that reads a ScopeSession's state.

    Returns None while the session streams (the clock then says Scope stopped sending video, once the last
    frame is old enough). Reading ``session.state`` from the clock's thread is a single attribute read.
    """

    def reason() -> str | None:
        state = getattr(getattr(session, "state", None), "value", None)
        if state in ("streaming", None):
            return None
        if state == "reconnecting":
            return RECONNECTING
        if state == "closed":
            return "Scope session closed"
        if getattr(session, "frames_received", 0) > 0:  # it has streamed before: this is a comeback
            return RECONNECTING
        return WAITING

    return reason
