"""A show in progress: one show profile, run by the mapping engine, between the inputs and the Scope sender.

    inputs ──► SignalBoard (latest values + triggers) ──► MappingEngine.step() ~86 Hz ──► ParameterSender
                      ▲                                           │
    TempoHub.tick() ──┘ (tempo.beat, tempo.bar)                   └──► controller feedback (MIDI out), OSC out

``ShowRunner`` is the thin asyncio edge around the pure engine: at the analysis rate it asks the tempo hub for
the beat grid (the hub counts beats and puts them on the board), takes what the inputs put on the board, steps
the engine, hands what changed to the sender, and keeps the controller's lights and the OSC display in step
with the show.

Profiles change in three ways, and the stream goes on through each:

- **switch**: a program change, an OSC message or ``metadj-bridge switch`` asks for another profile file; if
  the running profile allows that file (:mod:`.switching`: its own folder, ``mappings/``, the files its switches
  name; a regular .yaml file) it is loaded on a thread of its own with a deadline, and the prompts move to its
  start theme through a theme transition;
- **hot reload**: the profile file (or a file it extends) is saved; the new version applies within a second,
  keeping the current theme if it still exists; a broken save is reported and the running profile stays;
- in both cases settings that need a restart (the pipeline, the resolution, the inputs) are named in a
  warning and keep their running values.

What is wrong with the show now (an edit that could not be applied, settings waiting for a restart) is
``problems()``, for the performer's status: it goes as soon as a good save is applied, or the settings match the
running ones again. The log lines that say so are tagged ``extra={"problem": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metadj_bridge.bundled import resolve_profile
from metadj_bridge.errors import MetaDJError, RateLimitedWarning
from metadj_bridge.mapping.engine import EngineOutput, MappingEngine
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.run.control import RequestLines, with_controls
from metadj_bridge.run.dropguard import NO_SPAN, clear_span, reacts_to_drop
from metadj_bridge.run.scenes import SceneBook, SceneCommands
from metadj_bridge.run.switching import ProfileSwitcher, check_regular, load_with_deadline
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.scope.tempo_feed import beat_state
from metadj_bridge.signals import SignalBoard, TempoState, Trigger

log = logging.getLogger(__name__)

#: The analysis rate (512-sample hops at 44.1 kHz): the engine steps this often.
ENGINE_RATE_HZ = 44100 / 512
#: Controller feedback and OSC out follow the show at most this often.
FEEDBACK_RATE_HZ = 30.0
#: An OSC message to this address with a file path switches the profile (``metadj-bridge switch`` sends it).
SWITCH_ADDRESS = "/metadj/profile"
#: ``metadj-bridge switch`` waits ten times this for the bridge's answer.
SWITCH_WAIT_S = 0.5
_SWITCH_TRIGGER = "osc." + SWITCH_ADDRESS


def restart_only_changes(old: ShowProfile, new: ShowProfile) -> list[str]:
    """Settings of ``new`` that a running bridge cannot apply without a restart (pure)."""
    changed = []
    a, b = old.scope, new.scope
    for key in ("url", "pipeline", "aspect", "resolution", "input_mode", "min_send_interval", "max_send_interval"):
        if getattr(a, key) != getattr(b, key):
            changed.append(f"scope.{key}")
    va, vb = old.video, new.video
    for key in ("outputs", "size", "fps", "device", "backend", "preview_port", "source", "ref_images"):
        if getattr(va, key) != getattr(vb, key):
            changed.append(f"video.{key}")
    ia, ib = old.inputs, new.inputs
    for section in ("audio", "midi", "osc", "tempo"):
        x, y = getattr(ia, section), getattr(ib, section)
        fields = [f for f in x.__dataclass_fields__ if f != "where"]
        if section == "midi":
            fields = [f for f in fields if f not in ("encoders", "cc14")]  # applied live to the decoder
        if any(getattr(x, f) != getattr(y, f) for f in fields):
            changed.append(f"inputs.{section}")
    servers = {s.name: (s.scope.url, s.scope.pipeline, s.scope.resolution, s.scope.aspect, s.video.outputs)
               for s in old.screens}
    if servers != {s.name: (s.scope.url, s.scope.pipeline, s.scope.resolution, s.scope.aspect, s.video.outputs)
                   for s in new.screens}:
        changed.append("screens")  # their prompt banks follow at once; servers and outputs at the next start
    return changed


class ShowRunner(SceneCommands):
    """Runs a show profile: the inputs fill ``board``, ``run()`` steps the engine and feeds the sender.

    ``tempo`` returns the beat grid (a ``TempoState``) for a time, or None: a :meth:`TempoHub.tick`, which also
    counts the beats onto the board. ``midi_out`` and ``osc_out`` are optional controller feedback and OSC out.
    ``on_profile`` is called with each profile that takes over (e.g. to give the MIDI decoder new encoders).
    """

    def __init__(
        self,
        profile: ShowProfile,
        sender: ParameterSender,
        tempo: Callable[[float], TempoState | None] | None = None,
        *,
        board: SignalBoard | None = None,
        midi_out: Any = None,
        osc_out: Any = None,
        on_profile: Callable[[ShowProfile], None] | None = None,
        rate_hz: float = ENGINE_RATE_HZ,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
        downbeat: Callable[[float], bool] | None = None,
    ) -> None:
        self.profile = profile
        #: A performer's one (``action.downbeat``) goes to the beat grid (``TempoHub.pin_downbeat``).
        self._downbeat = downbeat
        #: The profile whose restart-only settings (pipeline, resolution, inputs...) the bridge runs with.
        self._started = profile
        #: Why the newest edit or reload of the profile file was not applied (None once one is).
        self._edit_error: str | None = None
        self.sender = sender
        # The control surface's own mappings ride along (``run/control.py``: the web page steers like a controller).
        self.engine = MappingEngine(with_controls(profile), sender.schema, seed=seed)
        #: The profile reacts to drops: in a breakdown Scope's queue is kept clear around downbeats (``dropguard``).
        self._guard_drops = reacts_to_drop(profile)
        #: The clock time of the current breakdown's last kick (``dropguard``), None outside a breakdown.
        self._breakdown_from: float | None = None
        self._tempo = tempo
        self.midi_out = midi_out
        self.osc_out = osc_out
        self.on_profile = on_profile
        self.interval = 1.0 / rate_hz
        self._clock = clock
        #: What the inputs said: the latest value of every signal and the triggers since the last step.
        self.board = board if board is not None else SignalBoard()
        self._feedback_due = 0.0
        #: The "show:" INFO lines, a line a second at most: a flood of theme buttons changes the theme at each step.
        self._event_lines = RequestLines(logger=log, label="show", what="events")
        self._last_theme: str | None = None
        self._switcher = ProfileSwitcher(lambda: self.profile, lambda new: self.apply(new, switch=True))
        self._reloading: asyncio.Task[None] | None = None
        self._watcher: Any = None
        self._watch_interval: float | None = None
        #: Video input mode: a prompt change goes with ``reset_cache: true`` (the seed's avatar studio).
        self.reset_on_new_prompt = profile.scope.input_mode == "video"
        self._warn = RateLimitedWarning(log, "mapping output refused by the parameter check")
        #: What happened lately, for the status line: the newest engine events.
        self.last_event = ""
        #: A ShowLog for the show's events (theme changes, switches), or None.
        self.show_log: Any = None
        #: When the latest prompt transition went out and its steps (chunks), for the status view's progress.
        self.transition_started: tuple[float, int] | None = None
        self.steps = 0
        self.switches = 0
        self.reloads = 0
        #: The measured delay from a sent change to its frame at the output, in seconds, asked every step for the
        #: quantize lookahead ``auto`` (``scope/latency.ShowLatency``); None: no Scope output to be late for.
        self.latency: Callable[[float], float] | None = None
        #: Scope's tempo sync is on: every step hands the sender the BeatClock's beat (``scope/tempo_feed``).
        self.feed_beat = False
        #: The control surface's OSC requests (``ShowControl.take_osc``), set by the bridge.
        self.osc_control: Callable[[list[Trigger]], list[Trigger]] | None = None
        self._scene_book = SceneBook()  # save_scene, recall_scene, scene_names: run/scenes.py

    @property
    def last_control(self) -> str:
        """The control touched last (a MIDI or OSC signal or trigger), for the status view."""
        return self.board.last_control

    def transition_progress(self, now: float) -> float | None:
        """0..1 through the latest prompt transition (Scope moves one step per chunk), None when none is running."""
        if self.transition_started is None:
            return None
        started, steps = self.transition_started
        if steps <= 0:
            return None
        progress = (now - started) / (steps * self.sender.pacer.interval(now))
        return None if progress >= 1.0 else round(max(0.0, progress), 2)

    def problems(self) -> list[str]:
        """What is wrong with the show now, in a performer's words (the status view); empty when all is well."""
        out = []
        if self._edit_error is not None:
            out.append(f"profile edit not applied, the running profile stays: {self._edit_error}")
        later = restart_only_changes(self._started, self.profile)
        if later:
            out.append(f"{Path(self.profile.path).name}: {', '.join(later)} change(s) apply when the bridge restarts")
        return out

    def initial_parameters(self) -> dict[str, Any]:
        return self.engine.initial_parameters()

    # ------------------------------------------------------------------ stepping

    def step(self, now: float | None = None) -> EngineOutput:
        """One engine step with what arrived since the last one; hands the result on. Synchronous."""
        now = self._clock() if now is None else now
        state = self._tempo(now) if self._tempo is not None else None
        if self.latency is not None:
            self.engine.set_latency(self.latency(now))
        triggers = self.board.take_triggers()
        if triggers and self.osc_control is not None:  # /metadj/theme, /prompt, /action: run/control.py
            triggers = self.osc_control(triggers)
        if triggers and any(t.name == _SWITCH_TRIGGER for t in triggers):
            triggers = self._take_switches(triggers)
        out = self.engine.step(self.board.values, triggers, now, state)
        self._scene_step(now, state, triggers)
        self.steps += 1
        self._hand_on(out)
        if out.downbeat and self._downbeat is not None and self._downbeat(now):
            out = dataclasses.replace(out, events=(*out.events, "downbeat: the bar begins on this beat"))
        if self._guard_drops:
            self._guard_drop(now, state, triggers)
        if self.feed_beat and state is not None:
            # Projected to when it reaches Scope, which takes the phase as it arrives.
            beat = beat_state(state, self.sender.pacer.rtt / 2)
            if beat is not None:
                self.sender.apply(beat, checked_by=self.engine.schema)
        if out.events:
            self.last_event = out.events[-1]
            for event in out.events:
                self._event_lines.add(event)
                if self.show_log is not None:
                    self.show_log.event(event, now)
        if out.profile_switch is not None:
            self.request_switch(out.profile_switch, source=f"a switch of {Path(self.profile.path).name}")
        if now >= self._feedback_due:
            self._feedback_due = now + 1.0 / FEEDBACK_RATE_HZ
            self._feedback()
        return out

    def _guard_drop(self, now: float, state: TempoState | None, triggers: list[Trigger]) -> None:
        """In a breakdown, keep Scope's queue clear around each downbeat for the drop's reset (``dropguard``)."""
        section = self.board.values.get("audio.section")
        for trigger in triggers:
            if trigger.name == "audio.breakdown":
                gone = trigger.data.get("seconds")
                if isinstance(gone, (int, float)) and math.isfinite(gone) and gone >= 0:
                    self._breakdown_from = now - gone
                else:
                    self._breakdown_from = None
        if section is None or section >= 0.5:
            self._breakdown_from = None
        pacer = self.sender.pacer
        self.sender.keep_clear(*clear_span(now, state, section, chunk_s=pacer.interval(now), rtt=pacer.rtt,
                                           anchor=self._breakdown_from))

    def _take_switches(self, triggers: list[Trigger]) -> list[Trigger]:
        """Profile switch requests (OSC ``/metadj/profile PATH``) go to the switcher, not to the engine."""
        rest = []
        for trigger in triggers:
            if trigger.name != _SWITCH_TRIGGER:
                rest.append(trigger)
                continue
            args = trigger.data.get("args") or ()
            sender = trigger.data.get("sender")  # ip:port, when the OSC input says who sent it
            source = f"OSC {SWITCH_ADDRESS}" + (f" from {sender}" if sender else "")
            self.request_switch(args[0] if args else None, source=source)
        return rest

    def _hand_on(self, out: EngineOutput) -> None:
        # What the sender already holds is the one record of what Scope has or is about to get.
        desired = self.sender.state.desired
        changed = {k: v for k, v in out.parameters.items() if desired.get(k, _MISSING) != v}
        actions = out.actions
        if "transition" in actions:
            self.transition_started = (self._clock(), int(actions["transition"].get("num_steps", 0)))
        if self.reset_on_new_prompt and "transition" in actions:
            # Avatar mode, as the seed does it: a prompt change (a theme or the next prompt; not a crossfade knob
            # moving weights) starts from a fresh cache, so the webcam's picture takes the new look at once.
            actions = {**actions, "reset_cache": True}
        try:
            if changed:
                self.sender.apply(changed, checked_by=self.engine.schema)
            if actions:
                self.sender.apply(actions, urgent=True, checked_by=self.engine.schema)
        except MetaDJError as exc:  # a profile value the server's own schema refuses: say so, keep the show going
            self._warn.note(str(exc))

    def _feedback(self) -> None:
        theme = self.engine.theme
        if theme != self._last_theme:
            self._last_theme = theme
            if self.osc_out is not None:
                self.osc_out.set_theme(theme)
        if self.midi_out is None:
            return
        for (kind, channel, number), value in self.engine.feedback().items():
            if kind == "note":
                self.midi_out.send_note(channel, number, value)
            else:
                self.midi_out.send_cc(channel, number, value)

    async def run(self) -> None:
        """Step at the analysis rate until cancelled; a broken step is logged and the next one tries again."""
        errors = RateLimitedWarning(log, "mapping engine step failed")
        next_at = self._clock()
        try:
            while True:
                try:
                    self.step()
                except Exception as exc:  # noqa: BLE001 - one bad step must not end the show
                    errors.listener_failed(self.step, exc)
                next_at += self.interval
                delay = next_at - self._clock()
                if delay < -self.interval:  # fell behind (a stall): do not try to catch up in a burst
                    next_at = self._clock()
                    delay = 0.0
                await asyncio.sleep(max(0.0, delay))
        finally:
            await self._stop_watching()
            self._switcher.close()

    # ------------------------------------------------------------------ profile changes

    def request_switch(self, path: object, source: str = "a switch request") -> None:
        """Switch to ``path`` (relative to the running profile's folder) if the running profile allows it.

        ``source`` names who asked, for the one line a refusal gets. The file is checked at once and loaded on
        a thread of its own with a deadline; a request while one loads replaces the waiting one.
        """
        self._switcher.request(path, source)

    @property
    def switches_refused(self) -> int:
        """Switch requests refused since the start (outside the allowed folders, not a profile, not loading)."""
        return self._switcher.refused

    def request_reload(self, reason: str = "reload") -> None:
        """Read the running profile's file again (SIGHUP); a broken file is reported and the profile stays."""
        self._reloading = asyncio.get_running_loop().create_task(self._reload(reason), name="profile-reload")

    async def _reload(self, reason: str) -> None:
        try:
            check_regular(self.profile.path)  # the file may have been replaced by a pipe: never block on it
            profile = await load_with_deadline(self.profile.path)
        except MetaDJError as exc:
            self._edit_error = str(exc)
            log.error("%s: profile not reloaded, the running profile stays: %s", reason, exc, extra=_PROBLEM)
            return
        except Exception as exc:  # noqa: BLE001 - whatever the file does to the loader, the show goes on
            self._edit_error = f"{type(exc).__name__}: {exc}"
            log.error("%s: profile not reloaded (%s: %s), the running profile stays", reason, type(exc).__name__, exc,
                      extra=_PROBLEM)
            return
        self.apply(profile, switch=False)

    def apply(self, profile: ShowProfile, *, switch: bool) -> None:
        """Make ``profile`` the running one: a switch moves to its start theme, a reload keeps the theme."""
        # Against what runs, not the previous file: an edit undone takes its warning with it.
        later = restart_only_changes(self._started, profile)
        if later and later != restart_only_changes(self._started, self.profile):
            log.warning("%s: %s change(s) apply when the bridge restarts; running on with the current ones",
                        Path(profile.path).name, ", ".join(later), extra=_PROBLEM)
        self._edit_error = None
        old_path = self.profile.path
        current, focus = self.engine.theme, None
        if not switch and any(t.name == current for t in profile.themes):
            # An edit of the running show (a save, a scene or a mapping written): stay on the theme and prompt played.
            profile, focus = dataclasses.replace(profile, start_theme=current), self.engine.focus
        self.engine.switch_profile(with_controls(profile), self._clock(), focus=focus)
        self.profile = profile
        self._guard_drops = reacts_to_drop(profile)
        if not self._guard_drops:
            self.sender.keep_clear(*NO_SPAN)
        if self.show_log is not None:
            self.show_log.event(f"profile {'switch' if switch else 'reload'}: {profile.path}", self._clock())
        if switch:
            self.switches += 1
            log.info("profile: %s -> %s (theme %s)", Path(old_path).name, Path(profile.path).name, self.engine.theme)
        else:
            self.reloads += 1
            log.info("profile %s reloaded (%d themes, %d mappings)", Path(profile.path).name,
                     len(profile.themes), len(profile.mappings))
        if self.on_profile is not None:
            self.on_profile(profile)
        if self._watch_interval is not None and profile.path != old_path:
            asyncio.get_running_loop().create_task(self._restart_watch(), name="profile-watch-restart")

    # ------------------------------------------------------------------ hot reload

    async def watch(self, interval: float = 0.25) -> None:
        """Reload the running profile whenever its file (or a file it extends) is saved."""
        self._watch_interval = interval
        await self._restart_watch()

    async def _restart_watch(self) -> None:
        from metadj_bridge.profile import ProfileWatcher

        await self._stop_watching()
        assert self._watch_interval is not None
        self._watcher = ProfileWatcher(
            self.profile.path,
            on_change=lambda p: self.apply(p, switch=False),
            on_error=self._edit_failed,
            interval=self._watch_interval,
        )
        await self._watcher.start()

    def _edit_failed(self, exc: Exception) -> None:
        self._edit_error = str(exc)
        log.error("profile edit not applied, the running profile stays: %s", exc, extra=_PROBLEM)

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.aclose()


