"""The show profile as typed data: what the YAML loader builds and the mapping engine reads.

Plain frozen dataclasses, no behaviour beyond small checks. ``metadj_bridge.profile`` turns a YAML file into a
:class:`ShowProfile` (with ``file:line:column`` errors); ``metadj_bridge.mapping.engine`` runs one. Every
object that came from a file carries ``where`` (``"mappings/club.yaml:42:7"``) so runtime messages can point
back at the line.

The YAML shape these mirror is documented in ``docs/profiles.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    #: A WAV path (source "file", relative to the profile) or a device name substring (source "device").
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
    where: str = ""


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


# ------------------------------------------------------------------------------------------------ mappings


@dataclass(frozen=True, slots=True)
class Range:
    """Linear map from ``in_lo..in_hi`` to ``out_lo..out_hi`` (either may be reversed)."""

    in_lo: float = 0.0
    in_hi: float = 1.0
    out_lo: float = 0.0
    out_hi: float = 1.0
    #: Clamp the result to the output range.
    clamp: bool = True
    where: str = ""


@dataclass(frozen=True, slots=True)
class Invert:
    """x -> 1 - x (on 0..1 values)."""

    where: str = ""


@dataclass(frozen=True, slots=True)
class Curve:
    """Shape a 0..1 value. ``amount`` > 0 sets the steepness (exponential/logarithmic/s)."""

    shape: Literal["linear", "exponential", "logarithmic", "s"] = "linear"
    amount: float = 3.0
    where: str = ""


@dataclass(frozen=True, slots=True)
class Deadzone:
    """Values within ``width`` of ``centre`` become ``centre``; the rest is rescaled to stay continuous."""

    width: float = 0.02
    centre: float = 0.0
    where: str = ""


@dataclass(frozen=True, slots=True)
class Smooth:
    """One-pole smoothing with a time constant, or an attack/release envelope follower (seconds).

    Closed form for a step held for ``dt``: ``y = x + (y0 - x) * exp(-dt / tau)``, with tau = ``attack`` when
    rising and ``release`` when falling (both = ``time`` for plain one-pole).
    """

    attack: float = 0.1
    release: float = 0.1
    where: str = ""


@dataclass(frozen=True, slots=True)
class Threshold:
    """A signal becomes a trigger: fires when it rises through ``on``; re-arms when it falls below ``off``."""

    on: float = 0.6
    off: float = 0.4
    where: str = ""


@dataclass(frozen=True, slots=True)
class Clamp:
    lo: float = 0.0
    hi: float = 1.0
    where: str = ""


@dataclass(frozen=True, slots=True)
class Steps:
    """Quantise a value to ``count`` evenly spaced steps over 0..1 (count >= 2), e.g. a knob picking 1 of 4."""

    count: int = 4
    where: str = ""


@dataclass(frozen=True, slots=True)
class Quantize:
    """Hold a trigger until the next beat or bar, sent ``lookahead_ms`` early to make up for Scope's latency."""

    to: Literal["beat", "bar"] = "beat"
    lookahead_ms: float = 0.0
    where: str = ""


@dataclass(frozen=True, slots=True)
class Scale:
    """x -> x * factor + offset."""

    factor: float = 1.0
    offset: float = 0.0
    where: str = ""


Transform = Range | Invert | Curve | Deadzone | Smooth | Threshold | Clamp | Steps | Quantize | Scale


