"""Hostile profile files: whatever a file holds or is, loading it ends in one ProfileError at file:line:column
(never another exception, a hang or a crash), ``check`` refuses what the running bridge would fail on, and hot
reload survives every kind of bad save and still loads the next good one."""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from metadj_bridge.bundled import PROFILES_DIR
from metadj_bridge.profile import ProfileError, ProfileWatcher, load_profile
from metadj_bridge.profile.check import run_check
from metadj_bridge.profile.loader import MAX_EXTENDS_DEPTH, check_profile
from metadj_bridge.profile.model import ShowProfile
from tests.helpers import wait_for

ROOT = Path(__file__).parent.parent
BUNDLED = PROFILES_DIR
THEMES = "themes:\n  main:\n    prompts: [neon city]\n"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo: named pipes are POSIX only")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def refused(path: Path, named: Path | None = None) -> ProfileError:
    """The one ProfileError loading ``path`` gives; one printable line starting with the file (or ``named``)."""
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    error = caught.value
    message = str(error)
    assert message.startswith(str(named or path)), message
    assert_printable(message)
    return error


def assert_printable(message: str) -> None:
    odd = [c for c in message if not c.isprintable() and c not in "\u200c\u200d"]
    assert not odd, f"raw control characters {odd!r} in {message!r}"


def at(error: ProfileError, line: int, column: int | None = None) -> None:
    assert error.line == line, str(error)
    if column is not None:
        assert error.column == column, str(error)
    assert str(error).startswith(f"{error.file}:{error.line}:{error.column}: "), str(error)


# ------------------------------------------------------------------------------------------------ numbers


def test_an_integer_too_large_for_a_float_is_a_profile_error(tmp_path: Path) -> None:
    huge = "9" * 400
    error = refused(write(tmp_path, "gain.yaml", f"{THEMES}inputs:\n  audio: {{source: demo, gain: {huge}}}\n"))
    at(error, 5, 31)
    assert "inputs.audio.gain" in str(error) and "too large" in str(error) and "(400 digits)" in str(error)
    error = refused(write(tmp_path, "noise.yaml", f"{THEMES}scope:\n  parameters: {{noise_scale: {huge}}}\n"))
    at(error, 5)
    assert "noise_scale" in str(error) and "too large" in str(error)


def test_a_seed_outside_scopes_range_is_refused(tmp_path: Path) -> None:
    for seed in ("9" * 400, "2147483648", "-1", "3.0e+9"):
        error = refused(write(tmp_path, "seed.yaml", f"{THEMES}scope:\n  parameters: {{base_seed: {seed}}}\n"))
        at(error, 5, 27)
        assert "base_seed" in str(error) and "0-2147483647" in str(error)
    path = write(tmp_path, "ok.yaml", f"{THEMES}scope:\n  parameters: {{base_seed: 2147483647}}\n")
    assert load_profile(path).scope.parameters == {"base_seed": 2147483647}


def test_numbers_that_are_not_finite_or_too_large_are_refused(tmp_path: Path) -> None:
    cases = {
        "pulse: {amount: .nan}": "pulse.amount",
        "scope: {parameters: {modulations: {a: [1, .inf]}}}": "scope.parameters.modulations.a[1]",
        "scope: {parameters: {beat_count: 99999999999999999999}}": "beat_count",
        "mappings: {m: {source: audio.energy, transforms: [{scale: 1.0e+13}], target: noise_scale}}": "scale",
        "mappings: {m: {source: audio.energy, default: -.inf, target: noise_scale}}": "default",
    }
    for text, key in cases.items():
        error = refused(write(tmp_path, "n.yaml", f"{THEMES}{text}\n"))
        at(error, 4)
        assert key in str(error), str(error)
        assert "finite" in str(error) or "infinite" in str(error) or "too large" in str(error), str(error)


