"""Frames from Scope to the camera's picture: fitted into a fixed size, in the camera's own pixel format.

Scope sends ``yuv420p`` (I420) at the pipeline's resolution, which changes when a pipeline is reloaded; the
camera keeps one size for the whole night. :class:`FrameFitter` scales each frame to fit (aspect ratio kept)
and places it in the middle of a black canvas: letterbox bars above and below, or pillarbox bars left and
right. The picture never goes through RGB: swscale scales yuv420p to yuv420p at the fitted size, and numpy
copies the three planes into a preallocated I420 canvas whose bars were painted once.

Black in limited-range video is Y=16, U=V=128. Offsets and fitted sizes are even, so the half-size chroma
planes line up exactly with the luma plane.

Pure: no clocks, threads or devices. One fitter is used by one thread at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

#: Limited-range black.
BLACK_Y = 16
BLACK_UV = 128
#: Canvases kept per fitter (one per input size seen; a pipeline reload brings a new one).
CANVAS_CACHE_SIZE = 4
#: Scaling in the fitter's own thread: the decoder and the encoder need the other cores.
SCALE_THREADS = 1


@dataclass(frozen=True, slots=True)
class Fit:
    """Where a ``src_w`` x ``src_h`` picture goes in a ``dst_w`` x ``dst_h`` canvas."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    #: Top-left corner and size of the scaled picture inside the canvas; all even.
    x: int
    y: int
    w: int
    h: int

    @property
    def bars(self) -> str:
        """"letterbox" (bars above and below), "pillarbox" (left and right) or "none"."""
        if self.h < self.dst_h:
            return "letterbox"
        if self.w < self.dst_w:
            return "pillarbox"
        return "none"


def check_output_size(width: int, height: int) -> None:
    """I420 needs an even width and height (pyvirtualcam checks the buffer size as w*h*3/2)."""
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"output size {width}x{height}: width and height must be even numbers >= 2")


def _even_down(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def fit_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Fit:
    """Scale to fit, aspect ratio kept, centred; sizes and offsets rounded down to even numbers.

    The side that fills the canvas is exactly the canvas size; the other side is
    ``round(side * scale)`` rounded down to even.
    """
    check_output_size(dst_w, dst_h)
    if src_w < 1 or src_h < 1:
        raise ValueError(f"input size {src_w}x{src_h} is empty")
    if src_w * dst_h >= src_h * dst_w:  # relatively wider than the canvas: full width, bars above and below
        w = dst_w
        h = min(dst_h, _even_down(round(src_h * dst_w / src_w)))
    else:
        h = dst_h
        w = min(dst_w, _even_down(round(src_w * dst_h / src_h)))
    x = (dst_w - w) // 4 * 2
    y = (dst_h - h) // 4 * 2
    return Fit(src_w, src_h, dst_w, dst_h, x, y, w, h)


def black_i420(width: int, height: int) -> np.ndarray:
    """A black I420 picture as a (height * 3 / 2, width) uint8 array (Y plane, then U, then V)."""
    check_output_size(width, height)
    canvas = np.empty((height * 3 // 2, width), np.uint8)
    canvas[:height] = BLACK_Y
    canvas[height:] = BLACK_UV
    return canvas


def i420_planes(buf: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of an I420 buffer (any shape with width * height * 3 / 2 bytes)."""
    flat = buf.reshape(-1)
    ysize, csize = width * height, (width // 2) * (height // 2)
    y = flat[:ysize].reshape(height, width)
    u = flat[ysize : ysize + csize].reshape(height // 2, width // 2)
    v = flat[ysize + csize : ysize + 2 * csize].reshape(height // 2, width // 2)
    return y, u, v


def _plane_view(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A (height, width) view of one plane of a decoded frame, without its line padding."""
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[: plane.height, : plane.width]


class FrameFitter:
    """Fits frames of any size into one output size as I420, reusing a canvas per input size."""

    def __init__(self, width: int, height: int) -> None:
        check_output_size(width, height)
        self.width = width
        self.height = height
        self._reformatter = VideoReformatter()
        self._canvases: OrderedDict[tuple[int, int], tuple[Fit, np.ndarray]] = OrderedDict()

    def geometry(self, src_w: int, src_h: int) -> Fit:
        return self._canvas_for(src_w, src_h)[0]

    def fit(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame fitted into the output size: a (height * 3 / 2, width) I420 array.

        The array is this fitter's canvas for that input size: it is overwritten by the next frame of the same
        size, so copy it (``av.VideoFrame.from_ndarray`` does) before the next call.
        """
        geo, canvas = self._canvas_for(frame.width, frame.height)
        scaled = self._reformatter.reformat(
            frame, width=geo.w, height=geo.h, format="yuv420p", threads=SCALE_THREADS
        )
        y, u, v = i420_planes(canvas, self.width, self.height)
        py, pu, pv = (_plane_view(p) for p in scaled.planes)
        y[geo.y : geo.y + geo.h, geo.x : geo.x + geo.w] = py
        cx, cy, cw, ch = geo.x // 2, geo.y // 2, geo.w // 2, geo.h // 2
        u[cy : cy + ch, cx : cx + cw] = pu
        v[cy : cy + ch, cx : cx + cw] = pv
        return canvas

    def _canvas_for(self, src_w: int, src_h: int) -> tuple[Fit, np.ndarray]:
        key = (src_w, src_h)
        entry = self._canvases.get(key)
        if entry is None:
            entry = (fit_geometry(src_w, src_h, self.width, self.height), black_i420(self.width, self.height))
            self._canvases[key] = entry
            while len(self._canvases) > CANVAS_CACHE_SIZE:
                self._canvases.popitem(last=False)
        else:
            self._canvases.move_to_end(key)
        return entry


def i420_frame(buf: np.ndarray, width: int, height: int) -> av.VideoFrame:
    """An ``av.VideoFrame`` (yuv420p) holding a copy of an I420 buffer."""
    return av.VideoFrame.from_ndarray(buf.reshape(height * 3 // 2, width), format="yuv420p")


def i420_to_nv12(buf: np.ndarray, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
    """I420 to NV12 (the Y plane, then U and V interleaved), into ``out`` when given: a flat uint8 array."""
    y, u, v = i420_planes(buf, width, height)
    if out is None:
        out = np.empty(width * height * 3 // 2, np.uint8)
    ysize = width * height
    out[:ysize].reshape(height, width)[:] = y
    uv = out[ysize:].reshape(height // 2, width // 2, 2)
    uv[..., 0] = u
    uv[..., 1] = v
    return out


def i420_to_rgb(buf: np.ndarray, width: int, height: int) -> np.ndarray:
    """I420 to a (height, width, 3) RGB array, for backends that take nothing else (swscale does the maths)."""
    return i420_frame(buf, width, height).to_ndarray(format="rgb24")
