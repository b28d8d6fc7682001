"""What one ``metadj-bridge run`` will do: the show profile's settings, overridden by command-line flags.

Pure: a :class:`RunOptions` (the flags, ``None`` where not given) and a :class:`ShowProfile` in, a
:class:`RunPlan` out. The order of precedence is flag > profile > built-in default.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metadj_bridge import parameters
from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.midi_decode import (
    Cc14Pair,
    MidiControlConfig,
    RelativeEncoder,
)
from metadj_bridge.profile.addresses import scope_url_problem
from metadj_bridge.profile.model import CycleSettings, PromptSpec, ShowProfile, Theme
from metadj_bridge.profile.sections import MAX_MAX_SEND_INTERVAL, MAX_MIN_SEND_INTERVAL
from metadj_bridge.profile.themes import MAX_CYCLE_BARS
from metadj_bridge.run.screens import ScreenPlan, check_screens, scope_size, screen_plans
from metadj_bridge.scope.api import normalise_url

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """``metadj-bridge run``'s flags; None means "as the profile says"."""

    profile: str | None = None
    scope_url: str | None = None
    pipeline: str | None = None
    aspect: str | None = None
    denoise: str | None = None
    #: --prompt: these prompts replace the profile's themes (one theme each).
    prompts: list[str] = field(default_factory=list)
    #: --cycle: bars per theme when the themes cycle by themselves.
    cycle_bars: int | None = None
    duration: float | None = None
    no_frame_timeout: float = 5.0
    min_send_interval: float | None = None
    max_send_interval: float | None = None
    emulator_fps: float | None = None
    #: The built-in emulator imitates a far server: what it receives arrives this many ms late.
    emulator_delay_ms: float | None = None
    audio_file: str | None = None
    audio_device: str | None = None
    no_audio: bool = False
    midi: list[str] = field(default_factory=list)
    midi_virtual: str | None = None
    osc_port: int | None = None
    osc_host: str | None = None
    link: bool = False
    osc_out: str | None = None
    #: Reload the profile when its file is saved.
    watch: bool = True
    #: --output: "vcam,record:show.mp4,preview" or "none".
    output: str | None = None
    preview_port: int | None = None
    #: --video-source: avatar mode's webcam or video file.
    video_source: str | None = None
    #: --status-port: deprecated alias of --http-port (kept for one release).
    status_port: int | None = None
    #: --http-host, --http-port, --http-token: the web server (control page, preview, status, API; docs/web.md).
    http_host: str | None = None
    http_port: int | None = None
    http_token: str | None = None
    #: --show-log: the JSONL show log's path, or "none"; default: a new file in the per-OS state folder.
    show_log: str | None = None
    #: --rehearse: the emulator with a GPU-like pace, the demo track and the preview, whatever the profile says.
    rehearse: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RunOptions:
        """Flags first, then ``METADJ_*`` environment variables (e.g. METADJ_SCOPE, METADJ_PROFILE, METADJ_OUTPUT),
        then the profile (in :func:`make_plan`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = from_environment(os.environ if environ is None else environ)
        given = {k: v for k, v in vars(args).items() if k in names and v is not None}
        given = {k: v for k, v in given.items() if not (k in values and v in ([], False))}  # unset flags
        values.update(given)
        if getattr(args, "scope", None) is not None:
            values["scope_url"] = args.scope
        if getattr(args, "prompt", None):
            values["prompts"] = list(args.prompt)
        if getattr(args, "cycle", None) is not None:
            values["cycle_bars"] = args.cycle
        if getattr(args, "no_watch", False):
            values["watch"] = False
        return cls(**values)


#: Environment variables that settle ``run`` settings (a flag given on the command line wins).
ENVIRONMENT = {
    "METADJ_PROFILE": "profile", "METADJ_SCOPE": "scope_url", "METADJ_PIPELINE": "pipeline", "METADJ_ASPECT": "aspect",
    "METADJ_DENOISE": "denoise", "METADJ_OUTPUT": "output", "METADJ_PREVIEW_PORT": "preview_port",
    "METADJ_VIDEO_SOURCE": "video_source", "METADJ_AUDIO_FILE": "audio_file", "METADJ_AUDIO_DEVICE": "audio_device",
    "METADJ_NO_AUDIO": "no_audio", "METADJ_MIDI": "midi", "METADJ_MIDI_VIRTUAL": "midi_virtual",
    "METADJ_OSC_PORT": "osc_port", "METADJ_OSC_HOST": "osc_host", "METADJ_OSC_OUT": "osc_out", "METADJ_LINK": "link",
    "METADJ_STATUS_PORT": "status_port", "METADJ_DURATION": "duration", "METADJ_REHEARSE": "rehearse",
    "METADJ_SHOW_LOG": "show_log", "METADJ_HTTP_HOST": "http_host", "METADJ_HTTP_PORT": "http_port",
    "METADJ_HTTP_TOKEN": "http_token",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``RunOptions`` fields from ``METADJ_*`` variables; a value of the wrong type is a ConfigError naming it."""
    types = {f.name: str(f.type) for f in dataclasses.fields(RunOptions)}
    out: dict[str, Any] = {}
    for variable, name in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None:
            continue
        kind = types[name]
        try:
            if kind == "bool":
                if raw.strip().lower() not in _TRUE + _FALSE:
                    raise ValueError("expected 1/0, true/false, yes/no")
                out[name] = raw.strip().lower() in _TRUE
            elif kind.startswith("int"):
                out[name] = int(raw)
            elif kind.startswith("float"):
                out[name] = float(raw)
            elif kind.startswith("list"):
                out[name] = [item.strip() for item in raw.split(",") if item.strip()]
            elif not raw.strip():  # as on the command line: empty is never a name, a path or an address
                raise ValueError("must not be empty (unset it for the default)")
            else:
                out[name] = raw
        except ValueError as exc:
            raise ConfigError(f"environment variable {variable}={raw!r}: {exc}") from None
    return out


