"""The show profile as typed data: what the YAML loader builds and the mapping engine reads.

Plain frozen dataclasses, no behaviour beyond small checks. ``metadj_bridge.profile`` turns a YAML file into a
:class:`ShowProfile` (with ``file:line:column`` errors); ``metadj_bridge.mapping.engine`` runs one. Every
object that came from a file carries ``where`` (``"mappings/club.yaml:42:7"``) so runtime messages can point
back at the line.

The YAML shape these mirror is documented in ``docs/profiles.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

# The mappings part lives in mapping_model; re-exported here, since the whole typed profile is this module's.
from metadj_bridge.profile.mapping_model import (
    ACTIONS as ACTIONS,
)
from metadj_bridge.profile.mapping_model import (
    PROMPT_OPS as PROMPT_OPS,
)
from metadj_bridge.profile.mapping_model import (
    THEME_OPS as THEME_OPS,
)
from metadj_bridge.profile.mapping_model import (
    Clamp as Clamp,
)
from metadj_bridge.profile.mapping_model import (
    Curve as Curve,
)
from metadj_bridge.profile.mapping_model import (
    Deadzone as Deadzone,
)
from metadj_bridge.profile.mapping_model import (
    Envelope as Envelope,
)
from metadj_bridge.profile.mapping_model import (
    Invert as Invert,
)
from metadj_bridge.profile.mapping_model import (
    Lfo as Lfo,
)
from metadj_bridge.profile.mapping_model import (
    Mapping as Mapping,
)
from metadj_bridge.profile.mapping_model import (
    Quantize as Quantize,
)
from metadj_bridge.profile.mapping_model import (
    Range as Range,
)
from metadj_bridge.profile.mapping_model import (
    Scale as Scale,
)
from metadj_bridge.profile.mapping_model import (
    SignalSource as SignalSource,
)
from metadj_bridge.profile.mapping_model import (
    Smooth as Smooth,
)
from metadj_bridge.profile.mapping_model import (
    Source as Source,
)
from metadj_bridge.profile.mapping_model import (
    Steps as Steps,
)
from metadj_bridge.profile.mapping_model import (
    Target as Target,
)
from metadj_bridge.profile.mapping_model import (
    Threshold as Threshold,
)
from metadj_bridge.profile.mapping_model import (
    Transform as Transform,
)
from metadj_bridge.profile.mapping_model import (
    TriggerSource as TriggerSource,
)

# ------------------------------------------------------------------------------------------------ scope


@dataclass(frozen=True, slots=True)
class ScopeSettings:
    #: Scope server root URL; None runs the bundled emulator.
    url: str | None = None
    pipeline: str = "longlive"
    #: An aspect preset ("16:9", "9:16") or None when ``resolution`` is given.
    aspect: str | None = "16:9"
    #: (width, height); wins over ``aspect``.
    resolution: tuple[int, int] | None = None
    #: The step list (a preset name in YAML: quality [1000,750,500,250], balanced [1000,500,250], fast [1000,250]).
    denoising: tuple[int, ...] = (1000, 750, 500, 250)
    input_mode: Literal["text", "video"] = "text"
    #: Sender bounds in seconds (ParameterSender's PacerConfig).
    min_send_interval: float = 1 / 30
    max_send_interval: float = 2.0
    #: ``spatial_interpolation_method`` for blended prompts (slerp applies to exactly two prompts).
    interpolation: Literal["linear", "slerp"] = "slerp"
    #: Extra lasting runtime parameters sent from the start, e.g. {"kv_cache_attention_bias": 0.3}.
    parameters: dict[str, object] = field(default_factory=dict)
    where: str = ""


# ------------------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True)
class AudioSettings:
    #: "demo" (the bundled track), "file", "device" or "none".
    source: Literal["demo", "file", "device", "none"] = "demo"
    #: An audio file (WAV, FLAC, MP3, Ogg, AIFF; source "file", relative to the profile) or a device name substring
    #: (source "device").
    path: str | None = None
    device: str | None = None
    #: Input gain applied before analysis (linear).
    gain: float = 1.0
    #: Adaptive normalisation of the features (the analyzer's running max) on or off.
    normalise: bool = True
    where: str = ""


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    channel: int  # 1-16
    cc: int  # 0-127
    mode: Literal["twos_complement", "offset64", "sign_magnitude"] = "twos_complement"
    step: float = 1 / 128
    where: str = ""


@dataclass(frozen=True, slots=True)
class Cc14Settings:
    channel: int  # 1-16
    msb: int  # 0-31
    where: str = ""


@dataclass(frozen=True, slots=True)
class MidiSettings:
    #: Port patterns (substring, or ``re:<regex>``); several open several ports.
    devices: tuple[str, ...] = ()
    #: A virtual input port DAWs can send to, or None.
    virtual: str | None = None
    #: Output port pattern for controller feedback, or None.
    feedback: str | None = None
    encoders: tuple[EncoderSettings, ...] = ()
    cc14: tuple[Cc14Settings, ...] = ()
    #: Use MIDI clock from these inputs as a tempo source.
    clock: bool = True
    where: str = ""


@dataclass(frozen=True, slots=True)
class OscSettings:
    #: Listen port, or None for no OSC input.
    port: int | None = None
    host: str = "127.0.0.1"
    #: Address-space presets: "resolume", "ableton".
    presets: tuple[str, ...] = ()
    #: "host:port" for OSC out (theme, BPM, beat, connection state), or None.
    out: str | None = None
    where: str = ""
    #: Where ``out`` is written (the run names it when the system refuses that address).
    out_where: str = ""


@dataclass(frozen=True, slots=True)
class TempoSettings:
    #: Join Ableton Link (needs the ``link`` extra).
    link: bool = False
    #: May the bridge change the Link session tempo? Never unless the profile asks.
    link_may_set_tempo: bool = False
    #: Sources in the order they win; a subset of ("link", "midi_clock", "osc", "audio").
    prefer: tuple[str, ...] = ("link", "midi_clock", "osc", "audio")
    beats_per_bar: int = 4
    where: str = ""


@dataclass(frozen=True, slots=True)
class InputSettings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    midi: MidiSettings = field(default_factory=MidiSettings)
    osc: OscSettings = field(default_factory=OscSettings)
    tempo: TempoSettings = field(default_factory=TempoSettings)


# ------------------------------------------------------------------------------------------------ video


@dataclass(frozen=True, slots=True)
class VideoSettings:
    """Where Scope's video goes, and in avatar mode where the outgoing video comes from."""

    #: Outputs: "vcam" (the virtual webcam), "preview" (MJPEG in a browser), "record:<path>" (.mp4 or .mkv).
    #: Without a virtual camera backend, "vcam" says how to get one and the preview opens instead.
    outputs: tuple[str, ...] = ("vcam",)
    #: The camera's (width, height); None: the pipeline's resolution. Fixed for the whole run.
    size: tuple[int, int] | None = None
    fps: float = 30.0
    #: The virtual camera device (e.g. /dev/video10) and pyvirtualcam backend (v4l2loopback, obs, unitycapture).
    device: str | None = None
    backend: str | None = None
    #: Seconds without a new frame from Scope before the camera shows a slate that says why.
    slate_after: float = 3.0
    #: The local preview's port on 127.0.0.1.
    preview_port: int = 8765
    #: Avatar mode (scope.input_mode video): the webcam (a name or a device path) or "file:<video>" to send.
    source: str | None = None
    #: VACE reference images (local paths, uploaded to Scope).
    ref_images: tuple[str, ...] = ()
    where: str = ""


