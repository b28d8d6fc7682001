"""MIDI messages to signals and triggers: pure decoding, no ports, no threads, no clocks.

Names (channels are 1-16 in names, as on the hardware):

=============================  =======  ==============================================================
``midi.cc.<ch>.<cc>``           Signal   0..1 (7-bit; 14-bit pairs and relative encoders if configured)
``midi.note.<ch>.<note>``       Trigger  note-on, ``data={"velocity": v/127}``
``midi.note.<ch>.<note>``       Signal   velocity 0..1 while held, 0 on note-off (a pad can be held)
``midi.pitchbend.<ch>``         Signal   0..1, centre 0.5
``midi.program.<ch>``           Trigger  ``data={"program": n}``
``midi.aftertouch.<ch>``        Signal   channel pressure 0..1
``midi.polytouch.<ch>.<note>``  Signal   key pressure 0..1
=============================  =======  ==============================================================

SysEx, clock and transport bytes (the clock has its own estimator, :mod:`midi_clock`), active sensing and
anything unknown produce nothing. Every output carries the arrival time passed in.

14-bit CC follows the MIDI convention: controller n (0-31) is the MSB and n+32 the LSB. The MSB resets the
LSB (as receivers are told to), so a controller that only sends MSBs still moves over the whole range. The
pair is published under the MSB's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from metadj_bridge.signals import Signal, Trigger

Event = Signal | Trigger


class RelativeMode(StrEnum):
    """How a relative (endless) encoder encodes a turn in one 7-bit value."""

    #: 1..63 clockwise, 127..65 anticlockwise (127 = -1). Most common (Ableton "Relative (2's Comp.)").
    TWOS_COMPLEMENT = "twos_complement"
    #: 65..127 clockwise, 63..0 anticlockwise, 64 = no move ("Relative (Binary Offset)").
    OFFSET64 = "offset64"
    #: bit 6 is the sign: 1..63 clockwise, 65..127 anticlockwise (65 = -1) ("Relative (Signed Bit)").
    SIGN_MAGNITUDE = "sign_magnitude"

    def delta(self, value: int) -> int:
        if self is RelativeMode.TWOS_COMPLEMENT:
            return value - 128 if value >= 64 else value
        if self is RelativeMode.OFFSET64:
            return value - 64
        return -(value & 0x3F) if value & 0x40 else value & 0x3F


@dataclass(frozen=True, slots=True)
class RelativeEncoder:
    #: Channel 1-16 and controller 0-127.
    channel: int
    cc: int
    mode: RelativeMode = RelativeMode.TWOS_COMPLEMENT
    #: How far one detent moves the 0..1 value.
    step: float = 1.0 / 128
    #: Value before the first turn.
    initial: float = 0.0

    def __post_init__(self) -> None:
        _check_channel(self.channel, "relative encoder")
        _check_cc(self.cc, "relative encoder")
        object.__setattr__(self, "mode", RelativeMode(self.mode))
        if not 0.0 < self.step <= 1.0:
            raise ValueError(f"relative encoder {self.channel}/{self.cc}: step {self.step} is not in (0, 1]")


@dataclass(frozen=True, slots=True)
class Cc14Pair:
    #: Channel 1-16 and the MSB controller 0-31 (its LSB is msb + 32).
    channel: int
    msb: int

    def __post_init__(self) -> None:
        _check_channel(self.channel, "14-bit CC")
        if not 0 <= self.msb <= 31:
            raise ValueError(
                f"14-bit CC on channel {self.channel}: MSB controller {self.msb} is not 0-31 (its LSB is MSB + 32)"
            )

    @property
    def lsb(self) -> int:
        return self.msb + 32


@dataclass(frozen=True, slots=True)
class MidiControlConfig:
    """Which controls are not plain 7-bit absolute CCs. Plain data, so a show profile can fill it."""

    cc14: Sequence[Cc14Pair] = field(default_factory=tuple)
    relative: Sequence[RelativeEncoder] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        seen: set[tuple[int, int]] = set()
        for pair in self.cc14:
            for cc in (pair.msb, pair.lsb):
                if (pair.channel, cc) in seen:
                    raise ValueError(f"channel {pair.channel} CC {cc} is configured twice")
                seen.add((pair.channel, cc))
        for enc in self.relative:
            if (enc.channel, enc.cc) in seen:
                raise ValueError(
                    f"channel {enc.channel} CC {enc.cc} is configured twice (relative encoder and another role)"
                )
            seen.add((enc.channel, enc.cc))


def _check_channel(channel: int, what: str) -> None:
    if not 1 <= channel <= 16:
        raise ValueError(f"{what}: channel {channel} is not a MIDI channel (1-16)")


def _check_cc(cc: int, what: str) -> None:
    if not 0 <= cc <= 127:
        raise ValueError(f"{what}: {cc} is not a MIDI CC number (0-127)")


class MidiDecoder:
    """Stateful (14-bit halves, encoder positions), but pure: messages and times in, events out."""

    def __init__(self, config: MidiControlConfig | None = None) -> None:
        self.config = config or MidiControlConfig()
        self._msb: dict[tuple[int, int], Cc14Pair] = {(p.channel, p.msb): p for p in self.config.cc14}
        self._lsb: dict[tuple[int, int], Cc14Pair] = {(p.channel, p.lsb): p for p in self.config.cc14}
        self._relative: dict[tuple[int, int], RelativeEncoder] = {(e.channel, e.cc): e for e in self.config.relative}
        self._cc14_value: dict[tuple[int, int], list[int]] = {}
        self._encoder_value: dict[tuple[int, int], float] = {
            (e.channel, e.cc): min(1.0, max(0.0, e.initial)) for e in self.config.relative
        }
        self.ignored = 0

    def decode_bytes(self, data: Sequence[int] | bytes, t: float) -> list[Event]:
        """Raw MIDI bytes of one message, as rtmidi delivers them. This is the fast path: no mido objects."""
        n = len(data)
        if n == 0:
            self.ignored += 1
            return []
        status = data[0]
        if status < 0x80 or status >= 0xF0:  # a stray data byte, SysEx, clock, transport, anything system
            self.ignored += 1
            return []
        kind = status & 0xF0
        ch = (status & 0x0F) + 1
        need = 2 if kind in (0xC0, 0xD0) else 3
        if n < need or data[1] > 127 or (need == 3 and data[2] > 127):
            self.ignored += 1
            return []
        if kind == 0xB0:
            return self._control(ch, data[1], data[2], t)
        if kind == 0x90:
            name = f"midi.note.{ch}.{data[1]}"
            velocity_byte = data[2]
            if velocity_byte == 0:  # running-status note-off
                return [Signal(name, 0.0, t)]
            velocity = velocity_byte / 127
            return [Trigger(name, t, {"velocity": velocity}), Signal(name, velocity, t)]
        if kind == 0x80:
            return [Signal(f"midi.note.{ch}.{data[1]}", 0.0, t)]
        if kind == 0xE0:
            return [Signal(f"midi.pitchbend.{ch}", (data[1] | (data[2] << 7)) / 16383, t)]
        if kind == 0xC0:
            return [Trigger(f"midi.program.{ch}", t, {"program": data[1]})]
        if kind == 0xD0:
            return [Signal(f"midi.aftertouch.{ch}", data[1] / 127, t)]
        return [Signal(f"midi.polytouch.{ch}.{data[1]}", data[2] / 127, t)]  # 0xA0

    def decode(self, message: Any, t: float) -> list[Event]:
        """One mido ``Message``; anything without a mapping gives ``[]``."""
        try:
            data = message.bytes()
        except (AttributeError, TypeError, ValueError):
            self.ignored += 1
            return []
        return self.decode_bytes(data, t)

    def decode_many(self, messages: Iterable[tuple[Any, float]]) -> list[Event]:
        out: list[Event] = []
        for message, t in messages:
            out.extend(self.decode(message, t))
        return out

    def _control(self, ch: int, cc: int, value: int, t: float) -> list[Event]:
        key = (ch, cc)
        encoder = self._relative.get(key)
        if encoder is not None:
            delta = encoder.mode.delta(value)
            position = min(1.0, max(0.0, self._encoder_value[key] + delta * encoder.step))
            self._encoder_value[key] = position
            return [Signal(f"midi.cc.{ch}.{cc}", position, t)]
        pair = self._msb.get(key)
        if pair is not None:
            halves = self._cc14_value.setdefault((ch, pair.msb), [0, 0])
            halves[0] = value
            halves[1] = 0
            return [Signal(f"midi.cc.{ch}.{pair.msb}", (value << 7) / 16383, t)]
        pair = self._lsb.get(key)
        if pair is not None:
            halves = self._cc14_value.setdefault((ch, pair.msb), [0, 0])
            halves[1] = value
            return [Signal(f"midi.cc.{ch}.{pair.msb}", ((halves[0] << 7) | value) / 16383, t)]
        return [Signal(f"midi.cc.{ch}.{cc}", value / 127, t)]
