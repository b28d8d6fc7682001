"""``metadj-bridge doctor``: is everything ready for the show, and what to do about what is not.

It checks the profile, this machine (audio input, MIDI controllers, the virtual camera) and the Scope server
(health, the pipeline, VACE, ICE/TURN, a short real session with its video and pause state), and prints one
line per finding with the action indented below, or JSON. The exit status is 0 only when no finding blocks
a show; warnings are fine. The Scope checks live in :mod:`metadj_bridge.doctor.checks`.

    report = await run_doctor(DoctorOptions(scope_url="http://pod:8000", profile="shows/club.yaml"))
    print(format_report(report)); sys.exit(0 if report.ok else 1)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from metadj_bridge.doctor.checks import (
    Finding,
    Prompts,
    Status,
    check_health,
    check_offer,
    check_pipeline,
    check_url,
    check_vace,
)
from metadj_bridge.doctor.ice import (
    check_ice,
)
from metadj_bridge.doctor.video import VideoNeeds, check_video
from metadj_bridge.errors import ConfigError, printable, redact_text
from metadj_bridge.scope.http_errors import exception_reason

if TYPE_CHECKING:
    import argparse

    from metadj_bridge.run.plan import RunPlan
    from metadj_bridge.run.screens import ScreenPlan

log = logging.getLogger(__name__)


@dataclass
class DoctorOptions:
    scope_url: str | None = None
    profile: str | None = None
    #: How long the short session listens for video, from its first frame.
    listen: float = 3.0
    #: How long the first frame may take (a GPU pipeline warms up on its first chunk).
    first_frame_timeout: float = 15.0
    #: How long a load already under way is watched before it counts as stuck.
    watch: float = 5.0
    #: How long the doctor's own load of the show's pipeline may take.
    load_timeout: float = 180.0
    connect_timeout: float = 15.0
    #: Each wait for the network on a Scope HTTP call (connect, each read).
    http_timeout: float = 5.0
    #: The longest one Scope HTTP call may take, all of it (a server that trickles its answer fails the check).
    http_deadline: float = 15.0
    ice_timeout: float = 2.0
    #: Open a session and count frames (loads the show's pipeline on Scope, as ``run`` would).
    video: bool = True
    #: The ``METADJ_*`` settings ``run`` would see (None: this process's environment).
    environ: Mapping[str, str] | None = None
    #: --video-source: the video-mode show's webcam or ``file:...``, as ``run --video-source`` takes it.
    video_source: str | None = None
    #: --pipeline: the pipeline ``run --pipeline`` would play instead of the profile's.
    pipeline: str | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing blocks a show (warnings are allowed)."""
        return not any(f.status is Status.PROBLEM for f in self.findings)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status is status)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [redact_finding(f).as_dict() for f in self.findings]}


def redact_finding(finding: Finding) -> Finding:
    """The finding without URL credentials or tokens anywhere in it."""
    return dataclasses.replace(finding, summary=redact_text(finding.summary), action=redact_text(finding.action),
                               details=_redact(finding.details))


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------ local checks


def check_profile(path: str | None, settings: Mapping[str, Any] | None = None) -> tuple[list[Finding], RunPlan | None]:
    """Load the profile (the bundled default without one) and settle its plan as ``run`` would, with ``settings``
    (``RunOptions`` fields, e.g. from ``METADJ_*`` variables) over it; returns (findings, plan or None)."""
    from metadj_bridge.bundled import bundled_profile, resolve_profile
    from metadj_bridge.profile import ProfileError, load_profile
    from metadj_bridge.run.plan import RunOptions, make_plan

    try:
        target = resolve_profile(path) if path is not None else str(bundled_profile("default"))
        profile = load_profile(target)
    except ProfileError as exc:
        return [Finding("profile", Status.PROBLEM, str(exc),
                        "fix the place named (file:line:column); `metadj-bridge check FILE` checks it again without "
                        "connecting; docs/profiles.md documents every key", {"file": exc.file, "line": exc.line})], None
    except ConfigError as exc:
        return [Finding("profile", Status.PROBLEM, str(exc), "give a profile with --profile FILE")], None
    # The Scope URL is the Scope checks' business: a bad one there must not hide the rest of the profile.
    unreachable = dataclasses.replace(profile, scope=dataclasses.replace(profile.scope, url=None))
    try:
        plan = make_plan(RunOptions(**{**(settings or {}), "profile": target}), unreachable)
    except ConfigError as exc:
        return [Finding("profile", Status.PROBLEM, f"{target}: {exc}", "fix the profile's setting named")], None
    plan = dataclasses.replace(plan, profile=profile)
    which = target if path is not None else f"{target} (the bundled default; give yours with --profile)"
    return [Finding("profile", Status.OK, f"{which}: {len(profile.themes)} themes, {len(profile.mappings)} mappings",
                    "", {"file": target})], plan


