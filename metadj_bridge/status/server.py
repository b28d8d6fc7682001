"""The status for dashboards in Prometheus' text format, served as ``GET /metrics`` by the web server (``web/``).

``prometheus_text`` is a pure function of the status snapshot (see ``status.model.BridgeStatus.snapshot``): numbers
become gauges, figures that only grow (frames, messages sent and merged, sessions) become counters, and
names and states become labels on a sample of 1 (``metadj_scope_state{state="streaming"} 1``). Fields that are
None (a part that is not running) give no sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

Snapshot = dict[str, Any]

#: The Scope session's states (``scope.session.SessionState``), each exported as 0 or 1.
SCOPE_STATES = ("idle", "connecting", "loading pipeline", "negotiating", "streaming", "reconnecting", "closed")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = dict[str, str]
Sample = tuple[Labels, float | bool | None]


# ------------------------------------------------------------------------------------------ exposition


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Collects metric families in order and writes them in the text format, version 0.0.4."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, help_text: str, kind: str, samples: Iterable[Sample]) -> None:
        present = [(labels, value) for labels, value in samples if value is not None]
        if not present:
            return
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in present:
            assert value is not None
            label_text = ",".join(f'{key}="{_escape_label(str(val))}"' for key, val in labels.items())
            self._lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")

    def gauge(self, name: str, help_text: str, value: float | bool | None, **labels: str) -> None:
        self.family(name, help_text, "gauge", [(labels, value)])

    def counter(self, name: str, help_text: str, value: float | None, **labels: str) -> None:
        self.family(name, help_text, "counter", [(labels, value)])

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _part(snapshot: Snapshot, key: str) -> dict[str, Any]:
    value = snapshot.get(key)
    return value if isinstance(value, dict) else {}


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def prometheus_text(snapshot: Snapshot) -> str:
    """The snapshot's numbers as Prometheus metrics (text exposition format 0.0.4), all named ``metadj_*``."""
    out = _Exposition()
    out.gauge("metadj_info", "The bridge's version (always 1).", 1, version=str(snapshot.get("version") or ""))
    out.gauge("metadj_uptime_seconds", "Seconds since the bridge started.", snapshot.get("uptime_s"))

    scope = _part(snapshot, "scope")
    if scope:
        state = str(scope.get("state") or "")
        states = SCOPE_STATES if state in SCOPE_STATES or not state else (*SCOPE_STATES, state)
        out.family("metadj_scope_state", "The Scope session's state (1 for the current one).", "gauge",
                   [({"state": s}, s == state) for s in states])
        out.gauge("metadj_scope_info", "The Scope server and pipeline (always 1).", 1,
                  server_version=str(scope.get("server_version") or ""), pipeline=str(scope.get("pipeline") or ""),
                  emulator="true" if scope.get("emulator") else "false")
        out.gauge("metadj_scope_fps_in", "Frames per second arriving from Scope.", scope.get("fps_in"))
        out.counter("metadj_scope_frames_received_total", "Video frames received from Scope.", scope.get("frames_in"))
        out.counter("metadj_scope_sessions_total", "WebRTC sessions started with Scope.", scope.get("sessions"))
        out.gauge("metadj_scope_error", "1 when the session's last attempt failed.", bool(scope.get("last_error")))

    sender = _part(snapshot, "sender")
    out.counter("metadj_sender_sent_total", "Parameter messages sent to Scope.", sender.get("sent"))
    out.counter("metadj_sender_merged_total", "Parameter changes merged into a later message.", sender.get("merged"))

    tempo = _part(snapshot, "tempo")
    if tempo:
        source = str(tempo.get("source") or "")
        out.gauge("metadj_tempo_bpm", "The tempo in beats per minute, by its source.", tempo.get("bpm"), source=source)
        out.gauge("metadj_tempo_beat", "The beat count of the tempo clock.", tempo.get("beat"))
        out.gauge("metadj_tempo_phase", "Position within the current beat (0 to 1).", tempo.get("phase"))
        out.gauge("metadj_tempo_bar_position", "Position within the bar, in beats.", tempo.get("bar_position"))
        out.gauge("metadj_tempo_beats_per_bar", "Beats in a bar.", tempo.get("beats_per_bar"))

    audio = _part(snapshot, "audio")
    out.family("metadj_audio_feature", "Audio analysis features (0 to 1).", "gauge",
               [({"feature": str(name)}, value) for name, value in audio.items() if isinstance(value, (int, float))])

    show = _part(snapshot, "show")
    if show:
        out.gauge("metadj_show_theme_info", "The current prompt theme (always 1).", 1,
                  theme=str(show.get("theme") or ""))
        out.gauge("metadj_show_focus", "The focused prompt slot.", show.get("focus"))
        out.gauge("metadj_show_transition_progress", "Progress of the running prompt transition (0 to 1).",
                  show.get("transition"))
        out.gauge("metadj_show_paused", "1 when the show is paused.", bool(show.get("paused")))
        out.gauge("metadj_show_calm", "1 when the panic (calm) state is on.", bool(show.get("calm")))
        out.gauge("metadj_show_prompts", "Prompts in the current blend.", len(show.get("prompts") or []))
        out.counter("metadj_signals_dropped_total", "Signal values forgotten to make room (too many distinct names).",
                    show.get("signals_dropped"))

    video = _part(snapshot, "video")
    if video:
        out.family("metadj_video_output", "The open video outputs (always 1).", "gauge",
                   [({"output": str(name)}, 1) for name in video.get("outputs") or []])
        out.counter("metadj_video_frames_shown_total", "Frames written to the video outputs.",
                    video.get("frames_shown"))
        out.counter("metadj_video_repeats_total", "Frames repeated because Scope's next frame was late.",
                    video.get("repeats"))
        out.counter("metadj_video_slates_total", "Slate frames shown while Scope sent no video.", video.get("slates"))
        out.gauge("metadj_video_fps_out", "Frames per second to the video outputs.", video.get("fps_out"))
        out.gauge("metadj_video_convert_seconds", "Time to convert one frame for the outputs.",
                  _seconds(video.get("convert_ms")))
        out.gauge("metadj_video_delay_seconds", "Delay between a frame's arrival and its output.",
                  _seconds(video.get("delay_ms")))

    inputs = _part(snapshot, "inputs")
    if inputs:
        out.gauge("metadj_inputs_midi_ports", "MIDI input ports open.", len(inputs.get("midi") or []))
        out.gauge("metadj_inputs_midi_waiting", "MIDI port patterns no open port matches (a controller is missing).",
                  len(inputs.get("midi_waiting") or []) if "midi_waiting" in inputs else None)
        out.gauge("metadj_inputs_osc", "1 when the OSC input is listening.", inputs.get("osc") is not None)
        out.gauge("metadj_inputs_link", "1 when Ableton Link is on.", bool(inputs.get("link")))
    out.gauge("metadj_warnings", "Recent distinct warnings shown to the performer.",
              len(snapshot.get("warnings") or []))
    return out.text()
