"""The ``scope:`` and ``inputs:`` sections of a profile."""

from __future__ import annotations

import os
import re

from metadj_bridge.inputs.osc_presets import PRESETS
from metadj_bridge.parameters import ASPECT_PRESETS, DENOISING_PRESETS
from metadj_bridge.profile import addresses
from metadj_bridge.profile import fields as f
from metadj_bridge.profile.errors import Findings
from metadj_bridge.profile.model import (
    AudioSettings,
    Cc14Settings,
    EncoderSettings,
    InputSettings,
    MidiSettings,
    OscSettings,
    ScopeSettings,
    TempoSettings,
)
from metadj_bridge.profile.names import parameters
from metadj_bridge.profile.yamlnodes import YNode

SCOPE_KEYS = ("url", "pipeline", "aspect", "resolution", "denoising", "input_mode", "interpolation", "sender",
              "parameters")
INPUT_KEYS = ("audio", "midi", "osc", "tempo")
AUDIO_KEYS = ("source", "path", "device", "gain", "normalise")
MIDI_KEYS = ("devices", "virtual", "feedback", "clock", "encoders", "cc14")
OSC_KEYS = ("port", "host", "presets", "out")
TEMPO_KEYS = ("link", "link_may_set_tempo", "prefer", "beats_per_bar")
TEMPO_SOURCES = ("link", "midi_clock", "osc", "audio")
ENCODER_MODES = ("twos_complement", "offset64", "sign_magnitude")
#: The longest ``scope.sender.min_interval`` and ``max_interval`` (s); ``run --min/max-send-interval`` too.
MAX_MIN_SEND_INTERVAL, MAX_MAX_SEND_INTERVAL = 60.0, 3600.0


def scope_settings(node: YNode | None, findings: Findings | None = None, path: str = "scope") -> ScopeSettings:
    """The ``scope:`` section; with ``findings`` that keep going, the URL and the parameters are checked apart
    from the rest, so one mistake does not hide another."""
    if node is None:
        return ScopeSettings()
    findings = findings or Findings()
    m = f.mapping(node, path, SCOPE_KEYS)
    kw: dict[str, object] = {"where": node.where}
    if "url" in m and m["url"].value is not None:
        kw["url"] = findings.attempt(addresses.scope_url, m["url"], f"{path}.url", default=None)
    if "parameters" in m:
        kw["parameters"] = findings.attempt(parameters, m["parameters"], f"{path}.parameters", default={})
    if "pipeline" in m:
        pipeline = f.text(m["pipeline"], f"{path}.pipeline")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", pipeline):
            f.fail_value(m["pipeline"], f"{path}.pipeline", "a pipeline id is one word such as longlive")
        kw["pipeline"] = pipeline
    if "aspect" in m and "resolution" in m and m["aspect"].value is not None and m["resolution"].value is not None:
        f.fail(m["resolution"], f"{path}.resolution", "aspect and resolution are both set; keep one of them")
    if "aspect" in m and m["aspect"].value is not None:
        kw["aspect"] = f.choice(m["aspect"], f"{path}.aspect", tuple(ASPECT_PRESETS))
    if "resolution" in m and m["resolution"].value is not None:
        kw["resolution"] = _resolution(m["resolution"])
        kw["aspect"] = None
    if "denoising" in m:
        kw["denoising"] = _denoising(m["denoising"])
    if "input_mode" in m:
        kw["input_mode"] = f.choice(m["input_mode"], f"{path}.input_mode", ("text", "video"))
    if "interpolation" in m:
        kw["interpolation"] = f.choice(m["interpolation"], f"{path}.interpolation", ("linear", "slerp"))
    if "sender" in m:
        sender = f.mapping(m["sender"], f"{path}.sender", ("min_interval", "max_interval"))
        lo = ScopeSettings().min_send_interval
        hi = ScopeSettings().max_send_interval
        if "min_interval" in sender:
            lo = f.number(sender["min_interval"], f"{path}.sender.min_interval", 0, MAX_MIN_SEND_INTERVAL,
                          lo_open=True)
        if "max_interval" in sender:
            hi = f.number(sender["max_interval"], f"{path}.sender.max_interval", 0, MAX_MAX_SEND_INTERVAL,
                          lo_open=True)
        if lo > hi:
            where = sender.get("min_interval") or sender["max_interval"]
            f.fail(where, f"{path}.sender", f"min_interval {lo:g} is more than max_interval {hi:g}")
        kw["min_send_interval"] = lo
        kw["max_send_interval"] = hi
    return ScopeSettings(**kw)  # type: ignore[arg-type]


