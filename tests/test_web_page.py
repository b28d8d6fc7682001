"""The control page in a real browser: Debian's chromium, driven through its chromedriver by selenium
(:mod:`tests.browser`), against a whole bridge running in-process on the emulator (real WebRTC, the real web server,
the page as shipped). Skipped, with the reason, where chromium, its driver or selenium is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import ImageStat

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from tests.browser import CHROMEDRIVER, CHROMIUM, Browser
from tests.conftest import emulator_get
from tests.helpers import wait_for

pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra: pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

#: The log line that says where the page is; on a LAN bind it names the machine's address, on any bind the browser
#: goes to 127.0.0.1 (0.0.0.0 takes loopback too) with the port it says.
PAGE_AT = re.compile(r"web: control page at http://[^\s/]+:(\d+)/")
#: A phone: an iPhone 12/13/14's viewport in CSS pixels.
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture
async def browser() -> AsyncIterator[Callable[..., Awaitable[Browser]]]:
    started: list[Browser] = []

    async def start(size: tuple[int, int] = (1280, 900)) -> Browser:
        started.append(await Browser.start(size))
        return started[-1]

    yield start
    for each in started:
        await each.aclose()


def write_profile(path: Path, scope_url: str, audio: str = "none", osc_port: int | None = None) -> Path:
    osc = f", osc: {{port: {osc_port}}}" if osc_port is not None else ""
    path.write_text(
        f"scope: {{url: {scope_url}, resolution: [256, 144], denoising: fast}}\n"
        f"inputs: {{audio: {audio}{osc}}}\n"
        "themes:\n"
        "  neon: {prompts: [neon city at night, rain on glass]}\n"
        "  storm: {prompts: [a storm over the harbour]}\n",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def running_bridge(profile: Path, caplog: pytest.LogCaptureFixture, **fields: Any) -> AsyncIterator[str]:
    """A whole bridge on the emulator; yields its web server's base URL (from the log line that says where)."""
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    before = len(PAGE_AT.findall(caplog.text))
    options = RunOptions(**{"profile": str(profile), "duration": 120, "output": "none", "http_port": 0,
                            "show_log": str(profile.with_suffix(".jsonl")), **fields})
    bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    try:
        await wait_for(lambda: bridge.done() or len(PAGE_AT.findall(caplog.text)) > before, 20, "the web server")
        assert not bridge.done(), bridge.exception()
        yield f"http://127.0.0.1:{PAGE_AT.findall(caplog.text)[-1]}"
    finally:
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge


async def scope_applied(emulator_url: str, text: str) -> bool:
    """Whether the emulator has applied a message that carries ``text`` (a prompt, or a transition towards it), or
    started a session with it in its ``initialParameters`` (a theme chosen while the session was still being set
    up, such as after a restart, goes to Scope in the offer, and no message follows)."""
    log = await emulator_get(emulator_url, "/_emulator/log")
    return any(text in json.dumps(entry["message"]) for entry in log["applied"]) or any(
        text in json.dumps(offer) for offer in log["offers"])


async def page_ready(page: Browser) -> None:
    await page.until("return document.getElementById('link').dataset.state === 'open'"
                     " && document.querySelectorAll('#themes button').length === 2", "the page's live state")


async def test_a_theme_button_and_a_typed_prompt_reach_scope(make_emulator: Any, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture, browser: Any) -> None:
    emulator = await make_emulator()
    profile = write_profile(tmp_path / "show.yaml", emulator.url)
    async with running_bridge(profile, caplog) as base:
        page = await browser()
        await page.open(base + "/")
        await page_ready(page)
        assert await page.js("return document.querySelector('#themes .active').dataset.theme") == "neon"
        assert not await scope_applied(emulator.url, "a storm over the harbour")

        await page.click("#themes button[data-theme='storm']")
        await wait_for(lambda: scope_applied(emulator.url, "a storm over the harbour"), 20, "the storm theme at Scope")
        await page.until("return document.querySelector('#themes button[data-theme=\"storm\"]')"
                         ".getAttribute('aria-pressed') === 'true'", "the storm button lit")

        typed = "a glass lighthouse in the fog"
        await page.type("#prompt-text", typed + "\n")
        await wait_for(lambda: scope_applied(emulator.url, typed), 20, "the typed prompt at Scope")
        await page.until(f"return document.getElementById('prompts').textContent.includes({typed!r})",
                         "the typed prompt on the page")
        assert await page.js("return document.getElementById('prompt-text').value") == ""
        assert await page.errors() == []


