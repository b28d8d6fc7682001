"""``metadj-bridge doctor``'s video check: a short real session, in the show's own input mode, with its own source.

A video-mode show (avatar mode, or a video-only pipeline such as passthrough) gets no picture from Scope unless
the bridge sends one, so the check opens the same source ``run`` would (``video.source`` / ``--video-source``:
a webcam or ``file:clip.mp4``; without one, the first camera that is not a virtual one) and offers the session in
video mode with it. A text-mode show is offered in text mode without input video. Then it counts the frames
that come back, and reads the session's pause state (``GET /api/v1/session/parameters``, which a real Scope
0.2.4 answers wrapped: ``{"parameters": {..., "paused": ...}}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metadj_bridge.doctor.checks import Finding, Prompts, Status, get_json, stuck_action
from metadj_bridge.errors import (
    ConfigError,
    PipelineLoadError,
    PipelineLoadTimeout,
    ScopeError,
    VideoError,
)
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.urls import endpoint, redact_url


@dataclass(frozen=True)
class VideoNeeds:
    """What the show's session needs, as ``run`` would make it."""

    pipeline_id: str
    load_params: Mapping[str, Any]
    prompts: Prompts
    input_mode: str = "text"
    #: Video mode: the webcam or ``file:...`` to send (None: the first real camera, as ``run`` picks).
    video_source: str | None = None
    ref_images: tuple[str, ...] = ()
    #: Video mode: the size the source is scaled to (the pipeline's load size).
    size: tuple[int, int] = (512, 512)


# ------------------------------------------------------------------------------------------------ pause


def session_parameters_of(data: Any) -> dict[str, Any] | None:
    """The parameters in an answer of ``GET /api/v1/session/parameters``: a real Scope 0.2.4 wraps them
    (``{"parameters": {...}}``); older servers and the emulator answered them bare. None for anything else."""
    if not isinstance(data, Mapping):
        return None
    inner = data.get("parameters")
    if isinstance(inner, Mapping):
        return dict(inner)
    return dict(data)


def check_paused(parameters: Mapping[str, Any] | None) -> Finding:
    """The session's parameters as Scope reports them (either shape of GET /api/v1/session/parameters) (pure)."""
    parameters = session_parameters_of(parameters) if parameters is not None else None
    if parameters is None:
        return Finding("paused", Status.SKIPPED, "Scope does not report session parameters")
    if parameters.get("paused") is True:
        return Finding("paused", Status.PROBLEM, "the session is paused (paused: true): Scope generates nothing",
                       "send {\"paused\": false}; parameter updates from the REST API, OSC or another client reach "
                       "every session, so look for who paused it (the bridge starts every session with paused: false)")
    return Finding("paused", Status.OK, "not paused")


async def session_parameters(url: str, wait_s: float = 3.0) -> dict[str, Any] | None:
    """``GET /api/v1/session/parameters``: the newest session's parameters, or None where Scope has no such endpoint."""
    return session_parameters_of(await get_json(url, "/api/v1/session/parameters", wait_s=wait_s))


# ------------------------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class VideoProbe:
    """What came back on Scope's video track while the doctor listened."""

    frames: int
    seconds: float
    #: Seconds from the last frame to the end of listening (None: no frame at all).
    since_last: float | None
    size: tuple[int, int] | None = None


def video_finding(probe: VideoProbe, *, stall: float = 1.5, input_mode: str = "text") -> Finding:
    """Frames arriving, none at all, or stopped part way (pure)."""
    details = {"frames": probe.frames, "seconds": round(probe.seconds, 2), "size": probe.size, "input_mode": input_mode}
    if probe.frames == 0:
        return Finding("video", Status.PROBLEM,
                       f"connected in {input_mode} mode, but the video track stayed silent: no frame in "
                       f"{probe.seconds:.1f} s",
                       "the seed's causes: the session is paused, VACE is on without reference images, the offer "
                       "named no loaded pipeline (pipeline_ids), or the pipeline is still warming up on its first "
                       "chunk; look at Scope's log, and restart Scope if it stays silent", details)
    fps = probe.frames / probe.seconds if probe.seconds > 0 else 0.0
    details["fps"] = round(fps, 1)
    if probe.since_last is not None and probe.since_last > stall:
        return Finding("video", Status.PROBLEM,
                       f"the video stopped: {probe.frames} frame(s), then nothing for {probe.since_last:.1f} s",
                       "Scope 0.2.4 can stop its video without telling the client (VP8 after a pause): run heals this "
                       "with a new session, but if it keeps happening restart Scope", details)
    size = f" at {probe.size[0]}x{probe.size[1]}" if probe.size else ""
    return Finding("video", Status.OK, f"video arriving in {input_mode} mode: {probe.frames} frames in "
                   f"{probe.seconds:.1f} s ({fps:.0f} fps){size}", "", details)


# ------------------------------------------------------------------------------------------------ the session


