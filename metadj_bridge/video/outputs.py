"""The video outputs of one ``run``: the sinks the profile (or ``--output``) names, behind one output clock.

``vcam`` falls back to the preview when this computer has no virtual camera backend: the performer is told
exactly how to get one, and still sees the picture in a browser. The slate
(:func:`metadj_bridge.video.slate.reason_from_session`) tells the audience-facing camera why there is no picture.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from metadj_bridge.errors import ConfigError, VideoOutputError
from metadj_bridge.video.sink import FrameSink, ShownFrame

log = logging.getLogger(__name__)


def parse_outputs(text: str) -> tuple[str, ...]:
    """``--output vcam,record:show.mp4,preview`` -> ("vcam", "record:show.mp4", "preview"); ``none`` -> ()."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if items == ("none",):
        return ()
    for item in items:
        kind, sep, rest = item.partition(":")
        if kind not in ("vcam", "preview", "record") or (kind == "record") != bool(sep and rest):
            raise ConfigError(
                f"--output {item!r}: expected vcam, preview, record:FILE.mp4 (or .mkv), "
                "several separated by commas, or none"
            )
        if kind == "record" and not rest.lower().endswith((".mp4", ".mkv")):
            raise ConfigError(f"--output {item!r}: a recording is .mp4 or .mkv")
    return tuple(dict.fromkeys(items))


class FallbackSink:
    """``primary`` if it opens, else ``fallback`` (after saying why the primary could not)."""

    def __init__(self, primary: FrameSink, fallback: FrameSink) -> None:
        self.primary = primary
        self.fallback = fallback
        self.active: FrameSink | None = None
        self.name = primary.name

    def open(self, width: int, height: int, fps: float) -> None:
        try:
            self.primary.open(width, height, fps)
            self.active = self.primary
        except VideoOutputError as exc:
            log.warning("%s; showing the picture in the %s instead", exc, self.fallback.name)
            self.fallback.open(width, height, fps)
            self.active = self.fallback
            self.name = self.fallback.name

    def show(self, shown: ShownFrame) -> None:
        if self.active is not None:
            self.active.show(shown)

    def close(self) -> None:
        if self.active is not None:
            self.active.close()


def build_sinks(
    outputs: Sequence[str], *, device: str | None, backend: str | None, preview_port: int
) -> list[FrameSink]:
    from metadj_bridge.video.preview import PreviewSink
    from metadj_bridge.video.record import RecordingSink
    from metadj_bridge.video.vcam import VirtualCameraSink

    sinks: list[FrameSink] = []
    for item in outputs:
        kind, _, rest = item.partition(":")
        if kind == "vcam":
            camera = VirtualCameraSink(device=device, backend=backend)
            if "preview" in outputs:
                sinks.append(camera)
            else:
                sinks.append(FallbackSink(camera, PreviewSink(port=preview_port)))
        elif kind == "preview":
            sinks.append(PreviewSink(port=preview_port))
        else:
            sinks.append(RecordingSink(rest))
    return sinks
