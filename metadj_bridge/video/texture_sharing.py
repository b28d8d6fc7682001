"""Syphon (macOS) and Spout (Windows) out: the output clock's frames shared as a GPU texture that Resolume,
TouchDesigner, MadMapper, VDMX or OBS (with its Syphon or Spout source) on the same computer pick by name.

Both are optional extras with their own libraries, imported only when such an output opens:

- ``syphon:NAME``: syphon-python (``pip install "metadj-bridge[syphon]"``, macOS 12+), a Metal server. Each tick
  the picture is copied into a Metal texture and published. Syphon answers other applications' requests to list
  servers through the run loop of the thread that made the server (Cocoa's distributed notifications); the clock's
  thread makes it and gives its run loop a moment after each frame, so the server stays discoverable in a
  process without a window.
- ``spout:NAME``: SpoutGL (``pip install "metadj-bridge[spout]"``, Windows), a Spout sender. Spout shares through
  OpenGL and DirectX 11 and needs an OpenGL context on the thread that sends: the sender makes a hidden one of its
  own (``createOpenGL``) in the clock's thread, where every later call happens too.

Both take 8-bit BGRA (the pixel order of Syphon's and Spout's own textures), converted once per tick from the
clock's I420 by PyAV's swscale, rows top to bottom. On any other OS ``open()`` raises
:class:`~metadj_bridge.errors.VideoOutputError` naming the OS the output needs, and the clock goes on with the
other outputs.
"""

from __future__ import annotations

import importlib.util
import logging
import platform
from typing import Any

import numpy as np

from metadj_bridge.errors import VideoOutputError
from metadj_bridge.video.outputs import check_output_name
from metadj_bridge.video.sink import ShownFrame

log = logging.getLogger(__name__)

SYPHON_HINT = 'pip install "metadj-bridge[syphon]" (syphon-python, macOS 12 or newer)'
SPOUT_HINT = 'pip install "metadj-bridge[spout]" (SpoutGL, Windows)'
#: What to use instead on an OS without the texture-sharing system.
ELSEWHERE = "ndi:NAME reaches VJ software on any OS, over the network or on this computer"


def unavailable_reason(kind: str) -> str | None:
    """Why a ``syphon:`` or ``spout:`` output cannot open on this computer (the wrong OS, the extra missing), or
    None when it can try (doctor). Looks for the library without importing it."""
    sink_type = SyphonSink if kind == "syphon" else SpoutSink
    here = platform.system()
    if here != sink_type.system:
        return f"{kind.capitalize()} needs {sink_type.system_name} (this is {here or 'an unknown OS'}); {ELSEWHERE}"
    module, hint = ("syphon", SYPHON_HINT) if kind == "syphon" else ("SpoutGL", SPOUT_HINT)
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed; {hint}"
    return None


def bgra(shown: ShownFrame) -> np.ndarray:
    """The shown frame as a C-contiguous (height, width, 4) BGRA array with opaque alpha."""
    return np.ascontiguousarray(shown.frame.to_ndarray(format="bgra"))


