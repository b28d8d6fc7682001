"""Avatar mode on Scope's side (the seed's Avatar Studio): VACE reference images, the load and offer
parameters that must agree, prompt and VACE updates with ``reset_cache``, and one call that prepares it all.

Scope routes the input video to VACE only when the offer says ``vace_enabled: true``, and does not check
that the VACE weights were loaded (load param ``vace_enabled``, default true): the two must agree
(``scope-api.md`` §2, §5, §7). Here they come from one place: true with reference images, false without
(the seed's "VACE enabled without ref images" silent failure). Reference images are server paths: local
files are uploaded through ``POST /api/v1/assets`` first; ``scope:/path`` names a file already on the server.

    setup = await open_avatar(AvatarSettings(source="/dev/video0", ref_images=("me.png",)), client)
    session = ScopeSession(SessionConfig(url, pipeline_ids=["longlive"], prompts=..., **setup.session_fields()), sender)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack

from metadj_bridge import parameters
from metadj_bridge.errors import ConfigError, ParameterError
from metadj_bridge.scope import protocol
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.video.webcam import DEFAULT_HEIGHT, DEFAULT_WIDTH, VideoSource

log = logging.getLogger(__name__)

#: A reference image already on the Scope server: used as given, not uploaded.
SERVER_PATH_PREFIX = "scope:"


@dataclass(frozen=True)
class AvatarSettings:
    """What avatar mode needs from the profile or the command line."""

    #: A webcam (``/dev/video0``, ``0``, ``FaceTime HD Camera``, ``video=Integrated Camera``) or a video file.
    source: str
    #: The pipeline's resolution; the webcam is scaled and centre-cropped to it (seed default 320x576).
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    #: Frame rate asked of a webcam; a video file plays at its own rate.
    fps: float = 30.0
    #: Capture size asked of a webcam (None: the device's default).
    capture_size: tuple[int, int] | None = None
    #: VACE reference images: local paths (uploaded) or ``scope:/server/path``.
    ref_images: tuple[str, ...] = ()
    #: VACE strength (0-2); None leaves Scope's default (1.0).
    vace_context_scale: float | None = None
    #: How long the source may take to deliver its first frame before it counts as missing or busy.
    first_frame_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ConfigError(f"avatar size {self.width}x{self.height}: width and height must be even and positive")
        if not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            raise ConfigError(f"avatar fps: {self.fps} is outside the allowed range (more than 0, at most 240)")
        if self.vace_context_scale is not None:
            _check_scale(self.vace_context_scale)
        if not (math.isfinite(self.first_frame_timeout) and self.first_frame_timeout > 0):
            raise ConfigError(f"avatar first-frame timeout: {self.first_frame_timeout} must be a number of seconds > 0")


# ------------------------------------------------------------------------------------------------ pure builders


def avatar_load_params(
    width: int, height: int, ref_paths: Sequence[str], base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Pipeline load params: the avatar size, and ``vace_enabled`` true exactly when there are reference images."""
    params = dict(base or {})
    params.update(height=height, width=width, vace_enabled=bool(ref_paths))
    return params


def avatar_offer_params(ref_paths: Sequence[str], vace_context_scale: float | None = None) -> dict[str, Any]:
    """The offer-only keys (``SessionConfig.offer_extra``): ``vace_enabled`` as at load, and the images.

    Kept out of the sender's state on purpose: ``vace_ref_images`` is one-shot, so every new session's offer
    has to carry it again.
    """
    extra: dict[str, Any] = {"vace_enabled": bool(ref_paths)}
    if ref_paths:
        extra["vace_ref_images"] = list(ref_paths)
    if vace_context_scale is not None:
        extra["vace_context_scale"] = _check_scale(vace_context_scale)
    return extra


def avatar_update(
    *,
    vace_enabled: bool,
    prompts: Any = None,
    ref_paths: Sequence[str] | None = None,
    vace_context_scale: float | None = None,
) -> dict[str, Any]:
    """A data-channel update as the seed sends it: the changes plus ``reset_cache: true``.

    ``ref_paths`` are server paths (``[]`` clears the images). Images need VACE loaded: with ``vace_enabled``
    false they are refused, since Scope would ignore them (start avatar mode with reference images instead).
    """
    message: dict[str, Any] = {}
    if prompts is not None:
        message["prompts"] = parameters.normalise_prompts(prompts)
    if ref_paths is not None:
        if ref_paths and not vace_enabled:
            raise ParameterError(
                "vace_ref_images: VACE was loaded without reference images (vace_enabled false), so Scope would "
                "ignore them; restart avatar mode with reference images to use them"
            )
        message["vace_ref_images"] = list(ref_paths)
    if vace_context_scale is not None:
        message["vace_context_scale"] = _check_scale(vace_context_scale)
    if not message:
        raise ParameterError("an avatar update needs a prompt, reference images or a VACE context scale")
    message["reset_cache"] = True
    return message


