"""The ``metadj-bridge`` command line.

Errors a performer can act on print ``error: <message>``; the traceback appears only with ``-v``. The exit
code tells a supervisor what happened (:data:`metadj_bridge.errors.EXIT_CODES`): 0 done, 1 a runtime failure,
2 a wrong command line, 78 a configuration that cannot work (starting again will not help), 70 a bug.
Subcommands import their heavy parts lazily, so ``--help`` is instant and never fails because an optional library
is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from metadj_bridge import __version__
from metadj_bridge.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_SOFTWARE,
    ConfigError,
    MetaDJError,
    ScopeError,
    redact_text,
)
from metadj_bridge.parameters import ASPECT_PRESETS, DENOISING_PRESETS
from metadj_bridge.profile.options import number, port, prompt, seconds, text
from metadj_bridge.run import eventloop

log = logging.getLogger("metadj_bridge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metadj-bridge",
        description="Plays the visuals of a DJ set through Daydream Scope: music, DJ software and controllers "
        "in, Scope parameters out, Scope's video to a virtual webcam.",
    )
    parser.add_argument("--version", action="version", version=f"metadj-bridge {__version__}")
    _add_verbosity(parser, default=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="stream to Scope (or to the built-in emulator when no --scope is given)",
        description="Connect to a Scope server, load the pipeline, stream parameters and receive its video. "
        "Without --scope the built-in Scope emulator is started in this process.",
    )
    run.add_argument("--profile", metavar="FILE",
                     help="the show profile (a YAML file, or a bundled profile's name); default: the bundled default")
    run.add_argument("--rehearse", action="store_true", default=None,
                     help="rehearse the profile without a GPU: the built-in emulator at a GPU's pace, the demo track, "
                     "the browser preview")
    run.add_argument("--scope", metavar="URL", help="Scope server root, e.g. http://127.0.0.1:8000 or https://<pod>-8000.proxy.runpod.net")
    run.add_argument("--pipeline", metavar="ID", help="pipeline to load (default: the profile's, longlive)")
    run.add_argument("--aspect", choices=sorted(ASPECT_PRESETS),
                     help="resolution preset: 16:9 = 1024x576, 9:16 = 480x832 (default: the profile's)")
    run.add_argument("--denoise", choices=sorted(DENOISING_PRESETS),
                     help="denoising steps preset (default: the profile's, quality)")
    run.add_argument("--prompt", action="append", type=prompt, metavar="TEXT",
                     help="prompt; replaces the profile's themes (give several to cycle through them)")
    run.add_argument("--cycle", type=int, metavar="BARS",
                     help="bars per theme when themes cycle by themselves (default: the profile's)")
    run.add_argument("--no-watch", action="store_true", help="do not reload the profile when its file is saved")
    run.add_argument("--http-port", type=port, metavar="PORT", help="the web server's port (docs/web.md; 8765)")
    run.add_argument("--http-host", metavar="HOST", help="e.g. 0.0.0.0: open it to the LAN, with an access token")
    run.add_argument("--http-token", metavar="TOKEN", help="the access token for --http-host (default: random)")
    run.add_argument("--status-port", type=port, metavar="PORT", help="deprecated alias of --http-port")
    run.add_argument("--show-log", metavar="FILE|none",
                     help="the show log (every parameter message, JSONL; for export-timeline and replay); default: a "
                     "new file in the state folder")
    run.add_argument("--duration", type=number, metavar="SECONDS", help="run this long, then exit cleanly")
    run.add_argument("--no-frame-timeout", type=number, default=5.0, metavar="SECONDS",
                     help="rebuild the session when no frame arrives for this long (default: 5)")
    run.add_argument("--min-send-interval", type=number, metavar="SECONDS",
                     help="never send parameters faster than this (default: the profile's, 1/30 s)")
    run.add_argument("--max-send-interval", type=number, metavar="SECONDS",
                     help="never hold a change longer than this (default: the profile's, 2 s)")
    audio = run.add_mutually_exclusive_group()
    audio.add_argument("--audio-file", metavar="FILE",
                       help="listen to this audio file (looped) instead of the demo track: WAV, FLAC, MP3, Ogg, AIFF")
    audio.add_argument("--audio-device", metavar="NAME|INDEX",
                       help="listen to this audio input (see `metadj-bridge devices`)")
    audio.add_argument("--no-audio", action="store_true", help="do not listen to any audio")
    run.add_argument("--midi", action="append", default=[], metavar="PATTERN",
                     help="MIDI inputs (name part or re:REGEX) for clock and controls (default: the profile's)")
    run.add_argument("--midi-virtual", metavar="NAME", help="open a virtual MIDI input that DAWs can send to")
    run.add_argument("--osc-port", type=port, metavar="PORT",
                     help="listen for OSC from Resolume/Ableton on this UDP port")
    run.add_argument("--osc-host", help="OSC listen address (default: the profile's, 127.0.0.1)")
    run.add_argument("--link", action="store_true",
                     help="join Ableton Link as a follower (pip install \"metadj-bridge[link]\")")
    run.add_argument("--osc-out", metavar="HOST:PORT", help="send BPM and beats to a TouchOSC layout or another app")
    run.add_argument("--output", metavar="LIST",
                     help="video outputs: vcam, preview, record:FILE.mp4, ndi:NAME, syphon:NAME (macOS), spout:NAME "
                     "(Windows) (comma-separated), or none (default: the "
                     "profile's, vcam)")
    run.add_argument("--preview-port", type=port, metavar="PORT", help="deprecated alias of --http-port")
    run.add_argument("--video-source", metavar="CAMERA|FILE",
                     help="avatar mode (a profile in video input mode): the webcam to send, or a video file (default: "
                     "the profile's, else the first camera)")
    run.add_argument("--emulator-fps", type=number, default=None, metavar="FPS",
                     help="frame rate of the built-in emulator (default: the imitated pipeline's own pace, "
                     "20 fps for the text-to-video pipelines)")
    run.add_argument("--emulator-delay-ms", type=number, default=None, metavar="MS",
                     help="the built-in emulator imitates a far server: what it receives arrives MS ms late "
                     "(rehearses the automatic quantize lookahead; default: 0)")

    listen = sub.add_parser(
        "listen",
        help="sound check: live meters, beats and BPM from a file, an input device or the demo track",
        description="Analyse audio like `run` does and show what the bridge hears. With --file the file is "
        "analysed faster than real time and the command ends with it.",
    )
    source = listen.add_mutually_exclusive_group()
    source.add_argument("--file", metavar="FILE", help="an audio file: WAV, FLAC, MP3, Ogg, AIFF")
    source.add_argument("--device", metavar="NAME|INDEX",
                        help="an audio input (see `metadj-bridge devices`); default: the system's default input")
    source.add_argument("--demo", action="store_true", help="play the bundled demo track in real time")
    listen.add_argument("--json", action="store_true",
                        help='one JSON object per beat or onset: {"t", "event", "bpm", "confidence"}')
    listen.add_argument("--realtime", action="store_true", default=None, help="play --file at its real speed")
    listen.add_argument("--loop", action="store_true", help="loop the file or demo track")
    listen.add_argument("--duration", type=seconds, metavar="SECONDS", help="stop after this long")
    listen.add_argument("--auto-gain", action="store_true", help="normalise meters to the room level")
    listen.add_argument("--min-bpm", type=number, default=60.0, help="tempo range, low end (default 60)")
    listen.add_argument("--max-bpm", type=number, default=190.0, help="tempo range, high end (default 190)")
    listen.add_argument("--beats-per-bar", type=int, default=4, help="beats per bar (default 4)")

    sub.add_parser(
        "devices",
        help="list audio inputs and MIDI ports",
        description="List the audio inputs PortAudio can capture from and the MIDI input and output ports.",
    )

    check = sub.add_parser(
        "check",
        help="check show profiles for mistakes without connecting to anything",
        description="Load each show profile (and the files it extends) and report every mistake as "
        "file:line:column: values the running bridge would fail on, files the show opens at the start, and the "
        "profiles its switches lead to (each must load too). Exits 0 only when all profiles are good. "
        "A mapping on a key the profile's pipeline ignores in its input mode (noise_scale in text mode) is a "
        "warning, from the bridge's catalogue of Scope, or from the server's own schemas with --scope.",
    )
    check.add_argument("profiles", nargs="+", metavar="PROFILE", help="a YAML show profile")
    check.add_argument("--strict", action="store_true",
                       help="a mapping on a key the pipeline ignores is an error, not a warning")
    check.add_argument("--scope", metavar="URL",
                       help="ask this Scope server whether it offers the profile's pipeline in its input mode and "
                       "which keys its pipelines read (default: the bridge's catalogue; nothing else is sent to it)")

    def control_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--midi", action="append", default=[], metavar="PATTERN",
                       help="MIDI inputs whose name contains PATTERN (or re:REGEX); default: every input")
        p.add_argument("--virtual", metavar="NAME", help="also open a virtual MIDI input that DAWs can send to")
        p.add_argument("--no-midi", action="store_true", help="do not listen to MIDI")
        p.add_argument("--osc-host", default="127.0.0.1",
                       help="OSC listen address (default 127.0.0.1; 0.0.0.0 for the network)")
        p.add_argument("--osc-port", type=port, default=7001, help="OSC listen port (default 7001)")
        p.add_argument("--no-osc", action="store_true", help="do not listen to OSC")
        p.add_argument("--duration", type=seconds, metavar="SECONDS", help="stop after this long")

    monitor = sub.add_parser(
        "monitor",
        help="print every incoming MIDI and OSC signal under its mapping name",
        description="Print what controllers and DJ software send, named as a profile names it.",
    )
    control_args(monitor)
    learn = sub.add_parser(
        "learn",
        help="move a control and get the YAML snippet for it",
        description="Wait for one control to move (a knob end to end, or a pad) and print its YAML snippet "
        "(a mapping: source, range, target), or insert it into a profile under mappings:.",
    )
    control_args(learn)
    learn.add_argument("--name", default="control", help="the slot name in the snippet (default: control)")
    learn.add_argument("--write", metavar="PROFILE",
                       help="insert the snippet into this profile under mappings: (comments are kept)")
    learn.add_argument("--target", metavar="TARGET",
                       help="what the control drives, e.g. prompt.mix or action.pulse_noise (default: noise_scale for "
                       "a knob, theme.next for a pad)")

    profiles = sub.add_parser(
        "profiles",
        help="list the bundled show profiles, or copy one to edit",
        description="The show profiles that ship with metadj-bridge. Any of them can be played by name "
        "(run --profile midimix-show); --copy makes a copy of your own to edit.",
    )
    profiles.add_argument("--copy", nargs=2, metavar=("NAME", "DEST"), help="copy bundled profile NAME to DEST")

    service = sub.add_parser(
        "service",
        help="print a service file (systemd or launchd) for this install",
        description="Print the systemd user unit (Linux) or the launchd agent (macOS) with this install's "
        "metadj-bridge filled in; save it, set your profile, and enable it (the README says how).",
    )
    service.add_argument("kind", choices=["systemd", "launchd"], help="which service manager")

    switch = sub.add_parser(
        "switch",
        help="make a running bridge switch to another show profile",
        description="Ask the running bridge (POST /api/profile of its web server) to switch to PROFILE.",
    )
    switch.add_argument("profile", metavar="PROFILE", help="the profile file to switch to")
    switch.add_argument("--to", default="127.0.0.1:8765", metavar="HOST:PORT", help="the bridge's web server")
    switch.add_argument("--token", metavar="TOKEN", help="the bridge's access token (a LAN bind, run --http-host)")

    emulate = sub.add_parser(
        "emulate",
        help="serve a Scope-compatible emulator for rehearsal and tests (no GPU needed)",
        description="Serve Scope 0.2.4's HTTP + WebRTC API with frames that visibly follow the parameters.",
    )
    from metadj_bridge.emulator.cli import add_arguments

    add_arguments(emulate)

    export = sub.add_parser(
        "export-timeline",
        help="turn a show log into a Scope workflow file with its prompt timeline (re-render the set in Scope)",
        description="Write the prompts of a show log as timeline entries, with the show's pipeline and settings, in "
        "the workflow format Scope 0.2.4 imports (format scope-workflow; Scope's Import button).",
    )
    export.add_argument("show_log", metavar="SHOW.jsonl", help="a show log written by `run`")
    export.add_argument("-o", "--output", metavar="FILE",
                        help="the workflow to write (default: SHOW.scope-workflow.json)")
    export.add_argument("--name", help="the workflow's name in Scope (default: the show log's file name)")

    replay = sub.add_parser(
        "replay",
        help="drive Scope from a show log with the original timing",
        description="Load the log's pipeline, open a session in the show's input mode and send every logged parameter "
        "message at its time, paced like a live show. Without --scope the built-in Scope emulator is started in this "
        "process. Exits 1 when the log cannot play (a video-mode show without --video-source, a pipeline or mode the "
        "server does not offer) or no frame comes back.",
    )
    replay.add_argument("show_log", metavar="SHOW.jsonl", help="a show log written by `run`")
    replay.add_argument("--scope", metavar="URL", help="Scope server root (default: the built-in emulator)")
    replay.add_argument("--speed", type=number, default=1.0, metavar="FACTOR",
                        help="play faster (2) or slower (0.5) than the show (default: 1)")
    replay.add_argument("--emulator-fps", type=number, default=None, metavar="FPS",
                        help="frame rate of the built-in emulator (default: the imitated pipeline's own pace)")
    replay.add_argument("--video-source", metavar="SOURCE",
                        help="a video-mode show's input video, as for run: a webcam (/dev/video0, 0) or file:clip.mp4 "
                        "(a show log does not hold the video; a video-mode show cannot replay without it)")
    replay.add_argument("--output", default="vcam", metavar="LIST",
                        help="video outputs as for run: vcam, preview, record:FILE.mp4 (comma-separated), or none "
                        "(default: vcam, the browser preview where there is no virtual camera)")
    replay.add_argument("--preview-port", type=port, default=8765, metavar="PORT",
                        help="port of the browser preview on 127.0.0.1 (the next free one if taken; default 8765)")

    doctor = sub.add_parser(
        "doctor",
        help="check Scope, the profile and this machine before a show, and say what to do",
        description="Check the profile, the audio input, MIDI controllers, the virtual camera and the Scope server "
        "(health, the pipelines it offers, the pipeline, VACE, ICE/TURN, a short session's video in the show's own "
        "input mode). Exit status 0 only when nothing blocks a show.",
    )
    doctor.add_argument("--scope", metavar="URL", help="Scope server root (default: the profile's scope.url)")
    doctor.add_argument("--profile", metavar="FILE", help="the show profile (default: the bundled default)")
    doctor.add_argument("--pipeline", metavar="ID", help="the pipeline, as for run (default: the profile's)")
    doctor.add_argument("--json", action="store_true", help="the findings as JSON")
    doctor.add_argument("--listen", type=seconds, default=3.0, metavar="SECONDS",
                        help="how long to watch the video (default: 3)")
    doctor.add_argument("--load-timeout", type=seconds, default=180.0, metavar="SECONDS",
                        help="how long loading the show's pipeline may take (default: 180)")
    doctor.add_argument("--no-video", action="store_true",
                        help="do not open a session (leaves Scope's pipeline as it is)")
    doctor.add_argument("--video-source", metavar="SOURCE",
                        help="a video-mode show's input, as for run: a webcam (/dev/video0, 0) or file:clip.mp4 "
                        "(default: the profile's video.source, else the first camera)")
    for command in sub.choices.values():  # -v / -q after the command too (`run -v`), as well as before it
        _add_verbosity(command, default=argparse.SUPPRESS)
        command.register("type", None, text)  # every option given as text refuses an empty value
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="debug logs and tracebacks (-vv adds WebRTC internals)")
    parser.add_argument("-q", "--quiet", action="count", default=default, help="warnings and errors only")


def setup_logging(verbosity: int) -> None:
    """Logging for a verbosity: below 0 (-q) warnings and errors, 0 the show's INFO lines, 1 (-v) debug."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    from metadj_bridge.errors import LibraryLogLimiter, RedactingFilter

    logging.basicConfig(
        level=level,
        format=("%(asctime)s %(levelname)-7s %(name)s: %(message)s" if verbosity > 0
                else "%(asctime)s %(levelname)s %(message)s"),
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    limiter = LibraryLogLimiter()  # aiortc logs a line per frame it cannot decode: a hostile server's flood
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # a RunPod URL with a token or user:password never reaches a log
        handler.addFilter(limiter)
    # WebRTC and HTTP internals are noisy (httpx logs every request at INFO); show them only with -vv.
    for name in ("aiortc", "aioice", "av", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)


def _server_schemas(url: str | None) -> dict[str, Any] | None:
    """``check --scope``: the server's pipeline schemas by id; None, said in a note, when it gives none."""
    if url is None:
        return None
    from metadj_bridge.scope.api import ScopeClient
    from metadj_bridge.scope.offer import read_offer
    from metadj_bridge.scope.urls import redact_url

    async def read() -> dict[str, Any] | None:
        async with ScopeClient(url, timeout=5.0, deadline=10.0) as client:
            offer = await read_offer(client)
        return None if offer is None else {pid: p.schema for pid, p in offer.pipelines.items()}

    try:
        schemas = eventloop.run(read())
    except ScopeError as exc:  # down, not Scope, a refusal: the check goes on without it (a bad URL is an error)
        print(f"note: {redact_text(str(exc))}; checking against the bridge's catalogue instead", file=sys.stderr)
        return None
    if schemas is None:
        print(f"note: {redact_url(url)} does not list its pipelines; checking against the bridge's catalogue instead",
              file=sys.stderr)
    return schemas


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    verbosity = args.verbose - args.quiet
    args.verbose = max(0, verbosity)
    setup_logging(verbosity)
    from metadj_bridge.inputs.native_messages import route_native_messages

    route_native_messages()  # ALSA's and JACK's C lines go to the log (-v), not across the live view
    try:
        if args.command == "run":
            from metadj_bridge.run.bridge import RunOptions, run_bridge

            if not args.verbose:
                from metadj_bridge.emulator.records import hide_chatter_from_terminal

                hide_chatter_from_terminal()

            return eventloop.run(run_bridge(RunOptions.from_args(args)))
        if args.command == "listen":
            from metadj_bridge.soundcheck.listen import ListenOptions, run_listen

            options = ListenOptions(
                file=args.file, device=args.device, demo=args.demo, json=args.json, realtime=args.realtime,
                loop=args.loop, duration=args.duration, auto_gain=args.auto_gain, min_bpm=args.min_bpm,
                max_bpm=args.max_bpm, beats_per_bar=args.beats_per_bar,
            )
            return eventloop.run(run_listen(options))
        if args.command in ("monitor", "learn"):
            from metadj_bridge.soundcheck.learn import run_learn
            from metadj_bridge.soundcheck.monitor import ControlOptions, run_monitor

            control = ControlOptions(
                midi=args.midi, virtual=args.virtual, no_midi=args.no_midi, osc_host=args.osc_host,
                osc_port=args.osc_port, no_osc=args.no_osc, duration=args.duration,
            )
            if args.command == "monitor":
                return eventloop.run(run_monitor(control))
            return eventloop.run(run_learn(control, slot=args.name, write=args.write, target=args.target))
        if args.command == "check":
            from metadj_bridge.bundled import resolve_profile
            from metadj_bridge.profile.check import run_check

            paths = [resolve_profile(path) for path in args.profiles]  # a bundled profile by name, too
            return run_check(paths, strict=args.strict, schemas=_server_schemas(args.scope))
        if args.command == "devices":
            from metadj_bridge.soundcheck.listen import run_devices

            return run_devices()
        if args.command == "switch":
            from metadj_bridge.run.show import send_switch
            return send_switch(args.profile, args.to, token=args.token)
        if args.command == "profiles":
            from metadj_bridge.bundled import print_profiles

            return print_profiles(args.copy)
        if args.command == "service":
            from metadj_bridge.bundled import service_file

            sys.stdout.write(service_file(args.kind))
            return 0
        if args.command == "emulate":
            from metadj_bridge.emulator.cli import run_from_args

            return eventloop.run(run_from_args(args))
        if args.command == "export-timeline":
            from metadj_bridge.showlog.export import export_workflow, workflow_path_for

            output = args.output or str(workflow_path_for(args.show_log))
            workflow = export_workflow(args.show_log, output, name=args.name)
            entries = (workflow["timeline"] or {}).get("entries", [])
            print(f"{output}: a Scope workflow for {workflow['pipelines'][0]['pipeline_id']} with {len(entries)} "
                  "timeline entries (import it with Scope's Import button)")
            return 0
        if args.command == "replay":
            from metadj_bridge.showlog.replay import ReplayOptions, run_replay

            if not args.verbose:
                from metadj_bridge.emulator.records import hide_chatter_from_terminal

                hide_chatter_from_terminal()
            from metadj_bridge.video.outputs import parse_outputs

            replay = ReplayOptions(args.show_log, scope_url=args.scope, speed=args.speed,
                                   emulator_fps=args.emulator_fps, video_source=args.video_source,
                                   outputs=parse_outputs(args.output), preview_port=args.preview_port)
            return eventloop.run(run_replay(replay))
        if args.command == "doctor":
            from metadj_bridge.doctor.report import doctor_main, options_from_args

            if not args.verbose:
                logging.getLogger("metadj_bridge.scope").setLevel(logging.WARNING)  # the report says it all
                logging.getLogger("metadj_bridge.video").setLevel(logging.WARNING)
            return eventloop.run(doctor_main(options_from_args(args), as_json=args.json))
        parser.error(f"unknown command {args.command!r}")
    except MetaDJError as exc:
        if args.verbose:
            log.exception("failed")
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `metadj-bridge profiles | head -1`, `monitor | grep -m1 cc`: the reader has enough
        from metadj_bridge.soundcheck.listen import quiet_broken_stdout

        quiet_broken_stdout(sys.stdout)
        return 0
    except Exception as exc:  # a bug, not a performer's mistake: short message, traceback with -v
        if args.verbose:
            log.exception("unexpected failure")
        print(f"error: unexpected {type(exc).__name__}: {redact_text(str(exc))} (run with -v for the traceback)",
              file=sys.stderr)
        return EXIT_SOFTWARE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
