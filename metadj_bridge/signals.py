"""The vocabulary that crosses the middle of the program (design.md).

Inputs produce **signals** (a named continuous value with a time, e.g. ``audio.energy``) and **triggers**
(a named event with a time, e.g. ``audio.beat``). The mapping engine knows nothing about devices; the
inputs know nothing about Scope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Signal:
    """A continuous value: the latest one wins."""

    name: str
    value: float
    t: float


@dataclass(frozen=True, slots=True)
class Trigger:
    """An event; ``data`` carries details such as velocity or the BPM at a beat."""

    name: str
    t: float
    data: dict[str, Any] = field(default_factory=dict)


#: Audio signal and trigger names (issue: listening to the music).
AUDIO_SIGNALS = (
    "audio.energy",
    "audio.centroid",
    "audio.flatness",
    "audio.low",
    "audio.mid",
    "audio.high",
    "audio.bpm",
    "audio.phase",
)
AUDIO_TRIGGERS = ("audio.onset", "audio.beat")


class SignalTarget(Protocol):
    """Anything signals can be published to: a :class:`SignalBoard`, or a running show."""

    def set(self, signal: Signal) -> None: ...

    def fire(self, trigger: Trigger) -> None: ...


class SignalBoard:
    """Latest value of every signal, plus listeners for triggers. Lives on the event loop only."""

    def __init__(self) -> None:
        self.values: dict[str, Signal] = {}
        self._trigger_listeners: list[Callable[[Trigger], None]] = []
        self._signal_listeners: list[Callable[[Signal], None]] = []

    def set(self, signal: Signal) -> None:
        self.values[signal.name] = signal
        for listener in self._signal_listeners:
            listener(signal)

    def fire(self, trigger: Trigger) -> None:
        for listener in self._trigger_listeners:
            listener(trigger)

    def get(self, name: str, default: float = 0.0) -> float:
        signal = self.values.get(name)
        return signal.value if signal is not None else default

    def on_trigger(self, listener: Callable[[Trigger], None]) -> None:
        self._trigger_listeners.append(listener)

    def on_signal(self, listener: Callable[[Signal], None]) -> None:
        self._signal_listeners.append(listener)