@dataclass(frozen=True)
class RunPlan:
    profile: ShowProfile
    scope_url: str | None
    pipeline: str
    width: int
    height: int
    denoising: tuple[int, ...]
    input_mode: str
    min_send_interval: float
    max_send_interval: float
    #: "demo", "file", "device" or "none", with the file path or device name.
    audio: str
    audio_path: str | None
    audio_device: str | None
    #: Input gain and the room-level follower (the profile's inputs.audio.gain / normalise).
    audio_gain: float
    audio_normalise: bool
    midi: tuple[str, ...]
    midi_virtual: str | None
    midi_feedback: str | None
    midi_controls: MidiControlConfig
    osc_port: int | None
    osc_host: str
    osc_presets: tuple[str, ...]
    osc_out: str | None
    link: bool
    duration: float | None
    no_frame_timeout: float
    emulator_fps: float | None
    emulator_delay_ms: float
    watch: bool
    #: Video outputs ("vcam", "preview", "record:<path>"), the camera's size and rate, and the rest of ``video:``.
    video_outputs: tuple[str, ...]
    video_size: tuple[int, int]
    video_fps: float
    video_device: str | None
    video_backend: str | None
    slate_after: float
    preview_port: int
    status_port: int | None
    #: The web server: host, port (8765 by default; --status-port and --preview-port are its old names), token.
    http_host: str
    http_port: int
    http_token: str | None
    #: Avatar mode: the webcam or "file:<video>" (None: the first real camera), and VACE reference images.
    video_source: str | None
    ref_images: tuple[str, ...]
    #: The show's further screens (``screens:``), each on its own Scope server.
    screens: tuple[ScreenPlan, ...] = ()
    #: Where the audio file and the OSC out address were given, for the errors a file or an address the system
    #: refuses gives at the start: the profile's ``file:line:column: key``, else "" and "--osc-out".
    audio_where: str = ""
    osc_out_where: str = "--osc-out"


