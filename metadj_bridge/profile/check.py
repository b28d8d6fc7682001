"""``metadj-bridge check PROFILE...``: load each profile without connecting to anything and say what is wrong.

``check`` refuses what the running bridge would fail on, each mistake as ``file:line:column``: everything the
loader checks (reported all at once where the file's structure allows it), the audio file the show opens at the
start (``inputs.audio: file:...``, its header read as ``run`` reads it, not the whole file), and every profile a
switch or a ``profile:`` mapping can move to, which must load as a profile itself; their own switch targets are
followed too, each file once, at most MAX_SWITCH_DEPTH switches away.

It also warns, as ``warning: file:line:column: ...``, about each mapping on a key the profile's pipeline ignores in
its input mode (:mod:`.ignored`; from the server's schemas when the caller read them, else from the bridge's
catalogue). The profile still counts as good, unless ``strict``: then each warning is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from metadj_bridge.errors import ConfigError, printable
from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.ignored import ignored_keys
from metadj_bridge.profile.loader import check_profile
from metadj_bridge.profile.model import ShowProfile

MAX_SWITCH_DEPTH = 8
#: Errors listed per file: past this many, the rest are counted (a file with a wrong indent can give hundreds).
MAX_ERRORS = 50


def run_check(paths: Sequence[str], out: TextIO | None = None, err: TextIO | None = None, *, strict: bool = False,
              schemas: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """``ok  <path> (<n> themes, <m> mappings)`` per good file, ``error: <message>`` per mistake; 0 when all good.

    ``schemas`` (pipeline id -> schema entry, as a server answered) decide which keys a pipeline ignores; without
    them, or for a pipeline they lack, the bridge's catalogue does. ``strict`` makes those warnings errors.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    checker = _Checker()
    failed = 0
    for path in paths:
        profile, errors = checker.check(path)
        if profile is not None and not errors:
            errors = offer_problems(profile, schemas)
        if profile is not None and not errors:
            warnings = _ignored(profile, schemas)
            if strict:
                errors = warnings
            else:
                for warning in warnings:
                    print(f"warning: {warning}", file=err)
        if errors:
            failed += 1
            for error in errors[:MAX_ERRORS]:
                print(f"error: {error}", file=err)
            if len(errors) > MAX_ERRORS:
                print(f"error: {printable(path)}: ... and {len(errors) - MAX_ERRORS} more (fix these and check "
                      "again)", file=err)
            continue
        assert profile is not None
        scenes = f", {len(profile.scenes)} scene{'s' if len(profile.scenes) > 1 else ''}" if profile.scenes else ""
        print(f"ok  {printable(path)} ({len(profile.themes)} themes, {len(profile.mappings)} mappings{scenes})",
              file=out)
    return 1 if failed else 0