async def scope_count(emulator_url: str, check: Callable[[dict[str, Any]], bool], offers: bool = False) -> int:
    """Messages Scope applied that pass ``check``; with ``offers`` also sessions whose offer carried it (a change made
    while the pipeline still loads goes in the offer's initialParameters, not in a message)."""
    log = await emulator_get(emulator_url, "/_emulator/log")
    applied = sum(1 for entry in log["applied"] if check(entry["message"]))
    return applied + (sum(1 for offer in log["offers"] if check(offer)) if offers else 0)


def weight_of(message: dict[str, Any], text: str) -> float:
    prompts = message["prompts"] if isinstance(message.get("prompts"), list) else []
    return next((float(p["weight"]) for p in prompts if isinstance(p, dict) and p.get("text") == text), 0.0)


def second_only(message: dict[str, Any]) -> bool:
    """The theme's second prompt alone: the crossfader at its end."""
    return weight_of(message, "rain on glass") > 0.95 and weight_of(message, "neon city at night") < 0.05


async def _fader_page(page: Any, base: str) -> Any:
    """The control page, open and ready, its crossfader usable."""
    await page.open(base + "/")
    await page_ready(page)
    await page.until("return !document.getElementById('crossfade').disabled", "the crossfader")
    return page


async def test_the_fader_moved_while_the_pipeline_loads_reaches_scope_in_the_offer(make_emulator: Any, tmp_path: Path,
                                                                                  caplog: pytest.LogCaptureFixture,
                                                                                  browser: Any) -> None:
    """The page is up before Scope's pipeline has loaded: the fader moved then is not lost, the session's offer
    carries it (initialParameters)."""
    from selenium.webdriver.common.keys import Keys

    emulator = await make_emulator(load_seconds=6.0)
    profile = write_profile(tmp_path / "show.yaml", emulator.url)
    async with running_bridge(profile, caplog) as base:
        page = await _fader_page(await browser(), base)
        await page.type("#crossfade", Keys.END)
        await wait_for(lambda: scope_count(emulator.url, second_only, offers=True), 20, "the crossfade at Scope")
        log = await emulator_get(emulator.url, "/_emulator/log")
        assert [second_only(offer) for offer in log["offers"]] == [True]