# ------------------------------------------------------------------------------------------------ themes


@dataclass(frozen=True, slots=True)
class PromptSpec:
    text: str
    weight: float = 1.0
    #: The same scene at full intensity (``prompt.intensity`` blends towards it); None: the theme's ``intense``.
    intense: str | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    #: The theme's prompt bank. Without ``blend`` one prompt is active at a time (the *focus*: the first at
    #: the start; ``prompt.next`` & co. move it with a ``prompt_steps`` transition) and a ``prompt_mix``
    #: mapping crossfades two of them. With ``blend`` all prompts are sent together, weighted, and
    #: ``prompt_weight`` mappings move the weights.
    prompts: tuple[PromptSpec, ...]
    blend: bool = False
    #: Lasting parameter overrides while this theme is active, e.g. {"noise_scale": 0.5}.
    parameters: dict[str, object] = field(default_factory=dict)
    #: Feedback: a controller pad lit while this theme is active, e.g. ("note", 1, 36) or ("cc", 1, 64).
    pad: tuple[str, int, int] | None = None
    #: The intense variant for prompts without their own (``prompt.intensity``); None: no variant.
    intense: str | None = None
    where: str = ""

    def intense_of(self, index: int) -> str | None:
        """The intense variant of prompt ``index``: its own, else the theme's, else None."""
        own = self.prompts[index].intense if 0 <= index < len(self.prompts) else None
        return own if own is not None else self.intense


