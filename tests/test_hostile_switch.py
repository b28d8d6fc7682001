"""Profile switches asked for from outside: only regular .yaml files in the allowed folders, never a blocked show.

The far ends are real: a FIFO made with os.mkfifo, OSC packets over UDP on loopback into a running ShowRunner,
and a ``metadj-bridge run`` subprocess that must still end on --duration and on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from metadj_bridge.bundled import PROFILES_DIR as BUNDLED_DIR
from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.osc import OscInput
from metadj_bridge.outputs.osc_out import build_message
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.run.show import SWITCH_ADDRESS, ShowRunner
from metadj_bridge.run.switching import ProfileSwitcher, check_target, load_with_deadline
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.signals import Trigger
from tests.helpers import wait_for

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes (os.mkfifo) on this platform")

THEMES = "themes: {{{name}: {{prompts: [{name} light]}}}}\n"
REFUSED = "profile switch refused"


def write_profile(path: Path, theme: str, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(THEMES.format(name=theme) + extra, encoding="utf-8")
    return path


@pytest.fixture
def shows(tmp_path: Path) -> Path:
    """shows/night.yaml (running), shows/day.yaml (good), shows/pipe.yaml (a FIFO) and elsewhere/other.yaml."""
    folder = tmp_path / "shows"
    write_profile(folder / "night.yaml", "night")
    write_profile(folder / "day.yaml", "day")
    write_profile(tmp_path / "elsewhere" / "other.yaml", "other")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.yaml")
    return folder


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(REFUSED)]


@pytest.fixture
async def running(shows: Path) -> AsyncIterator[tuple[ShowRunner, OscInput, socket.socket]]:
    """A ShowRunner stepping on its own, fed by a real OSC input on a UDP port, and a socket to send to it."""
    runner = ShowRunner(load_profile(shows / "night.yaml"), ParameterSender())
    osc = OscInput("127.0.0.1", 0, sink=runner.board)
    await osc.start()
    task = asyncio.create_task(runner.run(), name="show")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        yield runner, osc, sock
    finally:
        sock.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await osc.aclose()


def send(sock: socket.socket, osc: OscInput, path: str) -> None:
    sock.sendto(build_message(SWITCH_ADDRESS, (path,)), ("127.0.0.1", osc.port))


@needs_fifo
async def test_a_fifo_sent_over_osc_is_refused_in_one_line_and_the_show_goes_on(
    running: tuple[ShowRunner, OscInput, socket.socket], shows: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner, osc, sock = running
    send(sock, osc, str(shows / "pipe.yaml"))
    await wait_for(lambda: refusals(caplog), 5, "the refusal")
    steps = runner.steps
    await wait_for(lambda: runner.steps > steps + 5, 5, "the show stepping on")
    assert runner.profile.name == "night" and runner.switches == 0
    [line] = refusals(caplog)
    sender = f"127.0.0.1:{sock.getsockname()[1]}"
    assert line == (f"{REFUSED}: {shows / 'pipe.yaml'} is a FIFO (named pipe), not a regular file; a profile is a "
                    f".yaml file (asked by OSC {SWITCH_ADDRESS} from {sender}); night.yaml stays")
    # A good profile in the same folder still switches, by name relative to the running one.
    send(sock, osc, "day.yaml")
    await wait_for(lambda: runner.profile.name == "day", 5, "the switch to day.yaml")
    assert runner.engine.theme == "day" and runner.switches == 1 and runner.switches_refused == 1


async def test_paths_outside_the_allowed_folders_are_refused(
    running: tuple[ShowRunner, OscInput, socket.socket], shows: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner, osc, sock = running
    outside = shows.parent / "elsewhere" / "other.yaml"
    (shows / "link.yaml").symlink_to(outside)
    for path in (str(outside), "../elsewhere/other.yaml", str(shows / "link.yaml")):
        send(sock, osc, path)
    await wait_for(lambda: runner.switches_refused == 3, 5, "three refusals")
    assert runner.profile.name == "night" and runner.switches == 0
    [first] = refusals(caplog)  # the other two are counted, not logged
    assert first.startswith(f"{REFUSED}: {outside} is outside the folders a switch may open ({shows}")
    # Each path on its own is refused for the same reason, `..` and the symlink resolved first.
    profile = runner.profile
    for path in ("../elsewhere/other.yaml", str(shows / "link.yaml")):
        with pytest.raises(ConfigError, match=rf"\(really {outside}\) is outside the folders a switch may open"):
            check_target(path, profile)


def test_other_kinds_of_file_are_refused_before_anything_opens_them(shows: Path) -> None:
    profile = load_profile(shows / "night.yaml")
    (shows / "notes.txt").write_text("not a profile", encoding="utf-8")
    (shows / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="notes.txt is not a profile file"):
        check_target("notes.txt", profile)
    with pytest.raises(ConfigError, match="folder.yaml is a folder, not a regular file"):
        check_target("folder.yaml", profile)
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        check_target("missing.yaml", profile)
    with pytest.raises(ConfigError, match=r"is outside the folders"):
        check_target("/dev/null", profile)
    with pytest.raises(ConfigError, match=r"\\x1b\[31mred.yaml: no such file"):  # escapes never reach the log raw
        check_target("\x1b[31mred.yaml", profile)
    assert check_target("day.yaml", profile) == (shows / "day.yaml").resolve()
    assert check_target(str(BUNDLED_DIR / "default.yaml"), profile) == (BUNDLED_DIR / "default.yaml").resolve()


def test_a_file_the_profile_names_in_its_switches_is_allowed_wherever_it_is(shows: Path) -> None:
    extra = "switches:\n  - {trigger: midi.program.1, profile: ../elsewhere/other.yaml}\n"
    write_profile(shows / "named.yaml", "named", extra)
    profile = load_profile(shows / "named.yaml")
    outside = (shows.parent / "elsewhere" / "other.yaml").resolve()
    assert check_target("../elsewhere/other.yaml", profile) == outside
    write_profile(shows.parent / "elsewhere" / "unnamed.yaml", "unnamed")
    with pytest.raises(ConfigError, match="is outside the folders"):
        check_target("../elsewhere/unnamed.yaml", profile)


async def test_a_midi_switch_named_in_the_profile_switches(shows: Path) -> None:
    extra = "switches:\n  - {trigger: midi.program.1, program: 2, profile: ../elsewhere/other.yaml}\n"
    runner = ShowRunner(load_profile(write_profile(shows / "named.yaml", "named", extra)), ParameterSender())
    runner.board.fire(Trigger("midi.program.1", 1.0, {"program": 2}))
    runner.step(1.0)
    await wait_for(lambda: runner.profile.name == "other", 5, "the switch named in the profile")
    assert runner.switches == 1 and runner.switches_refused == 0


@needs_fifo
async def test_three_thousand_refused_requests_make_a_few_lines_with_a_count(
    shows: Path, caplog: pytest.LogCaptureFixture
) -> None:
    profile = load_profile(shows / "night.yaml")
    applied: list[ShowProfile] = []
    switcher = ProfileSwitcher(lambda: profile, applied.append, interval=0.2)
    bad = [str(shows / "pipe.yaml"), "../elsewhere/other.yaml", "/etc/passwd", "nothing.yaml", 42]
    began = time.monotonic()
    for i in range(3000):
        switcher.request(bad[i % len(bad)], f"OSC {SWITCH_ADDRESS}")
    flood = time.monotonic() - began
    assert switcher.refused == 3000 and not switcher.busy and not applied

    def counted() -> int:
        return sum(int(m.group(1)) for line in refusals(caplog)[1:]
                   if (m := re.match(rf"{REFUSED}: (\d+) (?:more )?in the last", line)))

    await wait_for(lambda: counted() >= 2999, 5, "the count of the quiet ones")
    lines = refusals(caplog)
    # The first at once, then one line per 0.2 s with a count: two lines when the flood took less than that (a
    # loaded machine can take longer, and then a line comes each 0.2 s of it).
    assert counted() == 2999 and 2 <= len(lines) <= 2 + int(flood / 0.2), (flood, lines)
    if flood < 0.2:
        assert lines[1].startswith(f"{REFUSED}: 2999 more in the last 0 s; last: ")
    switcher.close()


async def test_while_one_loads_the_latest_request_replaces_the_waiting_one(shows: Path) -> None:
    write_profile(shows / "dawn.yaml", "dawn")
    profile = load_profile(shows / "night.yaml")
    applied: list[str] = []
    switcher = ProfileSwitcher(lambda: profile, lambda p: applied.append(p.name))
    for name in ("day.yaml", "dawn.yaml", "day.yaml", "dawn.yaml"):
        switcher.request(name, "a test")
    assert switcher.busy
    await wait_for(lambda: not switcher.busy, 5, "the loads to finish")
    assert applied == ["dawn"]  # the first one loading was overtaken; the two in between never loaded
    switcher.close()


@needs_fifo
async def test_a_read_that_never_returns_is_given_up(shows: Path) -> None:
    fifo = shows / "pipe.yaml"

    def read(path: str) -> ShowProfile:  # what any loader does to a pipe without a writer: wait
        with open(path, encoding="utf-8") as fh:
            fh.read()
        raise AssertionError("a pipe with no writer was read")

    try:
        with pytest.raises(ConfigError, match=r"pipe.yaml: not read within 0.2 s \(a pipe"):
            await load_with_deadline(str(fifo), 0.2, read)
    finally:  # let the stuck thread go: a writer opens the pipe and closes it, the read sees the end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)


@needs_fifo
async def test_a_good_file_that_extends_a_fifo_is_refused_and_the_show_keeps_its_profile(
    shows: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_profile(shows / "sneaky.yaml", "sneaky", "extends: pipe.yaml\n")
    profile = load_profile(shows / "night.yaml")
    applied: list[ShowProfile] = []
    switcher = ProfileSwitcher(lambda: profile, applied.append, timeout=0.5)
    try:
        # The file itself passes the check; its base is the pipe: the loader refuses it, or the deadline does.
        switcher.request("sneaky.yaml", "a test")
        await wait_for(lambda: switcher.refused == 1, 5, "the refusal")
    finally:
        with contextlib.suppress(OSError):  # a loader thread still waiting on the pipe: let it go (ENXIO: none)
            os.close(os.open(shows / "pipe.yaml", os.O_WRONLY | os.O_NONBLOCK))
        switcher.close()
    assert not applied
    [line] = refusals(caplog)
    assert "(asked by a test); night.yaml stays" in line


# ---------------------------------------------------------------------------------------- a real bridge

STUCK_READ = """
import asyncio, sys
from metadj_bridge.errors import ConfigError
from metadj_bridge.run.switching import load_with_deadline