async def test_the_fader_the_show_buttons_and_a_scene_reach_scope(make_emulator: Any, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    emulator = await make_emulator()
    profile = write_profile(tmp_path / "show.yaml", emulator.url)
    async with running_bridge(profile, caplog) as base:
        page = await _fader_page(await browser(), base)
        # The fader, moved with the keyboard to its end: only the theme's second prompt.
        assert await scope_count(emulator.url, second_only, offers=True) == 0
        await page.type("#crossfade", Keys.END)
        await wait_for(lambda: scope_count(emulator.url, second_only, offers=True), 20, "the crossfade at Scope")

        # Pause lights up and freezes Scope; the same button resumes.
        await page.click("#pause")
        await wait_for(lambda: _paused(emulator.url, True), 20, "Scope paused")
        await page.until("return document.getElementById('pause').textContent === 'resume'", "the resume button")
        await page.click("#pause")
        await wait_for(lambda: _paused(emulator.url, False), 20, "Scope running again")

        resets = await scope_count(emulator.url, lambda m: m.get("reset_cache") is True)
        await page.click("#reset-cache")
        await wait_for(lambda: _more(scope_count(emulator.url, lambda m: m.get("reset_cache") is True), resets),
                       20, "a cache reset at Scope")

        # A scene saved on neon, the theme moved to storm, the scene recalled at once: neon plays again.
        await page.type("#scene-name", "opener\n")
        await page.until("return document.querySelector('#scenes button[data-scene=\"opener\"]') !== null",
                         "the saved scene's button")
        await page.click("#themes button[data-theme='storm']")
        await wait_for(lambda: scope_applied(emulator.url, "a storm over the harbour"), 20, "the storm theme")
        def neon_prompts(message: dict[str, Any]) -> bool:
            return "neon city at night" in json.dumps(message) or "rain on glass" in json.dumps(message)

        neon = await scope_count(emulator.url, neon_prompts)
        await page.js("document.getElementById('morph-bars').value = '0'")
        await page.click("#scenes button[data-scene='opener']")
        await wait_for(lambda: _more(scope_count(emulator.url, neon_prompts), neon), 20, "the scene's prompts at Scope")
        await page.until("return document.querySelector('#themes .active').dataset.theme === 'neon'",
                         "the scene's theme lit")

        await page.click("#panic")
        await page.until("return document.getElementById('panic').getAttribute('aria-pressed') === 'true'",
                         "the panic button lit")

        # Taps half a second apart make a tempo where there was none (no audio in this show); nudges reach it too.
        assert await page.js("return document.getElementById('tempo').textContent") == "- BPM"
        for _ in range(4):
            await page.click("#tap")
            await asyncio.sleep(0.5)
        await page.until("return / BPM · osc$/.test(document.getElementById('tempo').textContent)",
                         "the tapped tempo on the page")
        bpm = float((await page.js("return document.getElementById('tempo').textContent")).split()[0])
        assert 40 <= bpm <= 250, bpm
        await page.click("#nudge-forward")
        await page.click("#nudge-back")
        await wait_for(lambda: "nudge" in caplog.text, 10, "the nudges at the bridge")
        await page.click("#downbeat")  # "one": the bar begins on the beat nearest the press
        await wait_for(lambda: "downbeat: the bar begins on this beat" in caplog.text, 10, "the one at the bridge")
    show_log = profile.with_suffix(".jsonl").read_text(encoding="utf-8")  # what the page did is in the show log
    for event in ("control: pause", "control: theme storm", "control: scene recalled: opener", "control: tap tempo"):
        assert event in show_log and "web from 127.0.0.1" in show_log, (event, show_log[-2000:])


async def _paused(emulator_url: str, paused: bool) -> bool:
    return bool((await emulator_get(emulator_url, "/_emulator/metrics"))["paused"]) is paused


async def _more(count: Awaitable[int], than: int) -> bool:
    return await count > than


async def test_the_page_shows_the_live_picture_and_moving_meters(make_emulator: Any, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 browser: Any) -> None:
    emulator = await make_emulator()
    profile = write_profile(tmp_path / "show.yaml", emulator.url, audio="demo")
    async with running_bridge(profile, caplog, output="preview") as base:
        page = await browser()
        await page.open(base + "/")
        await page_ready(page)
        await page.until("return document.getElementById('scope').dataset.state === 'streaming'", "Scope streaming")
        await page.until("const img = document.getElementById('picture');"
                         " return img.complete && img.naturalWidth > 0", "the picture in the page")
        picture = await page.screenshot("#picture")
        spread = max(ImageStat.Stat(picture).stddev)
        assert spread > 8, f"the picture is one flat colour (stddev {spread:.1f})"

        # The energy meter's bar moves with the music: its drawn width takes several values.
        widths: set[int] = set()

        async def moved() -> bool:
            widths.add(round(await page.js(
                "return document.querySelector('.meter[data-meter=\"energy\"] .meter-fill')"
                ".getBoundingClientRect().width")))
            return len(widths) >= 3 and max(widths) > 0

        await wait_for(moved, 20, "the energy meter to move", interval=0.15)
        meters = await page.screenshot("#meters")
        pixels = np.asarray(meters, dtype=np.int16)  # the bars are bright and coloured; the page is dark and grey
        lit = int(np.count_nonzero((pixels.max(axis=2) > 120) & (np.ptp(pixels, axis=2) > 60)))
        assert lit > 50, "no meter bar is drawn"
        await page.until("return /^\\d+\\.\\d BPM · \\w/.test(document.getElementById('tempo').textContent)",
                         "the BPM and its source")
        # The beat dots walk through the bar.
        beats: set[str] = set()

        async def walking() -> bool:
            beats.add(await page.js("return document.getElementById('beats').dataset.beat || ''"))
            return len(beats - {""}) >= 3

        await wait_for(walking, 20, "the beat indicator to move", interval=0.1)
        assert await page.errors() == []


async def test_a_phone_shows_everything_without_horizontal_scroll(make_emulator: Any, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture,
                                                                  browser: Any) -> None:
    emulator = await make_emulator()
    profile = write_profile(tmp_path / "show.yaml", emulator.url)
    async with running_bridge(profile, caplog) as base:
        phone = await browser()
        await phone.call(phone.driver.execute_cdp_cmd, "Emulation.setDeviceMetricsOverride", PHONE)
        await phone.open(base + "/")
        await page_ready(phone)
        width = await phone.js("return window.innerWidth")
        assert width == PHONE["width"]
        assert await phone.js("return document.documentElement.scrollWidth") <= width
        outside = await phone.js("""
            const w = window.innerWidth, bad = [];
            for (const el of document.querySelectorAll('header *, main *')) {
              const r = el.getBoundingClientRect();
              if (r.width > 0 && (r.left < -0.5 || r.right > w + 0.5)) bad.push(el.id || el.className || el.tagName);
            }
            return bad;""")
        assert outside == [], f"past the right edge of a {width}px phone: {outside}"
        small = await phone.js("""
            return Array.from(document.querySelectorAll('main button, main input:not([type=range]), main select'))
              .filter(el => el.getBoundingClientRect().height < 44).map(el => el.id || el.textContent);""")
        assert small == [], f"touch targets under 44px: {small}"
        # One column: every panel starts at the same left edge, one under the other.
        lefts = await phone.js("return Array.from(document.querySelectorAll('main > section'))"
                               ".map(s => Math.round(s.getBoundingClientRect().left))")
        assert len(lefts) == 8 and len(set(lefts)) == 1, lefts

        laptop = await browser((1280, 900))
        await laptop.open(base + "/")
        await page_ready(laptop)
        beside = await laptop.js("const a = document.querySelector('.picture-panel').getBoundingClientRect(),"
                                 " b = document.querySelectorAll('main > section')[1].getBoundingClientRect();"
                                 " return b.left >= a.right && Math.abs(b.top - a.top) < 2")
        assert beside, "on a laptop the controls stand beside the picture"


async def test_the_page_keeps_its_token_on_a_lan_bind(make_emulator: Any, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture, browser: Any) -> None:
    emulator = await make_emulator()
    profile = write_profile(tmp_path / "show.yaml", emulator.url)
    token = "page-test-token-7c1d"
    # 0.0.0.0 is a LAN bind (the token is wanted) that the browser still reaches on 127.0.0.1.
    async with running_bridge(profile, caplog, http_host="0.0.0.0", http_token=token, output="preview") as base:
        stranger = await browser()
        await stranger.open(base + "/")
        await stranger.until("return !document.getElementById('token-banner').hidden", "the page asking for the token")
        assert await stranger.js("return document.querySelectorAll('#themes button').length") == 0

        page = await browser()
        await page.open(f"{base}/?token={token}")
        await page_ready(page)
        # The token leaves the address bar for localStorage, and the page still works after a reload without it.
        assert "token" not in await page.js("return location.href")
        await page.open(base + "/")
        await page_ready(page)
        await page.click("#themes button[data-theme='storm']")
        await wait_for(lambda: scope_applied(emulator.url, "a storm over the harbour"), 20, "the storm theme at Scope")
        await page.until("return document.getElementById('picture').naturalWidth > 0", "the picture, with the token")

        # The stranger types the token into the banner and gets the show too.
        await stranger.type("#token-input", token + "\n")
        await page_ready(stranger)
        assert await stranger.js("return document.getElementById('token-banner').hidden")


async def test_the_page_reconnects_when_the_bridge_restarts(make_emulator: Any, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture, browser: Any) -> None:
    emulator = await make_emulator()
    first = write_profile(tmp_path / "first.yaml", emulator.url)
    second = write_profile(tmp_path / "second.yaml", emulator.url)
    page = await browser()
    async with running_bridge(first, caplog) as base:
        await page.open(base + "/")
        await page_ready(page)
        assert await page.js("return document.getElementById('profile').textContent") == "first.yaml"
    await page.until("return document.getElementById('link').dataset.state !== 'open'", "the page seeing it go")
    port = int(base.rsplit(":", 1)[1])
    async with running_bridge(second, caplog, http_port=port) as again:
        assert again == base
        await page.until("return document.getElementById('link').dataset.state === 'open'"
                         " && document.getElementById('profile').textContent === 'second.yaml'",
                         "the page back on the restarted bridge", limit=30)
        await page.click("#themes button[data-theme='storm']")
        await wait_for(lambda: scope_applied(emulator.url, "a storm over the harbour"), 20, "the storm theme at Scope")


async def test_a_profile_button_switches_the_show(make_emulator: Any, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture, browser: Any) -> None:
    emulator = await make_emulator()
    club = write_profile(tmp_path / "club.yaml", emulator.url)
    chill = tmp_path / "chill.yaml"
    chill.write_text(club.read_text(encoding="utf-8").split("themes:")[0]
                     + "themes:\n  ocean: {prompts: [a calm ocean at dawn]}\n", encoding="utf-8")
    async with running_bridge(club, caplog) as base:
        page = await browser()
        await page.open(base + "/")
        await page_ready(page)
        lit = "return Array.from(document.querySelectorAll('#profiles button.active')).map(b => b.textContent)"
        await page.until(lit + ".join() === 'club.yaml'", "the running profile lit in the list")
        await page.click(f"#profiles button[data-profile='{chill.resolve()}']")
        await wait_for(lambda: scope_applied(emulator.url, "a calm ocean at dawn"), 20, "the chill profile at Scope")
        await page.until("return document.querySelector('#themes .active').dataset.theme === 'ocean'",
                         "the new profile's themes on the page")
        await page.until(lit + ".join() === 'chill.yaml'", "the new profile lit in the list")


async def test_learn_from_the_page_writes_the_moved_control_into_the_profile(
    make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, browser: Any
) -> None:
    from pythonosc.udp_client import SimpleUDPClient

    emulator = await make_emulator()
    osc_port = free_udp_port()
    profile = write_profile(tmp_path / "show.yaml", emulator.url, osc_port=osc_port)
    async with running_bridge(profile, caplog) as base:
        page = await browser()
        await page.open(base + "/")
        await page_ready(page)
        await page.until("return Array.from(document.getElementById('learn-target').options)"
                         ".some(o => o.value === 'theme.set:storm')", "the learn targets")
        await page.js("document.getElementById('learn-target').value = 'noise_scale'")
        await page.type("#learn-name", "fader")
        await page.click("#learn-start")
        await page.until("return document.getElementById('learn-status').textContent.startsWith('move a control')",
                         "the page waiting for a control")
        fader = SimpleUDPClient("127.0.0.1", osc_port)
        try:
            for step in range(12):  # a fader pushed from 0.1 to 0.76, then left alone
                fader.send_message("/fader", 0.1 + step * 0.06)
                await asyncio.sleep(0.05)
        finally:
            fader._sock.close()  # python-osc's client has no close()
        await page.until("return document.getElementById('learn-status').classList.contains('done')",
                         "the mapping written", limit=20)
        assert "osc./fader" in await page.js("return document.getElementById('learn-status').textContent")
    text = profile.read_text(encoding="utf-8")
    assert "fader:" in text and "source: osc./fader" in text and "target: noise_scale" in text, text


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_each_screen_of_a_show_has_its_pill_and_its_picture(make_emulator: Any, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   browser: Any) -> None:
    main, left = await make_emulator(), await make_emulator()
    profile = write_profile(tmp_path / "show.yaml", main.url)
    with profile.open("a", encoding="utf-8") as out:  # a second screen, square, on its own server
        out.write(f"screens:\n  left:\n    scope: {{url: {left.url}, resolution: [192, 192]}}\n")
    async with running_bridge(profile, caplog, output="preview") as base:
        page = await browser()
        await page.open(base + "/")
        await page_ready(page)
        await page.until("const pills = document.querySelectorAll('#screens .pill');"
                         " return pills.length === 2 && Array.from(pills).every(p => p.dataset.state === 'streaming')",
                         "a pill per screen, both streaming")
        await page.until("const img = document.getElementById('picture');"
                         " return img.complete && img.naturalWidth === 256", "the main screen's picture")
        await page.click("#screens .pill[data-screen='left']")
        await page.until("const img = document.getElementById('picture');"
                         " return img.src.includes('/screens/left/stream.mjpg') && img.complete"
                         " && img.naturalWidth === 192 && img.naturalHeight === 192", "the left screen's picture")
        assert await page.js("return document.querySelector(\"#screens .pill[data-screen='left']\")"
                             ".getAttribute('aria-pressed')") == "true"
        await page.click("#screens .pill[data-screen='main']")
        await page.until("const img = document.getElementById('picture');"
                         " return img.complete && img.naturalWidth === 256", "back to the main screen's picture")
        assert await page.errors() == []
