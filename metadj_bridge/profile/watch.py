"""Hot reload: watch a profile and every file it extends, and hand over each good edit.

Polling (mtime, size, inode and a CRC of the content; the stat runs in a worker thread) works the same on every
platform and notices editors that save by writing a new file and renaming it over the old one. A change is loaded
once the files have stopped changing for one poll, so a save that lands in several writes is read whole; a broken
save is reported once, and the running profile stays in the caller's hands until a good one arrives.

The watcher survives anything a save can hold or be: only regular files are read (a FIFO or a device put in
the profile's place is a broken save, never a blocked thread), and an unexpected exception is logged once
with its traceback while the watcher goes on polling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import zlib
from collections.abc import Callable, Sequence

from metadj_bridge.lifecycle import Lifecycle, cancel_and_wait
from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.loader import load_profile, read_bytes
from metadj_bridge.profile.model import ShowProfile

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int] | None
Snapshot = dict[str, Stamp]


def snapshot(files: Sequence[str]) -> Snapshot:
    """(mtime_ns, size, inode, CRC of the content) of each file; None for a file that is missing right now.

    The CRC catches two saves within one mtime tick (coarse timestamps on some file systems) that keep the
    size; profiles are small, so reading them a few times a second costs nothing. Something that is not a
    regular file (a FIFO, a device, a folder) is never opened: its CRC is -1, and loading it says why.
    """
    out: Snapshot = {}
    for name in files:
        try:
            st = os.stat(name)
        except (OSError, ValueError):
            out[name] = None
            continue
        crc = -1
        if stat.S_ISREG(st.st_mode):
            try:
                crc = zlib.crc32(read_bytes(name))
            except ProfileError:  # gone or unreadable between stat and read: the next poll sees it
                crc = -2
        out[name] = (st.st_mtime_ns, st.st_size, st.st_ino, crc)
    return out


class ProfileWatcher:
    """Calls ``on_change(profile)`` after each good edit and ``on_error(error)`` once per broken one."""

    #: How long a watched file may be missing (an editor between delete and rename) before that is an error.
    missing_grace = 1.0

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[ShowProfile], None],
        on_error: Callable[[ProfileError], None],
        interval: float = 0.25,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval {interval!r} must be more than 0 seconds")
        self.path = os.fspath(path)
        self._on_change = on_change
        self._on_error = on_error
        self._interval = interval
        self._files: list[str] = [self.path]
        self._seen: Snapshot = {}
        self._life = Lifecycle("ProfileWatcher")
        self._task: asyncio.Task[None] | None = None
        #: Unexpected exceptions already logged with a traceback (by type and message): once each.
        self._logged: set[tuple[str, str]] = set()

    @property
    def files(self) -> tuple[str, ...]:
        """The files being watched: the profile and every file it extends."""
        return tuple(self._files)

    async def start(self) -> None:
        if not self._life.begin():  # raises ClosedError once closed
            raise RuntimeError("this ProfileWatcher is already running")
        self._seen = await asyncio.to_thread(snapshot, self._files)
        try:
            profile = await asyncio.to_thread(load_profile, self.path)
        except ProfileError:
            pass  # the caller already knows; the first good save will be reported
        else:
            self._files = self._watch_list(profile)
            self._seen = {**(await asyncio.to_thread(snapshot, self._files)), **self._seen}
        self._task = asyncio.create_task(self._run(), name=f"profile-watch {self.path}")

    async def aclose(self) -> None:
        self._life.end()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def _watch_list(self, profile: ShowProfile) -> list[str]:
        return [self.path, *(p for p in profile.extends if p != os.path.abspath(self.path))]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        state: dict[str, float | None] = {"missing_since": None}
        while True:
            try:
                await self._poll(loop, state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end hot reload: log it once, poll on
                self._log_once(exc, "profile watcher for %s failed; it goes on watching", self.path)
                await asyncio.sleep(self._interval)

    async def _poll(self, loop: asyncio.AbstractEventLoop, state: dict[str, float | None]) -> None:
        """One poll: wait, look, and once a change has held still for one poll, reload."""
        await asyncio.sleep(self._interval)
        current = await asyncio.to_thread(snapshot, self._files)
        if current == self._seen:
            state["missing_since"] = None
            return
        # Wait until the files hold still for one poll: a save in several writes is read whole.
        await asyncio.sleep(self._interval)
        settled = await asyncio.to_thread(snapshot, self._files)
        if settled != current:
            return
        if any(stamp is None for stamp in settled.values()):
            since = state["missing_since"]
            since = since if since is not None else loop.time()
            state["missing_since"] = since
            if loop.time() - since < self.missing_grace:
                return
        state["missing_since"] = None
        self._seen = settled
        await self._reload(settled)

    async def _reload(self, before: Snapshot) -> None:
        try:
            profile = await asyncio.to_thread(load_profile, self.path)
        except ProfileError as exc:
            log.debug("profile %s not reloaded: %s", self.path, exc)
            self._call(self._on_error, exc)
            return
        except Exception as exc:  # load_profile promises ProfileError only; if that breaks, the show goes on
            self._log_once(exc, "profile %s not reloaded: unexpected error", self.path)
            self._call(self._on_error, ProfileError(f"{self.path}: cannot be read as a profile "
                                                    f"({type(exc).__name__}: {exc})", file=self.path))
            return
        files = self._watch_list(profile)
        if files != self._files:
            self._files = files
            # Files seen before the load keep their old stamps, so an edit during the load is not lost.
            kept = {k: v for k, v in before.items() if k in files}
            self._seen = {**(await asyncio.to_thread(snapshot, files)), **kept}
        log.debug("profile %s reloaded", self.path)
        self._call(self._on_change, profile)

    def _log_once(self, exc: Exception, message: str, *args: object) -> None:
        """ERROR with the traceback the first time this exception (type and text) is seen, DEBUG after."""
        key = (type(exc).__name__, str(exc)[:200])
        if key in self._logged or len(self._logged) >= 32:
            log.debug(message + ": %s", *args, exc)
            return
        self._logged.add(key)
        log.error(message, *args, exc_info=exc)

    def _call(self, callback: Callable[..., None], arg: object) -> None:
        try:
            callback(arg)
        except Exception:
            log.exception("profile watcher callback %r failed", callback)
