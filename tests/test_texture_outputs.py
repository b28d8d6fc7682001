"""Syphon (macOS) and Spout (Windows) out: the output words in --output and in a profile; on any other OS the clear
error that names the OS the output needs, with the clock going on with the other outputs; and where the OS allows,
a real Syphon client or Spout receiver in this process that gets the clock's picture."""

from __future__ import annotations

import importlib.util
import logging
import platform
import time
from pathlib import Path

import av
import numpy as np
import pytest

from metadj_bridge.errors import ConfigError, VideoOutputError
from metadj_bridge.profile import ProfileError, load_profile
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.outputs import build_sinks, parse_outputs
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.video.texture_sharing import ELSEWHERE, SpoutSink, SyphonSink, unavailable_reason
from tests.helpers import wait_for

SYSTEM = platform.system()
NOT_MAC = f"Syphon needs macOS; this is {SYSTEM}"
NOT_WINDOWS = f"Spout needs Windows; this is {SYSTEM}"
NO_SYPHON = "syphon-python is not installed (pip install 'metadj-bridge[syphon]')"
NO_SPOUT = "SpoutGL is not installed (pip install 'metadj-bridge[spout]'; no wheel for Python 3.14 yet)"


def grey_frame(width: int, height: int, y: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, (y, 128, 128), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def test_syphon_and_spout_words_in_the_output_list() -> None:
    assert parse_outputs("syphon:Main, spout: Main ,ndi:Main") == ("syphon:Main", "spout:Main", "ndi:Main")
    for bad, message in (("syphon", "syphon needs a name"), ("spout:", "spout needs a name"),
                         ("spout:a\tb", "printable characters"), ("texture:x", "syphon:NAME")):
        with pytest.raises(ConfigError, match=message):
            parse_outputs(bad)
    syphon, spout = build_sinks(("syphon:Main", "spout:Left"), device=None, backend=None)
    assert isinstance(syphon, SyphonSink) and syphon.name == "syphon:Main" and syphon.share_name == "Main"
    assert isinstance(spout, SpoutSink) and spout.name == "spout:Left"


def test_syphon_spout_and_ndi_words_in_a_profile(tmp_path: Path) -> None:
    profile = tmp_path / "show.yaml"
    themes = "themes: {a: {prompts: [red desert]}}\n"
    profile.write_text(themes + "video:\n  outputs: [vcam, 'ndi:Stage', 'syphon: Main', 'spout:Main', 'ndi:Stage']\n",
                       encoding="utf-8")
    assert load_profile(profile).video.outputs == ("vcam", "ndi:Stage", "syphon:Main", "spout:Main")
    profile.write_text(themes + "video:\n  outputs: [vcam, 'syphon:']\n", encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(profile)
    assert "show.yaml:3:" in str(caught.value) and "syphon needs a name" in str(caught.value)
    profile.write_text(themes + "video:\n  outputs: ['ndy:Stage']\n", encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(profile)
    assert "ndi:NAME" in str(caught.value) and "did you mean 'ndi'" in str(caught.value)


@pytest.mark.skipif(SYSTEM == "Darwin", reason="this is macOS, where Syphon works")
def test_syphon_elsewhere_says_it_needs_macos() -> None:
    sink = SyphonSink("Main")
    with pytest.raises(VideoOutputError) as caught:
        sink.open(320, 180, 30)
    message = str(caught.value)
    assert "syphon:Main" in message and "needs macOS" in message and f"this is {SYSTEM}" in message
    assert ELSEWHERE in message and sink.server is None
    sink.close()
    sink.close()


@pytest.mark.skipif(SYSTEM == "Windows", reason="this is Windows, where Spout works")
def test_spout_elsewhere_says_it_needs_windows() -> None:
    sink = SpoutSink("Main")
    with pytest.raises(VideoOutputError) as caught:
        sink.open(320, 180, 30)
    message = str(caught.value)
    assert "spout:Main" in message and "needs Windows" in message and f"this is {SYSTEM}" in message
    assert sink.sender is None
    sink.close()


def test_what_doctor_can_say_before_opening() -> None:
    syphon, spout = unavailable_reason("syphon"), unavailable_reason("spout")
    if SYSTEM != "Darwin":
        assert syphon is not None and "needs macOS" in syphon and f"this is {SYSTEM}" in syphon
    elif importlib.util.find_spec("syphon") is None:
        assert syphon is not None and "metadj-bridge[syphon]" in syphon
    else:
        assert syphon is None
    if SYSTEM != "Windows":
        assert spout is not None and "needs Windows" in spout
    elif importlib.util.find_spec("SpoutGL") is None:
        assert spout is not None and "metadj-bridge[spout]" in spout
    else:
        assert spout is None


@pytest.mark.skipif(SYSTEM in ("Darwin", "Windows"), reason="one of the two outputs works on this OS")
async def test_the_clock_goes_on_without_them(caplog: pytest.LogCaptureFixture) -> None:
    preview = PreviewSink()
    clock = OutputClock(64, 36, 50, [SyphonSink("Main"), preview, SpoutSink("Main")], slate_after=10)
    caplog.set_level(logging.WARNING, logger="metadj_bridge.video.clock")
    await clock.start()
    try:
        assert clock.sinks == (preview,)
        clock.push(grey_frame(64, 36, 150))
        await wait_for(lambda: clock.stats().live == 1, 5, "the frame shown")
    finally:
        await clock.aclose()
    off = [r.getMessage() for r in caplog.records if "is off" in r.getMessage()]
    assert len(off) == 2, off  # each said once, with the reason
    assert any("syphon:Main" in m and "needs macOS" in m for m in off)
    assert any("spout:Main" in m and "needs Windows" in m for m in off)
    assert clock.stats().sinks == ("preview",)


@pytest.mark.skipif(SYSTEM != "Darwin" or importlib.util.find_spec("syphon") is None,
                    reason=NOT_MAC if SYSTEM != "Darwin" else NO_SYPHON)
async def test_a_syphon_client_gets_the_picture() -> None:
    import syphon
    from syphon.utils.numpy import copy_mtl_texture_to_image

    name = f"metadj-test-{time.monotonic_ns()}"
    sink = SyphonSink(name)
    clock = OutputClock(64, 36, 30, [sink], slate_after=10)
    await clock.start()
    try:
        assert clock.sinks == (sink,)
        clock.push(grey_frame(64, 36, 180))
        directory = syphon.SyphonServerDirectory()
        directory.run_loop_interval = 0.05

        def found() -> list[object]:
            directory.update_run_loop()
            return directory.servers_matching_name(name=name)

        servers = await wait_for(found, 10, f"the Syphon server {name}")
        client = syphon.SyphonMetalClient(servers[0])
        try:
            await client.wait_for_frame(timeout=5)
            image = copy_mtl_texture_to_image(client.new_frame_image)
        finally:
            client.stop()
    finally:
        await clock.aclose()
    assert image.shape == (36, 64, 4)
    # Y 180 in limited range is an RGB grey of about 191, in any channel order.
    assert np.allclose(image[..., :3].mean(axis=(0, 1)), 191, atol=6)


@pytest.mark.skipif(SYSTEM != "Windows" or importlib.util.find_spec("SpoutGL") is None,
                    reason=NOT_WINDOWS if SYSTEM != "Windows" else NO_SPOUT)
async def test_a_spout_receiver_gets_the_picture() -> None:
    import array

    import SpoutGL
    from SpoutGL.enums import GL_RGBA

    name = f"metadj-test-{time.monotonic_ns()}"
    sink = SpoutSink(name)
    clock = OutputClock(64, 36, 30, [sink], slate_after=10)
    await clock.start()
    try:
        assert clock.sinks == (sink,)
        clock.push(grey_frame(64, 36, 180))
        await wait_for(lambda: sink.sent > 5, 5, "frames sent to Spout")
        with SpoutGL.SpoutReceiver() as receiver:
            receiver.setReceiverName(name)
            buffer = array.array("B", bytes(64 * 36 * 4))

            def received() -> bool:
                ok = receiver.receiveImage(buffer, GL_RGBA, False, 0)
                return bool(ok and not receiver.isUpdated() and not SpoutGL.helpers.isBufferEmpty(buffer))

            await wait_for(received, 10, f"a frame from the Spout sender {name}")
            assert (receiver.getSenderWidth(), receiver.getSenderHeight()) == (64, 36)
    finally:
        await clock.aclose()
    image = np.frombuffer(buffer, np.uint8).reshape(36, 64, 4)
    assert np.allclose(image[..., :3].mean(axis=(0, 1)), 191, atol=6)


@pytest.mark.skipif(platform.system() != "Linux", reason="checks the wrong-OS findings as Linux gives them")
def test_doctor_says_which_named_outputs_can_open_here_on_every_screen(tmp_path: Path) -> None:
    from metadj_bridge.doctor.needs import check_named_outputs
    from metadj_bridge.profile import load_profile
    from metadj_bridge.run.plan import RunOptions, make_plan
    from metadj_bridge.video.ndi import unavailable_reason

    path = tmp_path / "show.yaml"
    path.write_text("themes: {a: {prompts: [x]}}\nvideo: {outputs: [vcam, 'ndi:Main', 'syphon:Main']}\n"
                    "screens:\n  left: {video: {outputs: ['spout:Left']}}\n")
    findings = check_named_outputs(make_plan(RunOptions(), load_profile(path)))
    by_output = {f.summary.split(" ")[0].rstrip(":"): f for f in findings}
    assert set(by_output) == {"ndi:Main", "syphon:Main", "spout:Left"}
    ndi = by_output["ndi:Main"]
    assert (ndi.status.value == "ok") == (unavailable_reason() is None)
    assert by_output["syphon:Main"].status.value == "warning" and "macOS" in by_output["syphon:Main"].summary
    spout = by_output["spout:Left"]
    assert spout.status.value == "warning" and "(screen left)" in spout.summary and "Windows" in spout.summary