def test_a_number_written_with_thousands_of_digits_is_refused_before_it_is_converted(tmp_path: Path) -> None:
    sexagesimal = "1" + ":1" * 3000  # a YAML 1.1 base-60 integer: slow to convert, too long to print
    error = refused(write(tmp_path, "long.yaml", f"{THEMES}pulse: {{amount: {sexagesimal}}}\n"))
    at(error, 4, 17)
    assert "characters" in str(error)


# ------------------------------------------------------------------------------------------------ addresses


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://[::1:8000", "IPv6 address goes in brackets"),
    ("http://gpu:99999", "port '99999' is not a port number (1-65535)"),
    ("http://gpu:0", "port 0 is out of range"),
    ("http://gpu:abc", "port 'abc'"),
    ("http://gpu:", "a colon without a port"),
    ("http://gpu box:8000", "not an IP address or a host name"),
    ("http://:8000", "host is empty"),
    ("http://gpu:8000/health", "ends in /health"),
    ("ftp://gpu:8000", "http:// or https://"),
])
def test_a_scope_url_the_bridge_cannot_use_is_refused(tmp_path: Path, url: str, fragment: str) -> None:
    error = refused(write(tmp_path, "url.yaml", f"{THEMES}scope:\n  url: '{url}'\n"))
    at(error, 5, 8)
    assert "scope.url" in str(error) and fragment in str(error), str(error)


def test_usable_scope_urls_load_with_their_query(tmp_path: Path) -> None:
    for url in ("http://[::1]:8000", "https://user:pw@gpu-box.local:8443/proxy/?token=abc", "http://127.0.0.1"):
        assert load_profile(write(tmp_path, "url.yaml", f"{THEMES}scope:\n  url: '{url}'\n")).scope.url == url


def test_osc_hosts_must_be_addresses_or_host_names(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "h.yaml", f"{THEMES}inputs:\n  osc: {{host: 'not an address!'}}\n"))
    at(error, 5, 15)
    assert "inputs.osc.host" in str(error) and "not an IP address or a host name" in str(error)
    error = refused(write(tmp_path, "o.yaml", f"{THEMES}inputs:\n  osc: {{out: 'bad host:9000'}}\n"))
    assert "inputs.osc.out" in str(error) and "HOST:PORT" in str(error)
    good = write(tmp_path, "g.yaml", f"{THEMES}inputs:\n  osc: {{host: '::', out: '[::1]:9001'}}\n")
    osc = load_profile(good).inputs.osc
    assert (osc.host, osc.out) == ("::", "::1:9001")  # as run/bridge.py splits it: at the last colon


# ------------------------------------------------------------------------------------------------ structure


def test_a_long_extends_chain_is_cut_and_a_cycle_refused(tmp_path: Path) -> None:
    for i in range(1000):
        write(tmp_path, f"c{i}.yaml", f"extends: c{i + 1}.yaml\n" if i < 999 else THEMES)
    error = refused(tmp_path / "c0.yaml", tmp_path / f"c{MAX_EXTENDS_DEPTH - 1}.yaml")
    assert f"extends: more than {MAX_EXTENDS_DEPTH} files deep (c0.yaml -> c1.yaml" in str(error)
    at(error, 1, 10)
    write(tmp_path, "x.yaml", "extends: y.yaml\n")
    write(tmp_path, "y.yaml", "extends: x.yaml\n")
    assert "circular extends: x.yaml -> y.yaml -> x.yaml" in str(refused(tmp_path / "x.yaml", tmp_path / "y.yaml"))


def test_extends_that_fans_out_is_bounded(tmp_path: Path) -> None:
    """Each file extends the next one ten times over: 10**6 reads unbounded, a clear error instead."""
    for i in range(6):
        write(tmp_path, f"f{i}.yaml", "extends: [" + ", ".join([f"f{i + 1}.yaml"] * 10) + "]\n")
    write(tmp_path, "f6.yaml", THEMES)
    with pytest.raises(ProfileError, match="more than 64 files in all"):
        load_profile(tmp_path / "f0.yaml")