def check_audio(plan: RunPlan) -> Finding:
    if plan.audio == "none":
        return Finding("audio", Status.SKIPPED, "the profile listens to no audio")
    if plan.audio == "demo":
        return Finding("audio", Status.OK, "audio: the bundled demo track")
    if plan.audio == "file":
        if plan.audio_path and Path(plan.audio_path).is_file():
            return Finding("audio", Status.OK, f"audio file {plan.audio_path}")
        return Finding("audio", Status.PROBLEM, f"audio file {plan.audio_path!r} does not exist",
                       "fix inputs.audio in the profile (paths are relative to the profile file)")
    from metadj_bridge.inputs.audio_devices import find_input_device, list_input_devices

    try:
        devices = list_input_devices()
        device = find_input_device(plan.audio_device, devices)
    except ConfigError as exc:
        return Finding("audio", Status.PROBLEM, str(exc),
                       "plug the audio interface in, or name one of the listed inputs in inputs.audio.device "
                       "(`metadj-bridge devices` lists them; `metadj-bridge listen --device NAME` tries one)",
                       {"wanted": plan.audio_device})
    return Finding("audio", Status.OK, f"audio input {device}", "", {"device": device.name})


def check_midi(plan: RunPlan, backend: str | None = None) -> list[Finding]:
    """The profile's MIDI inputs and feedback output against the ports there are (mido's backend, MIDO_BACKEND)."""
    if not plan.midi and not plan.midi_feedback:
        extra = f" (a virtual port {plan.midi_virtual!r} is created)" if plan.midi_virtual else ""
        return [Finding("midi", Status.SKIPPED, f"the profile names no MIDI controller{extra}")]
    from metadj_bridge.inputs.midi_ports import list_midi_ports, port_matcher

    try:
        inputs, outputs = list_midi_ports(backend)
    except ConfigError as exc:
        return [Finding("midi", Status.PROBLEM, str(exc),
                        "install python-rtmidi, or pick a MIDI backend that runs here")]
    findings = []
    for kind, patterns, names in (("input", plan.midi, inputs),
                                  ("output", (plan.midi_feedback,) if plan.midi_feedback else (), outputs)):
        for pattern in patterns:
            try:
                matches = [n for n in names if port_matcher(pattern)(n)]
            except ConfigError as exc:
                findings.append(Finding("midi", Status.PROBLEM, str(exc), "fix the pattern in inputs.midi"))
                continue
            if matches:
                findings.append(Finding("midi", Status.OK, f"MIDI {kind} {pattern!r}: {', '.join(matches)}"))
            else:
                listed = ", ".join(repr(n) for n in names) or "none"
                findings.append(Finding("midi", Status.WARNING,
                                        f"MIDI {kind} {pattern!r} not found; {kind}s here: {listed}",
                                        "plug the controller in (the bridge picks it up when it appears) or correct "
                                        "inputs.midi in the profile", {"wanted": pattern, "available": names}))
    return findings


def check_vcam(plan: RunPlan) -> Finding:
    if "vcam" not in plan.video_outputs:
        return Finding("vcam", Status.SKIPPED, "the profile sends no video to the virtual camera")
    from metadj_bridge.errors import VideoOutputError
    from metadj_bridge.video.vcam import VirtualCameraSink, backend_hint

    try:
        sink = VirtualCameraSink(device=plan.video_device, backend=plan.video_backend)
        sink.open(320, 180, 30.0)
    except (VideoOutputError, ValueError) as exc:
        if plan.video_backend or plan.video_device:  # a camera asked for by name: the preview is not what was meant
            return Finding("vcam", Status.PROBLEM, f"the virtual camera asked for "
                           f"({printable(plan.video_backend or plan.video_device or '')}) cannot be opened", str(exc))
        return Finding("vcam", Status.WARNING,
                       "no virtual camera: the show's video goes to the browser preview instead",
                       f"{exc}" if backend_hint() in str(exc) else f"{exc}; {backend_hint()}")
    try:
        device = printable(str(getattr(sink.camera, "device", "") or plan.video_device or ""))
    finally:
        sink.close()
    return Finding("vcam", Status.OK, f"virtual camera {device} opens", "", {"device": device})


# ------------------------------------------------------------------------------------------------ the run