class _TextureShareSink:
    """What the Syphon and Spout sinks share: the name, the OS check, the conversion and the lifecycle."""

    kind = ""
    system = ""
    system_name = ""

    def __init__(self, share_name: str) -> None:
        self.share_name = check_output_name(self.kind, share_name, f"{self.kind} output")
        self.name = f"{self.kind}:{self.share_name}"
        self._open_now = False
        self._closed = False
        self.sent = 0

    def open(self, width: int, height: int, fps: float) -> None:
        if self._closed:
            raise VideoOutputError(f"{self.name} was closed; make a new sink")
        here = platform.system()
        if here != self.system:
            raise VideoOutputError(f"{self.name}: {self.kind.capitalize()} needs {self.system_name} (this is "
                                   f"{here or 'an unknown OS'}); {ELSEWHERE}")
        self._open(width, height)
        self._open_now = True
        log.info("%s open at %dx%d, %g fps, BGRA", self.name, width, height, fps)

    def show(self, shown: ShownFrame) -> None:
        if not self._open_now:
            return
        self._send(bgra(shown))
        self.sent += 1

    def close(self) -> None:
        self._closed = True
        if self._open_now:
            self._open_now = False
            self._close()
            log.info("%s closed (%d frames shared)", self.name, self.sent)

    # The library's part, all called from the clock's thread.
    def _open(self, width: int, height: int) -> None:
        raise NotImplementedError

    def _send(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class SyphonSink(_TextureShareSink):
    """A :class:`~metadj_bridge.video.sink.FrameSink` that publishes every tick as the Syphon server ``share_name``."""

    kind = "syphon"
    system = "Darwin"
    system_name = "macOS"

    def __init__(self, share_name: str) -> None:
        super().__init__(share_name)
        self._server: Any = None
        self._texture: Any = None
        self._run_loop: Any = None
        self._copy: Any = None

    @property
    def server(self) -> Any:
        """The open ``syphon.SyphonMetalServer``, or None."""
        return self._server

    def _open(self, width: int, height: int) -> None:
        try:
            import Metal
            import syphon
            from Foundation import NSDate, NSDefaultRunLoopMode, NSRunLoop
            from syphon.utils.numpy import copy_image_to_mtl_texture
            from syphon.utils.raw import create_mtl_texture
        except ImportError as exc:
            raise VideoOutputError(f"{self.name}: syphon-python is not installed ({exc}); {SYPHON_HINT}") from exc
        try:
            server = syphon.SyphonMetalServer(self.share_name)
            texture = create_mtl_texture(server.device, width, height, Metal.MTLPixelFormatBGRA8Unorm)
        except Exception as exc:  # noqa: BLE001 - no Metal device, or Syphon refused: either way this output is off
            raise VideoOutputError(f"{self.name}: the Syphon server could not be made ({exc})") from exc
        self._server, self._texture, self._copy = server, texture, copy_image_to_mtl_texture
        self._run_loop = lambda: NSRunLoop.currentRunLoop().runMode_beforeDate_(NSDefaultRunLoopMode, NSDate.date())

    def _send(self, image: np.ndarray) -> None:
        self._copy(image, self._texture)  # rows of width * 4 bytes into the texture's memory
        self._server.publish_frame_texture(self._texture)  # Metal's rows run top to bottom too: no flip
        self._run_loop()  # answer "which servers are there?" from other apps without waiting

    def _close(self) -> None:
        server, self._server, self._texture = self._server, None, None
        if server is not None:
            server.stop()


class SpoutSink(_TextureShareSink):
    """A :class:`~metadj_bridge.video.sink.FrameSink` that sends every tick as the Spout sender ``share_name``."""

    kind = "spout"
    system = "Windows"
    system_name = "Windows"

    def __init__(self, share_name: str) -> None:
        super().__init__(share_name)
        self._sender: Any = None
        self._format = 0
        self._size = (0, 0)

    @property
    def sender(self) -> Any:
        """The open ``SpoutGL.SpoutSender``, or None."""
        return self._sender

    def _open(self, width: int, height: int) -> None:
        try:
            import SpoutGL
            from SpoutGL.enums import GL_BGRA_EXT
        except ImportError as exc:
            raise VideoOutputError(f"{self.name}: SpoutGL is not installed ({exc}); {SPOUT_HINT}") from exc
        sender = SpoutGL.SpoutSender()
        if not sender.createOpenGL():  # a hidden window's context, current on this (the clock's) thread
            sender.releaseSender()
            raise VideoOutputError(f"{self.name}: Spout could not make an OpenGL context (is a GPU driver with "
                                   "OpenGL installed? Remote Desktop sessions often have none)")
        sender.setSenderName(self.share_name)
        self._sender, self._format, self._size = sender, GL_BGRA_EXT, (width, height)

    def _send(self, image: np.ndarray) -> None:
        width, height = self._size
        # Rows top to bottom, as Spout's DirectX texture has them: no flip.
        if not self._sender.sendImage(image, width, height, self._format, False, 0):
            raise VideoOutputError(f"{self.name}: Spout did not take the frame")
        self._sender.setFrameSync(self.share_name)  # receivers that wait for new frames wake now

    def _close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.releaseSender()
            sender.closeOpenGL()