def _resolution(node: YNode) -> tuple[int, int]:
    items = f.sequence(node, "scope.resolution", what="[width, height]")
    if len(items) != 2:
        f.fail_value(node, "scope.resolution", f"expected [width, height], got {len(items)} values")
    size = []
    for i, (item, what) in enumerate(zip(items, ("width", "height"), strict=True)):
        value = f.integer(item, f"scope.resolution[{i}]", 64, 2048)
        if value % 8:
            f.fail_value(item, f"scope.resolution[{i}]", f"the {what} must be a multiple of 8")
        size.append(value)
    return size[0], size[1]


def _denoising(node: YNode) -> tuple[int, ...]:
    path = "scope.denoising"
    if isinstance(node.value, str):
        return tuple(DENOISING_PRESETS[f.choice(node, path, tuple(DENOISING_PRESETS))])
    items = f.sequence(node, path, what=f"a preset ({', '.join(DENOISING_PRESETS)}) or a list of steps")
    if not items:
        f.fail_value(node, path, "the step list is empty; e.g. [1000, 750, 500, 250]")
    steps = [f.integer(item, f"{path}[{i}]", 1, 1000) for i, item in enumerate(items)]
    for i in range(1, len(steps)):
        if steps[i] >= steps[i - 1]:
            f.fail_value(node, path, f"steps must go down, each below the one before (e.g. [1000, 750, 500, 250]); "
                         f"{steps[i]} follows {steps[i - 1]}")
    return tuple(steps)


def input_settings(node: YNode | None, findings: Findings | None = None, path: str = "inputs") -> InputSettings:
    """The ``inputs:`` section; with ``findings`` that keep going, each of audio, midi, osc, tempo on its own."""
    if node is None:
        return InputSettings()
    findings = findings or Findings()
    m = f.mapping(node, path, INPUT_KEYS)
    return InputSettings(
        audio=findings.attempt(_audio, m["audio"], default=AudioSettings()) if "audio" in m else AudioSettings(),
        midi=findings.attempt(_midi, m["midi"], default=MidiSettings()) if "midi" in m else MidiSettings(),
        osc=findings.attempt(_osc, m["osc"], default=OscSettings()) if "osc" in m else OscSettings(),
        tempo=findings.attempt(_tempo, m["tempo"], default=TempoSettings()) if "tempo" in m else TempoSettings(),
    )


def _relative(node: YNode, path: str) -> str:
    """A path relative to the folder of the file it was written in, made absolute."""
    base = os.path.dirname(os.path.abspath(node.file))
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _audio(node: YNode) -> AudioSettings:
    path = "inputs.audio"
    if isinstance(node.value, str):
        word = node.value
        if word in ("demo", "none"):
            return AudioSettings(source=word, where=node.where)  # type: ignore[arg-type]
        kind, sep, rest = word.partition(":")
        if sep and kind == "file" and rest.strip():
            return AudioSettings(source="file", path=_relative(node, rest.strip()), where=node.where)
        if sep and kind == "device" and rest.strip():
            return AudioSettings(source="device", device=rest.strip(), where=node.where)
        f.fail_value(node, path, "expected demo, none, file:PATH or device:NAME" + f.suggest(word, ("demo", "none")))
    m = f.mapping(node, path, AUDIO_KEYS, "demo, none, file:PATH, device:NAME or a mapping of " + ", ".join(AUDIO_KEYS))
    source = f.choice(m["source"], f"{path}.source", ("demo", "file", "device", "none")) if "source" in m else "demo"
    kw: dict[str, object] = {"source": source, "where": node.where}
    if "path" in m:
        kw["path"] = _relative(m["path"], f.text(m["path"], f"{path}.path"))
    if "device" in m:
        kw["device"] = f.text(m["device"], f"{path}.device")
    if source == "file" and "path" not in kw:
        f.fail(node, path, "source: file needs a path: (an audio file: WAV, FLAC, MP3, Ogg, AIFF)")
    if source == "device" and "device" not in kw:
        f.fail(node, path, "source: device needs a device: (part of the input's name)")
    if "gain" in m:
        kw["gain"] = f.number(m["gain"], f"{path}.gain", 0, 1000, lo_open=True)
    if "normalise" in m:
        kw["normalise"] = f.boolean(m["normalise"], f"{path}.normalise")
    return AudioSettings(**kw)  # type: ignore[arg-type]


def _port_pattern(node: YNode, path: str) -> str:
    pattern = f.text(node, path)
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as exc:
            f.fail_value(node, path, f"not a valid regular expression: {exc}")
    return pattern