@dataclass(frozen=True, slots=True)
class TransitionSettings:
    #: Steps of the transition when the theme changes (seed: 8) and between prompts of one theme (seed: 3).
    theme_steps: int = 8
    prompt_steps: int = 3
    method: Literal["linear", "slerp"] = "slerp"
    where: str = ""


@dataclass(frozen=True, slots=True)
class CycleSettings:
    """Themes change by themselves every ``every_bars`` bars (the default profile: no controller needed)."""

    every_bars: int = 16
    order: Literal["sequence", "random"] = "sequence"
    #: Within the active theme, move to its next prompt every this many bars (None: never by itself).
    prompt_every_bars: int | None = None
    #: Only these themes take part (all when empty).
    themes: tuple[str, ...] = ()
    where: str = ""


@dataclass(frozen=True, slots=True)
class PulseSettings:
    """The ``pulse_noise`` action: noise_scale jumps by ``amount`` and decays back over ``decay`` seconds."""

    amount: float = 0.25
    decay: float = 0.35
    where: str = ""


@dataclass(frozen=True, slots=True)
class AccentSettings:
    """The ``accent`` action: the intensity blend jumps by ``amount`` and decays back over ``decay`` seconds."""

    amount: float = 0.2
    decay: float = 0.3
    where: str = ""


@dataclass(frozen=True, slots=True)
class PanicSettings:
    """The calm state ``panic`` moves to: these lasting parameters, the first theme, no pulses."""

    parameters: dict[str, object] = field(default_factory=lambda: {"noise_scale": 0.3})
    where: str = ""


@dataclass(frozen=True, slots=True)
class ProfileSwitch:
    """Switch to another profile file when a trigger fires, e.g. a program change or an OSC address.

    ``trigger`` is a trigger name; with ``program`` set, only a program change with that number counts.
    """

    trigger: str
    path: str
    program: int | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class Scene:
    """A saved lasting state (``scenes:``): the theme, the prompts Scope got with their weights, and the lasting
    parameters. Recalled at once or morphed over some bars (``mapping/scenes.py``)."""

    name: str
    theme: str
    prompts: tuple[PromptSpec, ...]
    parameters: dict[str, object] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    """One more screen of the show (``screens:``): its own Scope server, pipeline, size and outputs, driven by the
    same music and controls as the main screen. Its ``prompts`` reword themes for this screen: theme name -> the
    prompts it sends there instead of the theme's own (a theme left out sends its own)."""

    name: str
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    video: VideoSettings = field(default_factory=lambda: VideoSettings(outputs=()))
    prompts: dict[str, tuple[PromptSpec, ...]] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True, slots=True)
class ShowProfile:
    #: The file this profile came from (and the files it extends, base first).
    path: str
    name: str
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    inputs: InputSettings = field(default_factory=InputSettings)
    video: VideoSettings = field(default_factory=VideoSettings)
    themes: tuple[Theme, ...] = ()
    #: The theme active at start (the first theme when None).
    start_theme: str | None = None
    transitions: TransitionSettings = field(default_factory=TransitionSettings)
    cycle: CycleSettings | None = None
    pulse: PulseSettings = field(default_factory=PulseSettings)
    accent: AccentSettings = field(default_factory=AccentSettings)
    panic: PanicSettings = field(default_factory=PanicSettings)
    mappings: tuple[Mapping, ...] = ()
    switches: tuple[ProfileSwitch, ...] = ()
    scenes: tuple[Scene, ...] = ()
    #: More screens beyond the main one (``scope:`` and ``video:``), each on its own Scope server.
    screens: tuple[ScreenSettings, ...] = ()
    extends: tuple[str, ...] = ()
    where: str = ""

    def theme(self, name: str) -> Theme:
        for theme in self.themes:
            if theme.name == name:
                return theme
        raise KeyError(name)

    def names_read(self) -> Iterator[str]:
        """Every signal and trigger name the profile's mappings and switches read, in profile order."""
        for mapping in self.mappings:
            source = mapping.source
            if isinstance(source, (SignalSource, TriggerSource)):
                yield source.name
            elif isinstance(source, Envelope):
                yield source.trigger
        for switch in self.switches:
            yield switch.trigger
