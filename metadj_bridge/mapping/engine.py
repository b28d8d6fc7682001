"""The mapping engine: signals, triggers and time in; the Scope parameter state, one-shots and events out.

One ``step(signals, triggers, now, tempo)`` runs every mapping of the show profile once; its ``parameters`` (the
full lasting state) and ``actions`` go to the sender, which sends what changed.

Rules where the profile format says nothing (the modules it uses document their own):

- ``parameters`` holds, in rising precedence: Scope's own value for a key that was sent before and has no
  source now (``parameters.SCOPE_DEFAULTS``, else its last value), ``spatial_interpolation_method`` and
  ``denoising_step_list`` from ``scope``, ``scope.parameters``, the active theme's ``parameters``, then the
  mappings; while calm (panic) the panic parameters replace the mappings.
- ``pulse_noise`` adds ``amount * exp(-dt / decay)`` on top of noise_scale (Scope's 0.7 when nothing else sets
  it). A pulse while one is still decaying adds ``amount`` to the current level, so hits in quick succession
  build up (always clamped to noise_scale's range). Pulses are ignored while calm.
- ``accent`` adds ``amount * exp(-dt / decay)`` to the ``prompt.intensity`` blend like the noise pulse, ``amount``
  scaled by the intensity the mappings give at the hit (whole without such a mapping); ``seed_step`` adds 1 to
  ``base_seed`` (the theme's, the profile's or Scope's 42) for good. Both are ignored while calm.
- ``panic`` is a latch. Engaged: panic parameters, the start theme at its first prompt through a theme
  transition (always sent, even when already there), pulses stopped, pause released, parameter and prompt-weight
  mappings muted, the cycle held. Engaged again: released, the mappings take over. Theme, prompt and pause
  controls keep working while calm. A profile switch keeps the latch as it is.
- A ``prompt.mix`` (or, in a blend theme, a ``prompt.weight``) counts from its first change (a control moved; a
  ``default`` does not count) and keeps counting through theme changes, profile switches and reloads that keep
  its mapping: a crossfader held at 0.5 mixes the new theme's prompts at 0.5 from the theme's first message. In
  a non-blend theme a focus move (``prompt.next``..., the cycle) takes over from the mix until the mix moves
  again; a theme change is not a focus move. Whatever the performer moved last is what the audience sees.
- A ``mapping`` on ``paused`` sets the pause state when its value changes, like the pause actions.
- ``downbeat`` (pressed on the one) goes out as ``EngineOutput.downbeat``, for the beat grid's bars (``run/show``).
- Hits are applied in the order they fired: triggers in the order given, then value mappings in profile order,
  then quantised hits that came due.

Pure: no I/O, clocks or threads; the only randomness is ``random.Random(seed)`` owned by the engine.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metadj_bridge.mapping.compiled import Fired, MappingRuntime, same_input, trigger_value
from metadj_bridge.mapping.parameters import SCOPE_DEFAULTS, coerce_lasting
from metadj_bridge.mapping.scenes import SceneControl
from metadj_bridge.mapping.sources import MotionClock, NoisePulse
from metadj_bridge.mapping.targets import CompiledProfile, compile_profile, prompt_controls
from metadj_bridge.mapping.themes import ThemeCycle, ThemeDeck, pick_index, select_index
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.signals import TempoState, Trigger

__all__ = ["EngineOutput", "MappingEngine"]

log = logging.getLogger(__name__)

_SEED_SPAN = 2**31  # action.seed_step wraps base_seed here (Scope takes any int >= 0; this stays 32-bit)

@dataclass(frozen=True, slots=True)
class EngineOutput:
    #: The full lasting desired state after the step. Read-only: unchanged values (the prompt list) are the
    #: same objects from step to step.
    parameters: dict[str, Any]
    #: One-shots due now: ``reset_cache``, ``transition``.
    actions: dict[str, Any]
    #: Plain words for the log and the status line.
    events: tuple[str, ...]
    #: An absolute profile path to switch to, or None.
    profile_switch: str | None
    theme: str
    focus: int
    downbeat: bool = False  # ``action.downbeat`` fired this step: the bars begin on the beat nearest now


class MappingEngine:
    """Runs one show profile (and the ones it switches to) step by step."""

    def __init__(self, profile: ShowProfile, schema: ParameterSchema | None = None, *, seed: int = 0) -> None:
        self._schema = schema if schema is not None else ParameterSchema(profile.scope.pipeline)
        self._rng = random.Random(seed)
        self._clock = MotionClock()
        self._step = 0
        self._paused = False
        self._calm = False
        self._pulse = NoisePulse()
        self._accent = NoisePulse()
        self._seed_steps = 0  # action.seed_step hits so far: added to base_seed
        #: Values for keys sent before that no source sets any more.
        self._fallback: dict[str, Any] = {}
        self._fired: Fired = []
        self._switch_from: str | None = None
        #: Step of the last focus move (-1: none yet): a prompt mix moved before it yields to the focus.
        self._focus_stamp = -1
        # Per-step scratch, reset at the start of every step.
        self._now = 0.0
        self._actions: dict[str, Any] = {}
        self._events: list[str] = []
        self._switch_to: str | None = None
        self._theme_changed = self._focus_changed = self._prompts_moved = False
        self.scenes = SceneControl(self)  # saved and recalled scenes (mapping/scenes.py)
        self._install(profile)

    # ------------------------------------------------------------------ public state

    @property
    def profile(self) -> ShowProfile:
        return self._p.profile

    @property
    def schema(self) -> ParameterSchema:
        """The schema every value of the output is valid against (checked once, here: the sender trusts it)."""
        return self._schema

    @property
    def theme(self) -> str:
        return self._deck.name

    @property
    def focus(self) -> int:
        return self._deck.focus

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def calm(self) -> bool:
        return self._calm

    def initial_parameters(self) -> dict[str, Any]:
        """The lasting state before any step: what the session offer starts with (mapping values come later)."""
        params = dict(self._build_base())
        params["prompts"] = self._deck.prompts()
        params["paused"] = self._paused
        return params

    def feedback(self) -> dict[tuple[str, int, int], float]:
        """Controller feedback: theme pads lit while active, controls showing their current input value."""
        out: dict[tuple[str, int, int], float] = {}
        for key, runtime in self._p.feedback:
            if runtime.input is not None:  # an untouched control: nothing to show yet
                out[key] = runtime.input
        for index, theme in enumerate(self._deck.themes):
            if theme.pad is not None:
                out[theme.pad] = 1.0 if index == self._deck.index else 0.0
        return out

    def set_latency(self, seconds: float) -> None:  # the show's delay to the picture: quantize's lookahead auto
        for stage in (stage for runtime in self._p.holding for _, stage in runtime.holds):
            stage.auto_s = max(0.0, seconds)

    # ------------------------------------------------------------------ profiles

    def _install(self, profile: ShowProfile, old: dict[str, MappingRuntime] | None = None) -> None:
        compiled = compile_profile(profile, self._schema, self._rng)
        if old:
            for runtime in compiled.runtimes:
                previous = old.get(runtime.name)
                if previous is not None and same_input(previous.mapping, runtime.mapping):
                    runtime.adopt(previous)
        self._p: CompiledProfile = compiled
        self._deck = ThemeDeck(profile.themes, profile.start_theme)
        self._cycle = ThemeCycle(profile.cycle, self._deck.names)
        where = profile.where or profile.path
        self._scope_params = {
            k: coerce_lasting(self._schema, k, v, f"{where}: scope.parameters")
            for k, v in profile.scope.parameters.items()
        }
        self._theme_params = [
            {k: coerce_lasting(self._schema, k, v, f"{t.where or where}: themes.{t.name}.parameters")
             for k, v in t.parameters.items()}
            for t in profile.themes
        ]
        self._panic_params = {
            k: coerce_lasting(self._schema, k, v, f"{profile.panic.where or where}: panic.parameters")
            for k, v in profile.panic.parameters.items()
        }
        self._base: dict[str, Any] | None = None
        self._prompts_key: Any = None
        self._prompts: list[dict[str, Any]] = self._deck.prompts()
        self._coerced: list[tuple[float | None, Any]] = [(None, None)] * len(compiled.param_slots)

    def switch_profile(self, profile: ShowProfile, now: float, focus: int | None = None, event: bool = True) -> None:
        """Let ``profile`` take over: same-named mappings on the same source keep their state; the next step
        sends a theme transition to the new start theme, on prompt ``focus`` when given (a reload keeps its place).
        ``event``: whether that step says ``profile OLD -> NEW`` (not for a typed prompt: no profile changed)."""
        old_name = self._p.profile.name
        old = {r.name: r for r in self._p.runtimes}
        self._install(profile, old)
        if focus is not None and 0 <= focus < len(self._deck.theme.prompts):
            self._deck.focus = focus
        self._switch_from = old_name if event else ""  # the caller logs the reload or switch itself

    # ------------------------------------------------------------------ the step

    def step(self, signals: MappingABC[str, float], triggers: Sequence[Trigger], now: float,
             tempo: TempoState | None) -> EngineOutput:
        self._step += 1
        step = self._step
        p = self._p
        fired = self._fired
        fired.clear()
        clock = self._clock
        clock.update(now, tempo)
        self._now = now
        self._actions = {}
        self._events = []
        self._switch_to, self._downbeat = None, False
        self._theme_changed = self._focus_changed = False

        for trig in triggers:
            name = trig.name
            runtimes = p.by_trigger.get(name)
            if runtimes:
                value = trigger_value(trig)
                for runtime in runtimes:
                    runtime.hit(value, now, tempo, step, fired)
            envelopes = p.envelopes_by_trigger.get(name)
            if envelopes:
                for env in envelopes:
                    env.envelope.start(now, clock)
            switches = p.switches.get(name)
            if switches:
                for switch in switches:
                    if switch.program is None or (trig.data or {}).get("program") == switch.program:
                        self._switch_to = self._resolve(switch.path)
        for runtime in p.updating:
            runtime.update(signals, now, clock, tempo, step, fired)
        for runtime in p.holding:
            runtime.poll(now, tempo, step, fired)
        for runtime in p.selects:
            if runtime.sel_prev is None and runtime.changed < 0 and runtime.value is not None:
                runtime.sel_prev = self._select_of(runtime, runtime.value)
        for runtime, value in fired:
            self._apply(runtime, value)

        theme_due, prompt_due = self._cycle.advance(tempo)
        if not self._calm:
            if theme_due:
                self._change_theme(self._cycle.next_theme(self._deck.index, self._rng), "cycle")
                self._cycle.restart()
            elif prompt_due:
                count = len(self._deck.theme.prompts)
                self._move_focus(pick_index("next", self._deck.focus, count, self._rng))
                self._cycle.restart(theme=False)
        if self._switch_from is not None:
            self._events += [f"profile {self._switch_from} -> {p.profile.name}"] if self._switch_from else []
            self._switch_from = None
            self._theme_changed = True

        return EngineOutput(self._parameters(step, now), self._actions, tuple(self._events), self._switch_to,
                            self._deck.name, self._deck.focus, self._downbeat)

    # ------------------------------------------------------------------ hits

    def _resolve(self, path: str) -> str:
        folder = os.path.dirname(os.path.abspath(self._p.profile.path)) if self._p.profile.path else os.getcwd()
        return os.path.normpath(os.path.join(folder, os.path.expanduser(path)))

    def _select_of(self, runtime: MappingRuntime, value: float) -> int:
        if runtime.mapping.target.kind == "theme":
            return select_index(value, len(self._deck.themes))
        return select_index(value, len(self._deck.theme.prompts))

    def _apply(self, runtime: MappingRuntime, value: float) -> None:
        target = runtime.mapping.target
        kind, name = target.kind, target.name
        if kind == "action":
            self._action(name)
        elif kind == "theme":
            deck = self._deck
            if name == "select":
                index = self._select_of(runtime, value)
                if index == runtime.sel_prev:
                    return
                runtime.sel_prev = index
            elif name == "set":
                found = deck.index_of(str(target.argument[0]))
                if found is None:
                    return
                index = found
            else:
                index = pick_index(name, deck.index, len(deck.themes), self._rng)
            self._change_theme(index, name)
        elif kind == "prompt":
            count = len(self._deck.theme.prompts)
            if name == "select":
                index = self._select_of(runtime, value)
                if index == runtime.sel_prev:
                    return
                runtime.sel_prev = index
            else:
                index = pick_index(name, self._deck.focus, count, self._rng)
            self._move_focus(index)
        elif kind == "profile":
            self._switch_to = self._resolve(str(target.argument[0]))

    def _action(self, name: str) -> None:
        if name == "reset_cache":
            self._actions["reset_cache"] = True
            self._events.append("reset cache")
        elif name == "pulse_noise":
            if not self._calm:
                pulse = self._p.profile.pulse
                self._pulse.hit(self._now, pulse.amount, pulse.decay)
        elif name == "accent":
            if not self._calm:
                accent = self._p.profile.accent
                slot = self._p.intensity_slot
                scale = 1.0 if slot is None or slot.value is None else min(1.0, max(0.0, slot.value))
                self._accent.hit(self._now, accent.amount * scale, accent.decay)
        elif name == "seed_step":
            if not self._calm:
                self._seed_steps += 1
        elif name == "downbeat":
            self._downbeat = True
        elif name in ("pause", "resume", "toggle_pause"):
            paused = True if name == "pause" else False if name == "resume" else not self._paused
            self._set_paused(paused)
        elif name == "panic":
            if self._calm:
                self._calm = False
                self._base = None
                self._cycle.restart()
                self._events.append("panic released")
            else:
                self._calm = True
                self._base = None
                self._pulse.stop()
                self._accent.stop()
                self._set_paused(False)
                self._change_theme(self._deck.start_index, "panic", force=True)
                self._events.append("panic")

    def _set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            self._events.append("paused" if paused else "resumed")

    def _change_theme(self, index: int, why: str, force: bool = False) -> None:
        deck = self._deck
        if index == deck.index and not force:
            return
        self._events.append(f"theme {deck.name} -> {deck.names[index]}")
        deck.set_theme(index)
        self._theme_changed = True
        self._base = None
        self._cycle.restart()

    def _move_focus(self, index: int) -> None:
        deck = self._deck
        if index == deck.focus:
            return
        self._events.append(f"prompt {deck.focus + 1} -> {index + 1} of {len(deck.theme.prompts)}")
        deck.focus = index
        self._focus_changed = True
        self._focus_stamp = self._step
        self._cycle.restart(theme=False)

    # ------------------------------------------------------------------ output

    def _build_base(self) -> dict[str, Any]:
        profile = self._p.profile
        base: dict[str, Any] = dict(self._fallback)
        base["spatial_interpolation_method"] = profile.scope.interpolation
        base["denoising_step_list"] = list(profile.scope.denoising)
        base.update(self._scope_params)
        base.update(self._theme_params[self._deck.index])
        if self._calm:
            base.update(self._panic_params)
        for key, value in base.items():
            # A key sent once stays in the state: when its source goes, it returns to Scope's own value.
            if key not in self._fallback:
                self._fallback[key] = SCOPE_DEFAULTS.get(key, value)
        return base

    def _parameters(self, step: int, now: float) -> dict[str, Any]:
        base = self._base
        if base is None:
            base = self._base = self._build_base()
        params = dict(base)
        calm = self._calm
        if not calm:
            coerced = self._coerced
            for i, (slot, coerce, name) in enumerate(self._p.param_slots):
                value = slot.combine()
                if value is None:
                    continue
                last_in, last_out = coerced[i]
                if value != last_in:
                    last_out = coerce(value)
                    coerced[i] = (value, last_out)
                if name == "paused":
                    if slot.changed == step:
                        self._set_paused(bool(last_out))
                    continue
                params[name] = last_out
            self.scenes.hold(params, step, now)
            pulse = self._pulse.level(now)
            if pulse > 0.0:
                noise = params.get("noise_scale", SCOPE_DEFAULTS["noise_scale"]) + pulse
                params["noise_scale"] = self._p.noise_coercer(noise)
            if self._seed_steps:
                seed = params.get("base_seed", SCOPE_DEFAULTS["base_seed"])
                params["base_seed"] = (int(seed) + self._seed_steps) % _SEED_SPAN
        params["paused"] = self._paused
        params["prompts"] = self._prompt_list(step, calm, now)
        if self._theme_changed or (self._focus_changed and self._prompts_moved):
            steps = self._p.profile.transitions
            self._actions["transition"] = self._schema.check("transition", {
                "target_prompts": [dict(prompt) for prompt in params["prompts"]],
                "num_steps": steps.theme_steps if self._theme_changed else steps.prompt_steps,
                "temporal_interpolation_method": steps.method,
            })
        if len(params) != len(base) + 2:
            for key, value in params.items():
                if key not in base and key not in ("paused", "prompts"):
                    self._fallback[key] = SCOPE_DEFAULTS.get(key, value)
                    self._base = None
        return params

    def _intensity(self, now: float) -> float:
        """``prompt.intensity`` plus the accent, 0..1 in steps of 0.01 (finer would only resend the prompts)."""
        slot = self._p.intensity_slot
        value = slot.combine() if slot is not None else None
        level = (value or 0.0) + self._accent.level(now)
        return round(min(1.0, max(0.0, level)), 2)

    def _prompt_list(self, step: int, calm: bool, now: float) -> list[dict[str, Any]]:
        deck = self._deck
        mix: tuple[int, int, float] | None = None
        overrides: dict[int, float] | None = None
        intensity = 0.0
        if self.scenes.active and (held := self.scenes.prompt_list(step)) is not None:
            return held
        if not calm:
            mix, overrides = prompt_controls(self._p.weight_slots, deck.theme.blend, self._focus_stamp)
            intensity = self._intensity(now)
        key = (deck.index, deck.focus, mix, None if overrides is None else tuple(sorted(overrides.items())),
               intensity)
        self._prompts_moved = False
        if key != self._prompts_key:
            self._prompts_key = key
            prompts = deck.prompts(mix, overrides, intensity)
            if prompts != self._prompts:
                self._prompts = self._schema.check("prompts", prompts)
                self._prompts_moved = True
        return self._prompts
