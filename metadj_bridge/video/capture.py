"""A pyvirtualcam backend that captures what it is sent: the camera device for machines without one.

CI machines, and a laptop rehearsing without v4l2loopback or OBS, have no virtual camera device. Registered
under the name ``"capture"`` (:func:`register_capture_backend`), :class:`CaptureBackend` lets pyvirtualcam's
real ``Camera`` class, and the bridge's :class:`~metadj_bridge.video.vcam.VirtualCameraSink` on top of it, run
unchanged: it takes the same arguments and pixel formats as pyvirtualcam's v4l2loopback backend (RGB, BGR,
GRAY, I420, NV12, YUYV, UYVY; native I420 for RGB and BGR, as there), and instead of writing to a device it
keeps every frame with the time it was sent, bounded, for a test or a benchmark to read.

It follows pyvirtualcam's Backend protocol (``pyvirtualcam/camera.py``): keyword-only constructor
``(width, height, fps, fourcc, device, **kw)``, ``send(frame)`` with a flat C-contiguous uint8 array, ``close()``
called exactly once, ``device()`` and ``native_fourcc()``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

#: The device name used when none is given.
DEFAULT_DEVICE = "MetaDJ capture"
#: Frames whose pixels are kept (older ones keep only their send time): 64 frames of 1080p are ~200 MB.
KEEP_PIXELS = 64
#: Send records kept (index and time): about 55 minutes at 30 fps.
KEEP_RECORDS = 100_000


def fourcc_code(name: str) -> int:
    """pyvirtualcam's FourCC encoding (``pyvirtualcam.util.encode_fourcc``)."""
    a, b, c, d = (ord(ch) for ch in name)
    return a | (b << 8) | (c << 16) | (d << 24)


def fourcc_name(code: int) -> str:
    return "".join(chr((code >> shift) & 0xFF) for shift in (0, 8, 16, 24))


#: Frame sizes in bytes per pixel format, and the format the "device" holds it in (as v4l2loopback).
_SIZES = {
    "raw ": (lambda w, h: w * h * 3, "I420"),  # RGB
    "24BG": (lambda w, h: w * h * 3, "I420"),  # BGR
    "J400": (lambda w, h: w * h, "J400"),  # GRAY
    "I420": (lambda w, h: w * h * 3 // 2, "I420"),
    "NV12": (lambda w, h: w * h * 3 // 2, "NV12"),
    "YUY2": (lambda w, h: w * h * 2, "YUY2"),
    "UYVY": (lambda w, h: w * h * 2, "UYVY"),
}


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One ``send()``: its number on this device, when it came, and its pixels (None once pruned)."""

    index: int
    t: float
    data: np.ndarray | None


class CaptureBackend:
    """A virtual camera "device" that keeps what it is sent. See the module docstring."""

    #: The backends open right now and the last one closed, by device name (for tests to find them).
    devices: ClassVar[dict[str, CaptureBackend]] = {}
    keep_pixels: ClassVar[int] = KEEP_PIXELS
    keep_records: ClassVar[int] = KEEP_RECORDS
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any) -> None:
        if kw:
            raise TypeError(f"unexpected arguments for the capture backend: {', '.join(sorted(kw))}")
        name = fourcc_name(fourcc)
        if name not in _SIZES:
            raise RuntimeError(f"Unsupported image format {name!r}.")
        if width < 1 or height < 1:
            raise RuntimeError(f"invalid size {width}x{height}")
        self.width = width
        self.height = height
        self.fps = fps
        self.fourcc = fourcc
        self.format = name
        self.frame_size = _SIZES[name][0](width, height)
        self._device = device or DEFAULT_DEVICE
        self._lock = threading.Lock()
        self._records: deque[CapturedFrame] = deque(maxlen=self.keep_records)
        self._sent = 0
        self.closed = False
        with self._registry_lock:
            current = self.devices.get(self._device)
            if current is not None and not current.closed:
                raise RuntimeError(f"Device {self._device} is already in use.")
            self.devices[self._device] = self

    # ------------------------------------------------------------------ pyvirtualcam's Backend protocol

    def send(self, frame: np.ndarray) -> None:
        if self.closed:
            return
        if frame.size != self.frame_size:  # pyvirtualcam checks this first; a real device would fail too
            raise ValueError(f"frame of {frame.size} bytes, the {self.format} format needs {self.frame_size}")
        now = time.monotonic()
        data = np.array(frame, dtype=np.uint8, copy=True)  # the caller reuses its buffer
        with self._lock:
            self._records.append(CapturedFrame(self._sent, now, data))
            self._sent += 1
            if len(self._records) > self.keep_pixels:
                old = self._records[-self.keep_pixels - 1]
                if old.data is not None:
                    self._records[-self.keep_pixels - 1] = CapturedFrame(old.index, old.t, None)

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int:
        return fourcc_code(_SIZES[self.format][1])

    # ------------------------------------------------------------------ for tests and benchmarks

    @property
    def frames_sent(self) -> int:
        with self._lock:
            return self._sent

    def frames(self) -> list[CapturedFrame]:
        """Every kept send record, oldest first (pixels for the newest ``keep_pixels`` only)."""
        with self._lock:
            return list(self._records)

    def send_times(self) -> list[float]:
        with self._lock:
            return [r.t for r in self._records]

    def i420_planes(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U and V planes of a frame captured as I420 or NV12."""
        w, h = self.width, self.height
        flat = data.reshape(-1)
        y = flat[: w * h].reshape(h, w)
        if self.format == "NV12":
            uv = flat[w * h :].reshape(h // 2, w // 2, 2)
            return y, uv[..., 0], uv[..., 1]
        if self.format != "I420":
            raise ValueError(f"frames captured as {self.format}, not I420 or NV12")
        c = (w // 2) * (h // 2)
        return y, flat[w * h : w * h + c].reshape(h // 2, w // 2), flat[w * h + c :].reshape(h // 2, w // 2)

    @classmethod
    def named(cls, device: str = DEFAULT_DEVICE) -> CaptureBackend:
        """The backend most recently opened on ``device`` (it stays readable after it is closed)."""
        with cls._registry_lock:
            try:
                return cls.devices[device]
            except KeyError:
                raise KeyError(f"no capture device {device!r} was opened (open: {sorted(cls.devices)})") from None


def register_capture_backend(
    name: str = "capture", *, keep_pixels: int = KEEP_PIXELS, keep_records: int = KEEP_RECORDS
) -> type[CaptureBackend]:
    """Register :class:`CaptureBackend` with pyvirtualcam under ``name`` (then ``Camera(backend=name)``).

    ``keep_pixels`` sets how many of the newest frames keep their pixels, ``keep_records`` how many send records
    are kept (a long run as a stand-in camera keeps a few seconds, not an hour). Returns the registered class.
    """
    import pyvirtualcam

    backend = CaptureBackend if (keep_pixels, keep_records) == (KEEP_PIXELS, KEEP_RECORDS) else type(
        "CaptureBackend", (CaptureBackend,),
        {"keep_pixels": keep_pixels, "keep_records": keep_records, "__doc__": CaptureBackend.__doc__},
    )
    pyvirtualcam.register_backend(name, backend)
    return backend
