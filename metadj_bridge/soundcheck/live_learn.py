"""MIDI learn while the show plays: the control page picks a target, the performer moves a control, and the mapping
is written to the running profile (``POST /api/learn``, docs/web.md).

Every input of a running bridge delivers into its :class:`~metadj_bridge.signals.SignalBoard`. A :class:`LiveLearn`
watches that board without changing what the engine gets: triggers through ``on_trigger``, signal values by reading
``board.values`` every ``POLL_S`` (the board keeps the latest value of each name, which is all learning needs). What
a performer's hands make (not ``audio.``, ``tempo.`` or the page's own ``control.``) goes to the same
:class:`~metadj_bridge.soundcheck.learn.Learner` that ``metadj-bridge learn`` uses. When it is done, the mapping goes
into the profile with the round-trip writer (:func:`metadj_bridge.profile.edit.add_mapping`: comments and layout
kept, an edit that would not load refused) in a worker thread, since it reads, checks and writes files; the profile
watcher then reloads the show with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from metadj_bridge.bundled import PROFILES_DIR
from metadj_bridge.errors import MetaDJError
from metadj_bridge.profile.mapping_model import ACTIONS, PROMPT_OPS, THEME_OPS
from metadj_bridge.signals import Signal, SignalBoard, Trigger
from metadj_bridge.soundcheck.learn import Learner

__all__ = ["LEARN_TIMEOUT_S", "LearnRefused", "LiveLearn", "learn_targets"]

log = logging.getLogger(__name__)

#: A learn that saw nothing move for this long ends as ``timeout``.
LEARN_TIMEOUT_S = 30.0
#: How often the board's values are read while learning.
POLL_S = 0.05
#: Names that do not come from a performer's hands.
NOT_HANDS = ("audio.", "tempo.", "control.")
DEFAULT_NAME = "learned"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
#: The Scope parameters offered as targets (docs/profiles.md, "Scope parameters"): the ones a knob is for.
PARAMETER_TARGETS = ("noise_scale", "kv_cache_attention_bias", "vace_context_scale", "base_seed", "denoising_steps")


class LearnRefused(MetaDJError):
    """A learn request that cannot be done; ``field`` and ``kind`` as the control API's refusals (``bad`` 400,
    ``forbidden`` 403)."""

    def __init__(self, message: str, field: str, kind: str = "bad") -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


def learn_targets(themes: Iterable[str]) -> list[str]:
    """The targets the page offers, for a profile with these themes (docs/profiles.md, "Targets")."""
    return [*PARAMETER_TARGETS, "prompt.mix", "prompt.intensity", *(f"prompt.{op}" for op in PROMPT_OPS),
            *(f"theme.{op}" for op in THEME_OPS if op != "set"), *(f"theme.set:{name}" for name in themes),
            *(f"action.{name}" for name in ACTIONS)]


def _is_bundled(path: str) -> bool:
    try:
        return Path(path).resolve().is_relative_to(PROFILES_DIR.resolve())
    except OSError:
        return False


class LiveLearn:
    """One learn at a time on a running bridge's board; ``state()`` is what the live state shows as
    ``control.learn``.

    ``profile_path`` and ``themes`` are asked at each ``start`` (a profile switch changes both). ``report`` gets
    one line for each mapping written (for the show log; without it the line goes to this module's log).
    """

    def __init__(self, board: SignalBoard, profile_path: Callable[[], str | None],
                 themes: Callable[[], Iterable[str]], clock: Callable[[], float] = time.monotonic,
                 report: Callable[[str], None] | None = None) -> None:
        self.board = board
        self.profile_path = profile_path
        self.themes = themes
        self.clock = clock
        self.report = report
        self._learner: Learner | None = None
        self._task: asyncio.Task[None] | None = None
        self._state: dict[str, Any] | None = None
        self._closed = False
        board.on_trigger(self._trigger)

    def targets(self) -> list[str]:
        return learn_targets(self.themes())

    def state(self) -> dict[str, Any] | None:
        """``{"target", "name", "state", "source", "error"}`` of the latest learn, or None before the first."""
        if self._state is None:
            return None
        learner = self._learner
        if self._state["state"] == "waiting" and learner is not None and learner.learned is not None:
            self._state["state"] = "moving"
            self._state["source"] = learner.learned.source
        return dict(self._state)

    async def start(self, target: object, name: object = None) -> None:
        """Learn a control for ``target``, written under ``mappings.<name>``; replaces a learn that runs."""
        if self._closed:
            raise LearnRefused("the show is closing", "target", "unavailable")
        if not isinstance(target, str) or target not in self.targets():
            raise LearnRefused(f"target {target!r} is not a learn target; one of: {', '.join(self.targets())}",
                               "target")
        if name is None:
            name = DEFAULT_NAME
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise LearnRefused(f"name {name!r}: use letters, digits, _ and - (a YAML key, at most 64), "
                               "e.g. filter_knob", "name")
        path = self.profile_path()
        if path is None:
            raise LearnRefused("no profile file to write to", "target", "forbidden")
        if _is_bundled(path):
            raise LearnRefused(f"{path} is a bundled profile, part of the program: copy it to edit it (`metadj-bridge "
                               "profiles --copy NAME FILE`) and play the copy", "target", "forbidden")
        from metadj_bridge.profile.edit import editable_profile

        try:  # before the performer moves anything: a profile that cannot be edited is said now
            await asyncio.to_thread(editable_profile, path)
        except (MetaDJError, OSError) as exc:
            raise LearnRefused(f"cannot write the learned mapping: {exc}", "target", "forbidden") from exc
        await self.cancel(quiet=True)
        self._learner = Learner(self.clock)
        self._state = {"target": target, "name": name, "state": "waiting", "source": None, "error": None}
        self._task = asyncio.create_task(self._run(self._learner, path, target, name), name="live-learn")
        log.info("learn: move a control for %s (mappings.%s in %s)", target, name, path)

    async def cancel(self, quiet: bool = False) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._state is not None and self._state["state"] in ("waiting", "moving"):
            self._state["state"] = "cancelled"
            if not quiet:
                log.info("learn: cancelled")

    async def aclose(self) -> None:
        self._closed = True
        await self.cancel(quiet=True)

    def _trigger(self, trigger: Trigger) -> None:
        learner = self._learner
        if self._task is not None and learner is not None and not trigger.name.startswith(NOT_HANDS):
            learner.fire(trigger)

    async def _run(self, learner: Learner, path: str, target: str, name: str) -> None:
        seen: dict[str, float] = {}
        deadline = self.clock() + LEARN_TIMEOUT_S
        try:
            while not learner.done.is_set():
                now = self.clock()
                values = self.board.values
                for key, value in list(values.items()):
                    if key.startswith(NOT_HANDS) or seen.get(key) == value:
                        continue
                    seen[key] = value
                    learner.set(Signal(key, value, now))
                if len(seen) > 2 * len(values):  # names the board let go of (a flood of invented ones)
                    seen = {key: value for key, value in seen.items() if key in values}
                learner.tick()
                if learner.learned is None and now > deadline:
                    self._finish("timeout", None, f"no control moved in {LEARN_TIMEOUT_S:g} s")
                    return
                await asyncio.sleep(POLL_S)
            learned = learner.learned
            assert learned is not None
            from metadj_bridge.profile.edit import add_mapping

            used = await asyncio.to_thread(add_mapping, path, name, learned.mapping(target))
        except asyncio.CancelledError:
            raise
        except (MetaDJError, OSError, ValueError) as exc:
            self._finish("failed", learner, str(exc))
            log.warning("learn: the mapping for %s was not written: %s", target, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a learn must never take the show down
            self._finish("failed", learner, f"{type(exc).__name__}: {exc}")
            log.exception("learn: failed")
            return
        if self._state is not None:
            self._state["name"] = used
        self._finish("written", learner, None)
        line = f"learn: {learned.source} -> {target} (mappings.{used} in {path})"
        if self.report is not None:
            self.report(line)
        else:
            log.info("%s", line)

    def _finish(self, state: str, learner: Learner | None, error: str | None) -> None:
        if self._state is None:
            return
        self._state["state"] = state
        self._state["error"] = error
        if learner is not None and learner.learned is not None:
            self._state["source"] = learner.learned.source
        if self._task is asyncio.current_task():
            self._task = None
