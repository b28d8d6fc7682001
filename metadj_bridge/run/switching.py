"""Profile switches asked for while the show runs: only files the running profile allows, read with a deadline.

A switch request names a file: an OSC ``/metadj/profile PATH`` message from anyone on the network, or a switch
or ``profile:`` mapping of the running profile. Before anything opens it, :func:`check_target`

- resolves symlinks and ``..`` (the real file is what counts),
- keeps it inside the folders the running profile allows: the profile's own folder (and the folders below it),
  the bundled ``mappings/`` folder, and any file the profile names in its own switches,
- wants a ``.yaml``/``.yml`` name and, by ``os.stat``, a regular file: a FIFO, a device or a folder could block
  the read for ever.

:func:`load_with_deadline` then reads it on a daemon thread of its own and gives up after
:data:`LOAD_TIMEOUT` seconds. Not ``asyncio.to_thread``: a read that never returns (a pipe that slipped past the
check, a dead network share) would hold a worker of the default executor for ever, and ``asyncio.run`` waits for
those workers at exit, so neither ``--duration`` nor SIGTERM could end the run. A daemon thread is simply left
behind.

:class:`ProfileSwitcher` loads one request at a time; a request that comes in while one loads replaces the
waiting one (the latest wins), so a flood of requests costs one thread and one task. Every refusal is one
WARNING naming who asked and why; a flood of them is counted into a few lines (:class:`RateLimitedWarning`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metadj_bridge.bundled import PROFILES_DIR as BUNDLED_DIR
from metadj_bridge.errors import ConfigError, RateLimitedWarning, printable
from metadj_bridge.profile.model import ShowProfile

log = logging.getLogger(__name__)

#: A profile that is not read in this many seconds is given up (the running one stays).
LOAD_TIMEOUT = 5.0
PROFILE_SUFFIXES = (".yaml", ".yml")
#: Refusals after the first are counted and logged at most once per this many seconds.
REFUSAL_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class AllowedPlaces:
    """Where a switch away from one profile may go: folders (with what is below them) and named files."""

    folders: tuple[Path, ...]
    files: frozenset[Path]

    def allows(self, real: Path) -> bool:
        return real in self.files or any(real.is_relative_to(folder) for folder in self.folders)


def profile_folder(profile: ShowProfile) -> Path:
    """The folder of the profile's file, where relative switch paths start (the working folder without one)."""
    return Path(os.path.abspath(profile.path)).parent if profile.path else Path.cwd()


def allowed_places(profile: ShowProfile) -> AllowedPlaces:
    """The running profile's own folder, the bundled ``mappings/`` and every file its switches name."""
    folder = profile_folder(profile)
    named = [s.path for s in profile.switches]
    named += [str(m.target.argument[0]) for m in profile.mappings if m.target.kind == "profile" and m.target.argument]
    files = set()
    for name in named:
        with contextlib.suppress(OSError, RuntimeError):  # a path that cannot resolve allows nothing
            files.add((folder / os.path.expanduser(name)).resolve())
    folders = []
    for place in (folder, BUNDLED_DIR):
        with contextlib.suppress(OSError, RuntimeError):
            folders.append(place.resolve())
    return AllowedPlaces(tuple(folders), frozenset(files))


def shown(text: str, limit: int = 200) -> str:
    """``text`` safe for one log line: no control characters or terminal escapes, at most ``limit`` characters."""
    return printable(text if len(text) <= limit else text[:limit] + "...")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def check_regular(path: Path | str, display: str | None = None) -> None:
    """A :class:`ConfigError` unless ``path`` is a regular file (``os.stat``: nothing is opened)."""
    display = display if display is not None else shown(os.fspath(path))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{display}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"{display}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{display} is {file_kind(mode)}, not a regular file; a profile is a .yaml file")


def check_target(path: str, profile: ShowProfile, places: AllowedPlaces | None = None) -> Path:
    """The real path of ``path`` (relative to ``profile``'s folder) if a switch may open it; else a ConfigError."""
    display = shown(path)
    asked = Path(path)
    if not asked.is_absolute():
        asked = profile_folder(profile) / asked
    try:
        real = asked.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL in the path
        raise ConfigError(f"{display}: not a usable path ({exc})") from None
    if str(real) != str(asked):
        display = f"{display} (really {shown(str(real))})"
    places = places if places is not None else allowed_places(profile)
    if not places.allows(real):
        folders = " or ".join(str(f) for f in places.folders)
        raise ConfigError(
            f"{display} is outside the folders a switch may open ({folders}); put it beside the running "
            "profile or name it in that profile's switches"
        )
    if real.suffix.lower() not in PROFILE_SUFFIXES:
        raise ConfigError(f"{display} is not a profile file (a .yaml or .yml name)")
    check_regular(real, display)
    return real