@pytest.mark.parametrize("depth", [10_000, 300_000])
def test_deeply_nested_yaml_is_refused_without_recursing(tmp_path: Path, depth: int) -> None:
    """libyaml's composer recurses in C: 100,000 levels used to crash the process, not raise."""
    text = f"{THEMES}pulse: " + "[" * depth + "]" * depth + "\n"
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "check", str(write(tmp_path, "deep.yaml", text))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr  # a crash would be -11
    # The 61st level (the top mapping is one) at column 67; newer libyaml (PyYAML 6.0.4 wheels) stops its own
    # scanner at 1,000 flow levels before the parser reaches it, and the bridge says the same at that column.
    assert re.search(r"deep\.yaml:4:(67|1007): nested more than 60 levels deep; a profile needs only", proc.stderr), \
        proc.stderr
    block = THEMES + "pulse:\n" + "".join(" " * (2 * i + 2) + "a:\n" for i in range(200))
    at(refused(write(tmp_path, "block.yaml", block)), 64)  # the mapping that is the 61st level


def test_a_huge_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = write(tmp_path, "huge.yaml", THEMES + "# padding\n" * 200_000)
    error = refused(path)
    at(error, 1, 1)
    assert "larger than 1 MB" in str(error)


def test_text_that_is_not_yaml_text(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(THEMES.encode() + b"pulse: {amount: caf\xe9}\n")
    error = refused(path)
    at(error, 4, 20)
    assert "byte 0xe9 is not UTF-8" in str(error)
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    assert "NUL character" in str(refused(path))
    path.write_bytes(THEMES.encode() + b"pulse: {amount: 1}\x1b[2J\n")
    error = refused(path)
    at(error, 4, 19)
    assert "'\\x1b' is not allowed" in str(error)


def test_a_billion_laughs_costs_nothing_to_report(tmp_path: Path) -> None:
    anchors = "".join(f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    text = THEMES + "x:\n  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + anchors
    text = text.replace("x:\n", "pulse:\n  amount:\n").replace("\n  -", "\n    -")
    error = refused(write(tmp_path, "laughs.yaml", text))
    at(error, 6, 5)
    assert "pulse.amount" in str(error) and len(str(error)) < 300


def test_tabs_and_duplicate_keys(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "tab.yaml", THEMES + "pulse:\n\tamount: 1\n"))
    at(error, 5, 1)
    assert "tab character" in str(error)
    error = refused(write(tmp_path, "dup.yaml", THEMES + "pulse: {amount: 0.1, amount: 0.2}\n"))
    at(error, 4, 22)
    assert "duplicate key 'amount'" in str(error)


@pytest.mark.parametrize("odd", ["\u2028", "\u2029", "\x85", "\r"])
def test_yaml_1_1_line_breaks_neither_break_the_file_nor_shift_lines(tmp_path: Path, odd: str) -> None:
    text = (f"# a comment{odd}with an odd break\nthemes:\n  main:\n    prompts: ['neon{odd}city']\n"
            "pulse: {amount: 7}\n")
    error = refused(write(tmp_path, "odd.yaml", text))
    at(error, 5, 17)  # the line an editor shows
    good = write(tmp_path, "good.yaml", text.replace("7", "0.5"))
    assert load_profile(good).themes[0].prompts[0].text == f"neon{odd}city"


def test_windows_and_old_mac_line_ends_count_as_one(tmp_path: Path) -> None:
    text = THEMES + "pulse: {amount: 7}\n"
    at(refused(write(tmp_path, "crlf.yaml", text.replace("\n", "\r\n"))), 4, 17)
    at(refused(write(tmp_path, "cr.yaml", text.replace("\n", "\r"))), 4, 17)


def test_terminal_escapes_from_the_file_are_never_echoed_raw(tmp_path: Path) -> None:
    text = THEMES + 'pulse: {"\\e[31mred\\e]0;owned\\a\\u202e": 1}\n'
    error = refused(write(tmp_path, "esc.yaml", text))
    at(error, 4, 9)
    assert "\\x1b[31mred\\x1b]0;owned\\x07\\u202e" in str(error)
    error = refused(write(tmp_path, "val.yaml", THEMES + 'cycle: {order: "\\x9b2J\\r\\nfake: line"}\n'))
    assert "\\x9b2J\\r\\nfake: line" in str(error)
    weird = write(tmp_path, "we\x1bird.yaml", THEMES + "pulse: {amount: 7}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(weird)
    assert_printable(str(caught.value))
    assert str(caught.value).startswith(str(tmp_path / "we\\x1bird.yaml:4:17: "))


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])
def test_half_a_character_written_as_an_escape_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         loader: str) -> None:
    if not hasattr(yaml, loader):
        pytest.skip(f"this PyYAML has no {loader} (built without libyaml)")
    monkeypatch.setattr("metadj_bridge.profile.yamlnodes._Loader", getattr(yaml, loader))
    error = refused(write(tmp_path, "half.yaml", 'themes:\n  main:\n    prompts: ["neon \\ud800 city"]\n'))
    assert error.line == 3