def show_needs(plan: RunPlan | None) -> tuple[str, dict[str, Any], tuple[str, ...], dict[str, Any], Prompts]:
    """(pipeline id, load params, reference images, the profile's Scope parameters, prompts) as ``run`` uses them."""
    if plan is None:
        return "longlive", {"width": 1024, "height": 576, "vace_enabled": False}, (), {}, "a test pattern"
    refs = tuple(plan.ref_images) if plan.input_mode == "video" else ()
    params = {"width": plan.width, "height": plan.height, "vace_enabled": bool(refs)}
    themes = plan.profile.themes
    prompts: Prompts = (
        [{"text": p.text, "weight": p.weight} for p in themes[0].prompts] if themes else "a test pattern"
    )
    return plan.pipeline, params, refs, dict(plan.profile.scope.parameters), prompts


def video_needs(plan: RunPlan | None) -> VideoNeeds:
    """The session ``run`` would open: the show's pipeline, input mode and (video mode) source and size."""
    pipeline_id, load_params, refs, _, prompts = show_needs(plan)
    if plan is None:
        return VideoNeeds(pipeline_id, load_params, prompts)
    return VideoNeeds(pipeline_id, load_params, prompts, input_mode=plan.input_mode, video_source=plan.video_source,
                      ref_images=refs, size=(plan.width, plan.height))


async def run_doctor(options: DoctorOptions) -> Report:
    report = Report()
    from metadj_bridge.run.plan import from_environment

    try:
        settings = from_environment(os.environ if options.environ is None else options.environ)
    except ConfigError as exc:
        report.findings.append(Finding("environment", Status.PROBLEM, str(exc), "correct the variable or unset it"))
        settings = {}
    # As `run` settles them: a flag, else a METADJ_* variable, else the profile.
    profile_path = options.profile or settings.pop("profile", None)
    settings.pop("profile", None)
    if options.video_source is not None:
        settings["video_source"] = options.video_source
    if options.pipeline is not None:
        settings["pipeline"] = options.pipeline
    env_url = settings.pop("scope_url", None)
    rehearse = settings.pop("rehearse", False)
    found, plan = await asyncio.to_thread(check_profile, profile_path, settings)
    report.findings.extend(found)
    if plan is not None:
        report.findings.extend(await asyncio.to_thread(_sync_local_checks, plan))
    url = options.scope_url or env_url or (plan.profile.scope.url if plan is not None else None)
    if rehearse and not options.scope_url:
        url = None
    if url is None:
        report.findings.append(Finding(
            "scope", Status.SKIPPED, "no Scope URL (--scope, METADJ_SCOPE or scope.url in the profile): run and "
            "rehearsal use the built-in emulator, so there is no Scope server to check",
            "give --scope URL to check a real Scope"))
    else:
        try:
            await _scope_checks(options, url, plan, report)
        except Exception as exc:  # whatever a server answered, the doctor ends with its report
            log.debug("the Scope checks stopped", exc_info=True)
            report.findings.append(Finding(
                "scope", Status.PROBLEM, f"the Scope checks stopped: {exception_reason(exc)}",
                "run doctor with -v to see more, and check Scope's log"))
    if plan is not None and not rehearse:
        for screen in plan.screens:
            report.findings.extend(await _screen_checks(options, screen))
    return report


async def _screen_checks(options: DoctorOptions, screen: ScreenPlan) -> list[Finding]:
    """A further screen's server: reachable, a Scope, and offering the screen's pipeline in text mode."""
    from metadj_bridge.scope.api import ScopeClient

    name = f"screen {screen.name}"
    if screen.scope_url is None:
        return [Finding(name, Status.SKIPPED, f"{name} has no scope.url: run gives it a built-in emulator")]
    problem, url = check_url(screen.scope_url)
    if url is None:
        return [dataclasses.replace(problem, check=name)] if problem is not None else []
    try:
        async with ScopeClient(url, timeout=options.http_timeout, deadline=options.http_deadline) as client:
            health_finding, health = await check_health(client)
            found = [health_finding]
            if health is not None:
                found.append(await check_offer(client, screen.pipeline, "text"))
    except Exception as exc:  # noqa: BLE001 - one screen's server never ends the report
        found = [Finding(name, Status.PROBLEM, f"the checks stopped: {exception_reason(exc)}")]
    return [dataclasses.replace(f, check=name, summary=f"{name}: {f.summary}") for f in found]


def _sync_local_checks(plan: RunPlan) -> list[Finding]:
    """This machine's checks; one that breaks unexpectedly becomes its own finding instead of ending the doctor."""
    findings: list[Finding] = []
    from metadj_bridge.doctor.needs import check_extras, check_ports

    for name, check in (("audio", check_audio), ("midi", check_midi), ("vcam", check_vcam), ("extras", check_extras),
                        ("ports", check_ports)):
        try:
            result = check(plan)
        except Exception as exc:  # a device library can fail in any way: report it, check the rest
            log.debug("the %s check failed", name, exc_info=True)
            result = Finding(name, Status.WARNING, f"the {name} check could not run: {type(exc).__name__}: {exc}",
                             "run `metadj-bridge devices` (and doctor with -v) to see more")
        findings.extend(result if isinstance(result, list) else [result])
    return findings


