"""A quiet audio input: one warning with its level and the fix, shown in the status while it lasts; none for music at
a usual level, for silence, or for a level the auto gain still follows. Run through the real analyzer on a file."""

from __future__ import annotations

import asyncio
import logging
import re

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis_config import AnalysisConfig, hop_size_for
from metadj_bridge.inputs.analyzer import AudioAnalyzer
from metadj_bridge.inputs.audio import WavFileSource


@pytest.fixture(scope="module")
def track() -> synth.Track:
    return synth.render(synth.TrackSpec("house-126", "house", 126, 24, seed=5))


def at_dbfs(samples: np.ndarray, dbfs: float) -> np.ndarray:
    """The track scaled so that its RMS (over the whole of it) is ``dbfs``."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return (samples * (10 ** (dbfs / 20) / rms)).astype(np.float32)


async def analyse(samples: np.ndarray, rate: int, caplog: pytest.LogCaptureFixture,
                  analysis: AnalysisConfig | None = None) -> tuple[list[logging.LogRecord], list[str]]:
    """The warnings and info lines of the level watch, and the analyzer's problems at the end."""
    source = WavFileSource(samples, rate, hop_size=hop_size_for(rate), realtime=False)
    analyzer = AudioAnalyzer(source, analysis=analysis)
    with caplog.at_level(logging.INFO, logger="metadj_bridge.inputs.level_watch"):
        await analyzer.start()
        assert analyzer.finished is not None
        await asyncio.wait_for(analyzer.finished, 60)
        problems = analyzer.problems()
        await analyzer.aclose()
    return [r for r in caplog.records if r.name == "metadj_bridge.inputs.level_watch"], problems


async def test_a_quiet_input_is_one_warning_with_its_level_and_the_fix(
    track: synth.Track, caplog: pytest.LogCaptureFixture
) -> None:
    records, problems = await analyse(at_dbfs(track.samples, -52), track.samplerate, caplog)
    assert [r.levelno for r in records] == [logging.WARNING]
    message = records[0].getMessage()
    said = re.fullmatch(r"the audio input is quiet: its loudest second in the last 30 s was (-\d+) dBFS, so the "
                        r"meters read it near zero and the beat is harder to hear; set analysis: \{auto_gain: true\} "
                        r"in the profile, or turn its gain up", message)
    assert said is not None, message
    assert -52 <= int(said.group(1)) <= -46  # its loudest second, a little above the whole track's -52
    assert len(problems) == 1 and re.fullmatch(r"the audio input is quiet \(-[45]\d dBFS\): set analysis: "
                                               r"\{auto_gain: true\} in the profile, or turn its gain up", problems[0])


@pytest.mark.parametrize("dbfs", [-20.0, -30.0])
async def test_music_at_a_usual_level_is_not_quiet(
    track: synth.Track, caplog: pytest.LogCaptureFixture, dbfs: float
) -> None:
    records, problems = await analyse(at_dbfs(track.samples, dbfs), track.samplerate, caplog)
    assert records == [] and problems == []


async def test_silence_and_a_near_silent_hiss_are_not_called_quiet(
    track: synth.Track, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopped player or a muted channel is not an input to turn up: other warnings cover a lost device."""
    n = len(track.samples)
    hiss = (1e-5 * np.random.default_rng(3).standard_normal(n)).astype(np.float32)  # -100 dBFS
    for samples in (np.zeros(n, np.float32), hiss):
        records, problems = await analyse(samples, track.samplerate, caplog)
        assert records == [] and problems == []
        caplog.clear()


async def test_the_music_coming_back_up_clears_the_problem(
    track: synth.Track, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = at_dbfs(track.samples, -55)
    loud = at_dbfs(track.samples, -18)
    records, problems = await analyse(np.concatenate([quiet, loud]), track.samplerate, caplog)
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    back = re.fullmatch(r"the audio input is at (-\d+) dBFS again", records[1].getMessage())
    assert back is not None and -30 <= int(back.group(1)) <= -12  # the first second of the loud part that is up
    assert problems == []


async def test_a_quiet_breakdown_in_a_set_at_a_good_level_is_not_called_quiet(
    track: synth.Track, caplog: pytest.LogCaptureFixture
) -> None:
    """20 s at -50 dBFS between two parts at -16 dBFS: the music is quiet there, not the input."""
    rate = track.samplerate
    loud = at_dbfs(track.samples, -16)
    low = at_dbfs(track.samples[: 20 * rate], -50)
    records, problems = await analyse(np.concatenate([loud, low, loud]), rate, caplog)
    assert records == [] and problems == []


async def test_with_auto_gain_only_what_it_cannot_follow_is_quiet(
    track: synth.Track, caplog: pytest.LogCaptureFixture
) -> None:
    """The auto gain follows down to -40 dBFS: -42 dBFS is quiet without it and fine with it; -52 dBFS is quiet for
    both, and the advice then is the gain alone."""
    auto = AnalysisConfig(auto_gain=True)
    records, _ = await analyse(at_dbfs(track.samples, -42), track.samplerate, caplog)
    assert [r.levelno for r in records] == [logging.WARNING]
    caplog.clear()
    records, _ = await analyse(at_dbfs(track.samples, -42), track.samplerate, caplog, auto)
    assert records == []
    caplog.clear()
    records, problems = await analyse(at_dbfs(track.samples, -52), track.samplerate, caplog, auto)
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "auto_gain" not in records[0].getMessage()
    assert len(problems) == 1 and re.fullmatch(r"the audio input is quiet \(-[45]\d dBFS\): turn its gain up \(or the "
                                               r"volume of what feeds it\)", problems[0])