def test_a_prompt_longer_than_scope_reads_is_refused(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "p.yaml", f"themes:\n  main:\n    prompts: ['{'neon ' * 500}']\n"))
    at(error, 3, 15)
    assert "a prompt of 2500 characters" in str(error) and "512 tokens" in str(error)


# ------------------------------------------------------------------------------------------------ files that block


@needs_fifo
def test_a_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "named pipe (FIFO)" in str(refused(fifo))  # returns at once: nothing opened it for reading
    write(tmp_path, "child.yaml", "extends: pipe.yaml\n")
    error = refused(tmp_path / "child.yaml")
    at(error, 1, 10)
    assert "not a regular file" in str(error)
    write(tmp_path, "switcher.yaml", THEMES + "switches: [{trigger: audio.beat, profile: pipe.yaml}]\n")
    assert "pipe.yaml: not a regular file" in str(refused(tmp_path / "switcher.yaml"))
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "check", str(fifo)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {fifo}: a named pipe (FIFO), not a profile file; a profile is a .yaml " \
                                  "text file"


def test_folders_and_devices_are_refused(tmp_path: Path) -> None:
    assert "is a folder" in str(refused(tmp_path))
    if os.path.exists("/dev/zero"):
        with pytest.raises(ProfileError, match="a device, not a profile file"):
            load_profile("/dev/zero")


def test_switch_targets_must_be_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", THEMES)
    error = refused(write(tmp_path, "s.yaml", THEMES + "switches: [{trigger: audio.beat, profile: notes.txt}]\n"))
    at(error, 4, 43)
    assert "not a profile file (a profile ends in .yaml or .yml)" in str(error)


# ------------------------------------------------------------------------------------------------ check


def check(*paths: Path) -> tuple[int, list[str], list[str]]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = run_check([str(p) for p in paths], out, err)
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def test_check_refuses_two_screens_on_one_scope_server_as_run_does(tmp_path: Path) -> None:
    shared = write(tmp_path, "shared.yaml", 'scope: {url: "http://127.0.0.1:1"}\n' + THEMES
                   + 'screens:\n  left:\n    scope: {url: "http://127.0.0.1:1/"}\n  right: {}\n')
    code, out, err = check(shared)
    assert code == 1 and out == []
    assert err == [f"error: {shared}:7:12: screens.left.scope.url: screens 'main' and 'left' both use the Scope "
                   "server http://127.0.0.1:1; a server runs one pipeline at a time: give each screen its own"]
    apart = write(tmp_path, "apart.yaml", 'scope: {url: "http://127.0.0.1:1"}\n' + THEMES
                  + 'screens:\n  left:\n    scope: {url: "http://127.0.0.1:2"}\n  right: {}\n')
    assert check(apart)[0] == 0


