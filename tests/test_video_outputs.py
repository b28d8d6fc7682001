"""`run`'s video outputs: the --output list, the fallback from the virtual camera to the preview, and a recording
made by a whole `run` against the emulator (real WebRTC, real encoder, read back with PyAV)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.video.outputs import FallbackSink, build_sinks, parse_outputs
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.video.vcam import VirtualCameraSink


def test_output_lists() -> None:
    assert parse_outputs("vcam,record:show.mp4, preview,vcam") == ("vcam", "record:show.mp4", "preview")
    assert parse_outputs("none") == ()
    cases = (("vcm", "expected vcam, preview"), ("record:", "expected vcam"), ("record:x.avi", ".mp4 or .mkv"))
    for bad, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_outputs(bad)


def test_no_virtual_camera_means_the_preview_instead(caplog: pytest.LogCaptureFixture) -> None:
    preview = PreviewSink()
    sink = FallbackSink(VirtualCameraSink(backend="no-such-backend"), preview)
    sink.open(320, 180, 30.0)
    try:
        assert sink.active is preview and sink.name == "preview" and preview.size == (320, 180)
        warning = next(r.getMessage() for r in caplog.records if "instead" in r.getMessage())
        assert "no-such-backend" in warning and "preview" in warning
    finally:
        sink.close()
    # The web page's preview is fed anyway (build_sinks(always_preview=True)): the camera only says so.
    alone = FallbackSink(VirtualCameraSink(backend="no-such-backend"), None)
    alone.open(320, 180, 30.0)
    assert alone.active is None
    assert any("the picture is in the web page" in r.getMessage() for r in caplog.records)
    alone.close()
    sinks = build_sinks(("vcam",), device=None, backend="no-such-backend", preview=preview, always_preview=True)
    assert sinks[-1] is preview and len(sinks) == 2


async def test_a_run_records_what_the_camera_showed(make_emulator: object, tmp_path: Path) -> None:
    emulator = await make_emulator()  # type: ignore[operator]
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: none}\n"
        "video: {fps: 20}\n"
        "themes: {a: {prompts: [red desert]}}\n",
        encoding="utf-8",
    )
    target = tmp_path / "night.mkv"
    status = io.StringIO()
    options = RunOptions(profile=str(profile), duration=6.0, output=f"record:{target}")
    assert await run_bridge(options, status_stream=status) == 0
    with av.open(str(target)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    # 20 fps for about 6 s from its own clock, whatever Scope did meanwhile (slates before the first frame).
    assert 80 <= len(frames) <= 130, len(frames)
    assert (frames[0].width, frames[0].height) == (256, 144)
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)


async def test_a_run_in_avatar_mode_sends_the_video_file_and_shows_what_comes_back(
    make_emulator: object, tmp_path: Path
) -> None:
    from tests.test_webcam import mean_rgb, nearest, write_colour_video

    emulator = await make_emulator()  # type: ignore[operator]
    colours = [(230, 40, 40), (40, 200, 60)]
    clip = tmp_path / "dancer.mp4"
    write_colour_video(clip, colours, frames_each=15, fps=30)
    profile = tmp_path / "avatar.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [320, 576], denoising: fast, input_mode: video}}\n"
        "inputs: {audio: none}\n"
        "video: {source: file:dancer.mp4, fps: 20}\n"
        "themes: {a: {prompts: [a performer made of light]}}\n",
        encoding="utf-8",
    )
    target = tmp_path / "avatar.mkv"
    assert await run_bridge(RunOptions(profile=str(profile), duration=7.0, output=f"record:{target}"),
                            status_stream=io.StringIO()) == 0
    with av.open(str(target)) as container:
        frames = list(container.decode(container.streams.video[0]))
    assert (frames[0].width, frames[0].height) == (320, 576)
    # The emulator echoes what it receives (Scope's passthrough): the camera showed the clip's colours.
    seen = {nearest(mean_rgb(f), colours) for f in frames[-40:]}
    assert seen == set(colours), seen