def _load_profile(path: str) -> ShowProfile:
    from metadj_bridge.profile import load_profile

    return load_profile(path)


async def load_with_deadline(
    path: str, seconds: float = LOAD_TIMEOUT, load: Callable[[str], ShowProfile] = _load_profile
) -> ShowProfile:
    """``load(path)`` (the profile loader) on a daemon thread of its own; a ConfigError after ``seconds``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ShowProfile] = loop.create_future()

    def settle(result: ShowProfile | None, error: BaseException | None) -> None:
        if done.done():  # given up already
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: ShowProfile | None = None
        error: BaseException | None = None
        try:
            result = load(path)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which decides
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the file was read
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="profile-load", daemon=True).start()
    try:
        return await asyncio.wait_for(done, seconds)
    except TimeoutError:
        raise ConfigError(
            f"{shown(path)}: not read within {seconds:g} s (a pipe, or a network drive that does not answer)"
        ) from None


class ProfileSwitcher:
    """Switch requests in (on the event loop), checked at once; one load at a time, the latest request wins.

    ``current`` gives the running profile (it settles what is allowed); ``apply`` makes a loaded one run.
    """

    def __init__(self, current: Callable[[], ShowProfile], apply: Callable[[ShowProfile], None], *,
                 timeout: float = LOAD_TIMEOUT, interval: float = REFUSAL_INTERVAL) -> None:
        self._current = current
        self._apply = apply
        self.timeout = timeout
        self._places: tuple[ShowProfile, AllowedPlaces] | None = None
        self._pending: tuple[Path, str] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Requests refused since the start.
        self.refused = 0
        self._limit = RateLimitedWarning(log, "profile switch refused", interval)
        self._quiet = 0  # refusals counted but in no log line yet
        self._last_reason = ""
        self._summary: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        """A request is being loaded."""
        return self._task is not None and not self._task.done()

    def request(self, path: object, source: str) -> None:
        """Switch to ``path`` if the running profile allows it; otherwise say why, once (rate-limited)."""
        profile = self._current()
        if not isinstance(path, str) or not path:
            self.refuse(source, f"expected a profile path (text), got {shown(repr(path), 60)}")
            return
        if self._places is None or self._places[0] is not profile:
            self._places = (profile, allowed_places(profile))
        try:
            real = check_target(path, profile, self._places[1])
        except ConfigError as exc:
            self.refuse(source, str(exc))
            return
        self._pending = (real, source)
        if not self.busy:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="profile-switch")

    async def _run(self) -> None:
        while self._pending is not None:
            real, source = self._pending
            self._pending = None
            try:
                profile = await load_with_deadline(str(real), self.timeout)
            except ConfigError as exc:
                self.refuse(source, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - whatever the file does to the loader, the show goes on
                self.refuse(source, f"{shown(str(real))} did not load ({type(exc).__name__}: {shown(str(exc))})")
                continue
            if self._pending is not None:
                continue  # a newer request came in while this one loaded: it wins
            try:
                self._apply(profile)
            except Exception as exc:  # noqa: BLE001 - a profile that loads but cannot take over: the old one stays
                log.debug("switch to %s failed", real, exc_info=True)
                self.refuse(source, f"{shown(str(real))} could not take over ({type(exc).__name__}: {shown(str(exc))})")

    def refuse(self, source: str, reason: str) -> None:
        """One WARNING for the first refusal; later ones counted into a line at most every ``interval``."""
        self.refused += 1
        line = f"{reason} (asked by {source}); {Path(self._current().path).name} stays"
        self._last_reason = line
        if self._limit.logged == 0:
            log.warning("profile switch refused: %s", line)
            self._limit.logged += 1
            self._limit.mark()
            return
        before = self._limit.logged
        self._limit.note(line)
        if self._limit.logged != before:
            self._quiet = 0
            return
        self._quiet += 1
        if self._summary is None:
            with contextlib.suppress(RuntimeError):  # no running loop (a synchronous step): the next one tells
                self._summary = asyncio.get_running_loop().call_later(self._limit.interval, self._tell_count)

    def _tell_count(self) -> None:
        """The end of a quiet interval: how many refusals went unlogged in it."""
        self._summary = None
        if self._quiet:
            log.warning("profile switch refused: %d more in the last %.0f s; last: %s",
                        self._quiet, self._limit.interval, self._last_reason)
            self._limit.mark()
            self._limit.logged += 1
            self._quiet = 0

    def close(self) -> None:
        """Stop waiting for a load (its thread, if stuck, is left behind) and forget what is pending."""
        self._pending = None
        if self._task is not None:
            self._task.cancel()
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