def test_check_reports_every_mistake_of_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "many.yaml", (
        "scope:\n"
        "  url: http://gpu:99999\n"
        "  parameters: {base_seed: 99999999999999999999999999}\n"
        "inputs:\n"
        "  osc: {host: 'not an address!'}\n"
        "  tempo: {beats_per_bar: 99}\n"
        "themes:\n"
        "  a: {prompts: [x], parameters: {noise_scale: .inf}}\n"
        "  b: {prompts: [y]}\n"
        "pulse: {amount: 3}\n"
        "mappings:\n"
        "  one: {source: audio.energy, target: nope}\n"
        "  two: {trigger: audio.beat, target: theme.set:a}\n"
        "  three: {trigger: audio.beat, target: theme.set:c}\n"
        "switches: [{trigger: audio.beat, profile: gone.yaml}]\n"
    ))
    code, out, err = check(path)
    assert code == 1 and out == []
    lines = [int(re.search(r"many\.yaml:(\d+):", line).group(1)) for line in err]  # type: ignore[union-attr]
    assert lines == [2, 3, 5, 6, 8, 10, 12, 14, 15], err
    for line in err:
        assert line.startswith(f"error: {path}:")
    _, errors = check_profile(path)
    assert len(errors) == 9


def test_check_loads_every_profile_a_switch_leads_to(tmp_path: Path) -> None:
    show = write(tmp_path, "show.yaml", THEMES + "switches: [{trigger: midi.program.1, profile: sets/b.yaml}]\n"
                 "mappings: {go: {trigger: audio.beat, target: 'profile:show.yaml'}}\n")
    write(tmp_path, "sets/b.yaml", THEMES + "switches: [{trigger: audio.beat, profile: c.yaml},"
          " {trigger: audio.beat, profile: ../show.yaml}]\n")
    broken = write(tmp_path, "sets/c.yaml", THEMES + "pulse: {decay: -1}\n")
    code, out, err = check(show)
    assert code == 1 and out == []
    assert err == [f"error: {broken}:4:16: pulse.decay: -1: out of range (allowed: > 0 and <= 60) "
                   f"(a switch target of {tmp_path / 'sets' / 'b.yaml'}:4:12)"]
    broken.write_text(THEMES, encoding="utf-8")
    assert check(show) == (0, [f"ok  {show} (1 themes, 1 mappings)"], [])  # A -> B -> A is a fine show


def test_check_never_prints_raw_escapes(tmp_path: Path) -> None:
    path = write(tmp_path, "e.yaml", THEMES + 'inputs: {osc: {host: "\\e[2J\\e[1;1H"}}\n')
    code, _, err = check(path)
    assert code == 1 and len(err) == 1
    assert_printable(err[0])
    assert "\\x1b[2J" in err[0]


def test_check_reads_the_header_of_the_audio_file_the_show_opens(tmp_path: Path) -> None:
    """``run`` opens ``inputs.audio``'s file at the start: ``check`` reads its header the same way (never a FIFO,
    which would block it) and names the profile's line, so what check passes, run can open."""
    from metadj_bridge.inputs.synth import write_wav

    write_wav(tmp_path / "set.wav", np.zeros(4410, np.float32), 44100)
    write_wav(tmp_path / "slow.wav", np.zeros(100, np.float32), 100)
    write(tmp_path, "notes.txt", "these are my set notes, not audio\n" * 4)
    cases = [("gone.wav", "no such audio file"), ("notes.txt", "this is not an audio file"),
             ("slow.wav", "the file's sample rate is 100 Hz; metadj-bridge analyses audio at 8000-384000 Hz"),
             (".", "is a folder, not an audio file")]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.wav")
        cases.append(("pipe.wav", "a named pipe (FIFO), not an audio file"))
    for name, says in cases:
        path = write(tmp_path, "show.yaml", THEMES + f'inputs:\n  audio: "file:{name}"\n')
        code, out, err = check(path)
        assert code == 1 and out == [], err
        assert len(err) == 1 and err[0].startswith(f"error: {path}:5:10: inputs.audio: "
                                                   f"{os.path.normpath(tmp_path / name)}: {says}"), err
    nul = write(tmp_path, "nul.yaml", THEMES + 'inputs:\n  audio: "file:a\\0b.wav"\n')
    assert check(nul)[2] == [f"error: {nul}:5:10: inputs.audio: {tmp_path}/a\\x00b.wav: not a usable file name "
                             "(embedded null byte)"]
    for audio in ('"file:set.wav"', "{source: file, path: set.wav, gain: 2}"):
        good = write(tmp_path, "good.yaml", THEMES + f"inputs:\n  audio: {audio}\n")
        assert check(good) == (0, [f"ok  {good} (1 themes, 0 mappings)"], [])


