"""NDI out: the output clock's frames as a named NDI source that Resolume, TouchDesigner, vMix or OBS (with its NDI
plugin) on this computer or the local network can pick.

cyndilib does the NDI work. It is an optional extra (``pip install "metadj-bridge[ndi]"``) whose wheels carry the
NDI runtime (a closed-source library of Vizrt NDI AB under the NDI SDK licence: see the README); it is imported
only when an NDI output opens, so ``import metadj_bridge`` never needs it.

Frames go out as I420, the clock's own format, which NDI takes as it is: nothing is converted here. NDI compresses
every frame (SpeedHQ) before it leaves, which at 1920x1080 takes a good part of a frame period on a laptop core.
That is too long for the clock's thread, so the sink has a sender thread of its own: ``show()`` only copies the
planes out of the frame and hands them over, the newest replacing one still waiting (counted in ``dropped``). The
sender does not pace itself (``clock_video=False``): the clock already ticks at the camera's rate, and that rate is
the one the source announces. While no receiver is connected nothing is compressed (NDI's own advice): the frame
is only counted in ``idle``, and the next one after a receiver connects goes out.

The source lives as long as the clock. A Scope restart changes what the frames show (the last picture repeated,
then the slate, then live again) but not the source, so receivers stay connected through it.

Discovery: receivers find NDI sources by mDNS on the local network. Where multicast does not reach (another subnet,
a VPN, a container), NDI's own configuration names the machines to ask directly: NDI Access Manager's "extra IPs"
on Windows and macOS, ``networks.ips`` in ``ndi-config.v1.json`` (in ``~/.ndi`` or the folder ``NDI_CONFIG_DIR``
names) everywhere.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from fractions import Fraction
from typing import Any

import numpy as np

from metadj_bridge.errors import RateLimitedWarning, VideoOutputError
from metadj_bridge.video.outputs import check_output_name
from metadj_bridge.video.sink import ShownFrame

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'pip install "metadj-bridge[ndi]" (cyndilib, with the NDI runtime in its wheels for CPython 3.11-3.14 on '
    "Linux x86_64 and aarch64 with glibc 2.28+, macOS 13+ and 64-bit Windows)"
)
#: Send times kept for ``send_ms()``.
STATS_WINDOW = 300


def import_cyndilib() -> Any:
    """The cyndilib module, or :class:`VideoOutputError` saying how to get it."""
    try:
        import cyndilib
        from cyndilib import sender as _sender  # noqa: F401 - loads the NDI runtime: fails here if it cannot load
    except (ImportError, OSError) as exc:
        raise VideoOutputError(f"NDI output: cyndilib is not installed or cannot load here ({exc}); "
                               f"{INSTALL_HINT}") from exc
    return cyndilib


def unavailable_reason() -> str | None:
    """Why an ``ndi:`` output cannot open on this computer, or None when cyndilib and its NDI runtime load (doctor)."""
    try:
        import_cyndilib()
    except VideoOutputError as exc:
        return str(exc)
    return None


class NdiSink:
    """A :class:`~metadj_bridge.video.sink.FrameSink` that shows every tick as the NDI source ``source_name``.

    ``groups`` are NDI groups (comma-separated) the source is in; empty means NDI's default ("public").
    """

    def __init__(self, source_name: str, groups: str = "") -> None:
        self.source_name = check_output_name("ndi", source_name, "NDI output")
        self.groups = groups
        self.name = f"ndi:{self.source_name}"
        self._sender: Any = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Condition()
        self._pending: np.ndarray | None = None
        self._closing = False
        self.sent = 0
        self.dropped = 0
        self.idle = 0
        self._format: tuple[int, int, float] = (0, 0, 0.0)
        self._frame_bytes = 0
        self._send_s: deque[float] = deque(maxlen=STATS_WINDOW)
        self._failures = RateLimitedWarning(log, f"NDI source {self.source_name!r} failed to send frames")

    @property
    def sender(self) -> Any:
        """The open ``cyndilib.sender.Sender``, or None."""
        return self._sender

    def open(self, width: int, height: int, fps: float) -> None:
        if self._closing:
            raise VideoOutputError(f"NDI source {self.source_name!r} was closed; make a new sink")
        import_cyndilib()
        self._format = (width, height, fps)
        self._frame_bytes = width * height * 3 // 2
        self._sender = self._make_sender()
        self._thread = threading.Thread(target=self._run, name=f"ndi-send-{self.source_name}", daemon=True)
        self._thread.start()
        log.info("NDI source %s open at %dx%d, %g fps, I420", self._sender.source.name if self._sender.source
                 else self.name, width, height, fps)

    def _make_sender(self) -> Any:
        from cyndilib.sender import Sender
        from cyndilib.video_frame import VideoSendFrame
        from cyndilib.wrapper.ndi_structs import FourCC

        width, height, fps = self._format
        frame = VideoSendFrame()
        frame.set_resolution(width, height)
        frame.set_frame_rate(Fraction(fps).limit_denominator(1001))
        frame.set_fourcc(FourCC.I420)
        sender = Sender(self.source_name, ndi_groups=self.groups, clock_video=False, clock_audio=False)
        sender.set_video_frame(frame)
        try:
            sender.open()
        except Exception as exc:  # noqa: BLE001 - cyndilib raises plain Exception or MemoryError
            raise VideoOutputError(f"NDI source {self.source_name!r} could not be created: {exc}") from exc
        return sender

    def show(self, shown: ShownFrame) -> None:
        with self._wake:
            sender = self._sender
            if sender is None:
                return
            if not sender.get_num_connections(0):
                self.idle += 1  # nobody watching: not even the copy
                return
        planes = shown.frame.to_ndarray().reshape(-1)  # a copy of Y, U, V back to back: what I420 is
        with self._wake:
            if self._pending is not None:
                self.dropped += 1  # the sender thread is still on an earlier frame: this one replaces the wait
            self._pending = planes
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                if self._closing or self._pending is None:
                    return
                planes, self._pending = self._pending, None
                sender = self._sender
            if sender is None:
                continue  # a renewal failed: said once; the clock goes on with the other outputs
            if planes.size != self._frame_bytes:  # cyndilib's frame buffer would be left unusable: refuse it here
                self._failures.note(f"a frame of {planes.size} bytes where the source takes {self._frame_bytes}")
                continue
            if not sender.get_num_connections(0):
                self.idle += 1  # the receiver left meanwhile: compressing would only cost CPU
                continue
            t0 = time.perf_counter()
            try:
                sender.write_video(planes)  # compresses and sends; cyndilib releases the GIL meanwhile
            except Exception as exc:  # noqa: BLE001 - a failed frame must not end the source
                self._failures.listener_failed(sender.write_video, exc)
                self._renew()
                continue
            self._send_s.append(time.perf_counter() - t0)
            self.sent += 1

    def _renew(self) -> None:
        """A failed send can leave cyndilib's frame buffer unusable: a new sender of the same name (receivers find
        it again by name)."""
        with self._wake:
            old, self._sender = self._sender, None
            if old is not None:
                try:
                    old.close()
                except Exception as exc:  # noqa: BLE001 - the broken sender is dropped either way
                    log.debug("closing the failed NDI sender %s: %s", self.name, exc)
            try:
                self._sender = self._make_sender()
            except VideoOutputError as exc:
                log.error("%s; the NDI source is gone until the bridge restarts", exc)

    def connections(self) -> int:
        """How many receivers are connected now (0 when closed)."""
        sender = self._sender
        return 0 if sender is None else int(sender.get_num_connections(0))

    def send_ms(self) -> float | None:
        """Median time NDI took to compress and send a frame, in ms (None before the first)."""
        times = list(self._send_s)
        return statistics.median(times) * 1000 if times else None

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._pending = None
            self._wake.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._wake:
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()
            log.info("NDI source %s closed (%d frames sent, %d replaced while sending, %d with no receiver)",
                     self.name, self.sent, self.dropped, self.idle)
