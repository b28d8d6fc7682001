"""The command line as a performer uses it: help, version, and a short run on the built-in emulator."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from metadj_bridge import __version__
from metadj_bridge.cli import build_parser
from metadj_bridge.errors import EXIT_CONFIG
from metadj_bridge.profile.options import prompt, text


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metadj_bridge", *args], capture_output=True, text=True, timeout=timeout
    )


class LiveRun:
    """``metadj-bridge run`` in a subprocess whose log the test reads while it runs; ``stop()`` is the performer's
    Ctrl-C (the run must still exit 0), so a test ends it once it saw what it waits for instead of at a fixed
    duration."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "metadj_bridge", "run", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=cwd)
        stderr = self.proc.stderr
        assert stderr is not None
        self._stderr = stderr
        #: What the run logged so far, line by line.
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stderr.readline, "")), daemon=True)
        self._reader.start()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def stop(self) -> int:
        """Ctrl-C (unless it ended already); its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # a run that ignores Ctrl-C fails the test, and does not outlive it
            self.proc.wait()
            raise
        self._reader.join(10)
        self._stderr.close()
        return code


def test_help_lists_the_commands() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("run", "emulate"):
        assert command in proc.stdout
    run_help = cli("run", "--help")
    assert "--scope" in run_help.stdout and "--duration" in run_help.stdout and "--aspect" in run_help.stdout
    emulate_help = cli("emulate", "--help")
    assert "--chunk-frames" in emulate_help.stdout and "--legacy-api" in emulate_help.stdout


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"metadj-bridge {__version__}"


def test_bad_option_value_is_an_error_line() -> None:
    proc = cli("run", "--duration", "-3")
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr.strip().splitlines()[-1] == "error: --duration -3: must be more than 0 seconds"


def test_run_on_the_built_in_emulator_streams_and_exits_cleanly() -> None:
    proc = cli("run", "--duration", "6", "--aspect", "9:16", "--emulator-fps", "15")
    assert proc.returncode == 0, proc.stderr
    assert "started the built-in Scope emulator" in proc.stderr
    # Not a terminal: the status arrives as plain log lines, and a summary at the end.
    assert re.search(r"\[streaming\] Scope 0\.2\.4 \(emulator\) longlive \| fps in", proc.stderr), proc.stderr
    summary = re.search(r"stopped after [\d.]+ s: (\d+) frames received", proc.stderr)
    assert summary is not None, proc.stderr
    assert int(summary.group(1)) > 10
    assert "Traceback" not in proc.stderr


def test_run_hands_the_tempo_to_osc_from_resolume_and_back() -> None:
    """Audio (the demo track) gives the tempo until Resolume's tempo controller speaks up over OSC."""
    import socket

    from pythonosc.osc_message import OscMessage
    from pythonosc.osc_message_builder import OscMessageBuilder

    from tests.helpers import free_port

    port = free_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a TouchOSC stand-in for --osc-out
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.05)
    out_port = listener.getsockname()[1]
    run = LiveRun("--duration", "60", "--osc-port", str(port), "--osc-out", f"127.0.0.1:{out_port}")
    received: dict[str, list[object]] = {}

    def drain(seconds: float, until: str | None = None) -> None:
        """Keep what arrives at --osc-out for ``seconds``, or until the run logs ``until`` (then it must)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and run.said(until):
                return
            try:
                message = OscMessage(listener.recv(4096))
            except TimeoutError:
                continue
            received.setdefault(message.address, []).append(message.params[0])
        assert until is None, f"no {until!r} within {seconds:g} s: {run.log[-3000:]}"

    try:
        drain(30.0, until="tempo source: none -> audio")  # started, streaming, and the audio clock locked
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(20):
                builder = OscMessageBuilder("/composition/tempocontroller/tempo")
                builder.add_arg((130 - 20) / 480)  # Resolume sends 20..500 BPM as 0..1
                sock.sendto(builder.build().dgram, ("127.0.0.1", port))
                drain(0.1)
        drain(30.0, until="tempo source: osc -> audio")  # Resolume went quiet: the audio has the tempo again
        drain(1.0)
    finally:
        code = run.stop()
        listener.close()
    err = run.log
    assert "streaming" in received.get("/metadj/scope/state", []), received.keys()
    assert received.get("/metadj/theme", [None])[0] == "neon_city"  # the bundled default show's start theme
    assert any(abs(float(v) - 130.0) < 0.01 for v in received.get("/metadj/bpm", []))  # type: ignore[arg-type]
    beats = [int(v) for v in received.get("/metadj/beat", [])]  # type: ignore[call-overload]
    assert len(beats) > 5 and beats == sorted(beats)
    assert code == 0, err
    switches = [line.split("INFO ", 1)[1] for line in err.splitlines() if "tempo source:" in line]
    assert switches[0].startswith("tempo source: none -> audio (12")
    assert "tempo source: audio -> osc (130.0 BPM)" in switches
    assert switches[-1].startswith("tempo source: osc -> audio")


def test_rehearsal_of_a_controller_show_without_the_controller() -> None:
    """The MIDImix show rehearsed at home: no GPU, no controller, no MIDI at all on this machine; it still plays."""
    run = LiveRun("--rehearse", "--profile", "midimix-show", "--duration", "60", "--preview-port", "0",
                  cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 60
        while not run.said("streaming from"):  # it plays: then the performer stops it
            assert run.proc.poll() is None and time.monotonic() < deadline, run.log[-3000:]
            time.sleep(0.05)
    finally:
        code = run.stop()
    err = run.log
    assert code == 0, err
    assert "rehearsal: the built-in emulator" in err
    # The missing controller (or, on a machine without an ALSA sequencer, MIDI itself), said once:
    said = [line for line in err.splitlines()
            if "picks it up when it is plugged in" in line or "the show goes on without MIDI input" in line]
    assert len(said) == 1, err
    assert "preview at http://127.0.0.1:" in err
    assert "streaming from" in err


def test_run_refuses_a_text_show_on_a_video_only_pipeline_in_one_line() -> None:
    """D1/D4: the built-in emulator offers passthrough for video input only, as Scope does: the run ends at once."""
    proc = cli("run", "--pipeline", "passthrough", "--duration", "20", "--output", "none", "--no-audio",
               "--show-log", "none")
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pipeline 'passthrough' supports only video input, not text mode; "), proc.stderr
    assert "this Scope server offers: " in last and "Traceback" not in proc.stderr


def test_run_without_any_session_says_so_in_its_closing_line() -> None:
    from tests.helpers import free_port

    proc = cli("run", "--scope", f"http://127.0.0.1:{free_port()}", "--duration", "3", "--output", "none",
               "--no-audio", "--show-log", "none")
    assert proc.returncode == 0, proc.stderr  # a server that is down may come up: not a configuration error
    last = proc.stderr.strip().splitlines()[-1]
    assert re.search(r"WARNING stopped after [\d.]+ s: no Scope session was made \(last error: .+\)", last), last


def test_verbose_and_quiet_anywhere_on_the_line() -> None:
    from metadj_bridge.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "-v"]).verbose == 1
    assert parser.parse_args(["-v", "run"]).verbose == 1
    assert parser.parse_args(["listen", "-vv", "--json"]).verbose == 2
    quiet = parser.parse_args(["monitor", "-q"])
    assert (quiet.verbose, quiet.quiet) == (0, 1)
    assert parser.parse_args(["-q", "doctor"]).quiet == 1


# metadj-bridge switch (through the web server's API): tests/test_web_api.py.


def test_any_command_into_a_reader_that_goes_away_ends_quietly() -> None:
    import os

    # Unbuffered, so the write happens while the command runs (as a long listing or `monitor` would).
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-m", "metadj_bridge", "profiles"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # `| head -0`
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert proc.returncode == 0 and err == ""


def test_run_names_where_an_address_or_a_file_the_system_refuses_was_given(tmp_path: Path) -> None:
    """An OSC out address the system cannot send to (fe80::1 without its interface, on Linux) and an audio file name
    it refuses (a NUL byte) end the run at the start in one line naming the profile's line or the flag: a setting
    to change (78), never a bug (70)."""
    themes = "themes:\n  main:\n    prompts: [neon city]\n"
    osc = tmp_path / "osc.yaml"
    osc.write_text(themes + "inputs:\n  audio: none\n  osc:\n    out: 'fe80::1:9000'\n", encoding="utf-8")
    audio = tmp_path / "audio.yaml"
    audio.write_text(themes + 'inputs:\n  audio: "file:a\\0b.wav"\n', encoding="utf-8")
    refused = "cannot send OSC to fe80::1:9000: Invalid argument (check the address, and that this computer is on " \
              "that network)"
    runs = [(("--profile", str(audio)), f"{audio}:5:10: inputs.audio: {tmp_path}/a\\x00b.wav: not a usable file name "
                                        "(embedded null byte)")]
    if sys.platform == "linux":
        runs += [(("--profile", str(osc)), f"{osc}:7:10: inputs.osc.out: {refused}"),
                 (("--osc-out", "fe80::1:9000", "--no-audio"), f"--osc-out: {refused}")]
    for args, message in runs:
        proc = cli("run", *args, "--duration", "20", "--output", "none", "--show-log", "none", "--http-port", "0")
        assert proc.returncode == EXIT_CONFIG, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"error: {message}"
        assert "Traceback" not in proc.stderr


def test_a_number_option_that_is_not_finite_is_a_usage_error() -> None:
    """NaN or infinity for seconds or milliseconds is argparse's one-line usage error (2), as a word is, from both
    command lines; an OSC out host name too long to be one is a setting to change (78), not a bug."""
    for args in (("run", "--duration", "nan"), ("listen", "--duration", "inf"), ("run", "--no-frame-timeout=-inf")):
        proc = cli(*args)
        assert proc.returncode == 2 and "is not a finite number" in proc.stderr.splitlines()[-1], proc.stderr
    emulator = subprocess.run([sys.executable, "-m", "metadj_bridge.emulator", "--delay-ms", "nan"],
                              capture_output=True, text=True, timeout=60)
    assert emulator.returncode == 2 and "--delay-ms: 'nan' is not a finite number" in emulator.stderr
    host = "a" * 300
    proc = cli("run", "--osc-out", f"{host}:9000", "--no-audio", "--duration", "5", "--output", "none",
               "--show-log", "none", "--http-port", "0")
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --osc-out: cannot send OSC to {host}:9000: ")
    assert "Traceback" not in proc.stderr


def test_ports_prompts_and_times_out_of_range_are_usage_errors() -> None:
    """A port past 65535 (the socket layer would wrap 70000 round to 4464), a prompt longer than a profile may hold,
    and a time that is not more than 0 are argparse's one-line usage errors (2), naming the option."""
    cases = [
        (("run", "--osc-port", "70000"), "argument --osc-port: 70000 is not a port (0-65535)"),
        (("monitor", "--osc-port", "70000"), "argument --osc-port: 70000 is not a port (0-65535)"),
        (("run", "--http-port=-1"), "argument --http-port: -1 is not a port (0-65535)"),
        (("run", "--prompt", "p" * 3000), "argument --prompt: a prompt of 3000 characters"),
        (("listen", "--duration=-1"), "argument --duration: '-1': must be more than 0 seconds"),
        (("doctor", "--listen", "0"), "argument --listen: '0': must be more than 0 seconds"),
        # Past a day: doctor --listen 1e300 watched the video for ever, listen --duration 1e300 never stopped.
        (("doctor", "--listen", "1e300"), "argument --listen: '1e300': at most 86400 seconds (a day)"),
        (("doctor", "--load-timeout", "86401"), "argument --load-timeout: '86401': at most 86400 seconds (a day)"),
        (("listen", "--duration", "1e300"), "argument --duration: '1e300': at most 86400 seconds (a day)"),
        (("monitor", "--duration", "1e300"), "argument --duration: '1e300': at most 86400 seconds (a day)"),
    ]
    for args, message in cases:
        proc = cli(*args)
        assert proc.returncode == 2 and message in proc.stderr.splitlines()[-1], (args, proc.stderr[-300:])
    assert build_parser().parse_args(["doctor", "--listen", "86400"]).listen == 86400  # a day is still allowed


