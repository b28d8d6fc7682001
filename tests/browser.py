"""A headless chromium for the control page's tests (tests/test_web_page.py), driven by selenium through Debian's
chromium-driver: no browser download, a fresh profile each time. Selenium's calls block, so each one runs in a
worker thread (``Browser.call``) while the bridge under test goes on on the event loop."""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from PIL import Image

from tests.helpers import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: The headless browser's switches: no sandbox (root in CI), no GPU, nothing fetched from the network on its own.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")


class Browser:
    """One headless chromium with a fresh profile. Every selenium call runs in a worker thread."""

    def __init__(self, driver: Any, profile_dir: tempfile.TemporaryDirectory[str]) -> None:
        self.driver = driver
        self._profile_dir = profile_dir

    @classmethod
    async def start(cls, size: tuple[int, int] = (1280, 900)) -> Browser:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        profile_dir = tempfile.TemporaryDirectory(prefix="metadj-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={profile_dir.name}")
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        # An explicit driver: selenium's own manager would go looking on the network for one.
        driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=Service(CHROMEDRIVER))
        return cls(driver, profile_dir)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def open(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def find(self, css: str) -> Any:
        return await self.call(self.driver.find_element, "css selector", css)

    async def click(self, css: str) -> None:
        await self.call((await self.find(css)).click)

    async def type(self, css: str, text: str) -> None:
        await self.call((await self.find(css)).send_keys, text)

    async def screenshot(self, css: str) -> Image.Image:
        png = await self.call(lambda element: element.screenshot_as_png, await self.find(css))
        return Image.open(io.BytesIO(png)).convert("RGB")

    async def until(self, script: str, what: str, limit: float = 20) -> Any:
        """Poll a JavaScript expression (``return ...``) until it is truthy."""
        return await wait_for(lambda: self.js(script), limit, what, interval=0.1)

    async def errors(self) -> list[str]:
        """What the page's console said at the SEVERE level (a script error, a failed request) since the last call."""
        return [entry["message"] for entry in await self.call(self.driver.get_log, "browser")
                if entry["level"] == "SEVERE"]

    async def aclose(self) -> None:
        try:
            await self.call(self.driver.quit)
        finally:
            self._profile_dir.cleanup()
