"""A hostile client of the bridge's web server: it opens streams by the hundred (round 2 of the hostile-input audit).

Real parts only: the web server on loopback, httpx as the viewers, a real preview fed with frames.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.web.picture import MAX_VIEWERS, RETRY_AFTER
from metadj_bridge.web.server import WebServer
from tests.helpers import wait_for
from tests.test_web_server import SNAP, H, W, shown


@pytest.fixture
def preview() -> Iterator[PreviewSink]:
    sink = PreviewSink(fps=30)
    sink.open(W, H, 30.0)
    sink.show(shown(0))
    yield sink
    sink.close()


@pytest.fixture
async def server(preview: PreviewSink) -> AsyncIterator[WebServer]:
    async with WebServer(lambda: SNAP, preview=preview, port=0, screens={"side": preview}) as web:
        yield web


def picture_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "metadj_bridge.web.picture"]


async def test_streams_over_the_cap_are_refused_with_a_sentence_and_a_few_log_lines(
        server: WebServer, preview: PreviewSink, caplog: pytest.LogCaptureFixture) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as http:
        async with contextlib.AsyncExitStack() as streams:
            answers = []
            for n in range(120):  # the main picture and a screen's count together
                path = "/stream.mjpg" if n % 2 else "/screens/side/stream.mjpg"
                answers.append(await streams.enter_async_context(http.stream("GET", path)))
            served = [a for a in answers if a.status_code == 200]
            refused = [a for a in answers if a.status_code != 200]
            assert len(served) == MAX_VIEWERS and preview.stats().viewers == MAX_VIEWERS
            assert {a.status_code for a in refused} == {503}
            await refused[0].aread()
            assert refused[0].headers["Retry-After"] == str(RETRY_AFTER)
            assert refused[0].json() == {
                "error": f"the picture already has {MAX_VIEWERS} viewers, the most this bridge serves at once; "
                         "close a picture open elsewhere, or use /frame.jpg", "field": "viewers"}
            assert (await http.get("/frame.jpg")).status_code == 200  # the single frame is still served
        await wait_for(lambda: preview.stats().viewers == 0, 5, "the viewers gone")
        async with http.stream("GET", "/stream.mjpg") as again:  # room again once they left
            assert again.status_code == 200
    await wait_for(lambda: preview.stats().viewers == 0, 5, "the last viewer gone")
    lines = picture_lines(caplog)
    # 121 viewers came, 112 were refused and 9 left: one line for the comings and goings, one for the refusals.
    assert len(lines) == 2, lines
    assert lines[0].startswith("preview: viewers coming and going: 127.0.0.1 is watching")
    assert lines[1].startswith(f"preview: viewers refused (at most {MAX_VIEWERS} at once): ")