def test_empty_text_is_a_usage_error_for_every_option_that_takes_text(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty value (a script's unset variable: ``--output "$OUT"``) or one of spaces is never a name, a path, an
    address or a prompt: every option and argument of every command that takes text refuses it with argparse's
    one-line usage error (2) naming it, instead of quietly meaning no video, the default log or an empty prompt."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    checked = []
    for name, command in commands.items():
        takes_text = [a for a in command._actions if a.nargs != 0 and a.type in (None, text, prompt)]
        for action in takes_text:
            argv = [name]
            for other in (a for a in command._actions if not a.option_strings):
                filler = next(iter(other.choices)) if other.choices else "x"
                argv += ["" if other is action else filler]
            if action.option_strings:
                argv += [action.option_strings[-1], " " if len(checked) % 2 else ""] + ["x"] * (action.nargs == 2)
            with pytest.raises(SystemExit) as exit_:
                parser.parse_args(argv)
            last = capsys.readouterr().err.strip().splitlines()[-1]
            shown = "/".join(action.option_strings) or action.metavar or action.dest
            assert exit_.value.code == 2 and f"error: argument {shown}: " in last, (argv, last)
            assert "must not be empty" in last or "an empty prompt" in last, (argv, last)
            checked.append(f"{name} {shown}")
    assert {"run --prompt", "run --output", "run --show-log", "emulate --host", "check PROFILE"} <= set(checked)
    assert len(checked) > 40, checked
    # As a performer meets it: one line, exit 2, from both command lines.
    for args in (("run", "--prompt", ""), ("run", "--output", "")):
        proc = cli(*args)
        assert proc.returncode == 2 and proc.stderr.splitlines()[-1].startswith("metadj-bridge run: error: argument"), \
            proc.stderr
    emulator = subprocess.run([sys.executable, "-m", "metadj_bridge.emulator", "--host", ""],
                              capture_output=True, text=True, timeout=60)
    assert emulator.returncode == 2 and "argument --host: '': must not be empty" in emulator.stderr


def test_files_and_hosts_the_system_refuses_are_one_line_errors(tmp_path: Path) -> None:
    """A profile copied to a name too long for the file system, a switch sent to a host name too long to be one,
    and a show log with such a name: the first two end in one line (never a bug's 70), the show goes on without
    its log."""
    long_name = str(tmp_path / ("x" * 300 + ".yaml"))
    proc = cli("profiles", "--copy", "default", long_name)
    assert proc.returncode == EXIT_CONFIG and "cannot copy the profile to" in proc.stderr.splitlines()[-1]
    proc = cli("switch", "default", "--to", "a" * 300 + ":8765")
    assert proc.returncode not in (0, 70) and "no bridge answers at" in proc.stderr.splitlines()[-1], proc.stderr
    proc = cli("run", "--show-log", str(tmp_path / ("s" * 300 + ".jsonl")), "--duration", "3", "--output", "none",
               "--no-audio", "--http-port", "0")
    assert proc.returncode == 0 and "the show goes on without a log" in proc.stderr, proc.stderr[-500:]
    assert "Traceback" not in proc.stderr


def test_a_scope_url_on_the_command_line_is_held_to_the_profiles_rule() -> None:
    """``--scope`` that a profile's ``scope.url`` would refuse (port 0, spaces in the host, a 10 KB host, an IPv6
    address without brackets) ends the run at the start in one line (78), instead of a show that reconnects for
    ever to a server that cannot exist."""
    cases = [
        ("http://127.0.0.1:0", "port 0 is out of range (1-65535)"),
        ("http://127 0 0 1:1", "not an IP address or a host name"),
        ("http://" + "a" * 10000 + ":8000", "not an IP address or a host name"),
        ("http://::1:8000", "an IPv6 address goes in brackets, with the port after them: http://[::1]:8000"),
    ]
    for url, message in cases:
        proc = cli("run", "--scope", url, "--duration", "20", "--output", "none", "--show-log", "none", "--no-audio",
                   "--http-port", "0")
        assert proc.returncode == EXIT_CONFIG, proc.stderr[-300:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: --scope {url!r}: ") and message in last, last[-300:]
