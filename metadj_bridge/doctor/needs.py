"""What a profile needs from this machine beyond its devices: the optional packages and the ports it listens on.

``run`` stops at once when a profile asks for Ableton Link without aalink, or for OSC on a port another program
holds; ``doctor`` says so before the show instead. A taken web port (the control page and the picture) is only a
warning: the web server moves to
the next free port (and says where), so the picture is never lost to it.
"""

from __future__ import annotations

import errno
import socket

from metadj_bridge.doctor.checks import Finding, Status
from metadj_bridge.errors import ConfigError
from metadj_bridge.run.plan import RunPlan


def check_extras(plan: RunPlan) -> list[Finding]:
    """Each optional package the profile needs: Ableton Link (aalink), and MIDI (python-rtmidi)."""
    findings: list[Finding] = []
    if plan.link:
        from metadj_bridge.inputs.tempo_link import INSTALL_HINT, load_aalink

        try:
            load_aalink()
            findings.append(Finding("extras", Status.OK, "Ableton Link: aalink is installed"))
        except ConfigError as exc:
            findings.append(Finding("extras", Status.PROBLEM, str(exc), f"install it: {INSTALL_HINT}; or turn Link "
                                    "off (inputs.tempo.link: false, no --link)"))
    findings.extend(check_named_outputs(plan))
    return findings


def check_named_outputs(plan: RunPlan) -> list[Finding]:
    """Each ``ndi:``, ``syphon:`` and ``spout:`` output of every screen: can it open on this computer? One that
    cannot is a WARNING (the run goes on with the other outputs and says why once)."""
    wanted = [(output, "") for output in plan.video_outputs]
    wanted += [(output, f" (screen {screen.name})") for screen in plan.screens for output in screen.outputs]
    findings: list[Finding] = []
    for output, where in wanted:
        kind, _, name = output.partition(":")
        if kind not in ("ndi", "syphon", "spout"):
            continue
        if kind == "ndi":
            from metadj_bridge.video.ndi import unavailable_reason

            reason = unavailable_reason()
        else:
            from metadj_bridge.video import texture_sharing

            reason = texture_sharing.unavailable_reason(kind)
        if reason is None:
            findings.append(Finding("outputs", Status.OK, f"{output}{where}: {kind} can open here"))
        else:
            findings.append(Finding("outputs", Status.WARNING, f"{output}{where} cannot open here: {reason}",
                                    "install the extra it names, or take it out of the outputs on this computer"))
    return findings


def _in_use(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))


def _free(kind: socket.SocketKind, host: str, port: int) -> OSError | None:
    """None when ``port`` can be bound on ``host`` now, else the error. The socket is closed at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check_ports(plan: RunPlan) -> list[Finding]:
    """The OSC port (a PROBLEM when taken: DJ software sends to that number) and the web port (a WARNING)."""
    findings: list[Finding] = []
    if plan.osc_port:
        error = _free(socket.SOCK_DGRAM, plan.osc_host, plan.osc_port)
        where = f"{plan.osc_host}:{plan.osc_port}"
        if error is None:
            findings.append(Finding("ports", Status.OK, f"OSC port {where} (UDP) is free"))
        elif _in_use(error):
            findings.append(Finding("ports", Status.PROBLEM, f"OSC port {where} (UDP) is taken by another program",
                                    "close the program that holds it (another bridge, a second OSC tool), or move "
                                    "both ends to another port (inputs.osc.port and the DJ software's OSC out)"))
        else:
            findings.append(Finding("ports", Status.PROBLEM, f"cannot listen for OSC on {where}: {error.strerror}",
                                    "set inputs.osc.host to an address of this machine (127.0.0.1, 0.0.0.0)"))
    if plan.http_port:  # the one web server always runs: the page, the picture, /status
        error = _free(socket.SOCK_STREAM, plan.http_host, plan.http_port)
        if error is not None and _in_use(error):
            findings.append(Finding("ports", Status.WARNING, f"web port {plan.http_port} (the control page and the "
                                    "picture) is taken; the web server will move to the next free port and the log "
                                    "will say which",
                                    "set video.preview_port (or --http-port) to a free port to keep one address"))
    return findings
