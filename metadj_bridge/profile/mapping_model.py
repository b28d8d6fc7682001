"""The typed show profile, mappings part: what a mapping reads (sources), how it shapes the value (transforms)
and what it drives (targets). Made once at load time by the loader; read by the mapping engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    """Hold a trigger until the next beat or bar, sent ``lookahead_ms`` early to make up for Scope's latency.

    ``lookahead_ms`` None is ``auto`` (the default): the show's own measure of the delay from sending a change to
    the frame that shows it (``scope/latency.py``); a number is a fixed lookahead (0: none).
    """

    to: Literal["beat", "bar"] = "beat"
    lookahead_ms: float | None = None
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
    "accent",  # a short jump of the prompt intensity blend that decays: a beat accent a text-mode pipeline shows
    "seed_step",  # base_seed + 1: the same scene with fresh detail (Scope takes it live)
    "downbeat",  # pressed on the one: the beat grid's bars begin on the beat nearest now
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
      - ``"prompt_intensity"``: a 0..1 value blends the focus prompt towards its intense variant.
      - ``"prompt"``: ``name`` is one of PROMPT_OPS (moves the focus within the active theme).
      - ``"theme"``: ``name`` is one of THEME_OPS; ``argument`` = (theme name,) for ``set``.
      - ``"action"``: ``name`` is one of ACTIONS.
      - ``"profile"``: switch to the profile file ``argument[0]`` (relative to this profile's file).
      - ``"scene"``: ``name`` is ``save`` or ``recall``; ``argument`` = (scene name,).
    """

    kind: Literal["parameter", "prompt_mix", "prompt_weight", "prompt_intensity", "prompt", "theme", "action",
                  "profile", "scene"]
    name: str = ""
    argument: tuple[str | int, ...] = ()
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
    #: For a ``scene.recall`` target: morph to the scene over this many bars (0: at once).
    morph_bars: float = 0.0
    where: str = ""