def _midi(node: YNode) -> MidiSettings:
    path = "inputs.midi"
    m = f.mapping(node, path, MIDI_KEYS)
    kw: dict[str, object] = {"where": node.where}
    if "devices" in m and m["devices"].value is not None:
        items = f.sequence(m["devices"], f"{path}.devices", single=True, what="a port name or a list of them")
        kw["devices"] = tuple(_port_pattern(item, f"{path}.devices[{i}]") for i, item in enumerate(items))
    for key in ("virtual", "feedback"):
        if key in m and m[key].value is not None:
            kw[key] = _port_pattern(m[key], f"{path}.{key}")
    if "clock" in m:
        kw["clock"] = f.boolean(m["clock"], f"{path}.clock")
    seen: dict[tuple[int, int], str] = {}

    def claim(item: YNode, item_path: str, channel: int, cc: int, role: str) -> None:
        if (channel, cc) in seen:
            f.fail(item, item_path, f"channel {channel} CC {cc} is already configured ({seen[(channel, cc)]})")
        seen[(channel, cc)] = role

    if "cc14" in m:
        pairs = []
        for i, item in enumerate(f.sequence(m["cc14"], f"{path}.cc14")):
            p = f"{path}.cc14[{i}]"
            im = f.mapping(item, p, ("channel", "msb"))
            channel = f.integer(im["channel"], f"{p}.channel", 1, 16, what="a MIDI channel") if "channel" in im else 1
            if "msb" not in im:
                f.fail(item, p, "missing msb: (the MSB controller, 0-31)")
            msb = f.integer(im["msb"], f"{p}.msb", 0, 31, what="an MSB controller (the LSB is MSB + 32)")
            claim(item, p, channel, msb, "a 14-bit MSB")
            claim(item, p, channel, msb + 32, "a 14-bit LSB")
            pairs.append(Cc14Settings(channel=channel, msb=msb, where=item.where))
        kw["cc14"] = tuple(pairs)
    if "encoders" in m:
        encoders = []
        for i, item in enumerate(f.sequence(m["encoders"], f"{path}.encoders")):
            p = f"{path}.encoders[{i}]"
            im = f.mapping(item, p, ("channel", "cc", "mode", "step"))
            channel = f.integer(im["channel"], f"{p}.channel", 1, 16, what="a MIDI channel") if "channel" in im else 1
            if "cc" not in im:
                f.fail(item, p, "missing cc: (the encoder's controller number, 0-127)")
            cc = f.integer(im["cc"], f"{p}.cc", 0, 127, what="a MIDI CC number")
            claim(item, p, channel, cc, "a relative encoder")
            enc: dict[str, object] = {"channel": channel, "cc": cc, "where": item.where}
            if "mode" in im:
                enc["mode"] = f.choice(im["mode"], f"{p}.mode", ENCODER_MODES)
            if "step" in im:
                enc["step"] = f.number(im["step"], f"{p}.step", 0, 1, lo_open=True)
            encoders.append(EncoderSettings(**enc))  # type: ignore[arg-type]
        kw["encoders"] = tuple(encoders)
    return MidiSettings(**kw)  # type: ignore[arg-type]


def _osc(node: YNode) -> OscSettings:
    path = "inputs.osc"
    m = f.mapping(node, path, OSC_KEYS)
    kw: dict[str, object] = {"where": node.where}
    if "port" in m and m["port"].value is not None:
        kw["port"] = f.integer(m["port"], f"{path}.port", 1, 65535, what="a UDP port")
    if "host" in m:
        kw["host"] = addresses.host(m["host"], f"{path}.host")
    if "presets" in m and m["presets"].value is not None:
        items = f.sequence(m["presets"], f"{path}.presets", single=True, what="a preset name or a list of them")
        names = tuple(f.choice(item, f"{path}.presets[{i}]", tuple(PRESETS)) for i, item in enumerate(items))
        kw["presets"] = tuple(dict.fromkeys(names))
    if "out" in m and m["out"].value is not None:
        kw["out"] = addresses.host_port(m["out"], f"{path}.out")
        kw["out_where"] = m["out"].where
    return OscSettings(**kw)  # type: ignore[arg-type]


def _tempo(node: YNode) -> TempoSettings:
    path = "inputs.tempo"
    m = f.mapping(node, path, TEMPO_KEYS)
    kw: dict[str, object] = {"where": node.where}
    for key in ("link", "link_may_set_tempo"):
        if key in m:
            kw[key] = f.boolean(m[key], f"{path}.{key}")
    if "prefer" in m:
        items = f.sequence(m["prefer"], f"{path}.prefer", single=True, what="a list of tempo sources")
        prefer: list[str] = []
        for i, item in enumerate(items):
            source = f.choice(item, f"{path}.prefer[{i}]", TEMPO_SOURCES)
            if source in prefer:
                f.fail_value(item, f"{path}.prefer[{i}]", "listed twice")
            prefer.append(source)
        if not prefer:
            f.fail_value(m["prefer"], f"{path}.prefer", f"name at least one of {', '.join(TEMPO_SOURCES)}")
        kw["prefer"] = tuple(prefer)
    if "beats_per_bar" in m:
        kw["beats_per_bar"] = f.integer(m["beats_per_bar"], f"{path}.beats_per_bar", 1, 16)
    return TempoSettings(**kw)  # type: ignore[arg-type]
