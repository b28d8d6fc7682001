"""The show's control surface for the web page and scripts: what ``POST /api/...`` asks, in the engine's own paths.

MIDI and OSC steer the show by putting signals and triggers on the :class:`~metadj_bridge.signals.SignalBoard`,
which the profile's mappings read at the next engine step. The controls here do the same: the engine runs the
profile with a few mappings of its own added (:func:`with_controls`), and a request only puts their trigger or
signal on the board:

- ``control.theme.NAME`` (trigger) -> ``theme.set: NAME``, for every theme of the profile;
- ``control.action.NAME`` (trigger) -> ``action.NAME`` (``panic``, ``pause``, ``resume``, ``reset_cache``);
- ``control.crossfade`` (signal 0..1) -> ``prompt.mix`` of the theme's first two prompts.

So a theme button moves the theme as a pad mapped to ``theme.set`` does (the theme's transition, the show log's
event), and a crossfade counts like a fader on ``prompt.mix``. Three requests have no mapping to ride:

- a typed prompt replaces the playing theme's prompts (in memory, until the profile is reloaded or switched) and
  lets the engine take the changed profile as it takes a reload: the next step sends a theme transition to it;
- tap tempo and nudge are tempo readings (source ``osc``: Link and MIDI clock, when present, lead; the audio
  tracker follows), as a DJ program's tempo over OSC would be;
- downbeat says the beat nearest the request is the one: the grid's bars (``tempo.bar``, bar-quantised changes, the
  beat state Scope is told) begin there until another source steers or the tempo moves (``TempoHub.pin_downbeat``).

Every request is one show-log event naming who asked (``web from 192.168.1.20``), and one INFO line: at once when
the last came a second or more before, else the latest of the second a second later, with the count (a script or a
stuck button sending thousands a second must not fill the log). What the requests make the show do (``show: theme
neon -> forest``) is logged the same way (:class:`RequestLines`, used by the show runner too).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metadj_bridge.bundled import PROFILES_DIR
from metadj_bridge.errors import ConfigError, MetaDJError, RateLimitedWarning
from metadj_bridge.profile.mapping_model import Mapping, SignalSource, Target, TriggerSource
from metadj_bridge.profile.model import PromptSpec, ShowProfile
from metadj_bridge.run.switching import PROFILE_SUFFIXES, allowed_places, check_target, profile_folder
from metadj_bridge.signals import Signal, SignalBoard, TempoReading, TempoState, Trigger

if TYPE_CHECKING:
    from metadj_bridge.run.show import ShowRunner

__all__ = ["ACTIONS", "ControlRefused", "ShowControl", "with_controls"]

log = logging.getLogger(__name__)

PREFIX = "control."
#: What ``POST /api/action`` takes.
ACTIONS = ("panic", "pause", "resume", "reset_cache", "tap", "nudge_forward", "nudge_back", "downbeat")
_ENGINE_ACTIONS = ("panic", "pause", "resume", "reset_cache")
CROSSFADE = PREFIX + "crossfade"
#: ``/metadj/crossfade f`` (0..1) from any OSC sender is a fader on the same ``prompt.mix``.
OSC_CROSSFADE = "osc./metadj/crossfade"
#: The bridge's own OSC control addresses with a word or text (OSCQuery lists them): trigger name -> request.
OSC_REQUESTS = ("osc./metadj/theme", "osc./metadj/prompt", "osc./metadj/action")
MAX_PROMPT = 1000
#: Taps further apart than this start a new count.
TAP_GAP_S = 2.0
TAP_KEEP = 8
#: A nudge moves the beat grid by this many beats.
NUDGE_BEATS = 1 / 16
#: The profile list (the allowed folders read from disk) is read again at most this often.
PROFILES_TTL_S = 5.0
MAX_PROFILES = 200


class ControlRefused(MetaDJError):
    """A control request that cannot be done: ``field`` names what was wrong, ``kind`` says how (for the answer's
    status: ``bad`` 400, ``unknown`` 404, ``forbidden`` 403, ``unavailable`` 501)."""

    def __init__(self, message: str, field: str, kind: str = "bad") -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


class RequestLines:
    """INFO lines that outside input can flood (``control:`` for the requests, ``show:`` for what they make the show
    do): a line after a quiet ``interval`` is logged at once; those that follow within it are counted, and the latest
    is logged with the count when the interval ends."""

    def __init__(self, interval: float = 1.0, *, logger: logging.Logger = log, label: str = "control",
                 what: str = "requests") -> None:
        self.interval = interval
        self._logger, self._label, self._what = logger, label, what
        self._quiet_from = float("-inf")
        self._held: tuple[str, int] | None = None
        self.logged = 0

    def add(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        now = loop.time() if loop is not None else time.monotonic()
        if now >= self._quiet_from or loop is None:
            self._log(line)
            self._quiet_from = now + self.interval
        elif self._held is None:
            self._held = (line, 1)
            loop.call_at(self._quiet_from, self._flush)
        else:
            self._held = (line, self._held[1] + 1)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            line, count = held
            self._log(line if count == 1 else f"{line}; {count} {self._what} in the last {self.interval:g} s")
            self._quiet_from = asyncio.get_running_loop().time() + self.interval

    def _log(self, line: str) -> None:
        self._logger.info("%s: %s", self._label, line)
        self.logged += 1


def with_controls(profile: ShowProfile) -> ShowProfile:
    """``profile`` with the control surface's own mappings added (the module's docstring lists them)."""
    extra = [Mapping(f"{PREFIX}theme.{t.name}", TriggerSource(f"{PREFIX}theme.{t.name}"),
                     target=Target("theme", "set", (t.name,)), where="control page")
             for t in profile.themes]
    extra += [Mapping(f"{PREFIX}action.{name}", TriggerSource(f"{PREFIX}action.{name}"),
                      target=Target("action", name), where="control page") for name in _ENGINE_ACTIONS]
    extra.append(Mapping(CROSSFADE, SignalSource(CROSSFADE), target=Target("prompt_mix", "mix", (0, 1)),
                         where="control page"))
    extra.append(Mapping(OSC_CROSSFADE, SignalSource(OSC_CROSSFADE), target=Target("prompt_mix", "mix", (0, 1)),
                         where="OSC /metadj/crossfade"))
    return dataclasses.replace(profile, mappings=(*profile.mappings, *extra))


class ShowControl:
    """What the control API does to a running show. Event loop only; every method returns at once (the engine
    applies the request at its next step)."""

    def __init__(self, show: ShowRunner, board: SignalBoard,
                 tempo: Callable[[], TempoState | None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 downbeat: Callable[[float], bool] = lambda now: False) -> None:
        self.show = show
        self.board = board
        self._tempo = tempo
        self._pin_downbeat = downbeat
        self._clock = clock
        self.crossfade: float | None = None
        #: The typed prompt and the profile object that carries it (it shows while that profile runs).
        self._typed: tuple[str, str, ShowProfile] | None = None
        self._taps: list[float] = []
        self._profiles: tuple[float, str, list[str]] = (float("-inf"), "", [])
        from metadj_bridge.soundcheck.live_learn import LiveLearn

        #: MIDI learn from the page (``POST /api/learn``): writes the learned mapping into the profile file.
        self.learner = LiveLearn(board, lambda: self.show.profile.path,
                                 lambda: [t.name for t in self.show.profile.themes], clock=clock,
                                 report=lambda line: self._record(line, "learn"))
        self._listing: asyncio.Task[None] | None = None
        self._refusals = RateLimitedWarning(log, "OSC control requests refused")
        self._lines = RequestLines()

    # ------------------------------------------------------------------ requests

    async def learn(self, target: object, name: object, who: str) -> None:
        await self.learner.start(target, name)
        self._record(f"learn {target}", who)

    async def cancel_learn(self, who: str) -> None:
        await self.learner.cancel()

    def set_theme(self, name: object, who: str) -> None:
        themes = [t.name for t in self.show.profile.themes]
        if not isinstance(name, str):
            raise ControlRefused(f"name: {_shown(name)} is not a theme name (a string)", "name")
        if name not in themes:
            raise ControlRefused(f"name: {_shown(name)} is not a theme of this profile (themes: "
                                 f"{', '.join(themes)})", "name", "unknown")
        self._fire(f"theme.{name}", f"theme {name}", who)

    def action(self, name: object, who: str) -> None:
        if not isinstance(name, str) or name not in ACTIONS:
            raise ControlRefused(f"name: {_shown(name)} is not an action ({', '.join(ACTIONS)})", "name",
                                 "bad" if not isinstance(name, str) else "unknown")
        if name in _ENGINE_ACTIONS:
            self._fire(f"action.{name}", name.replace("_", " "), who)
        elif name == "tap":
            self._tap(who)
        elif name == "downbeat":
            self._downbeat(who)
        else:
            self._nudge(NUDGE_BEATS if name == "nudge_forward" else -NUDGE_BEATS, who)

    def set_crossfade(self, value: object, who: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ControlRefused(f"value: {_shown(value)} is not a crossfade position (a number 0 to 1)", "value")
        now = self._clock()
        self.crossfade = float(value)
        self.board.set(Signal(CROSSFADE, float(value), now))
        log.debug("control: crossfade %.3f (%s)", value, who)

    def type_prompt(self, text: object, who: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ControlRefused(f"text: {_shown(text)} is not a prompt (a non-empty string)", "text")
        text = " ".join(text.split())
        if len(text) > MAX_PROMPT:
            raise ControlRefused(f"text: {len(text)} characters; a prompt has at most {MAX_PROMPT}", "text")
        show = self.show
        theme = show.engine.theme
        profile = show.profile
        themes = tuple(dataclasses.replace(t, prompts=(PromptSpec(text, 1.0, where="control page"),), blend=False)
                       if t.name == theme else t for t in profile.themes)
        # As a reload of the running profile: same theme, its prompts replaced; the next step sends the transition.
        typed = dataclasses.replace(profile, themes=themes, start_theme=theme)
        show.profile = typed
        show.engine.switch_profile(with_controls(typed), self._clock(), event=False)  # this request's line says it
        self._typed = (text, theme, typed)
        self._record(f"prompt {text!r} (theme {theme})", who)

    def switch_profile(self, path: object, who: str) -> str:
        """Check ``path`` as the OSC switch does and ask for it; the real path. Blocking (stats the file)."""
        if not isinstance(path, str) or not path.strip():
            raise ControlRefused(f"path: {_shown(path)} is not a profile path (a non-empty string)", "path")
        try:
            real = check_target(path, self.show.profile)
        except ConfigError as exc:
            raise ControlRefused(f"path: {exc}", "path", "forbidden") from None
        return str(real)

    def request_switch(self, real: str, who: str) -> None:
        self.show.request_switch(real, source=who)
        self._record(f"profile switch asked: {real}", who)

    def save_scene(self, name: object, who: str) -> None:
        save = getattr(self.show, "save_scene", None)
        if save is None:
            raise ControlRefused("scenes are not available in this build", "name", "unavailable")
        self._scene_name(name)
        try:
            save(name)
        except ConfigError as exc:
            raise ControlRefused(f"name: {exc}", "name") from None
        self._record(f"scene saved: {name}", who)

    def recall_scene(self, name: object, morph_bars: object, who: str) -> None:
        recall = getattr(self.show, "recall_scene", None)
        if recall is None:
            raise ControlRefused("scenes are not available in this build", "name", "unavailable")
        self._scene_name(name)
        bars = 0.0 if morph_bars is None else morph_bars
        if isinstance(bars, bool) or not isinstance(bars, (int, float)) or not 0 <= bars <= 64:
            raise ControlRefused(f"morph_bars: {_shown(morph_bars)} is not a number of bars (0 to 64)", "morph_bars")
        known = self.scene_names()
        if name not in known:
            raise ControlRefused(f"name: {_shown(name)} is not a scene (scenes: {', '.join(known) or 'none yet'})",
                                 "name", "unknown")
        try:
            recall(name, float(bars))
        except ConfigError as exc:
            raise ControlRefused(f"name: {exc}", "name", "unknown") from None
        self._record(f"scene recalled: {name}" + (f" over {bars:g} bars" if bars else ""), who)

    # ------------------------------------------------------------------ state

    def scene_names(self) -> list[str]:
        names = getattr(self.show, "scene_names", None)
        return list(names()) if callable(names) else []

    def take_osc(self, triggers: list[Trigger]) -> list[Trigger]:
        """The show's triggers without the OSC control requests (``/metadj/theme s``, ``/metadj/prompt s``,
        ``/metadj/action s``), each done as the API does it; a refusal is one warning naming the sender."""
        rest = []
        for trigger in triggers:
            if trigger.name not in OSC_REQUESTS:
                rest.append(trigger)
                continue
            args = trigger.data.get("args") or ()
            who = f"OSC from {trigger.data.get('sender') or 'a sender'}"
            value = args[0] if args else None
            try:
                {"theme": self.set_theme, "prompt": self.type_prompt, "action": self.action}[
                    trigger.name.rsplit("/", 1)[1]](value, who)
            except (ControlRefused, MetaDJError) as exc:
                self._refusals.note(f"{trigger.name[4:]} {_shown(value)} ({who}): {exc}")
        return rest

    def state(self) -> dict[str, Any]:
        """The ``control`` part of the live state (docs/web.md)."""
        show = self.show
        theme = show.engine.theme
        current = next((t for t in show.profile.themes if t.name == theme), None)
        typed = self._typed
        showing = typed is not None and show.profile is typed[2] and theme == typed[1]
        return {
            "themes": [t.name for t in show.profile.themes],
            "theme": theme,
            "theme_prompts": [p.text for p in current.prompts] if current is not None else [],
            "crossfade": self.crossfade,
            "typed_prompt": typed[0] if showing and typed is not None else None,
            "profiles": self.profiles(),
            "scenes": self.scene_names(),
            "actions": list(ACTIONS),
            "learn_targets": self.learner.targets(),
            "learn": self.learner.state(),
        }

    def profiles(self) -> list[str]:
        """Profiles a switch may open: the running profile's folder, the bundled ones, the files it names. Read on a
        worker thread at most every few seconds (a folder on a slow disk must not hold the event loop); the list
        read last until then."""
        now = self._clock()
        at, path, listed = self._profiles
        profile = self.show.profile
        stale = path != profile.path or now - at >= PROFILES_TTL_S
        if stale and (self._listing is None or self._listing.done()):
            self._profiles = (now, profile.path, listed)
            self._listing = asyncio.get_running_loop().create_task(self._list(profile), name="control-profiles")
        return listed

    async def _list(self, profile: ShowProfile) -> None:
        try:
            listed = await asyncio.to_thread(list_profiles, profile)
        except Exception as exc:  # noqa: BLE001 - no list is no reason to disturb the show
            log.debug("control: the profile list failed: %s", exc)
            return
        self._profiles = (self._clock(), profile.path, listed)

    # ------------------------------------------------------------------ helpers

    def _fire(self, name: str, what: str, who: str) -> None:
        now = self._clock()
        self.board.fire(Trigger(PREFIX + name, now, {"source": who}))
        self._record(what, who, now)

    def _record(self, what: str, who: str, now: float | None = None) -> None:
        self._lines.add(f"{what} ({who})")
        show_log = self.show.show_log
        if show_log is not None:
            show_log.event(f"control: {what} ({who})", self._clock() if now is None else now)

    @staticmethod
    def _scene_name(name: object) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ControlRefused(f"name: {_shown(name)} is not a scene name (a string of 1 to 100 characters)",
                                 "name")

    def _tap(self, who: str) -> None:
        now = self._clock()
        taps = self._taps
        if taps and now - taps[-1] > TAP_GAP_S:
            taps.clear()
        taps.append(now)
        del taps[:-TAP_KEEP]
        if len(taps) < 2:
            self._record("tap (one more for a tempo)", who, now)
            return
        bpm = 60.0 / statistics.median(b - a for a, b in zip(taps, taps[1:], strict=False))
        if not 40.0 <= bpm <= 250.0:
            self._record(f"tap: {bpm:.1f} BPM is outside 40-250, not taken", who, now)
            return
        self.board.tempo(TempoReading("osc", round(bpm, 2), now, beat=float(len(taps) - 1)))
        self._record(f"tap tempo {bpm:.1f} BPM", who, now)

    def _downbeat(self, who: str) -> None:
        now = self._clock()
        if not self._pin_downbeat(now):
            raise ControlRefused("no beat to count the bar from yet (tap the tempo first, or play some music)", "name")
        self._record("downbeat: the bar begins on this beat", who, now)

    def _nudge(self, beats: float, who: str) -> None:
        now = self._clock()
        state = self._tempo()
        if state is None or state.source is None:
            raise ControlRefused("no tempo to nudge yet (tap the tempo first, or play some music)", "name")
        self.board.tempo(TempoReading("osc", state.bpm, now, beat=state.beat + beats,
                                      beats_per_bar=state.beats_per_bar))
        self._record(f"nudge {'forward' if beats > 0 else 'back'} {abs(beats):g} beat", who, now)


def list_profiles(profile: ShowProfile) -> list[str]:
    """The profile files a switch away from ``profile`` may open, sorted (blocking: it reads folders)."""
    found: set[str] = set()
    for folder in (profile_folder(profile), PROFILES_DIR):
        try:
            found.update(str(p.resolve()) for p in Path(folder).iterdir()
                         if p.suffix.lower() in PROFILE_SUFFIXES and p.is_file())
        except OSError:
            continue
    found.update(str(f) for f in allowed_places(profile).files)
    return sorted(found)[:MAX_PROFILES]


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
