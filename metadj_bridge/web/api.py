"""The control API's routes (docs/web.md): each reads one JSON object, hands its fields to the show's controls
(``run/control.py``, through the server's :class:`~metadj_bridge.web.server.Control`) and answers the live state.

Only the shape of the body is checked here (JSON, an object, not too big, no half characters in its text); what a
field must be is the controls' business, and their refusal names the field. Nothing here waits on the show: the
engine applies the request at its next step, and the WebSocket shows the result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from metadj_bridge.errors import MetaDJError
from metadj_bridge.web.strict_json import dumps

if TYPE_CHECKING:
    from metadj_bridge.web.server import Control, WebServer

log = logging.getLogger(__name__)

#: A refusal's kind -> the answer's status.
STATUS = {"bad": 400, "unknown": 404, "forbidden": 403, "unavailable": 501}

Body = dict[str, Any]
Call = Callable[["Control", Body, str], Awaitable[Any] | Any]

#: Half of a UTF-16 surrogate pair: JSON's ``"\\ud800"`` escape reads as one, yet it is no character, and the show
#: log and Scope's data channel (both UTF-8) cannot carry it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def add_api_routes(app: web.Application, server: WebServer) -> None:
    from metadj_bridge.web.server import MAX_BODY, json_error

    def answer(status: int = 200, **extra: Any) -> web.Response:
        return web.json_response({"ok": True, **extra, "state": server.state()}, status=status,
                                 headers={"Cache-Control": "no-store"}, dumps=dumps)

    async def read_body(request: web.Request) -> Body | web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return json_error(413, f"the body is over {MAX_BODY} bytes", "body")
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            return json_error(400, f"the body is not JSON ({exc})", "body")
        except RecursionError:
            return json_error(400, "the body is not JSON: nested too deeply", "body")
        if not isinstance(body, dict):
            return json_error(400, f"the body is JSON but not an object ({type(body).__name__})", "body")
        for name, value in body.items():
            field = "body" if _SURROGATE.search(name) else name  # a key that is not text names no field
            bad = _surrogate_in(name if field == "body" else value)
            if bad is not None:
                return json_error(400, f"{field}: {bad!r} is half of a UTF-16 surrogate pair, not a character; "
                                  "send the whole character", field)
        return body

    def route(path: str, call: Call, *, required: tuple[str, ...], status: int = 200) -> None:
        async def handle(request: web.Request) -> web.Response:
            control = server.control
            if control is None:
                return json_error(503, "no show is running here (replay or start-up): nothing to control")
            body = await read_body(request)
            if isinstance(body, web.Response):
                return body
            for name in required:
                if name not in body:
                    return json_error(400, f"{name}: missing (docs/web.md: {path} takes "
                                      f"{', '.join(required)})", name)
            who = f"web from {request.remote or '?'}"
            try:
                result = call(control, body, who)
                if asyncio.iscoroutine(result):
                    result = await result
            except MetaDJError as exc:
                field = getattr(exc, "field", "body")
                return json_error(STATUS.get(getattr(exc, "kind", "bad"), 400), str(exc), field)
            extra = result if isinstance(result, dict) else {}
            return answer(status, **extra)

        app.router.add_post(path, handle)

    async def profile(control: Control, body: Body, who: str) -> dict[str, Any]:
        real = await asyncio.to_thread(control.switch_profile, body["path"], who)  # stats the file
        control.request_switch(real, who)
        return {"path": real}

    route("/api/prompt", lambda c, b, who: c.type_prompt(b["text"], who), required=("text",))
    route("/api/theme", lambda c, b, who: c.set_theme(b["name"], who), required=("name",))
    route("/api/crossfade", lambda c, b, who: c.set_crossfade(b["value"], who), required=("value",))
    route("/api/action", lambda c, b, who: c.action(b["name"], who), required=("name",))
    route("/api/profile", profile, required=("path",), status=202)
    route("/api/scene/save", lambda c, b, who: c.save_scene(b["name"], who), required=("name",))
    route("/api/scene/recall", lambda c, b, who: c.recall_scene(b["name"], b.get("morph_bars"), who),
          required=("name",))

    route("/api/learn", lambda c, b, who: c.learn(b["target"], b.get("name"), who), required=("target",),
          status=202)
    route("/api/learn/cancel", lambda c, b, who: c.cancel_learn(who), required=())

    async def state(request: web.Request) -> web.Response:
        current = server.state()
        if current is None:
            return json_error(500, "the status snapshot failed; see the bridge's log")
        return web.json_response(current, headers={"Cache-Control": "no-store"}, dumps=dumps)

    app.router.add_get("/api/state", state)


def _surrogate_in(value: Any) -> str | None:
    """The first lone surrogate in the strings of a JSON value (keys too, at any depth), or None."""
    stack = [value]
    while stack:  # not recursive: the decoder allowed nesting almost as deep as Python's own limit
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return found.group()
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