def offer_problems(profile: ShowProfile, schemas: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """With a server's schemas (``check --scope``): the profile's pipeline not offered there, or not in the
    profile's input mode. ``run`` refuses both before loading, so ``check`` says so too, strict or not."""
    if schemas is None:
        return []
    scope = profile.scope
    where = f"{scope.where}: " if scope.where else ""

    def modes(entry: Any) -> list[str]:
        raw = entry.get("supported_modes") if isinstance(entry, Mapping) else None
        return [str(m) for m in raw] if isinstance(raw, (list, tuple)) and raw else ["text", "video"]

    offered = ", ".join(f"{pid} ({', '.join(modes(entry))})" for pid, entry in schemas.items())
    entry = schemas.get(scope.pipeline)
    if entry is None:
        return [printable(f"{where}scope.pipeline: {scope.pipeline!r} is not offered by that Scope server (run would "
                          f"refuse it before loading); it offers: {offered}")]
    if scope.input_mode not in modes(entry):
        return [printable(f"{where}scope.input_mode: {scope.pipeline!r} takes only {' and '.join(modes(entry))} "
                          f"input on that Scope server, not {scope.input_mode} mode (run would refuse it)")]
    return []


def _ignored(profile: ShowProfile, schemas: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """One line per mapping on a key the profile's pipeline ignores in its mode."""
    scope = profile.scope
    entry = (schemas or {}).get(scope.pipeline)
    return [printable(str(w)) for w in ignored_keys(profile, scope.pipeline, scope.input_mode, entry)]


@dataclass
class _Checker:
    """Checks profiles and what they switch to; each file is loaded once per run."""

    loaded: dict[str, tuple[ShowProfile | None, list[ProfileError]]] = field(default_factory=dict)
    #: Files whose own mistakes were already listed in this run: a switch to one of them says so in one line.
    listed: set[str] = field(default_factory=set)

    def check(self, path: str) -> tuple[ShowProfile | None, list[str]]:
        """The profile and every error line for it: its own mistakes, then those of its switch targets."""
        profile, errors = self._load(path)
        lines = [str(e) for e in sorted(errors, key=_position)]
        if lines:
            self.listed.add(os.path.abspath(path))
        if profile is not None:
            lines += start_file_problems(profile) + shared_server_problems(profile)
            lines += self._targets(profile, {os.path.abspath(path)}, 1)
        return profile, lines

    def _load(self, path: str) -> tuple[ShowProfile | None, list[ProfileError]]:
        key = os.path.abspath(path)
        if key not in self.loaded:
            self.loaded[key] = check_profile(path)
        return self.loaded[key]

    def _targets(self, profile: ShowProfile, seen: set[str], depth: int) -> list[str]:
        lines: list[str] = []
        for target, where in switch_targets(profile):
            if target in seen:
                continue  # a switch back to a profile already checked (A -> B -> A is a fine show)
            seen.add(target)
            if depth > MAX_SWITCH_DEPTH:
                lines.append(f"{where}: switches lead more than {MAX_SWITCH_DEPTH} profiles deep "
                             f"(to {printable(target)}); not checked further")
                continue
            target_profile, errors = self._load(target)
            if errors and target in self.listed:
                lines.append(f"{where}: switches to {printable(target)}, which does not load as a profile "
                             "(its mistakes are listed above)")
            elif errors:
                self.listed.add(target)
                lines += [f"{e} (a switch target of {where})" for e in sorted(errors, key=_position)]
            if target_profile is not None:
                lines += self._targets(target_profile, seen, depth + 1)
        return lines


def start_file_problems(profile: ShowProfile) -> list[str]:
    """What ``run`` would refuse in the files the show opens at the start that loading does not read: the audio
    file's header (missing, not a regular file, not audio, a sample rate the analysis cannot use)."""
    audio = profile.inputs.audio
    if audio.source != "file" or not audio.path:
        return []
    from metadj_bridge.inputs.audio_file import read_audio_header

    try:
        read_audio_header(audio.path)
    except ConfigError as exc:
        return [printable(f"{audio.where}: inputs.audio: {exc}" if audio.where else f"inputs.audio: {exc}")]
    return []


def shared_server_problems(profile: ShowProfile) -> list[str]:
    """What ``run`` would refuse in ``screens:`` that loading does not: two screens on one Scope server, at the
    screen that takes a server already taken (``run``'s own rule: :func:`metadj_bridge.run.screens.shared_server`)."""
    from metadj_bridge.run.screens import shared_server

    found = shared_server(profile)
    if found is None:
        return []
    name, exc = found
    screen = next(s for s in profile.screens if s.name == name)
    where = screen.scope.where or screen.where
    return [printable(f"{where}: screens.{name}.scope.url: {exc}" if where else str(exc))]


def switch_targets(profile: ShowProfile) -> Iterator[tuple[str, str]]:
    """(absolute path, where it is named) of each profile the running show can switch to."""
    for switch in profile.switches:
        yield switch.path, switch.where
    for mapping in profile.mappings:
        if mapping.target.kind == "profile" and mapping.target.argument:
            yield str(mapping.target.argument[0]), mapping.target.where


def _position(error: ProfileError) -> tuple[str, int, int]:
    return error.file, error.line, error.column
