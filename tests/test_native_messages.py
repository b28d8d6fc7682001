"""ALSA's and JACK's C lines go to the bridge's log, not onto the terminal: run where ALSA has no sequencer and
no JACK server runs, as here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from metadj_bridge.inputs.native_messages import jack_libraries
from tests.jackrig import midi_backend


def jack_libraries_here() -> bool:
    import ctypes

    for name in jack_libraries():
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ALSA and this JACK are Linux's")


def devices(*flags: str, api: str = "LINUX_ALSA") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIDO_BACKEND": midi_backend(api), "JACK_NO_START_SERVER": "1",
           "JACK_DEFAULT_SERVER": "metadj-test-nobody-runs-this"}
    return subprocess.run([sys.executable, "-m", "metadj_bridge", *flags, "devices"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="an ALSA sequencer is here: no error to route")
def test_alsa_errors_stay_off_the_terminal_and_reach_the_log_with_v() -> None:
    quiet = devices()
    assert quiet.returncode == 0, quiet.stderr
    assert "ALSA lib" not in quiet.stdout + quiet.stderr
    assert "MIDI: unavailable" in quiet.stdout + quiet.stderr  # the bridge's own words stay
    verbose = devices("-v")
    lines = [line for line in verbose.stderr.splitlines() if "native_messages" in line and "ALSA" in line]
    assert lines and "snd_seq_hw_open" in lines[0] and "No such file or directory" in lines[0], verbose.stderr


@pytest.mark.skipif(not jack_libraries_here(), reason="no libjack on this machine (apt-get install jackd2)")
def test_jack_lines_stay_off_the_terminal_and_reach_the_log_with_v() -> None:
    quiet = devices(api="UNIX_JACK")
    assert quiet.returncode == 0, quiet.stderr
    assert "Cannot connect to server" not in quiet.stderr and "jack server is not running" not in quiet.stderr
    assert "MIDI: unavailable" in quiet.stdout + quiet.stderr
    verbose = devices("-v", api="UNIX_JACK")
    assert any("JACK: Cannot connect to server" in line for line in verbose.stderr.splitlines()), verbose.stderr