def _check_send_bounds(lo: float, hi: float) -> None:
    if not 0 < lo <= hi:
        raise ConfigError(f"send interval bounds: the minimum {lo:g} s must be > 0 and <= the maximum {hi:g} s")
    if lo > MAX_MIN_SEND_INTERVAL or hi > MAX_MAX_SEND_INTERVAL:  # held to the profile's scope.sender rule
        raise ConfigError(f"send interval bounds: the minimum {lo:g} s may be at most {MAX_MIN_SEND_INTERVAL:g} s and "
                          f"the maximum {hi:g} s at most {MAX_MAX_SEND_INTERVAL:g} s")


def _with_prompts(profile: ShowProfile, prompts: list[str], cycle_bars: int | None) -> ShowProfile:
    if prompts:
        themes = tuple(Theme(name=f"prompt {i + 1}", prompts=(PromptSpec(text),)) for i, text in enumerate(prompts))
        cycle = profile.cycle or CycleSettings()
        profile = dataclasses.replace(
            profile,
            themes=themes,
            start_theme=None,
            cycle=dataclasses.replace(cycle, themes=()) if len(themes) > 1 else None,
        )
    if cycle_bars is not None:
        if not 1 <= cycle_bars <= MAX_CYCLE_BARS:  # as the profile's cycle.every_bars
            raise ConfigError(f"--cycle {cycle_bars}: must be 1-{MAX_CYCLE_BARS} bars")
        cycle = dataclasses.replace(profile.cycle or CycleSettings(), every_bars=cycle_bars)
        profile = dataclasses.replace(profile, cycle=cycle)
    return profile


