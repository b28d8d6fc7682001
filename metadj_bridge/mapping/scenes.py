"""Scenes in the engine: what the show plays now, captured as a :class:`Scene`, and a scene recalled at once or
morphed to over some bars on the beat grid.

``SceneControl`` is a part of :class:`MappingEngine` (``engine.scenes``) and works on the engine's own state. The
engine calls it from two places in its step: ``hold`` once the mappings' values are in and before the one-shot
pulses are added (the scene's parameters go on top, and what plays is kept for ``capture``), and ``prompt_list``
before the prompt list is built (while a recalled scene holds the prompts, its list). Scene targets of mappings
are not applied by the engine: ``take_hits`` hands them to the show, which saves (a file write) and recalls.

Rules where the issue says nothing:

- A scene holds the theme, the prompts Scope gets with their weights (the accent's share left out) and the lasting
  parameters as the mappings, the theme and the profile make them: the noise pulse, the seed steps, the pause
  and the profile's fixed step list, interpolation and input mode are left out (unless a mapping drives them).
- Recall at once: in the next step the scene's theme, its parameters, and its prompts through a theme transition
  (``theme_steps``), as a theme change does.
- Morph over N bars: the theme changes at the start (its own parameters hidden under the glide); numbers and the
  prompt weights glide in a straight line on the beat grid from what played at the recall to the scene (a prompt
  on one side only fades in or out; a number the scene leaves to the theme and the mappings glides to their
  value); the rest (whole numbers such as ``base_seed``, on/off, choices, lists) change
  at the end. The end is the downbeat nearest N bars from now (the next one at the earliest), reached the
  show's delay to the picture early, like ``quantize``. Without a playing tempo: N bars at the last tempo (120 BPM
  before any) in seconds.
- A recalled scene holds until the performer (or the music) moves something: a mapping whose value changes
  takes its parameter back (a parameter the music drives goes on following the music); a prompt mix, weight or
  intensity that moves takes the prompts back; a focus move, a theme change or panic ends the whole scene.
- A newer recall replaces a morph in progress and starts from where the morph had got to.
- While panic holds the show calm, scenes are neither saved nor recalled (a ``ConfigError`` says so).

Pure: values, steps, times and the tempo come in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metadj_bridge.errors import ConfigError, ParameterError
from metadj_bridge.mapping.parameters import SCOPE_DEFAULTS, coerce_lasting
from metadj_bridge.mapping.targets import prompt_controls
from metadj_bridge.mapping.themes import ThemeDeck
from metadj_bridge.profile.model import PromptSpec, Scene
from metadj_bridge.profile.names import LASTING_PARAMETERS
from metadj_bridge.signals import TempoState

if TYPE_CHECKING:
    from metadj_bridge.mapping.engine import MappingEngine

__all__ = ["SceneControl", "blend_prompts", "morph_end"]

#: Lasting keys a scene leaves out unless a mapping drives them: fixed by the profile, or a state of their own.
_FIXED = frozenset({"spatial_interpolation_method", "denoising_step_list", "input_mode"})
_CALM = "panic is engaged (the show is held calm): release it (panic again) before saving or recalling a scene"


def morph_end(tempo: TempoState, bars: float) -> float:
    """The beat a morph of ``bars`` bars started at ``tempo.beat`` ends on: the downbeat nearest ``bars`` bars
    ahead, the next downbeat at the earliest."""
    bpb = tempo.beats_per_bar if tempo.beats_per_bar >= 1 else 4
    origin = tempo.beat - tempo.bar_position  # a downbeat of the grid
    end = origin + round((tempo.beat + bars * bpb - origin) / bpb) * bpb
    while end <= tempo.beat + 1e-9:
        end += bpb
    return end


def _blend(a: Any, b: Any, u: float) -> Any:
    """``a`` to ``b`` at ``u`` (0..1): numbers glide (4 decimals, as the engine sends them), the rest at the end."""
    if u >= 1.0:
        return b
    if type(a) is float and type(b) is float:
        return round(a + (b - a) * u, 4) + 0.0
    return b if a is None else a


def blend_prompts(start: list[dict[str, Any]], end: list[dict[str, Any]], u: float) -> list[dict[str, Any]]:
    """The prompt list at ``u`` (0..1) of a glide from ``start`` to ``end``: every text of either side at its
    weight in a straight line (the end's texts first, in its order); weight-0 prompts left out."""
    if u >= 1.0:
        return [dict(p) for p in end]
    weights: dict[str, list[float]] = {}
    for side, prompts in ((1, end), (0, start)):
        for p in prompts:
            weights.setdefault(p["text"], [0.0, 0.0])[side] += float(p["weight"])
    out: list[dict[str, Any]] = []
    for text, (w0, w1) in weights.items():
        weight = round(w0 + (w1 - w0) * u, 4) + 0.0
        if weight > 0:
            out.append({"text": text, "weight": weight})
    return out or [dict(p) for p in end]


@dataclass(slots=True)
class _Recall:
    scene: Scene
    #: The engine step the recall came after: a control changed later takes over.
    step: int
    deck: ThemeDeck
    index: int
    focus: int
    params_from: dict[str, Any]
    params_to: dict[str, Any]
    prompts_from: list[dict[str, Any]]
    prompts_to: list[dict[str, Any]]
    #: "once", "beat" (start/end in beats) or "time" (start/end in seconds).
    mode: str = "once"
    start: float = 0.0
    end: float = 0.0
    #: After this time the morph is over whatever the beat does (a tempo that stopped mid-morph).
    deadline: float = math.inf
    #: Keys the scene still holds (a mapping that changes one takes it back).
    keys: set[str] = field(default_factory=set)
    prompts_held: bool = True
    #: An at-once recall's transition is still to go out.
    transition: bool = False
    u: float = 0.0
    #: The profile file the scene was recalled in.
    path: str = ""


class SceneControl:
    """Captures and recalls scenes for one engine (``engine.scenes``)."""

    def __init__(self, engine: MappingEngine) -> None:
        self._engine = engine
        #: The lasting parameters the last step played (the scene's on top, the pulses not), for ``capture``.
        self.steady: dict[str, Any] = {}
        #: The show's delay to the picture (s): a morph reaches its downbeat this much early, like ``quantize``.
        self.lookahead_s = 0.0
        self._recall: _Recall | None = None

    @property
    def active(self) -> bool:
        """A recalled scene holds the prompts."""
        return self._recall is not None and self._recall.prompts_held

    @property
    def morphing(self) -> bool:
        return self._recall is not None and self._recall.u < 1.0

    def take_hits(self) -> list[tuple[str, str, float]]:
        """The scene targets the last step fired, as (``save`` or ``recall``, scene name, morph bars)."""
        return [(r.mapping.target.name, str(r.mapping.target.argument[0]), r.mapping.morph_bars)
                for r, _ in self._engine._fired if r.mapping.target.kind == "scene"]

    # ------------------------------------------------------------------ save

    def capture(self, name: str) -> Scene:
        """The lasting state the show plays now, as the scene ``name``."""
        engine = self._engine
        if engine.calm:
            raise ConfigError(_CALM)
        driven = {slot_name for _, _, slot_name in engine._p.param_slots}
        steady = self.steady or engine.initial_parameters()
        parameters = {
            k: (round(v, 4) + 0.0 if type(v) is float else v) for k, v in steady.items()
            if k in LASTING_PARAMETERS and k != "paused" and (k not in _FIXED or k in driven)
        }
        prompts = tuple(PromptSpec(p["text"], p["weight"]) for p in self._playing_prompts())
        return Scene(name, engine.theme, prompts, parameters)

    def _playing_prompts(self) -> list[dict[str, Any]]:
        """The prompts Scope gets now without the accent's share (a decaying one-shot, not a lasting state)."""
        engine = self._engine
        if self.active:
            return [dict(p) for p in engine._prompts]
        deck = engine._deck
        mix, overrides = prompt_controls(engine._p.weight_slots, deck.theme.blend, engine._focus_stamp)
        slot = engine._p.intensity_slot
        value = slot.combine() if slot is not None else None
        intensity = round(min(1.0, max(0.0, value or 0.0)), 2)
        return deck.prompts(mix, overrides, intensity)

    # ------------------------------------------------------------------ recall

    def recall(self, scene: Scene, morph_bars: float, now: float, tempo: TempoState | None) -> None:
        """Play ``scene`` from the next step, at once (``morph_bars`` 0) or morphed over that many bars.

        Everything is checked first: a ConfigError (a theme the profile has not, a parameter the pipeline does
        not take, panic engaged) leaves the show as it was."""
        engine = self._engine
        if engine.calm:
            raise ConfigError(_CALM)
        deck = engine._deck
        index = deck.index_of(scene.theme)
        where = scene.where or f"scene {scene.name!r}"
        if index is None:
            raise ConfigError(f"{where}: the scene plays theme {scene.theme!r}, which {engine.profile.name} does not "
                              f"have (themes: {', '.join(deck.names)})")
        params_to = {k: coerce_lasting(engine.schema, k, v, f"{where}: parameters")
                     for k, v in scene.parameters.items()}
        try:
            prompts_to = engine.schema.check("prompts", [
                {"text": p.text, "weight": round(p.weight, 4) + 0.0} for p in scene.prompts if p.weight > 0])
        except ParameterError as exc:
            raise ConfigError(f"{where}: prompts: {exc}") from None
        if not prompts_to:
            raise ConfigError(f"{where}: no prompt with a weight above 0")
        # Checked: from here the show changes. A morph in progress is replaced, this one starting where it got to.
        params_from = dict(self.steady)
        for key in params_to:
            if key not in params_from and type(SCOPE_DEFAULTS.get(key)) is float:
                params_from[key] = SCOPE_DEFAULTS[key]
        heaviest = max(prompts_to, key=lambda p: p["weight"])["text"]
        focus = next((i for i, p in enumerate(deck.themes[index].prompts) if p.text == heaviest), 0)
        recall = _Recall(scene, engine._step, deck, index, focus, params_from, params_to,
                         [dict(p) for p in engine._prompts], prompts_to, keys=set(params_to),
                         path=engine.profile.path)
        if index != deck.index:
            deck.set_theme(index)
        engine._cycle.restart()  # a theme cycle counts from the recall, as from a theme change
        deck.focus = focus
        engine._base = None
        engine._prompts_key = None
        if morph_bars <= 0:
            recall.transition = True
            recall.u = 1.0
        elif tempo is not None and tempo.playing and tempo.bpm > 0:
            # The glide ends the delay to the picture before the downbeat, so the picture lands on it.
            lead = max(0.0, self.lookahead_s) * tempo.bpm / 60.0
            end = morph_end(tempo, morph_bars)
            while end - lead <= tempo.beat + 1e-9:
                end += tempo.beats_per_bar if tempo.beats_per_bar >= 1 else 4
            recall.mode, recall.start, recall.end = "beat", tempo.beat, end - lead
            recall.deadline = now + (end - tempo.beat + tempo.beats_per_bar) * 60.0 / tempo.bpm
        else:
            bpb = tempo.beats_per_bar if tempo is not None and tempo.beats_per_bar >= 1 else 4
            recall.mode, recall.start = "time", now
            recall.end = now + morph_bars * bpb * 60.0 / engine._clock.bpm
        self._recall = recall

    def _progress(self, recall: _Recall, now: float) -> float:
        if recall.mode == "once" or now >= recall.deadline:
            return 1.0
        position = self._engine._clock.beat if recall.mode == "beat" else now
        span = recall.end - recall.start
        u = (position - recall.start) / span if span > 0 else 1.0
        return 1.0 if u >= 1.0 - 1e-9 else max(0.0, u)

    # ------------------------------------------------------------------ the engine's step

    def _still_playing(self, recall: _Recall) -> bool:
        """False once a theme change, a focus move or panic ended the scene. A reload of the profile (a new deck
        on the same theme) keeps it."""
        engine = self._engine
        deck = engine._deck
        if engine.calm:
            return False
        if deck is not recall.deck:
            if deck.name != recall.scene.theme or engine.profile.path != recall.path:
                return False  # a switch to another profile ends the scene; a reload of this one keeps it
            recall.deck, recall.index = deck, deck.index
            if recall.focus < len(deck.theme.prompts):
                deck.focus = recall.focus
            engine._prompts_key = None
        return deck.index == recall.index and deck.focus == recall.focus

    def _end(self) -> None:
        self._recall = None
        self._engine._prompts_key = None

    def hold(self, params: dict[str, Any], step: int, now: float) -> None:
        """The scene's parameters on top of the mappings' (``params`` is changed); what plays is kept."""
        recall = self._recall
        if recall is not None:
            if not self._still_playing(recall):
                self._end()
            else:
                recall.u = u = self._progress(recall, now)
                driven = {name: slot for slot, _, name in self._engine._p.param_slots}
                for key in list(recall.keys):
                    slot = driven.get(key)
                    if slot is not None and slot.changed > recall.step:
                        recall.keys.discard(key)  # the performer (or the music) moved it: theirs again
                        continue
                    params[key] = _blend(recall.params_from.get(key), recall.params_to[key], u)
                if u < 1.0:  # what the scene leaves to the theme and the mappings glides there too
                    for key, start in recall.params_from.items():
                        slot = driven.get(key)
                        if key in recall.params_to or (slot is not None and slot.changed > recall.step):
                            continue
                        if type(params.get(key)) is float:
                            params[key] = _blend(start, params[key], u)
                if not recall.keys and not recall.prompts_held:
                    self._end()
        self.steady = dict(params)

    def prompt_list(self, step: int) -> list[dict[str, Any]] | None:
        """The prompts while a recalled scene holds them (the engine's prompt state is set), else None."""
        recall = self._recall
        engine = self._engine
        if recall is None or not recall.prompts_held:
            return None
        p = engine._p
        moved = [slot.combine() is not None and slot.changed > recall.step for slot, _ in p.weight_slots]
        if p.intensity_slot is not None:
            moved.append(p.intensity_slot.combine() is not None and p.intensity_slot.changed > recall.step)
        if engine.calm or any(moved):
            recall.prompts_held = False
            engine._prompts_key = None
            if engine.calm or not recall.keys:
                self._recall = None
            return None
        prompts = blend_prompts(recall.prompts_from, recall.prompts_to, recall.u)
        accent = round(min(1.0, engine._accent.level(engine._now)), 2)  # beat accents go on over a scene
        intense = engine._deck.theme.intense_of(engine._deck.focus) if accent > 0 else None
        if intense is not None:
            total = sum(p["weight"] for p in prompts) or 1.0
            scaled = {p["text"]: p["weight"] / total * (1.0 - accent) for p in prompts}
            scaled[intense] = scaled.get(intense, 0.0) + accent
            prompts = [{"text": t, "weight": round(w, 4) + 0.0} for t, w in scaled.items() if round(w, 4) > 0]
        engine._prompts_moved = prompts != engine._prompts
        if engine._prompts_moved:
            engine._prompts = engine.schema.check("prompts", prompts)
        if recall.transition:
            recall.transition = False
            engine._theme_changed = True  # the engine sends a theme transition to these prompts
        return engine._prompts