def _check_scale(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 2:
        raise ParameterError(f"vace_context_scale: {value!r} is outside the allowed range (0-2)")
    return float(value)


# ------------------------------------------------------------------------------------------------ uploads


def split_ref_images(refs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """(local files to upload, server paths to use as given); ConfigError naming a local file that is missing."""
    local: list[Path] = []
    remote: list[str] = []
    for ref in refs:
        if ref.startswith(SERVER_PATH_PREFIX):
            remote.append(ref[len(SERVER_PATH_PREFIX) :])
            continue
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"VACE reference image {ref!r} is not a file here; give a local image to upload, "
                f"or {SERVER_PATH_PREFIX}/path/on/the/scope/server for one already there"
            )
        local.append(path)
    return local, remote


async def upload_ref_images(client: ScopeClient, refs: Iterable[str]) -> list[str]:
    """The server paths for ``refs``, in the given order: local files uploaded, ``scope:`` paths as given."""
    refs = list(refs)
    local, _ = split_ref_images(refs)  # every path checked before the first upload
    files = iter(local)  # the local refs' paths, in order
    paths: list[str] = []
    for ref in refs:
        if ref.startswith(SERVER_PATH_PREFIX):
            paths.append(ref[len(SERVER_PATH_PREFIX) :])
        else:
            server_path = await client.upload_asset(next(files))
            log.info("uploaded VACE reference image %s as %s", ref, server_path)
            paths.append(server_path)
    return paths


# ------------------------------------------------------------------------------------------------ the whole setup


@dataclass
class AvatarSetup:
    """What a video-mode session needs, with the picture source already delivering frames."""

    settings: AvatarSettings
    source: VideoSource
    #: Server paths of the reference images (empty: VACE off).
    ref_paths: list[str]
    load_params: dict[str, Any]
    #: Shared with the session config (``session_fields``): ``update`` keeps it current for later sessions.
    offer_extra: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """The picture source's (a webcam being reopened), for the performer's status."""
        return self.source.problems()

    @property
    def vace_enabled(self) -> bool:
        return bool(self.load_params.get("vace_enabled"))

    @property
    def track_factory(self) -> Callable[[], MediaStreamTrack]:
        return self.source.make_track

    def session_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``SessionConfig``: input mode, load params, offer keys, track factory."""
        return {
            "input_mode": "video",
            "load_params": self.load_params,
            "offer_extra": self.offer_extra,
            "video_track_factory": self.track_factory,
        }

    def initial_parameters(
        self,
        pipeline_ids: Sequence[str],
        prompts: Any,
        denoising_step_list: Sequence[int] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The offer's ``initialParameters`` for these settings (what ``doctor`` shows and tests check)."""
        return protocol.build_initial_parameters(
            pipeline_ids,
            input_mode="video",
            prompts=prompts,
            denoising_step_list=denoising_step_list,
            state=state,
            extra=self.offer_extra,
        )

    async def update(
        self,
        client: ScopeClient,
        sender: ParameterSender,
        *,
        prompts: Any = None,
        ref_images: Sequence[str] | None = None,
        vace_context_scale: float | None = None,
    ) -> dict[str, Any]:
        """Upload any new local images, send the change with ``reset_cache: true``, and return the message.

        The offer keys follow, so a session rebuilt later starts with the new images and scale.
        """
        ref_paths = None if ref_images is None else await upload_ref_images(client, ref_images)
        message = avatar_update(
            vace_enabled=self.vace_enabled, prompts=prompts, ref_paths=ref_paths, vace_context_scale=vace_context_scale
        )
        sender.update(message, urgent=True)
        if ref_paths is not None:
            self.ref_paths = ref_paths
            if ref_paths:
                self.offer_extra["vace_ref_images"] = list(ref_paths)
            else:
                self.offer_extra.pop("vace_ref_images", None)
        if vace_context_scale is not None:
            self.offer_extra["vace_context_scale"] = message["vace_context_scale"]
        return message

    async def aclose(self) -> None:
        await self.source.aclose()


async def open_avatar(
    settings: AvatarSettings, client: ScopeClient, *, base_load_params: Mapping[str, Any] | None = None
) -> AvatarSetup:
    """Upload the reference images, open the source and wait for its first frame.

    Raises ConfigError (a reference image that is not there), ScopeError (the upload failed) or
    VideoInputError (a missing or busy webcam, a file that is not a video; the message names the cameras
    present). Start the session only after this returns: Scope should never wait on a dark webcam.
    """
    split_ref_images(settings.ref_images)
    source = VideoSource(
        settings.source, settings.width, settings.height, fps=settings.fps, capture_size=settings.capture_size
    )
    try:
        source.start()
        ref_paths = await upload_ref_images(client, settings.ref_images)
        await source.wait_first_frame(settings.first_frame_timeout)
    except BaseException:
        await source.aclose()
        raise
    log.info(
        "avatar source %s delivering %dx%d; VACE %s",
        source.spec.url,
        settings.width,
        settings.height,
        f"on with {len(ref_paths)} reference image(s)" if ref_paths else "off (no reference images)",
    )
    return AvatarSetup(
        settings=settings,
        source=source,
        ref_paths=ref_paths,
        load_params=avatar_load_params(settings.width, settings.height, ref_paths, base_load_params),
        offer_extra=avatar_offer_params(ref_paths, settings.vace_context_scale),
    )
