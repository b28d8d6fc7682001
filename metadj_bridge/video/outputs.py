"""The video outputs of one ``run``: the sinks the profile (or ``--output``) names, behind one output clock.

``vcam`` falls back to the preview when this computer has no virtual camera backend: the performer is told
exactly how to get one, and still sees the picture in the web page (the web server's ``/stream.mjpg``). The one
:class:`~metadj_bridge.video.preview.PreviewSink` of a run is given by whoever serves it. The slate
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
    named = []
    for item in items:
        kind, sep, rest = item.partition(":")
        if kind in NAMED_OUTPUTS:
            named.append(f"{kind}:{check_output_name(kind, rest, f'--output {item!r}')}")
            continue
        if kind not in ("vcam", "preview", "record") or (kind == "record") != bool(sep and rest):
            raise ConfigError(
                f"--output {item!r}: expected vcam, preview, record:FILE.mp4 (or .mkv), ndi:NAME, syphon:NAME, "
                "spout:NAME, several separated by commas, or none"
            )
        if kind == "record" and not rest.lower().endswith((".mp4", ".mkv")):
            raise ConfigError(f"--output {item!r}: a recording is .mp4 or .mkv")
        named.append(item)
    return tuple(dict.fromkeys(named))


#: Outputs that other programs find by a name: an NDI source, a Syphon server (macOS), a Spout sender (Windows).
NAMED_OUTPUTS = ("ndi", "syphon", "spout")
#: The longest NAME accepted (NDI shows a source as "MACHINE (NAME)"; VJ software's source lists cut long names).
MAX_OUTPUT_NAME = 63


def check_output_name(kind: str, name: str, where: str) -> str:
    """The NAME of ``ndi:NAME``, ``syphon:NAME`` or ``spout:NAME``, stripped; :class:`ConfigError` when unusable."""
    stripped = name.strip()
    if not stripped:
        raise ConfigError(f"{where}: {kind} needs a name: {kind}:NAME, e.g. {kind}:MetaDJ")
    if len(stripped) > MAX_OUTPUT_NAME or any(not ch.isprintable() or ch == "," for ch in stripped):
        raise ConfigError(f"{where}: {kind} name {stripped!r} must be 1-{MAX_OUTPUT_NAME} printable characters "
                          "without commas")
    return stripped


class FallbackSink:
    """``primary`` if it opens, else ``fallback`` (after saying why the primary could not).

    ``fallback`` None: the picture is already elsewhere (the web page's preview is always fed); only say so.
    """

    def __init__(self, primary: FrameSink, fallback: FrameSink | None) -> None:
        self.primary = primary
        self.fallback = fallback
        self.active: FrameSink | None = None
        self.name = primary.name

    def open(self, width: int, height: int, fps: float) -> None:
        try:
            self.primary.open(width, height, fps)
            self.active = self.primary
        except VideoOutputError as exc:
            if self.fallback is None:
                log.warning("%s; the picture is in the web page's preview", exc)
                self.name = f"{self.primary.name} (not open)"
                return
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
    outputs: Sequence[str], *, device: str | None, backend: str | None, preview: FrameSink | None = None,
    always_preview: bool = False,
) -> list[FrameSink]:
    """The sinks of ``outputs`` (see :func:`parse_outputs`). ``preview`` is the run's one preview (the web server
    serves it; a new one when None); ``always_preview`` adds it whatever the outputs, so the web page always has
    the picture, and a ``vcam`` that cannot open then only says so."""
    from metadj_bridge.video.preview import PreviewSink
    from metadj_bridge.video.record import RecordingSink
    from metadj_bridge.video.vcam import VirtualCameraSink

    shared = preview if preview is not None else PreviewSink()
    sinks: list[FrameSink] = []
    for item in outputs:
        kind, _, rest = item.partition(":")
        if kind == "vcam":
            camera = VirtualCameraSink(device=device, backend=backend)
            if "preview" in outputs:
                sinks.append(camera)
            else:
                sinks.append(FallbackSink(camera, None if always_preview else shared))
        elif kind == "preview":
            sinks.append(shared)
        elif kind in NAMED_OUTPUTS:
            sinks.append(_named_sink(kind, rest))
        else:
            sinks.append(RecordingSink(rest))
    if always_preview and shared not in sinks:
        sinks.append(shared)
    return sinks


def _named_sink(kind: str, name: str) -> FrameSink:
    """The sink of ``ndi:NAME``, ``syphon:NAME`` or ``spout:NAME``; its library loads only when it opens."""
    if kind == "ndi":
        from metadj_bridge.video.ndi import NdiSink

        return NdiSink(name)
    from metadj_bridge.video.texture_sharing import SpoutSink, SyphonSink

    return SyphonSink(name) if kind == "syphon" else SpoutSink(name)