# ------------------------------------------------------------------------------------------------ hot reload

INTERVAL = 0.03


def profile_text(prompt: str) -> str:
    return f"themes:\n  main:\n    prompts: [{prompt}]\n"


def bad_saves(tmp_path: Path) -> list[tuple[str, Any]]:
    """(name, content) of each kind of bad save: text, bytes, or a callable that puts something odd in place."""
    for i in range(40):
        write(tmp_path, f"chain{i}.yaml", f"extends: chain{i + 1}.yaml\n" if i < 39 else profile_text("deep"))
    laughs = "x:\n  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    laughs += "".join(f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    return [
        ("huge integer", profile_text("x") + f"pulse: {{amount: {'9' * 400}}}\n"),
        ("IPv6 typo", profile_text("x") + "scope: {url: 'http://[::1:8000'}\n"),
        ("port", profile_text("x") + "scope: {url: 'http://gpu:99999'}\n"),
        ("seed", profile_text("x") + f"scope: {{parameters: {{base_seed: {'4' * 400}}}}}\n"),
        ("extends chain", "extends: chain0.yaml\n"),
        ("nesting", profile_text("x") + "pulse: " + "[" * 200_000 + "]" * 200_000 + "\n"),
        ("huge file", profile_text("x") + "#\n" * 600_000),
        ("invalid UTF-8", (profile_text("x") + "pulse: {amount: caf\xe9}\n").encode("latin-1")),
        ("binary", bytes(range(256)) * 4),
        ("laughs", profile_text("x") + laughs.replace("x:", "pulse:\n  amount:").replace("\n  -", "\n    -")),
        ("tabs", profile_text("x") + "pulse:\n\tamount: 1\n"),
        ("duplicate keys", profile_text("x") + "pulse: {amount: 0.1, amount: 0.2}\n"),
        ("escape", profile_text("x") + 'pulse: {"\\e[31m": 1}\n'),
        ("folder", os.mkdir),
        *([("fifo", os.mkfifo)] if hasattr(os, "mkfifo") else []),
        ("empty", ""),
    ]


