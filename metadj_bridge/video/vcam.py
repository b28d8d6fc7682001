"""The virtual webcam: the output clock's frames as a camera that OBS, Zoom or Resolume can pick.

pyvirtualcam does the device work: v4l2loopback on Linux, OBS Virtual Camera on Windows and macOS, Unity
Capture on Windows. The clock paces the frames, so this sink only ever calls ``send()`` (never
``sleep_until_next_frame``), and it runs in the clock's thread, which is there for exactly this blocking call.

Pixel format: the clock's frames are I420. With ``fmt="auto"`` the camera is opened in I420 (v4l2loopback's
native format, which it writes straight to the device); a backend whose native format is NV12 (OBS on
Windows) is reopened in NV12 when it accepts that, and the planes are interleaved here; a backend that takes
neither gets RGB.

Without a backend, ``open()`` raises :class:`VideoOutputError` that says what to do on this OS, and the clock
goes on with the other outputs. pyvirtualcam is imported only when a camera is opened.
"""

from __future__ import annotations

import logging
import platform
from typing import Any

import numpy as np

from metadj_bridge.errors import VideoOutputError, printable
from metadj_bridge.video.convert import i420_to_nv12
from metadj_bridge.video.sink import ShownFrame

log = logging.getLogger(__name__)

LINUX_HINT = (
    "no v4l2loopback device found; create one with "
    "`sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=MetaDJ` "
    "(install the v4l2loopback-dkms package first if modprobe cannot find the module)"
)
OBS_HINT = "install OBS Studio 30+ and start its Virtual Camera once (Tools > Start Virtual Camera), then stop it"
WINDOWS_HINT = OBS_HINT + "; or install Unity Capture and choose the unitycapture backend"

#: pyvirtualcam's backend names per OS, in the order they are tried.
OS_BACKENDS = {"Linux": ("v4l2loopback",), "Darwin": ("obs",), "Windows": ("obs", "unitycapture")}
FORMATS = ("auto", "I420", "NV12", "RGB")


def backend_hint(system: str | None = None) -> str:
    """What a performer does to get a virtual camera on ``system`` (``platform.system()`` by default)."""
    system = system or platform.system()
    if system == "Linux":
        return LINUX_HINT
    if system == "Windows":
        return WINDOWS_HINT
    if system == "Darwin":
        return OBS_HINT
    return f"no virtual camera backend for {system}: pyvirtualcam supports Linux, Windows and macOS"


class VirtualCameraSink:
    """A :class:`~metadj_bridge.video.sink.FrameSink` that sends every tick to a pyvirtualcam camera.

    ``backend`` is pyvirtualcam's backend name (``v4l2loopback``, ``obs``, ``unitycapture``, or one registered
    with ``pyvirtualcam.register_backend``, such as ``capture``); None tries this OS's backends in turn.
    ``device`` picks one device of the backend (``/dev/video10``, ``OBS Virtual Camera``).
    """

    name = "vcam"

    def __init__(self, device: str | None = None, backend: str | None = None, fmt: str = "auto") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"camera pixel format {fmt!r} is not one of {', '.join(FORMATS)}")
        self.device = device
        self.backend = backend
        self.fmt = fmt
        self._camera: Any = None
        self._format = ""
        self._nv12: np.ndarray | None = None
        self._size = (0, 0)

    @property
    def pixel_format(self) -> str:
        """The format frames are sent in ("I420", "NV12" or "RGB"); empty before ``open()``."""
        return self._format

    @property
    def camera(self) -> Any:
        """The open ``pyvirtualcam.Camera``, or None."""
        return self._camera

    def open(self, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:  # pragma: no cover - a dependency, but say what to do if it is gone
            raise VideoOutputError(
                f"virtual camera: pyvirtualcam is not installed ({exc}); pip install pyvirtualcam"
            ) from exc
        from pyvirtualcam import PixelFormat

        system = platform.system()
        if self.backend == "capture" and "capture" not in pyvirtualcam.camera.BACKENDS:
            # The stand-in camera (rehearsal on a machine without a camera driver, tests, benchmarks).
            from metadj_bridge.video.capture import register_capture_backend

            register_capture_backend(keep_pixels=2, keep_records=300)  # a stand-in for hours: keep ten seconds
        if self.backend is not None:
            if self.backend not in pyvirtualcam.camera.BACKENDS:
                known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
                raise VideoOutputError(
                    f"virtual camera backend {self.backend!r} is not available here (available: {known}); "
                    f"{backend_hint(system)}"
                )
            backends: tuple[str, ...] = (self.backend,)
        else:
            backends = tuple(b for b in OS_BACKENDS.get(system, ()) if b in pyvirtualcam.camera.BACKENDS)
            if not backends:
                raise VideoOutputError(f"virtual camera: {backend_hint(system)}")

        wanted = ("I420", "RGB") if self.fmt == "auto" else (self.fmt,)
        errors: list[str] = []
        for backend in backends:
            for fmt in wanted:
                try:
                    camera = pyvirtualcam.Camera(
                        width, height, fps, fmt=PixelFormat[fmt], device=self.device, backend=backend
                    )
                except Exception as exc:  # noqa: BLE001 - backends raise RuntimeError, ValueError or their own types
                    message = printable(str(exc).strip().removeprefix(f"'{backend}' backend: "))
                    if "format" in message.lower() and fmt != wanted[-1]:
                        continue  # the device is there but wants another pixel format
                    errors.append(f"{backend}: {message}")
                    break
                if self.fmt == "auto" and fmt == "I420" and camera.native_fmt is PixelFormat.NV12:
                    camera = self._reopen_nv12(pyvirtualcam, camera, width, height, fps, backend)
                self._camera = camera
                self._format = camera.fmt.name
                self._size = (width, height)
                self._nv12 = np.empty(width * height * 3 // 2, np.uint8) if self._format == "NV12" else None
                log.info("virtual camera %s (%s) open at %dx%d, %g fps, %s", printable(str(camera.device)), backend,
                         width, height, fps, self._format)
                return
        where = f" {printable(self.device)}" if self.device else ""  # the profile's text: never raw in the log
        raise VideoOutputError(
            f"virtual camera{where} could not be opened ({'; '.join(errors)}); {backend_hint(system)}"
        )

    def _reopen_nv12(self, pyvirtualcam: Any, camera: Any, width: int, height: int, fps: float, backend: str) -> Any:
        """The backend converts I420 to NV12 itself; if it takes NV12 directly, interleave here instead."""
        camera.close()
        try:
            return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.NV12, device=self.device,
                                       backend=backend)
        except Exception as exc:  # noqa: BLE001 - as above: any refusal means "not NV12"
            log.debug("%s does not take NV12 (%s); sending I420", backend, printable(str(exc)))
            return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.I420, device=self.device,
                                       backend=backend)

    def show(self, shown: ShownFrame) -> None:
        camera = self._camera
        if camera is None:
            return
        w, h = self._size
        if self._format == "I420":
            camera.send(shown.frame.to_ndarray())  # (h * 3 / 2, w): the planes back to back, no padding
        elif self._format == "NV12":
            camera.send(i420_to_nv12(shown.frame.to_ndarray(), w, h, self._nv12))
        else:
            camera.send(shown.frame.to_ndarray(format="rgb24"))

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()
