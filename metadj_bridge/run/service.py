"""Telling a service manager how the show is: systemd's notify protocol (Linux), a no-op everywhere else.

Under a unit with ``Type=notify`` systemd sets ``NOTIFY_SOCKET``; the bridge then sends ``READY=1`` once the show
runs (profile loaded, inputs open, the Scope session started), a ``STATUS=`` line when the session's state changes
(``systemctl status`` shows it), ``WATCHDOG=1`` every half ``WatchdogSec`` from the event loop itself, so a frozen
loop is restarted by systemd, and ``STOPPING=1`` on the way out. The protocol is one datagram per message on a
Unix socket, so no library is needed. Where the socket is missing or refuses, the show goes on and says so once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class ServiceNotifier:
    """``sd_notify`` for the bridge: inactive (every method a no-op) when ``NOTIFY_SOCKET`` is not set."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        #: Seconds between watchdog pings (half the unit's WatchdogSec), or None without a watchdog.
        self.watchdog_interval = int(usec) / 2e6 if watched else None
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_status = ""

    @property
    def active(self) -> bool:
        return bool(self.address) and hasattr(socket, "AF_UNIX") and not self._failed

    def send(self, message: str) -> bool:
        """One notification; False (said once in the log) when it cannot be delivered."""
        if not self.active:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # type: ignore[attr-defined,unused-ignore]
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8", "replace"), self.address)
            return True
        except BlockingIOError:  # the manager's queue is full for a moment: this message is skipped, not the rest
            return False
        except OSError as exc:
            self._failed = True
            self.close()
            log.warning("cannot notify the service manager at NOTIFY_SOCKET (%s); the show goes on without it", exc)
            return False

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")
        self._last_status = status

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def run(self, describe: Callable[[], str], every: float = 1.0) -> None:
        """Ping the watchdog and keep STATUS= current, from the event loop, until cancelled."""
        if not self.active:
            return
        interval = min(every, self.watchdog_interval) if self.watchdog_interval else every
        while True:
            if self.watchdog_interval:
                self.send("WATCHDOG=1")
            self.status(describe())
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
