"""ALSA's C error lines go to the bridge's log, not onto the terminal: run where ALSA has no sequencer, as here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.jackrig import midi_backend

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ALSA is Linux's"),
    pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="an ALSA sequencer is here: no error to route"),
]


def devices(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIDO_BACKEND": midi_backend("LINUX_ALSA")}
    return subprocess.run([sys.executable, "-m", "metadj_bridge", *flags, "devices"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def test_alsa_errors_stay_off_the_terminal_and_reach_the_log_with_v() -> None:
    quiet = devices()
    assert quiet.returncode == 0, quiet.stderr
    assert "ALSA lib" not in quiet.stdout + quiet.stderr
    assert "MIDI: unavailable" in quiet.stdout + quiet.stderr  # the bridge's own words stay
    verbose = devices("-v")
    lines = [line for line in verbose.stderr.splitlines() if "alsa_messages" in line]
    assert lines and "snd_seq_hw_open" in lines[0] and "No such file or directory" in lines[0], verbose.stderr