def read(path):
    with open(path, encoding="utf-8") as fh:  # a pipe with no writer: blocks for ever
        return fh.read()

async def main():
    try:
        await load_with_deadline(sys.argv[1], 0.3, read)
    except ConfigError as exc:
        print(exc, flush=True)

asyncio.run(main())
"""


@needs_fifo
async def test_a_thread_stuck_on_a_pipe_does_not_hold_the_process_at_exit(shows: Path) -> None:
    # With asyncio.to_thread, asyncio.run would wait at exit for the stuck worker for ever.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK_READ, str(shows / "pipe.yaml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await kill_if_running(proc)
    assert proc.returncode == 0, err.decode()
    assert "pipe.yaml: not read within 0.3 s" in out.decode()



def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_bridge(shows: Path, url: str, *args: str) -> tuple[asyncio.subprocess.Process, int]:
    profile = shows / "night.yaml"
    profile.write_text(f"scope: {{url: {url}, resolution: [256, 144], denoising: fast}}\ninputs: {{audio: none}}\n"
                       + THEMES.format(name="night"), encoding="utf-8")
    port = udp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--output", "none", "--no-watch",
        "--osc-port", str(port), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    return proc, port


async def read_until(proc: asyncio.subprocess.Process, text: str, limit: float = 30) -> str:
    """stderr up to the line containing ``text``."""
    assert proc.stderr is not None
    seen = ""

    async def lines() -> None:
        nonlocal seen
        while text not in seen:
            line = await proc.stderr.readline()  # type: ignore[union-attr]
            assert line, f"the bridge ended before {text!r}:\n{seen}"
            seen += line.decode()

    await asyncio.wait_for(lines(), limit)
    return seen


async def kill_if_running(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@needs_fifo
@pytest.mark.parametrize("end", ["duration", "sigterm"])
async def test_a_bridge_asked_to_switch_to_a_fifo_still_ends(
    make_emulator: object, shows: Path, end: str
) -> None:
    emulator = await make_emulator()  # type: ignore[operator]
    proc, port = await start_bridge(shows, emulator.url, *(["--duration", "4"] if end == "duration" else []))
    try:
        await wait_for(lambda: emulator._records.counters.frames_sent > 5, 30, "the show streaming")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(50):
                sock.sendto(build_message(SWITCH_ADDRESS, (str(shows / "pipe.yaml"),)), ("127.0.0.1", port))
        seen = await read_until(proc, REFUSED)
        if end == "sigterm":
            proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await kill_if_running(proc)
    err = seen + rest.decode()
    assert proc.returncode == 0, err
    assert "pipe.yaml is a FIFO (named pipe), not a regular file" in err and "Traceback" not in err
    assert sum(REFUSED in line for line in err.splitlines()) <= 2, err
    assert re.search(r"0 profile switch\(es\) \([1-9]\d* refused\)", err), err