@dataclass(frozen=True, slots=True)
class Lfo:
    """A 0..1 oscillator locked to the BeatClock: phase 0 on a bar's downbeat when ``period_beats`` divides the bar."""

    shape: Literal["sine", "triangle", "saw", "square", "random"] = "sine"
    period_beats: float = 4.0
    #: Fraction of a period to shift (0..1).
    phase: float = 0.0
    where: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A 0..1 shape started by a trigger: rises over ``attack`` then decays to 0 over ``decay``.

    Times are in beats when ``beats`` is true (synced to the BeatClock), else in seconds. Closed form:
    ``t/attack`` while rising, then ``exp(-k * (t - attack) / decay)`` falling, cut to 0 at ``attack + decay``
    (k = 5, so the value at the cut is < 1%).
    """

    trigger: str
    attack: float = 0.0
    decay: float = 0.5
    beats: bool = False
    where: str = ""


#: What a mapping reads: a named signal (``audio.energy``, ``midi.cc.1.19``), a named trigger
#: (``audio.beat``, ``midi.note.1.36``), or a generator synced to the BeatClock.
@dataclass(frozen=True, slots=True)
class SignalSource:
    name: str
    #: Value before the signal is first seen. None: the mapping gives nothing until then, so the theme's or the
    #: profile's value stands (a fader nobody has touched yet does not pull the picture to its zero).
    default: float | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class TriggerSource:
    name: str
    where: str = ""


Source = SignalSource | TriggerSource | Lfo | Envelope

#: Action targets (fired by triggers, or by a signal through ``Threshold``).
ACTIONS = (
    "reset_cache",  # one-shot reset_cache: true
    "pulse_noise",  # a short noise_scale boost that decays (no cache reset): the seed's beat action
    "pause",
    "resume",
    "toggle_pause",
    "panic",  # a safe, calm state: first theme, calm parameters, pulses stopped, pause released
)

#: Prompt targets within the active theme: ``prompt.next``, ``prompt.previous``, ``prompt.random`` (triggers),
#: ``prompt.select`` (a 0..1 signal picks the focus by position).
PROMPT_OPS = ("next", "previous", "random", "select")

#: Theme targets: ``theme.next``, ``theme.previous``, ``theme.random`` (triggers), ``theme.select`` (a 0..1
#: signal picks a theme by position), ``theme.set`` (trigger, with ``Target.argument`` = the theme name).
THEME_OPS = ("next", "previous", "random", "select", "set")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a mapping's value goes.

    ``kind``:
      - ``"parameter"``: ``name`` is a runtime Scope parameter (``noise_scale``, ``kv_cache_attention_bias``,
        ``vace_context_scale``, ``base_seed``, ``denoising_steps`` = the step list scaled, ...). A 0..1 value is
        sent as is unless the mapping's transforms produce the parameter's own units.
      - ``"prompt_mix"``: a 0..1 value crossfades prompt ``argument[0]`` and ``argument[1]`` of the active theme
        (default the first two).
      - ``"prompt_weight"``: ``argument`` = (index,): the weight of that prompt of the active theme.
      - ``"prompt"``: ``name`` is one of PROMPT_OPS (moves the focus within the active theme).
      - ``"theme"``: ``name`` is one of THEME_OPS; ``argument`` = (theme name,) for ``set``.
      - ``"action"``: ``name`` is one of ACTIONS.
      - ``"profile"``: switch to the profile file ``argument[0]`` (relative to this profile's file).
    """

    kind: Literal["parameter", "prompt_mix", "prompt_weight", "prompt", "theme", "action", "profile"]
    name: str = ""
    argument: tuple[str | int, ...] = ()
    where: str = ""


@dataclass(frozen=True, slots=True)
class PulseSettings:
    """The ``pulse_noise`` action: noise_scale jumps by ``amount`` and decays back over ``decay`` seconds."""

    amount: float = 0.25
    decay: float = 0.35
    where: str = ""


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    source: Source
    transforms: tuple[Transform, ...] = ()
    target: Target = field(default_factory=lambda: Target("action", "pulse_noise"))
    #: How several mappings on one parameter combine: "max", "sum" or "last" (the last one to change wins).
    combine: Literal["max", "sum", "last"] = "last"
    enabled: bool = True
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
    panic: PanicSettings = field(default_factory=PanicSettings)
    mappings: tuple[Mapping, ...] = ()
    switches: tuple[ProfileSwitch, ...] = ()
    extends: tuple[str, ...] = ()
    where: str = ""

    def theme(self, name: str) -> Theme:
        for theme in self.themes:
            if theme.name == name:
                return theme
        raise KeyError(name)