def make_plan(options: RunOptions, profile: ShowProfile) -> RunPlan:
    """Settle every setting: flag, else profile, else default. Raises ConfigError for impossible combinations."""
    if options.duration is not None and options.duration <= 0:
        raise ConfigError(f"--duration {options.duration:g}: must be more than 0 seconds")
    if options.emulator_fps is not None and not 0 < options.emulator_fps <= 240:
        raise ConfigError(f"--emulator-fps {options.emulator_fps:g}: must be more than 0 and at most 240")
    delay_ms = options.emulator_delay_ms or 0.0
    if not 0 <= delay_ms <= 5000:
        raise ConfigError(f"--emulator-delay-ms {delay_ms:g}: must be from 0 to 5000 ms")
    if options.audio_file and options.audio_device is not None:
        raise ConfigError("give either --audio-file or --audio-device, not both")
    if options.osc_out is not None:
        host, _, port = options.osc_out.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--osc-out {options.osc_out!r}: expected HOST:PORT, e.g. 192.168.1.20:9000")
    profile = _with_prompts(profile, options.prompts, options.cycle_bars)
    scope = profile.scope
    url = options.scope_url if options.scope_url is not None else scope.url
    if options.scope_url is not None and (problem := scope_url_problem(options.scope_url.strip())):
        raise ConfigError(f"--scope {options.scope_url!r}: {problem}")  # held to the profile's rule
    if options.rehearse:
        if options.scope_url is not None:
            raise ConfigError("--rehearse plays against the built-in emulator; leave out --scope")
        url = None
    if url is not None:
        url = normalise_url(url)
    if options.aspect is not None:
        width, height = parameters.ASPECT_PRESETS[options.aspect]
    else:
        width, height = scope_size(scope)
    steps = tuple(parameters.DENOISING_PRESETS[options.denoise]) if options.denoise else tuple(scope.denoising)
    lo = options.min_send_interval if options.min_send_interval is not None else scope.min_send_interval
    hi = options.max_send_interval if options.max_send_interval is not None else scope.max_send_interval
    _check_send_bounds(lo, hi)

    video = profile.video
    if options.output is not None:
        from metadj_bridge.video.outputs import parse_outputs

        outputs = tuple(
            "record:" + str(Path(o[7:]).resolve()) if o.startswith("record:") else o
            for o in parse_outputs(options.output)
        )
    elif options.rehearse:
        outputs = ("preview",)  # rehearsal: watch it in a browser; the camera stays free for the real show
    else:
        outputs = video.outputs

    audio = profile.inputs.audio
    if options.rehearse and not (options.no_audio or options.audio_file or options.audio_device is not None):
        kind, path, device = "demo", None, None
    elif options.no_audio:
        kind, path, device = "none", None, None
    elif options.audio_file:
        kind, path, device = "file", options.audio_file, None
    elif options.audio_device is not None:
        kind, path, device = "device", None, options.audio_device
    else:
        kind, path, device = audio.source, audio.path, audio.device
    audio_where = "" if options.audio_file else _profile_where(audio.where, "inputs.audio")

    midi = profile.inputs.midi
    controls = MidiControlConfig(
        cc14=tuple(Cc14Pair(p.channel, p.msb) for p in midi.cc14),
        relative=tuple(RelativeEncoder(e.channel, e.cc, e.mode, step=e.step) for e in midi.encoders),  # type: ignore[arg-type]
    )
    osc = profile.inputs.osc
    osc_out_where = "--osc-out" if options.osc_out is not None else _profile_where(osc.out_where or osc.where,
                                                                                  "inputs.osc.out")
    http_port = _http_port(options, video.preview_port)
    screens = screen_plans(profile, options)
    check_screens(url, screens)
    return RunPlan(
        profile=profile,
        scope_url=url,
        pipeline=options.pipeline or scope.pipeline,
        width=width,
        height=height,
        denoising=steps,
        input_mode=scope.input_mode,
        min_send_interval=lo,
        max_send_interval=hi,
        audio=kind,
        audio_path=path,
        audio_device=device,
        audio_gain=audio.gain,
        audio_normalise=audio.normalise,
        midi=tuple(options.midi) or midi.devices,
        midi_virtual=options.midi_virtual if options.midi_virtual is not None else midi.virtual,
        midi_feedback=midi.feedback,
        midi_controls=controls,
        osc_port=options.osc_port if options.osc_port is not None else osc.port,
        osc_host=options.osc_host or osc.host,
        osc_presets=osc.presets or ("resolume", "ableton"),
        osc_out=options.osc_out if options.osc_out is not None else osc.out,
        link=options.link or profile.inputs.tempo.link,
        duration=options.duration,
        no_frame_timeout=options.no_frame_timeout,
        emulator_fps=options.emulator_fps,
        emulator_delay_ms=delay_ms,
        watch=options.watch,
        video_outputs=outputs,
        video_size=video.size or (width, height),
        video_fps=video.fps,
        video_device=video.device,
        video_backend=video.backend,
        slate_after=video.slate_after,
        preview_port=http_port,  # the web server serves the preview
        status_port=options.status_port,
        http_host=options.http_host or "127.0.0.1",
        http_port=http_port,
        http_token=options.http_token,
        video_source=options.video_source if options.video_source is not None else video.source,
        ref_images=video.ref_images,
        screens=screens,
        audio_where=audio_where,
        osc_out_where=osc_out_where,
    )


def _profile_where(where: str, key: str) -> str:
    """``file:line:column: key`` for a setting of the profile (only the key for one built without a file)."""
    return f"{where}: {key}" if where else key


def _http_port(options: RunOptions, profile_port: int) -> int:
    """--http-port, else its deprecated aliases --status-port and --preview-port (one WARNING), else the profile's
    ``video.preview_port`` (the port the preview had: the web server now serves it)."""
    for old, value in (("--status-port", options.status_port), ("--preview-port", options.preview_port)):
        if value is not None:
            log.warning("%s is deprecated (one web server serves the preview, /status and /metrics now): use "
                        "--http-port%s", old, "" if options.http_port is None else f"; {options.http_port} is used")
    given = [(flag, p) for flag, p in (("--http-port", options.http_port), ("--status-port", options.status_port),
                                        ("--preview-port", options.preview_port)) if p is not None]
    flag, port = given[0] if given else ("video.preview_port", profile_port)
    if not 0 <= port < 65536:
        raise ConfigError(f"{flag} {port}: must be 0-65535 (0 picks a free port)")
    return port
