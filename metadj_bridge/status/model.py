"""What the performer's views show: one snapshot of the running bridge.

``BridgeStatus.snapshot()`` gathers the Scope session, the tempo, the audio meters, the show, the video outputs,
the open inputs and the latest warnings into plain JSON-able data; the terminal view (:mod:`.view`) draws it and
the HTTP endpoints (:mod:`.server`) serve it. ``RecentWarnings`` keeps the last few distinct warnings of the log,
since a performer does not read the log on stage.

Everything in a snapshot is read from the parts at the moment it is taken (the view takes one ten times a second), so
what it shows follows reality: a controller plugged in or pulled out, a session lost or back. Warnings are of two
kinds. A warning that describes a state that can end (a controller gone, the Scope session down) is the owner's
``problems()``, asked at every snapshot: it shows while the state lasts and goes when it ends. The log lines that
said so carry ``extra={"problem": ...}`` and are not kept as recent warnings, which would outlive the state they
describe. Every other warning (messages lost, a profile switch refused) is an event: the last few stay in view.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from metadj_bridge.inputs.analyzer import AudioUpdate, audio_values

if TYPE_CHECKING:
    from metadj_bridge.run.parts import Controls
    from metadj_bridge.run.show import ShowRunner
    from metadj_bridge.run.tempo_hub import TempoHub
    from metadj_bridge.scope.session import ScopeSession
    from metadj_bridge.video.clock import OutputClock

__all__ = ["AUDIO_METERS", "BridgeStatus", "RecentWarnings"]

#: The audio meters the views show, in their order (signal names without ``audio.``).
AUDIO_METERS = ("energy", "low", "mid", "high", "centroid", "flatness", "section", "tension")


class RecentWarnings(logging.Handler):
    """The last few distinct warnings that tell of events, for the status view (a performer does not read the log on
    stage). Warnings tagged ``extra={"problem": ...}`` describe a state that its owner reports live
    (``problems()``): they are left out here, so that none outlives the state it describes."""

    def __init__(self, keep: int = 5) -> None:
        super().__init__(logging.WARNING)
        self.keep = keep
        self._messages: list[str] = []

    @property
    def messages(self) -> list[str]:
        """The recent warnings, oldest first (a copy: parts may log from their own threads)."""
        self.acquire()
        try:
            return list(self._messages)
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held (Handler.handle)
        if getattr(record, "problem", None) is not None:
            return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the view
            return
        text = text if len(text) <= 160 else text[:157] + "..."
        if text in self._messages:
            self._messages.remove(text)
        self._messages.append(text)
        del self._messages[: -self.keep]


class BridgeStatus:
    """What the performer's views show: one snapshot of the running bridge (statusview, GET /status)."""

    def __init__(self, session: ScopeSession) -> None:
        self.session = session
        #: The newest audio analysis, if the bridge is listening.
        self.audio: AudioUpdate | None = None
        #: The tempo hub, for the arbitrated beat grid.
        self.tempo: TempoHub | None = None
        #: The ShowRunner, for the theme and the latest show event.
        self.show: ShowRunner | None = None
        #: The video output clock, for frames shown and repeats; avatar mode's webcam or file.
        self.video: OutputClock | None = None
        self.avatar: Any = None
        #: The audio analysis (its live input says when it is lost), or None.
        self.audio_input: Any = None
        #: The control inputs (``run.parts.open_controls``): what is open and awaited now is read from them.
        self.controls: Controls | None = None
        #: What is open when no ``controls`` are given (MIDI ports, OSC address, Link): shown as it is.
        self.inputs: dict[str, Any] = {}
        self.warnings = RecentWarnings()
        self.preview_url: str | None = None
        #: The show's measure of its delay to the picture (``scope/latency.ShowLatency``), or None.
        self.latency: Any = None
        #: The show's further screens (``run/screens.py``), each with its own session and outputs.
        self.screens: list[Any] = []
        self.started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """Everything the performer's views show, as plain JSON-able data (the status view, ``GET /status``)."""
        from metadj_bridge import __version__

        st = self.session.status()
        snap: dict[str, Any] = {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "profile": self.show.profile.path if self.show is not None else None,
            "scope": {
                "state": st["state"], "url": st["url"], "server_version": st["server_version"],
                "emulator": st["emulator"],
                "pipeline": st["pipeline"], "load_progress": st["load_progress"], "fps_in": round(st["fps_in"], 2),
                "frames_in": st["frames_in"], "sessions": st["sessions_started"], "last_error": st["last_error"],
                "previous_error": ({"text": st["previous_error"], "ago_s": st["previous_error_ago_s"]}
                                   if st.get("previous_error") else None),
            },
            "sender": {"sent": st["sent"], "merged": st["merged"]},
            "tempo": None, "audio": None, "show": None, "video": None,
            "inputs": self._inputs(),
            "warnings": self.warnings.messages + self._problems(),
        }
        estimate = self.latency.estimate if self.latency is not None else None
        if estimate is not None:  # seconds from a sent change to its frame at the output: quantize's auto lookahead
            snap["sender"]["delay_to_picture"] = estimate.as_dict()
        tempo = self.tempo.state if self.tempo is not None else None
        if tempo is not None and tempo.source is not None:
            snap["tempo"] = {"bpm": round(tempo.bpm, 2), "source": tempo.source, "beat": round(tempo.beat, 3),
                             "phase": round(tempo.phase, 3), "bar_position": round(tempo.bar_position, 3),
                             "beats_per_bar": tempo.beats_per_bar}
        if self.audio is not None:
            values = audio_values(self.audio)
            snap["audio"] = {meter: round(values["audio." + meter], 3) for meter in AUDIO_METERS}
        if self.show is not None:
            engine = self.show.engine
            prompts = self.show.sender.snapshot().get("prompts") or []
            snap["show"] = {"theme": engine.theme, "focus": engine.focus, "prompts": prompts,
                            "transition": self.show.transition_progress(time.monotonic()),
                            "paused": engine.paused, "calm": engine.calm, "last_event": self.show.last_event or None,
                            "last_control": self.show.last_control or None,
                            "signals_dropped": self.show.board.dropped}
        if self.screens:  # every screen, the main one first (its details are also under scope and video)
            from metadj_bridge.profile.screens import MAIN_SCREEN
            from metadj_bridge.run.screens import screen_status

            main = screen_status(MAIN_SCREEN, self.session, self.video, None)
            main["preview_url"] = self.preview_url
            snap["screens"] = [main, *(screen.status() for screen in self.screens)]
        if self.video is not None:
            v = self.video.stats()
            snap["video"] = {"outputs": list(v.sinks), "frames_shown": v.frames_shown, "repeats": v.repeats,
                             "slates": v.slates, "skipped_ticks": v.skipped_ticks, "convert_ms": v.convert_ms,
                             "delay_ms": v.delay_ms, "preview_url": self.preview_url}
        return snap

    def _inputs(self) -> dict[str, Any]:
        """What is open now: MIDI ports (and the patterns still waiting for theirs), the OSC address, Link."""
        controls = self.controls
        if controls is None:
            return dict(self.inputs)
        midi, osc = controls.midi, controls.osc
        return {
            "midi": midi.port_names if midi is not None else [],
            "midi_waiting": midi.waiting if midi is not None else [],
            "osc": f"{osc.host}:{osc.port}" if osc is not None else None,
            "link": controls.link is not None,
        }

    def _problems(self) -> list[str]:
        """What is wrong now, from every part that can say (``problems()``): a state that ends takes its warning
        with it."""
        parts: list[Any] = [self.session, self.show, self.avatar, self.video, self.audio_input, *self.screens]
        controls = self.controls
        if controls is not None:
            parts += [controls.midi, controls.midi_out, controls.osc, controls.ableton, controls.link]
        out: list[str] = []
        for part in parts:
            problems = getattr(part, "problems", None)
            if callable(problems):
                out += problems()
        return out

    def on_audio(self, update: AudioUpdate) -> None:
        self.audio = update
