"""Which cameras this computer has, and how a performer's source setting names one (or a video file).

Cameras are named per OS the way FFmpeg's capture inputs want them: ``/dev/videoN`` (v4l2, Linux), an index or
a name (avfoundation, macOS), ``video=<name>`` (dshow, Windows). :func:`list_cameras` lists them,
:func:`describe_cameras` says so in one phrase for error messages, and :func:`resolve_source` turns a setting
into what PyAV opens. The capture itself is :mod:`metadj_bridge.video.webcam`.
"""

from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import av

from metadj_bridge.errors import ConfigError, VideoInputError, printable

__all__ = [
    "VIDEO_FILE_SUFFIXES",
    "Camera",
    "SourceSpec",
    "describe_cameras",
    "list_cameras",
    "parse_avfoundation_listing",
    "parse_dshow_listing",
    "resolve_source",
]

#: Names ending like this are files even where a bare word would be a camera name (macOS, Windows).
VIDEO_FILE_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m", ".gif"}
)


# ------------------------------------------------------------------------------------------------ cameras


@dataclass(frozen=True)
class Camera:
    """A capture device; ``device`` is what the avatar ``source`` setting takes."""

    device: str
    name: str = ""

    def __str__(self) -> str:  # for messages: a name the device gives itself may hold control characters
        text = f"{self.device} ({self.name})" if self.name and self.name != self.device else self.device
        return printable(text)


def list_cameras(
    platform: str = sys.platform, *, sys_root: Path = Path("/sys/class/video4linux"), dev_root: Path = Path("/dev")
) -> list[Camera]:
    """The cameras present: on Linux the /dev/video* nodes with their names from sysfs; on macOS and Windows
    what FFmpeg's avfoundation / dshow device listing offers. VideoInputError when they cannot be listed here."""
    if platform.startswith("linux"):
        nodes = sorted(dev_root.glob("video[0-9]*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30)
        cameras = []
        for node in nodes:
            try:
                name = (sys_root / node.name / "name").read_text(errors="replace").strip()
            except OSError:
                name = ""
            cameras.append(Camera(str(node), name))
        return cameras
    fmt = "avfoundation" if platform == "darwin" else "dshow" if platform.startswith("win") else None
    if fmt is None:
        raise VideoInputError(f"cannot list cameras on this system ({platform}); give the device as FFmpeg names it")
    lines = _ffmpeg_device_listing(fmt)
    return parse_avfoundation_listing(lines) if fmt == "avfoundation" else parse_dshow_listing(lines)


def describe_cameras(platform: str = sys.platform) -> str:
    """One phrase for error messages: which cameras are present, or why that cannot be said."""
    try:
        cameras = list_cameras(platform)
    except VideoInputError as exc:
        return str(exc)
    if not cameras:
        hint = " (no /dev/video* device: is the webcam plugged in?)" if platform.startswith("linux") else ""
        return "no cameras found" + hint
    return "cameras present: " + ", ".join(map(str, cameras))


def _ffmpeg_device_listing(fmt: str) -> list[str]:
    """FFmpeg prints its device list to its log (``-list_devices true``); capture those lines."""
    try:
        av.format.ContainerFormat(fmt)
    except ValueError as exc:
        raise VideoInputError(f"cannot list cameras here: this FFmpeg build has no {fmt} input") from exc
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture(local=True) as logs, contextlib.suppress(av.FFmpegError, OSError):
            av.open("" if fmt == "avfoundation" else "dummy", format=fmt, options={"list_devices": "true"}).close()
    finally:
        av.logging.set_level(previous)
    text = "".join(str(entry[-1] if isinstance(entry, tuple) else entry) for entry in logs)
    return text.splitlines()


_INDEXED = re.compile(r"\[(\d+)\]\s+(.+?)\s*$")
_DSHOW_TYPED = re.compile(r'"(.+)"\s*\((video|audio|none)\)')
_QUOTED = re.compile(r'"(.+)"')


def parse_avfoundation_listing(lines: list[str]) -> list[Camera]:
    """The video devices of ``ffmpeg -f avfoundation -list_devices true -i ""``: ``[0] FaceTime HD Camera``."""
    cameras, in_video = [], False
    for line in lines:
        if "video devices" in line:
            in_video = True
        elif "audio devices" in line:
            in_video = False
        elif in_video and (m := _INDEXED.search(line)):
            cameras.append(Camera(m.group(1), m.group(2)))
    return cameras


def parse_dshow_listing(lines: list[str]) -> list[Camera]:
    """The video devices of ``ffmpeg -f dshow -list_devices true -i dummy``, old and new (``"Name" (video)``) style."""
    cameras, section = [], ""
    for line in lines:
        if "DirectShow video devices" in line:
            section = "video"
        elif "DirectShow audio devices" in line:
            section = "audio"
        elif "Alternative name" in line:
            continue
        elif m := _DSHOW_TYPED.search(line):
            if m.group(2) == "video":
                cameras.append(Camera(f"video={m.group(1)}", m.group(1)))
        elif section == "video" and (m := _QUOTED.search(line)):
            cameras.append(Camera(f"video={m.group(1)}", m.group(1)))
    return cameras


# ------------------------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class SourceSpec:
    """How to open a source with PyAV: ``av.open(url, format=format, options=options)``."""

    url: str
    #: The capture input (``v4l2``, ``avfoundation``, ``dshow``); None for a file.
    format: str | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.format is None

    @property
    def label(self) -> str:
        return f"video file {printable(self.url)}" if self.is_file else f"webcam {printable(self.url)}"


def resolve_source(
    source: str,
    *,
    fps: float | None = 30.0,
    capture_size: tuple[int, int] | None = None,
    platform: str = sys.platform,
) -> SourceSpec:
    """Turn a performer's source setting into what PyAV opens.

    ``0`` or ``/dev/video0`` (Linux), ``0`` or ``FaceTime HD Camera`` (macOS), ``video=Integrated Camera``
    or ``Integrated Camera`` (Windows) are webcams; ``file:<path>`` or anything that looks like a path to a
    video is a file. A camera gets ``framerate`` (and ``video_size`` when given) as capture options.
    """
    text = source.strip()
    if not text:
        raise ConfigError("video source is empty: give a webcam (e.g. /dev/video0 or 0) or a video file")
    if text.startswith("file:"):
        return SourceSpec(text[5:], None)
    linux, mac, windows = platform.startswith("linux"), platform == "darwin", platform.startswith("win")
    path = Path(text)
    looks_like_file = path.suffix.lower() in VIDEO_FILE_SUFFIXES or "/" in text or "\\" in text
    options: dict[str, str] = {}
    if fps:
        options["framerate"] = f"{fps:g}"
    if capture_size:
        options["video_size"] = f"{capture_size[0]}x{capture_size[1]}"
    if linux:
        if text.isdigit():
            return SourceSpec(f"/dev/video{int(text)}", "v4l2", options)
        if text.startswith("/dev/"):
            return SourceSpec(text, "v4l2", options)
        return SourceSpec(text, None)
    if mac and not (looks_like_file or path.exists()):
        return SourceSpec(text, "avfoundation", {**options, "pixel_format": "nv12"})
    if windows:
        if text.startswith("video="):
            return SourceSpec(text, "dshow", options)
        if text.isdigit():
            raise ConfigError(
                f"video source {text!r}: on Windows give the camera's name, e.g. 'video=Integrated Camera' "
                "(`metadj-bridge devices` lists them)"
            )
        if not (looks_like_file or path.exists()):
            return SourceSpec(f"video={text}", "dshow", options)
    return SourceSpec(text, None)
