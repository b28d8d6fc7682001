"""Avatar mode: VACE load/offer consistency and updates (pure), reference image uploads, and a generated video
file as the webcam through a real WebRTC session with the emulator's passthrough."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import ConfigError, ParameterError, VideoInputError
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import Backoff, ScopeSession, SessionConfig
from metadj_bridge.video.vace import (
    AvatarSettings,
    avatar_load_params,
    avatar_offer_params,
    avatar_update,
    open_avatar,
    split_ref_images,
    upload_ref_images,
)
from tests.conftest import emulator_get
from tests.helpers import wait_for
from tests.test_webcam import BLUE, GREEN, RED, mean_rgb, write_colour_video

COLOURS = [RED, GREEN, BLUE]


# ------------------------------------------------------------------------------------------------ pure


def test_vace_is_on_at_load_and_in_the_offer_exactly_when_there_are_images() -> None:
    with_images = ["/srv/assets/face.png"]
    assert avatar_load_params(320, 576, with_images) == {"height": 576, "width": 320, "vace_enabled": True}
    assert avatar_offer_params(with_images, 0.7) == {
        "vace_enabled": True,
        "vace_ref_images": ["/srv/assets/face.png"],
        "vace_context_scale": 0.7,
    }
    # Without images VACE stays off on both sides (Scope's load default is true: it must be said).
    assert avatar_load_params(320, 576, [], {"base_seed": 7, "vace_enabled": True}) == {
        "base_seed": 7,
        "height": 576,
        "width": 320,
        "vace_enabled": False,
    }
    assert avatar_offer_params([]) == {"vace_enabled": False}


def test_updates_carry_reset_cache_as_the_seed_sends_them() -> None:
    update = avatar_update(vace_enabled=True, prompts="me, in chrome", ref_paths=["/a.png"], vace_context_scale=1.5)
    assert update == {
        "prompts": [{"text": "me, in chrome", "weight": 1.0}],
        "vace_ref_images": ["/a.png"],
        "vace_context_scale": 1.5,
        "reset_cache": True,
    }
    assert avatar_update(vace_enabled=True, ref_paths=[]) == {"vace_ref_images": [], "reset_cache": True}


def test_updates_that_scope_would_ignore_or_reject_are_refused() -> None:
    with pytest.raises(ParameterError, match="restart avatar mode with reference images"):
        avatar_update(vace_enabled=False, ref_paths=["/a.png"])
    with pytest.raises(ParameterError, match=r"vace_context_scale: 2\.5 is outside the allowed range \(0-2\)"):
        avatar_update(vace_enabled=True, vace_context_scale=2.5)
    with pytest.raises(ParameterError, match="needs a prompt"):
        avatar_update(vace_enabled=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 321}, "321x576"),
        ({"fps": 0}, "avatar fps: 0"),
        ({"vace_context_scale": -1}, "vace_context_scale: -1"),
        ({"first_frame_timeout": 0}, "first-frame timeout: 0"),
    ],
)
def test_avatar_settings_refuse_values_that_cannot_work(fields: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigError, ParameterError), match=message):
        AvatarSettings(source="0", **fields)


def test_reference_images_are_local_files_or_named_server_paths(tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(b"png")
    local, remote = split_ref_images([str(face), "scope:/root/.daydream-scope/assets/logo.png"])
    assert local == [face] and remote == ["/root/.daydream-scope/assets/logo.png"]
    with pytest.raises(ConfigError, match=r"'missing\.png' is not a file here.*scope:/path"):
        split_ref_images(["missing.png"])


# ------------------------------------------------------------------------------------------------ against the emulator


async def test_reference_images_upload_to_the_assets_endpoint(emulator: ScopeEmulator, tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(b"\x89PNG\r\n\x1a\n-a face-")
    async with ScopeClient(emulator.url) as client:
        paths = await upload_ref_images(client, [str(face), "scope:/already/there.png"])
    assert paths[1] == "/already/there.png"
    assert Path(paths[0]).name.endswith("face.png")
    # The emulator stores assets on this machine.
    assert Path(paths[0]).read_bytes() == face.read_bytes()  # noqa: ASYNC240 - a test reads a small file back


async def test_avatar_mode_end_to_end_with_a_video_file_as_the_webcam(emulator: ScopeEmulator, tmp_path: Path) -> None:
    video = write_colour_video(tmp_path / "me.mp4", COLOURS, frames_each=8, fps=20)
    face = tmp_path / "face.png"
    face.write_bytes(b"\x89PNG-face")
    settings = AvatarSettings(source=str(video), ref_images=(str(face),), vace_context_scale=0.8)
    async with ScopeClient(emulator.url) as client:
        setup = await open_avatar(settings, client)
        try:
            # The session starts only now, with the source already delivering.
            assert setup.source.first_frame_at is not None and setup.source.stats().frames_captured >= 1
            sender = ParameterSender(pacer=PacerConfig(chunk_frames=4))
            config = SessionConfig(
                url=emulator.url,
                pipeline_ids=["passthrough"],
                prompts="me, in liquid chrome",
                ice_servers=[],
                backoff=Backoff(base=0.2, cap=1.0),
                no_frame_timeout=3.0,
                **setup.session_fields(),
            )
            session = ScopeSession(config, sender, client=client)
            frames: list[av.VideoFrame] = []
            session.add_frame_listener(frames.append)
            await session.start()
            try:
                await session.wait_streaming(timeout=20)
                await wait_for(lambda: len(frames) >= 30, 20, "30 echoed frames")
                await _check_echo(frames)
                await _check_vace_on_both_sides(emulator, setup.ref_paths, face)
                await _check_update(emulator, setup, client, sender, tmp_path)
            finally:
                await session.aclose()
        finally:
            await setup.aclose()


async def _check_echo(frames: list[av.VideoFrame]) -> None:
    assert {(f.width, f.height) for f in frames} == {(320, 576)}
    seen = []
    for frame in frames:
        rgb = mean_rgb(frame)
        errors = [float(np.abs(rgb - np.array(c)).max()) for c in COLOURS]
        if min(errors) < 25:  # frames at a colour cut may be mixed by the codec; the rest are the file's colours
            seen.append(COLOURS[int(np.argmin(errors))])
    assert len(seen) >= 0.8 * len(frames)
    runs = [c for i, c in enumerate(seen) if i == 0 or seen[i - 1] != c]
    assert len(runs) >= 2
    start = COLOURS.index(runs[0])
    assert runs == [COLOURS[(start + i) % 3] for i in range(len(runs))]  # in the file's order


async def _check_vace_on_both_sides(emulator: ScopeEmulator, ref_paths: list[str], face: Path) -> None:
    assert len(ref_paths) == 1
    assert Path(ref_paths[0]).read_bytes() == face.read_bytes()  # noqa: ASYNC240 - a test reads a small file back
    status = await emulator_get(emulator.url, "/api/v1/pipeline/status")
    assert status["load_params"] == {"height": 576, "width": 320, "vace_enabled": True}
    offer = (await emulator_get(emulator.url, "/_emulator/log"))["offers"][-1]
    assert offer["input_mode"] == "video" and offer["pipeline_ids"] == ["passthrough"]
    assert offer["vace_enabled"] is True
    assert offer["vace_ref_images"] == ref_paths
    assert offer["vace_context_scale"] == 0.8


async def _check_update(
    emulator: ScopeEmulator, setup: Any, client: ScopeClient, sender: ParameterSender, tmp_path: Path
) -> None:
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"\x89PNG-mask")
    message = await setup.update(client, sender, prompts="me, as marble", ref_images=[str(mask)])
    new_path = message["vace_ref_images"][0]
    assert Path(new_path).read_bytes() == mask.read_bytes()  # noqa: ASYNC240 - a test reads a small file back

    async def arrived() -> bool:
        log = await emulator_get(emulator.url, "/_emulator/log")
        return any(
            m["message"].get("vace_ref_images") == [new_path] and m["message"].get("reset_cache") is True
            for m in log["received"]
        )

    await wait_for(arrived, 10, "the VACE update with reset_cache on the data channel")
    # A session rebuilt later offers the new image again (vace_ref_images is one-shot in Scope).
    assert setup.initial_parameters(["passthrough"], "me")["vace_ref_images"] == [new_path]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
async def test_no_picture_means_no_avatar_setup(emulator: ScopeEmulator, tmp_path: Path) -> None:
    fifo = tmp_path / "webcam.mkv"
    os.mkfifo(fifo)
    settings = AvatarSettings(source=str(fifo), first_frame_timeout=0.3)

    def end_of_file() -> None:  # a writer that closes at once: the reader gets out of its blocking open
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    asyncio.get_running_loop().call_later(0.5, end_of_file)
    async with ScopeClient(emulator.url) as client:
        with pytest.raises(VideoInputError, match="no picture from video file"):
            await open_avatar(settings, client)
    log = await emulator_get(emulator.url, "/_emulator/log")
    assert log["offers"] == []