async def test_hot_reload_survives_every_bad_save_and_loads_the_next_good_one(tmp_path: Path) -> None:
    path = write(tmp_path, "show.yaml", profile_text("first"))
    changes: list[ShowProfile] = []
    errors: list[ProfileError] = []
    watcher = ProfileWatcher(path, changes.append, errors.append, interval=INTERVAL)
    await watcher.start()
    try:
        for n, (name, content) in enumerate(bad_saves(tmp_path), start=1):
            if callable(content):
                path.unlink(missing_ok=True)
                content(path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            await wait_for(lambda n=n: len(errors) >= n, 10, f"the error for the {name} save")
            assert_printable(str(errors[-1]))
            assert str(errors[-1]).startswith(str(tmp_path)), (name, str(errors[-1]))
            if callable(content):
                path.rmdir() if path.is_dir() else path.unlink()
        assert changes == []
        path.write_text(profile_text("good at last"), encoding="utf-8")
        await wait_for(lambda: changes, 10, "the good save")
        assert changes[0].themes[0].prompts[0].text == "good at last"
    finally:
        await watcher.aclose()


class BuggyWatcher(ProfileWatcher):
    """A watcher whose reload step has a bug the first three times (fault injection, as aiortc's BuggyStreamTrack)."""

    failures = 3

    async def _reload(self, before: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug in the watcher")
        await super()._reload(before)


async def test_an_unexpected_error_in_the_watcher_is_logged_once_and_it_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "show.yaml", profile_text("first"))
    changes: list[ShowProfile] = []
    watcher = BuggyWatcher(path, changes.append, lambda error: None, interval=INTERVAL)
    await watcher.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="metadj_bridge.profile.watch"):
            for i in range(4):
                path.write_text(profile_text(f"save {i}"), encoding="utf-8")
                await wait_for(lambda i=i: BuggyWatcher.failures - watcher.failures > i or changes, 10, "a poll")
            await wait_for(lambda: changes, 10, "the save after the bugs")
        assert changes[-1].themes[0].prompts[0].text == "save 3"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert "goes on watching" in errors[0].getMessage()
    finally:
        await watcher.aclose()


# ------------------------------------------------------------------------------------------------ fuzzing


def assert_clean(path: Path) -> None:
    """A good profile or one ProfileError naming the file; nothing else."""
    try:
        load_profile(path)
    except ProfileError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        assert_printable(str(exc))


YAML_BITS = ["\n", "  ", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "<<: ", "!!", "'", '"', "#", "\t", "|",
             ">", "\u2028", "\r", "\x85", "\x1b", "\ufeff", "themes:", "prompts:", "extends: ", "1e400", "9" * 320]


@pytest.fixture(scope="module")
def bundled_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundled") / "mappings"
    shutil.copytree(BUNDLED, folder)
    return folder


@settings(max_examples=250, deadline=None)
@given(text=st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=6)), max_size=40).map("".join))
def test_fuzz_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("text") / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    assert_clean(path)


def _docs() -> dict[str, Any]:
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(BUNDLED.glob("*.yaml"))}


DOCS = _docs()
hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(10**300, 10**320), st.floats(),
    st.text(max_size=20), st.text(max_size=3000).filter(lambda t: len(t) > 1990),
    st.sampled_from(["http://[::1:8000", "http://h:70000", "0.0.0.0", "x y", "profile:../default.yaml",
                     "profile:/dev/zero", "\x1b[31m", "midi.cc.1.999", "osc./a b", "file:nope.wav", "record:x.avi",
                     "theme.set:", "prompt.weight.9999", "re:(", "::1:9000", "[::1]:0"]),
)
hostile_values = st.recursive(hostile_scalars, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=12)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


def mutate(doc: Any, data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        places = paths_of(doc)[1:]
        if not places:
            break
        where = data.draw(st.sampled_from(places))
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace":
            parent[where[-1]] = data.draw(hostile_values)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=12))] = parent.pop(where[-1])
    return doc


@settings(max_examples=250, deadline=None)
@given(name=st.sampled_from(sorted(DOCS)), data=st.data())
def test_fuzz_bundled_profiles_with_wrong_values(bundled_copy: Path, name: str, data: st.DataObject) -> None:
    """A bundled profile with a few keys and values replaced, removed or renamed: a good profile or one
    ProfileError, whatever the values are (huge numbers, control characters, paths to devices ...)."""
    doc = mutate(DOCS[name], data)
    path = bundled_copy / f"mutated-{name}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    assert_clean(path)
    code, out, err = check(path)
    # A good profile may still warn (a mapping on a key its pipeline ignores in its mode); a bad one only errs.
    assert (code == 0) == bool(out)
    assert all(line.startswith("error: ") or (code == 0 and line.startswith("warning: ")) for line in err), err
    for line in err:
        assert_printable(line)
