"""Scenes in a running show: ``ShowRunner.save_scene``, ``recall_scene`` and ``scene_names`` (the web control
API, OSC ``/metadj/scene/save NAME`` and ``/metadj/scene/recall NAME [BARS]``, and ``scene.save:`` /
``scene.recall:`` mapping targets all end here), and where saved scenes are kept.

Where scenes are kept: in the running profile's own ``scenes:`` section, written with the round-trip writer
(``profile/edit.set_entry``: comments and layout stay, the edited file must load before it replaces the old one in
one ``os.replace``). One file is the whole show: a scene travels with the profile it belongs to, ``check`` checks
it, ``extends`` merges scenes by name, and hot reload picks up a hand edit. The write runs on a thread; until
it lands (and when it cannot: a read-only file or folder, a bundled profile, a file that no longer loads) the
scene is kept in memory and can be recalled at once; a write that fails says so in one warning and the show
goes on, the scene kept for this run only.

What a scene captures and how a recall plays is :mod:`metadj_bridge.mapping.scenes`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metadj_bridge.bundled import PROFILES_DIR
from metadj_bridge.errors import ConfigError, MetaDJError, RateLimitedWarning
from metadj_bridge.mapping.engine import MappingEngine
from metadj_bridge.profile.mappings import MAX_MORPH_BARS
from metadj_bridge.profile.model import Scene, ShowProfile
from metadj_bridge.profile.scenes import MAX_SCENES, scene_entry, scene_name_problem
from metadj_bridge.signals import TempoState, Trigger

if TYPE_CHECKING:
    from metadj_bridge.run.control import RequestLines

log = logging.getLogger(__name__)

#: OSC control addresses (``/metadj/scene/save NAME``, ``/metadj/scene/recall NAME [BARS]``).
SAVE_ADDRESS = "/metadj/scene/save"
RECALL_ADDRESS = "/metadj/scene/recall"
_SAVE_TRIGGER = "osc." + SAVE_ADDRESS
_RECALL_TRIGGER = "osc." + RECALL_ADDRESS
#: Saves waiting for the file: more means a flood (a stuck pad, a hostile OSC sender), refused until they land.
MAX_PENDING_WRITES = 8


def write_scene(path: str, scene: Scene) -> None:
    """Write ``scene`` into the profile file at ``path`` (blocking: run it on a thread). ProfileError or OSError
    when it cannot be written; the file is then unchanged."""
    from metadj_bridge.profile.edit import set_entry

    if Path(path).resolve().is_relative_to(PROFILES_DIR):
        raise ConfigError(f"{Path(path).name} is a bundled profile; copy it to a folder of your own "
                          "(metadj-bridge profiles --copy) to keep scenes in it")
    set_entry(path, "scenes", scene.name, scene_entry(scene))


class SceneBook:
    """The runner's scene state: scenes saved this run, the pending writes, the latest beat grid."""

    def __init__(self) -> None:
        #: (profile path, scene name) -> (scene, the profile it was written under, or None: in memory only).
        self.saved: dict[tuple[str, str], tuple[Scene, ShowProfile | None]] = {}
        self.writes: set[asyncio.Task[None]] = set()
        self.lock: asyncio.Lock | None = None
        #: The beat grid of the latest step and the time it was true.
        self.tempo: tuple[TempoState | None, float] = (None, 0.0)
        self.refused = RateLimitedWarning(log, "scene request refused")