async def open_show_source(needs: VideoNeeds, client: ScopeClient) -> tuple[Any, Finding | None]:
    """Video mode: (the opened source with its session fields, None) as ``run`` opens it, or (None, the problem)."""
    from metadj_bridge.run.parts import first_camera
    from metadj_bridge.video.vace import AvatarSettings, open_avatar

    source = needs.video_source
    try:
        if not source:
            source = await asyncio.to_thread(first_camera)
        settings = AvatarSettings(source=source, width=needs.size[0], height=needs.size[1],
                                  ref_images=needs.ref_images)
        base = {"width": needs.size[0], "height": needs.size[1]}
        return await open_avatar(settings, client, base_load_params=base), None
    except (VideoError, ConfigError, ScopeError) as exc:
        return None, Finding("video", Status.PROBLEM,
                             f"{needs.pipeline_id} takes video input, and the show's input video cannot be opened: "
                             f"{exc}",
                             "give the show its input with video.source in the profile, --video-source or "
                             "METADJ_VIDEO_SOURCE (a webcam such as /dev/video0, or file:clip.mp4); run needs it too",
                             {"stage": "source", "source": source})


async def _load(client: ScopeClient, needs: VideoNeeds, load_params: Mapping[str, Any],
                load_timeout: float) -> Finding | None:
    """Load what the show needs (as ``run`` would); a finding when that fails."""
    pipeline_id = needs.pipeline_id
    try:
        await client.ensure_pipeline([pipeline_id], load_params, timeout=load_timeout)
    except PipelineLoadTimeout as exc:
        return Finding("video", Status.PROBLEM, f"could not test the video: {exc}".split(". Likely causes")[0],
                       stuck_action(client.url, pipeline_id, load_params), {"stage": "load"})
    except PipelineLoadError as exc:  # the message quotes Scope's log and says what to do about that cause
        return Finding("video", Status.PROBLEM, f"could not test the video: {exc}",
                       f"Scope's log: {redact_url(endpoint(client.url, '/api/v1/logs/current'))}", {"stage": "load"})
    except ScopeError as exc:
        return Finding("video", Status.PROBLEM, f"could not load the pipeline to test the video: {exc}",
                       "check Scope's log", {"stage": "load"})
    return None


async def check_video(
    client: ScopeClient,
    needs: VideoNeeds,
    *,
    listen: float = 3.0,
    first_frame_timeout: float = 15.0,
    load_timeout: float = 180.0,
    connect_timeout: float = 15.0,
) -> list[Finding]:
    """Open the show's source (video mode), load what the show needs, open a short session in the show's mode,
    wait for the first frame and count the frames for ``listen`` seconds from there."""
    avatar = None
    fields: dict[str, Any] = {"input_mode": "text", "load_params": dict(needs.load_params)}
    if needs.input_mode == "video":
        avatar, problem = await open_show_source(needs, client)
        if problem is not None:
            return [problem]
        fields = avatar.session_fields()
    try:
        problem = await _load(client, needs, fields["load_params"], load_timeout)
        if problem is not None:
            return [problem]
        return await _listen(client, needs, fields, listen=listen, first_frame_timeout=first_frame_timeout,
                             load_timeout=load_timeout, connect_timeout=connect_timeout)
    finally:
        if avatar is not None:
            with contextlib.suppress(Exception):
                await avatar.aclose()


async def _listen(client: ScopeClient, needs: VideoNeeds, fields: dict[str, Any], *, listen: float,
                  first_frame_timeout: float, load_timeout: float, connect_timeout: float) -> list[Finding]:
    from metadj_bridge.scope.sender import ParameterSender
    from metadj_bridge.scope.session import ScopeSession, SessionConfig, SessionState

    legacy = client.api_generation == "legacy"
    config = SessionConfig(url=client.url, pipeline_ids=[needs.pipeline_id], prompts=needs.prompts,
                           no_frame_timeout=listen + 30, first_frame_timeout=first_frame_timeout + listen + 30,
                           connect_timeout=connect_timeout, load_timeout=load_timeout, reconnect_probe_interval=0,
                           **fields)
    session = ScopeSession(config, ParameterSender(), client=client)
    times: list[float] = []
    size: list[tuple[int, int]] = []
    first_frame = asyncio.Event()

    def on_frame(frame: Any) -> None:
        times.append(time.monotonic())
        if not size:
            size.append((int(frame.width), int(frame.height)))
        first_frame.set()

    session.add_frame_listener(on_frame)
    findings: list[Finding] = []
    try:
        await session.start()
        deadline = time.monotonic() + connect_timeout + 5
        while session.state is not SessionState.STREAMING and session.last_error is None:
            supervisor = session.supervisor
            if time.monotonic() > deadline or supervisor is None or supervisor.done():
                break
            await asyncio.sleep(0.05)
        if session.state is not SessionState.STREAMING:
            reason = session.last_error or f"no session within {connect_timeout:g} s"
            return [Finding("video", Status.PROBLEM, f"the WebRTC session did not come up: {reason}",
                            "for a remote Scope this usually means no ICE route: see the ice findings (a TURN server); "
                            "otherwise check Scope's log", {"stage": "session"})]
        # A GPU pipeline takes a while over its first chunk: wait for it, then listen from there.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_frame.wait(), first_frame_timeout)
        if times:
            await asyncio.sleep(max(0.0, times[0] + listen - time.monotonic()))
            end = time.monotonic()
            probe = VideoProbe(len(times), end - times[0], end - times[-1], size[0] if size else None)
        else:
            probe = VideoProbe(0, first_frame_timeout, None)
        findings.append(video_finding(probe, stall=min(1.5, listen / 2), input_mode=needs.input_mode))
        if legacy:
            findings.append(Finding("scope-api", Status.OK, "this Scope uses the older load API "
                                    "({\"pipeline_id\": ...}); the bridge speaks it too"))
        findings.append(check_paused(await session_parameters(client.url)))
    finally:
        with contextlib.suppress(Exception):
            await session.aclose()
    return findings
