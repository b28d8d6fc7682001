"""The performer's live status view: a compact rich panel on a terminal, plain log lines elsewhere.

The view reads one thing, a status snapshot (a plain JSON-able dict, see ``status.model.BridgeStatus.snapshot``), and
turns it into text. ``render`` (a rich renderable) and ``plain_line`` (one log line) are pure functions of
the snapshot, so they are tested without a terminal; ``StatusView`` only polls and writes.

Why the terminal cannot stall the event loop: rich's ``Live`` refreshes from its own thread, and while it
writes to the terminal it holds its lock. A slow terminal (ssh over a bad link, a paused tmux pane, Ctrl-S)
blocks that thread, not the loop: the loop builds the next renderable and hands it over by assigning one
attribute, which ``Live`` reads through ``get_renderable``. The loop never calls ``Live.update`` (that
would take the lock the stalled writer holds). Log lines written meanwhile go through rich's ``FileProxy``
so they scroll above the panel instead of tearing it; those writes do wait for the terminal, as any log
line written to a stalled terminal does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from metadj_bridge.errors import RateLimitedWarning

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]

#: Below this many columns the panel drops its less important details (URLs, meters' numbers).
NARROW = 80
_BLOCKS = " ▏▎▍▌▋▊▉█"
_STATE_STYLE = {"streaming": "bold green", "connecting": "yellow", "loading pipeline": "yellow",
                "negotiating": "yellow", "reconnecting": "bold red", "idle": "dim", "closed": "dim"}


# ------------------------------------------------------------------------------------------ pure views


def meter(value: float | None, width: int) -> str:
    """A bar ``width`` characters long for a value in 0..1 (eighth-block resolution; clamped)."""
    if value is None:
        return "·" * width
    eighths = round(max(0.0, min(1.0, float(value))) * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_BLOCKS[part] if part else "")
    return bar.ljust(width)


def beat_lit(tempo: dict[str, Any] | None) -> bool:
    """Whether the beat dot is lit: the first quarter of each beat (seen at least once per beat at 10 Hz)."""
    if not tempo or tempo.get("phase") is None:
        return False
    return float(tempo["phase"]) % 1.0 < 0.25


def _fmt(value: float | None, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _scope_line(scope: dict[str, Any], narrow: bool) -> Text:
    state = scope.get("state") or "?"
    line = Text()
    line.append("● " + state, style=_STATE_STYLE.get(state, "bold red"))
    if state == "loading pipeline" and scope.get("load_progress"):
        line.append(f" ({scope['load_progress']})", style="yellow")
    server = scope.get("server_version")
    line.append(f"  Scope {server}" if server else "  Scope ?")
    if scope.get("emulator"):
        line.append(" (emulator)", style="cyan")
    if scope.get("pipeline"):
        line.append(f"  {scope['pipeline']}", style="bold")
    if not narrow and scope.get("url"):
        line.append(f"  {scope['url']}", style="dim")
    if scope.get("sessions") is not None:
        line.append(f"  session {scope['sessions']}", style="dim")
    return line


def _fps_line(scope: dict[str, Any], video: dict[str, Any] | None) -> Text:
    line = Text(f"in {_fmt(scope.get('fps_in'))} fps")
    if scope.get("frames_in") is not None:
        line.append(f" ({scope['frames_in']} frames)", style="dim")
    if video:
        line.append(f"   out {_fmt(video.get('fps_out'))} fps")
        line.append(f" shown {video.get('frames_shown', 0)} · repeats {video.get('repeats', 0)}"
                    f" · slates {video.get('slates', 0)}", style="dim")
    return line


def _video_line(video: dict[str, Any], narrow: bool) -> Text:
    line = Text(" + ".join(video.get("outputs") or []) or "no outputs", style="bold")
    if video.get("convert_ms") is not None:
        line.append(f"  convert {video['convert_ms']:.1f} ms")
    if video.get("delay_ms") is not None:
        line.append(f"  delay {video['delay_ms']:.0f} ms")
    if not narrow and video.get("preview_url"):
        line.append(f"  {video['preview_url']}", style="dim")
    return line


def _screen_line(screen: dict[str, Any], narrow: bool) -> Text:
    """A further screen in one line: its state, pipeline, frames in and out, and its error."""
    state = screen.get("state") or "?"
    line = Text()
    line.append("● " + state, style=_STATE_STYLE.get(state, "bold red"))
    line.append(f"  {screen.get('pipeline') or '?'}", style="bold")
    line.append(f"  in {_fmt(screen.get('fps_in'))} fps ({screen.get('frames_in', 0)} frames)")
    line.append(f"  out: {' + '.join(screen.get('outputs') or []) or 'none'}", style="dim")
    if not narrow and screen.get("url"):
        line.append(f"  {screen['url']}", style="dim")
    if screen.get("last_error"):
        line.append(f"  {_cut(str(screen['last_error']), 80)}", style="red")
    return line


def _beat_line(tempo: dict[str, Any]) -> Text:
    line = Text()
    line.append("●" if beat_lit(tempo) else "○", style="bold magenta" if beat_lit(tempo) else "dim")
    line.append(f" {_fmt(tempo.get('bpm'))} BPM", style="bold")
    line.append(f" ({tempo.get('source') or '?'})")
    per_bar = int(tempo.get("beats_per_bar") or 4)
    position = tempo.get("bar_position")
    if position is not None:
        current = int(float(position)) % per_bar
        line.append("   bar ")
        for i in range(per_bar):
            line.append("■ " if i == current else "□ ", style="magenta" if i == current else "dim")
        line.append(f"{float(position):.1f}/{per_bar}", style="dim")
    return line


def _audio_line(audio: dict[str, Any], narrow: bool) -> Text:
    width = 5 if narrow else 8
    line = Text()
    names = ("energy", "low", "mid", "high") if narrow else ("energy", "low", "mid", "high", "centroid", "flatness")
    for name in names:
        if name not in audio:
            continue
        label = name if not narrow else name[0].upper()
        line.append(f"{label} ")
        line.append(meter(audio[name], width), style="green")
        line.append(" ")
    return line


def _show_lines(show: dict[str, Any], narrow: bool, width: int) -> list[tuple[str, Text]]:
    head = Text(str(show.get("theme") or "-"), style="bold")
    if show.get("focus") is not None:
        head.append(f"  focus {show['focus']}")
    if show.get("paused"):
        head.append("  PAUSED", style="bold yellow")
    if show.get("calm"):
        head.append("  CALM", style="bold yellow")
    if show.get("transition") is not None:
        progress = float(show["transition"])
        head.append("  transition ")
        head.append(meter(progress, 6 if narrow else 10), style="cyan")
        head.append(f" {progress * 100:.0f}%")
    rows = [("Theme", head)]
    room = max(20, width - 20)
    for prompt in show.get("prompts") or []:
        text = Text(_cut(str(prompt.get("text", "")), room))
        if prompt.get("weight") is not None:
            text.append(f" ({float(prompt['weight']):.2f})", style="dim")
        rows.append(("Prompt", text))
    control = Text(show.get("last_control") or "-")
    if show.get("last_event"):
        control.append(f"   {show['last_event']}", style="dim")
    rows.append(("Control", control))
    return rows


def _inputs_line(inputs: dict[str, Any]) -> Text:
    midi = inputs.get("midi") or []
    line = Text("MIDI " + (", ".join(midi) if midi else "-"))
    waiting = inputs.get("midi_waiting") or []
    if waiting:  # a controller not plugged in yet, or pulled out: the show picks it up when it comes
        line.append(" (waiting for " + ", ".join(repr(p) for p in waiting) + ")", style="yellow")
    line.append(f"   OSC {inputs.get('osc') or '-'}")
    line.append(f"   Link {'on' if inputs.get('link') else 'off'}")
    return line


def render(snapshot: Snapshot, width: int = 100) -> RenderableType:
    """The live panel for one snapshot, laid out for a terminal ``width`` columns wide."""
    narrow = width < NARROW
    scope = snapshot.get("scope") or {}
    video = snapshot.get("video")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold blue", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("Scope", _scope_line(scope, narrow))
    grid.add_row("Frames", _fps_line(scope, video))
    if scope.get("last_error"):
        grid.add_row("Error", Text(_cut(str(scope["last_error"]), 3 * width), style="red"))
    if video:
        grid.add_row("Video", _video_line(video, narrow))
    for screen in (snapshot.get("screens") or [])[1:]:  # the main screen is the two lines above
        grid.add_row(_cut(f"· {screen.get('name')}", 14), _screen_line(screen, narrow))
    tempo = snapshot.get("tempo")
    grid.add_row("Beat", _beat_line(tempo) if tempo else Text("no tempo source", style="dim"))
    audio = snapshot.get("audio")
    if audio:
        grid.add_row("Audio", _audio_line(audio, narrow))
    show = snapshot.get("show")
    if show:
        for label, row in _show_lines(show, narrow, width):
            grid.add_row(label, row)
    sender = snapshot.get("sender") or {}
    grid.add_row("Sender", Text(f"sent {sender.get('sent', 0)}   merged {sender.get('merged', 0)}"))
    if snapshot.get("inputs"):
        grid.add_row("Inputs", _inputs_line(snapshot["inputs"]))
    warnings = snapshot.get("warnings") or []
    body: list[RenderableType] = [grid]
    if warnings:
        lines = Text()
        for i, warning in enumerate(warnings[-3:]):
            lines.append(("\n" if i else "") + "! " + _cut(str(warning), 3 * width), style="yellow")
        body.append(lines)
    title = f"metadj-bridge {snapshot.get('version') or ''}  up {_uptime(snapshot.get('uptime_s'))}"
    profile = snapshot.get("profile")
    subtitle = _cut(str(profile).rsplit("/", 1)[-1], max(10, width // 2)) if profile else None
    return Panel(Group(*body), title=title, title_align="left", subtitle=subtitle, subtitle_align="right",
                 border_style="blue", width=width)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def plain_line(snapshot: Snapshot) -> str:
    """One log line with the figures that matter (systemd, the journal, a file)."""
    scope = snapshot.get("scope") or {}
    state = scope.get("state") or "?"
    if state == "loading pipeline" and scope.get("load_progress"):
        state = f"{state}: {scope['load_progress']}"
    server = f"Scope {scope['server_version']}" if scope.get("server_version") else "Scope ?"
    if scope.get("emulator"):
        server += " (emulator)"
    parts = [f"[{state}] {server} {scope.get('pipeline') or '-'}", f"fps in {_fmt(scope.get('fps_in'))}"]
    video = snapshot.get("video")
    if video:
        parts[-1] += f" out {_fmt(video.get('fps_out'))}"
        parts.append(f"out {video.get('frames_shown', 0)} (repeats {video.get('repeats', 0)}, "
                     f"slates {video.get('slates', 0)})")
    parts.append(f"frames {scope.get('frames_in', 0)}")
    sender = snapshot.get("sender") or {}
    parts.append(f"sent {sender.get('sent', 0)} merged {sender.get('merged', 0)}")
    tempo = snapshot.get("tempo")
    if tempo:
        parts.append(f"{_fmt(tempo.get('bpm'))} BPM ({tempo.get('source') or '?'})")
    audio = snapshot.get("audio")
    if audio and audio.get("energy") is not None:
        parts.append(f"energy {audio['energy']:.2f}")
    show = snapshot.get("show")
    if show:
        theme = f"theme {show.get('theme') or '-'}"
        if show.get("transition") is not None:
            theme += f" ({float(show['transition']) * 100:.0f}%)"
        if show.get("paused"):
            theme += " (paused)"
        if show.get("calm"):
            theme += " (calm)"
        parts.append(theme)
    screens = (snapshot.get("screens") or [])[1:]
    if screens:
        parts.append("screens " + ", ".join(f"{sc.get('name')} {sc.get('state')} {_fmt(sc.get('fps_in'))} fps"
                                            for sc in screens))
    warnings = snapshot.get("warnings") or []
    if warnings:
        parts.append(f"warnings {len(warnings)}")
    error = scope.get("last_error") or "-"
    parts.append(f"last error: {_cut(str(error), 80)}")
    return " | ".join(parts)


# ------------------------------------------------------------------------------------------ the view


class _OutputRate:
    """Frames per second out, from the growth of ``frames_shown`` between snapshots (over ~1 s)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._mark: tuple[float, int] | None = None
        self.fps: float | None = None

    def update(self, frames: int | None) -> float | None:
        if frames is None:
            return None
        now = self._clock()
        if self._mark is None or frames < self._mark[1]:
            self._mark = (now, frames)
        elif now - self._mark[0] >= 1.0:
            self.fps = (frames - self._mark[1]) / (now - self._mark[0])
            self._mark = (now, frames)
        return self.fps