class SceneCommands:
    """The scene commands of :class:`~metadj_bridge.run.show.ShowRunner` (which holds the state they use)."""

    engine: MappingEngine
    profile: ShowProfile
    show_log: Any
    last_event: str
    latency: Callable[[float], float] | None
    _clock: Callable[[], float]
    _scene_book: SceneBook
    _event_lines: RequestLines

    def scene_names(self) -> list[str]:
        """The scenes the running profile has (its ``scenes:``, then those saved since), in that order."""
        return list(self._scenes_now())

    def save_scene(self, name: str) -> None:
        """Save what the show plays now as the scene ``name`` (replacing one of that name). The scene can be recalled
        at once; the profile file is written in the background (a warning when it cannot be)."""
        problem = scene_name_problem(name)
        if problem is not None:
            raise ConfigError(problem)
        book = self._scene_book
        profile = self.profile
        names = self._scenes_now()
        if name not in names and len(names) >= MAX_SCENES:
            raise ConfigError(f"{name!r} not saved: profile {profile.name} already holds {MAX_SCENES} scenes "
                              "(save over one of them)")
        if len(book.writes) >= MAX_PENDING_WRITES:
            raise ConfigError(f"{name!r} not saved: scenes are being saved faster than the profile can be written; "
                              "try again in a moment")
        scene = self.engine.scenes.capture(name)
        book.saved[(profile.path, name)] = (scene, profile)
        self._scene_event(f"scene {name} saved (theme {scene.theme})")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no show running (a script, a test): write now
            self._write(profile, scene)
            return
        task = loop.create_task(self._write_later(profile, scene), name=f"scene-save-{name}")
        book.writes.add(task)
        task.add_done_callback(book.writes.discard)

    def recall_scene(self, name: str, morph_bars: float = 0) -> None:
        """Play the scene ``name`` from the next step: at once, or morphed over ``morph_bars`` bars."""
        if not isinstance(morph_bars, (int, float)) or isinstance(morph_bars, bool) or not math.isfinite(morph_bars) \
                or not 0 <= morph_bars <= MAX_MORPH_BARS:
            raise ConfigError(f"morph_bars: {morph_bars!r} is not a number of bars from 0 (at once) to "
                              f"{MAX_MORPH_BARS}")
        scenes = self._scenes_now()
        scene = scenes.get(name) if isinstance(name, str) else None
        if scene is None:
            names = list(scenes)
            known = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
            raise ConfigError(f"no scene {_short(name)} in profile {self.profile.name} (scenes: "
                              f"{known or 'none saved yet'})")
        now = self._clock()
        self.engine.scenes.recall(scene, float(morph_bars), now, self._grid_at(now))
        how = f"morphing over {morph_bars:g} bar(s)" if morph_bars > 0 else "at once"
        self._scene_event(f"scene {name} recalled {how} (theme {scene.theme})")

    # ------------------------------------------------------------------ the show's step

    def _scene_step(self, now: float, state: TempoState | None, triggers: list[Trigger]) -> None:
        """After each engine step: the step's scene targets and OSC scene requests, the beat grid for recalls."""
        book = self._scene_book
        book.tempo = (state, now)
        if self.latency is not None:
            self.engine.scenes.lookahead_s = self.latency(now)
        for op, name, bars in self.engine.scenes.take_hits():
            self._scene_request(op, name, bars, "a mapping")
        for trigger in triggers:
            if trigger.name in (_SAVE_TRIGGER, _RECALL_TRIGGER):
                args = tuple(trigger.data.get("args") or ())
                sender = trigger.data.get("sender")
                source = f"OSC {trigger.name[4:]}" + (f" from {sender}" if sender else "")
                op = "save" if trigger.name == _SAVE_TRIGGER else "recall"
                if not args or not isinstance(args[0], str) or len(args) > (1 if op == "save" else 2):
                    book.refused.note(f"{source}: expected {'NAME' if op == 'save' else 'NAME [BARS]'}, got "
                                      f"{_short(args)}")
                    continue
                bars = args[1] if len(args) > 1 else 0.0
                self._scene_request(op, args[0], bars, source)

    def _scene_request(self, op: str, name: str, bars: Any, source: str) -> None:
        try:
            if op == "save":
                self.save_scene(name)
            else:
                self.recall_scene(name, bars)
        except MetaDJError as exc:
            self._scene_book.refused.note(f"{source}: {exc}")

    # ------------------------------------------------------------------ helpers

    def _scenes_now(self) -> dict[str, Scene]:
        profile = self.profile
        out = {scene.name: scene for scene in profile.scenes}
        for (path, name), (scene, written_under) in self._scene_book.saved.items():
            # Saved this run: in memory until the file that holds it is loaded again (then the file's own wins).
            if path == profile.path and (written_under is None or written_under is profile or name not in out):
                out[name] = scene
        return out

    def _grid_at(self, now: float) -> TempoState | None:
        """The latest step's beat grid carried forward to ``now`` (a recall comes between two steps)."""
        state, at = self._scene_book.tempo
        if state is None or not state.playing or not state.bpm > 0 or now <= at:
            return state
        beat = state.beat + (now - at) * state.bpm / 60.0
        origin = state.beat - state.bar_position
        bpb = state.beats_per_bar if state.beats_per_bar >= 1 else 4
        return dataclasses.replace(state, beat=beat, bar_position=(beat - origin) % bpb)

    def _scene_event(self, event: str) -> None:
        self._event_lines.add(event)
        self.last_event = event
        if self.show_log is not None:
            self.show_log.event(event, self._clock())

    async def _write_later(self, profile: ShowProfile, scene: Scene) -> None:
        book = self._scene_book
        if book.lock is None:
            book.lock = asyncio.Lock()
        async with book.lock:  # one write at a time, in the order they were asked for
            try:
                await asyncio.to_thread(write_scene, profile.path, scene)
            except (MetaDJError, OSError) as exc:
                self._written(profile, scene, exc)
            else:
                self._written(profile, scene, None)

    def _write(self, profile: ShowProfile, scene: Scene) -> None:
        try:
            write_scene(profile.path, scene)
        except (MetaDJError, OSError) as exc:
            self._written(profile, scene, exc)
        else:
            self._written(profile, scene, None)

    def _written(self, profile: ShowProfile, scene: Scene, exc: BaseException | None) -> None:
        name = Path(profile.path).name
        if exc is None:
            log.info("scene %s written to %s", scene.name, name)
            return
        key = (profile.path, scene.name)
        if self._scene_book.saved.get(key, (None, None))[0] is scene:
            self._scene_book.saved[key] = (scene, None)
        log.warning("scene %s is kept for this run only, not written to %s: %s", scene.name, name, exc)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
