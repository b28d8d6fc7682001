"""The ``video:`` section of a profile: outputs, the camera's size and rate, avatar mode's source."""

from __future__ import annotations

import os
from pathlib import Path

from metadj_bridge.profile import fields as f
from metadj_bridge.profile.model import VideoSettings
from metadj_bridge.profile.yamlnodes import YNode

VIDEO_KEYS = ("outputs", "size", "fps", "device", "backend", "slate_after", "preview_port", "source", "ref_images")
OUTPUT_KINDS = ("vcam", "preview", "record", "ndi", "syphon", "spout")
#: Outputs other programs find by name: ndi:NAME (any OS), syphon:NAME (macOS), spout:NAME (Windows).
NAMED_KINDS = ("ndi", "syphon", "spout")
RECORD_SUFFIXES = (".mp4", ".mkv")
#: pyvirtualcam's backends, and "capture": a stand-in camera that takes the frames and shows them nowhere
#: (benchmarks and soak tests on machines without a camera driver).
BACKENDS = ("v4l2loopback", "obs", "unitycapture", "capture")


def _relative(node: YNode, value: str) -> str:
    if os.path.isabs(value):
        return value
    return os.path.abspath(os.path.join(os.path.dirname(node.file), value))


def output(node: YNode, path: str) -> str:
    """One output word: vcam, preview, record:<path> (the path made absolute, relative to the profile), ndi:NAME,
    syphon:NAME or spout:NAME."""
    word = f.text(node, path)
    kind, sep, rest = word.partition(":")
    if kind not in OUTPUT_KINDS:
        f.fail_value(node, path, "expected vcam, preview, record:FILE.mp4, ndi:NAME, syphon:NAME or spout:NAME"
                     + f.suggest(kind, OUTPUT_KINDS))
    if kind in NAMED_KINDS:
        name = rest.strip()
        if not name or len(name) > 63 or any(not ch.isprintable() or ch == "," for ch in name):
            f.fail_value(node, path, f"{kind} needs a name of 1-63 printable characters without commas: "
                         f"{kind}:MetaDJ")
        return f"{kind}:{name}"
    if kind == "record":
        target = rest.strip()
        if not sep or not target:
            f.fail_value(node, path, "record needs a file: record:show.mp4 (or .mkv)")
        if Path(target).suffix.lower() not in RECORD_SUFFIXES:
            f.fail_value(node, path,
                         f"a recording is .mp4 or .mkv, not {Path(target).suffix or 'a file without extension'}")
        return "record:" + _relative(node, target)
    if sep:
        f.fail_value(node, path, f"{kind} takes no argument")
    return kind


def video_settings(node: YNode | None, path: str = "video") -> VideoSettings:
    if node is None or node.value is None:
        return VideoSettings()
    m = f.mapping(node, path, VIDEO_KEYS)
    kw: dict[str, object] = {"where": node.where}
    if "outputs" in m:
        items = f.sequence(m["outputs"], f"{path}.outputs", single=True, what="an output or a list of them")
        outs = tuple(output(item, f"{path}.outputs[{i}]") for i, item in enumerate(items))
        kw["outputs"] = tuple(dict.fromkeys(outs))
    if "size" in m and m["size"].value is not None:
        items = f.sequence(m["size"], f"{path}.size", what="[width, height]")
        if len(items) != 2:
            f.fail_value(m["size"], f"{path}.size", f"expected [width, height], got {len(items)} values")
        w = f.integer(items[0], f"{path}.size[0]", 64, 3840)
        h = f.integer(items[1], f"{path}.size[1]", 64, 2160)
        for value, item, i in ((w, items[0], 0), (h, items[1], 1)):
            if value % 2:
                f.fail_value(item, f"{path}.size[{i}]", "must be even (the camera's I420 format halves it)")
        kw["size"] = (w, h)
    if "fps" in m:
        kw["fps"] = f.number(m["fps"], f"{path}.fps", 1, 120)
    if "device" in m and m["device"].value is not None:
        kw["device"] = f.text(m["device"], f"{path}.device")
    if "backend" in m and m["backend"].value is not None:
        kw["backend"] = f.choice(m["backend"], f"{path}.backend", BACKENDS)
    if "slate_after" in m:
        kw["slate_after"] = f.number(m["slate_after"], f"{path}.slate_after", 0.1, 600)
    if "preview_port" in m:
        kw["preview_port"] = f.integer(m["preview_port"], f"{path}.preview_port", 1, 65535, what="a TCP port")
    if "source" in m and m["source"].value is not None:
        source = f.text(m["source"], f"{path}.source")
        if source.startswith("file:"):
            if not source[5:].strip():
                f.fail_value(m["source"], f"{path}.source", "file: needs a video file, e.g. file:dancer.mp4")
            source = "file:" + _relative(m["source"], source[5:].strip())
        kw["source"] = source
    if "ref_images" in m and m["ref_images"].value is not None:
        items = f.sequence(m["ref_images"], f"{path}.ref_images", single=True, what="an image path or a list of them")
        images = []
        for i, item in enumerate(items):
            image = _relative(item, f.text(item, f"{path}.ref_images[{i}]"))
            if not os.path.isfile(image):
                f.fail_value(item, f"{path}.ref_images[{i}]", f"no such image file ({image})")
            images.append(image)
        kw["ref_images"] = tuple(images)
    return VideoSettings(**kw)  # type: ignore[arg-type]