async def _scope_checks(options: DoctorOptions, url: str, plan: RunPlan | None, report: Report) -> None:
    from metadj_bridge.scope.api import ScopeClient

    problem, url_to_check = check_url(url)
    if problem is not None:
        report.findings.append(problem)
    if url_to_check is None:
        report.findings.append(Finding("scope", Status.SKIPPED, "Scope checks skipped: the URL cannot be used"))
        return
    pipeline_id, load_params, refs, show_params, _ = show_needs(plan)
    async with ScopeClient(url_to_check, timeout=options.http_timeout, deadline=options.http_deadline) as client:
        health_finding, health = await check_health(client)
        report.findings.append(health_finding)
        if health is None:
            report.findings.append(Finding("pipeline", Status.SKIPPED, "pipeline, VACE, ICE and video checks skipped: "
                                           "Scope is not reachable"))
            return
        needs = video_needs(plan)
        offer_finding = await check_offer(client, pipeline_id, needs.input_mode)
        report.findings.append(offer_finding)
        if offer_finding.status is Status.PROBLEM:
            status = None
            pipeline_finding = Finding("pipeline", Status.SKIPPED, "pipeline check skipped: run refuses this "
                                       "pipeline before loading it (see the offer finding)")
        else:
            pipeline_finding, status = await check_pipeline(client, pipeline_id, load_params, watch=options.watch)
        report.findings.append(pipeline_finding)
        loaded = status.pipeline_id if status is not None and status.status == "loaded" else None
        report.findings.append(check_vace(loaded, status.load_params if status else None, refs, show_params))
        uptime = time.time() - health.server_start_time
        report.findings.extend(await check_ice(client, wait_s=options.ice_timeout, uptime=uptime))
        if not options.video:
            report.findings.append(Finding("video", Status.SKIPPED, "video check skipped (--no-video)"))
        elif offer_finding.status is Status.PROBLEM:
            report.findings.append(Finding("video", Status.SKIPPED, "video check skipped: Scope does not offer what "
                                           "the show needs (see the offer finding)"))
        elif pipeline_finding.status is Status.PROBLEM:
            report.findings.append(Finding("video", Status.SKIPPED, "video check skipped: the pipeline cannot be used "
                                           "(see the pipeline finding)"))
        else:
            report.findings.extend(await check_video(
                client, needs, listen=options.listen, first_frame_timeout=options.first_frame_timeout,
                load_timeout=options.load_timeout, connect_timeout=options.connect_timeout))


# ------------------------------------------------------------------------------------------------ output

_LABELS = {Status.OK: "ok", Status.WARNING: "WARNING", Status.PROBLEM: "PROBLEM", Status.SKIPPED: "skipped"}


def format_report(report: Report) -> str:
    """One line per finding, its action indented below, and a verdict."""
    width = max((len(f.check) for f in report.findings), default=5)
    lines = []
    for finding in map(redact_finding, report.findings):
        # A finding quotes what servers said (a host name from Scope's ICE list, an error text): one line each.
        lines.append(f"{_LABELS[finding.status]:<8} {finding.check:<{width}}  {printable(finding.summary)}")
        if finding.action:
            lines.append(f"{'':<8} {'':<{width}}  -> {printable(finding.action)}")
    problems, warnings = report.count(Status.PROBLEM), report.count(Status.WARNING)
    if problems:
        verdict = f"{problems} problem(s) block the show, {warnings} warning(s): fix the problems first"
    elif warnings:
        verdict = f"ready for the show, with {warnings} warning(s)"
    else:
        verdict = "ready for the show"
    lines.append(verdict)
    return "\n".join(lines) + "\n"


async def doctor_main(options: DoctorOptions, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """``metadj-bridge doctor``: prints the report; 0 when nothing blocks a show, else 1."""
    out = out or sys.stdout
    report = await run_doctor(options)
    if as_json:
        out.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        out.write(format_report(report))
    out.flush()
    return 0 if report.ok else 1


def options_from_args(args: argparse.Namespace) -> DoctorOptions:
    return DoctorOptions(scope_url=args.scope, profile=args.profile, listen=args.listen, video=not args.no_video,
                         load_timeout=args.load_timeout, video_source=getattr(args, "video_source", None),
                         pipeline=getattr(args, "pipeline", None))