_MISSING = object()
#: Marks a log record as describing the show's state (see :meth:`ShowRunner.problems`).
_PROBLEM = {"problem": "show profile"}


def send_switch(path: str, to: str, token: str | None = None) -> int:
    """``metadj-bridge switch``: check the profile here, then ask the bridge's web server at ``to`` (HOST:PORT) to
    switch to it (``POST /api/profile``). No answer, or a refusal, is an error naming what the bridge said."""
    import httpx

    from metadj_bridge.errors import ConfigError
    from metadj_bridge.profile import load_profile

    host, _, port = to.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--to {to!r}: expected HOST:PORT of the bridge's web server, e.g. 127.0.0.1:8765")
    path = resolve_profile(path)  # a bundled profile by name
    check_regular(path)  # a pipe would block the read below for ever
    profile = load_profile(path)  # a broken profile is refused here, not on stage
    target = str(Path(profile.path).resolve())
    url = f"http://{host}:{port}/api/profile"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.post(url, json={"path": target}, headers=headers, timeout=SWITCH_WAIT_S * 10)
    except (httpx.HTTPError, UnicodeError) as exc:  # UnicodeError: a host name too long to be one
        raise MetaDJError(f"no bridge answers at {host}:{port} ({type(exc).__name__}: {exc}): is it running, with "
                          "its web server on that port (run --http-port)?") from None
    try:
        said = answer.json()
    except (ValueError, RecursionError):
        said = {}
    if answer.status_code >= 400:
        error = said.get("error") if isinstance(said, dict) else None
        raise MetaDJError(f"the bridge at {host}:{port} refused the switch to {target} (HTTP {answer.status_code}): "
                          f"{error or answer.text[:200]}")
    print(f"the bridge at {host}:{port} is switching to {target} (its log and live view say when it has)")
    return 0