class StatusView:
    """Shows ``snapshot()`` to the performer until cancelled: a live panel on a terminal, log lines elsewhere.

    ``run()`` polls the snapshot ``refresh_hz`` times a second on the event loop; ``finish()`` leaves the
    last panel on screen and gives the log handlers their stream back (harmless when called twice).
    """

    def __init__(self, snapshot: Callable[[], Snapshot], stream: TextIO = sys.stderr, refresh_hz: float = 10.0,
                 *, log_interval: float = 5.0, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if refresh_hz <= 0:
            raise ValueError(f"refresh_hz must be above 0, got {refresh_hz}")
        self.snapshot = snapshot
        self.stream = stream
        self.refresh_hz = refresh_hz
        self.log_interval = log_interval
        # A dumb terminal cannot move the cursor back over the panel: it gets the plain log lines.
        self.tty = (stream.isatty() and os.environ.get("TERM", "").lower() != "dumb") if tty is None else tty
        self._clock = clock
        self._rate = _OutputRate(clock)
        self._latest: RenderableType = Text("metadj-bridge: starting…")
        self._live: Live | None = None
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._failures = RateLimitedWarning(log, "status view: the status snapshot failed")

    def poll(self) -> Snapshot | None:
        """The current snapshot with the output frame rate filled in; None if the snapshot failed."""
        try:
            snap = dict(self.snapshot())
        except Exception as exc:  # noqa: BLE001 - a broken snapshot must not end the view
            self._failures.note(f"{type(exc).__name__}: {exc}")
            return None
        video = snap.get("video")
        if video and video.get("fps_out") is None:
            snap["video"] = {**video, "fps_out": self._rate.update(video.get("frames_shown"))}
        return snap

    async def run(self) -> None:
        if self.tty:
            await self._run_live()
        else:
            await self._run_plain()

    async def _run_plain(self) -> None:
        last_state: object = object()
        last_log = -float("inf")
        while True:
            snap = self.poll()
            if snap is not None:
                state = (snap.get("scope") or {}).get("state")
                now = self._clock()
                if state != last_state or now - last_log >= self.log_interval:
                    log.info("%s", plain_line(snap))
                    last_state, last_log = state, now
            await asyncio.sleep(min(0.25, 1.0 / self.refresh_hz))

    async def _run_live(self) -> None:
        console = Console(file=self.stream, force_terminal=True)
        live = Live(console=console, refresh_per_second=self.refresh_hz, auto_refresh=True,
                    redirect_stdout=False, redirect_stderr=False, get_renderable=lambda: self._latest)
        self._live = live
        self._redirect_logs(console)
        live.start()  # its refresh thread does every terminal write from here on
        try:
            while True:
                snap = self.poll()
                if snap is not None:
                    # One attribute assignment hands the finished renderable to the refresh thread.
                    self._latest = render(snap, min(console.width, 100))
                await asyncio.sleep(1.0 / self.refresh_hz)
        finally:
            self.finish()

    def _redirect_logs(self, console: Console) -> None:
        from rich.file_proxy import FileProxy

        for logger in (logging.getLogger(), logging.getLogger("metadj_bridge")):
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                    self._swapped.append((handler, handler.stream))
                    handler.setStream(FileProxy(console, self.stream))

    def finish(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            with contextlib.suppress(Exception):  # a closed terminal must not turn a clean exit into a crash
                live.stop()
        swapped, self._swapped = self._swapped, []
        for handler, stream in swapped:
            handler.setStream(stream)
