"""More screens from one show: each on its own Scope server, all driven by the same music, tempo and controls.

The main screen is the one the show runs on: its :class:`~metadj_bridge.scope.sender.ParameterSender` is the one
the mapping engine feeds. Every further screen (the profile's ``screens:``) has a sender, a self-healing
:class:`~metadj_bridge.scope.session.ScopeSession`, an output clock and outputs of its own. A
:class:`ScreenFeed` hangs on the main sender (``sender.mirrors``) and hands each change on to its screen:
prompts reworded by the screen's prompt bank, values checked against the screen's own pipeline, keys that
pipeline does not take left out (said once per key). Each screen's session heals on its own: a server that is
down, slow or wrong only shows on that screen (a slate, a line in the status) and never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metadj_bridge import parameters
from metadj_bridge.errors import ConfigError, ParameterError, RateLimitedWarning
from metadj_bridge.profile.model import PromptSpec, ScopeSettings, ShowProfile
from metadj_bridge.profile.screens import MAIN_SCREEN

if TYPE_CHECKING:
    from metadj_bridge.run.plan import RunOptions
    from metadj_bridge.scope.sender import ParameterSender
    from metadj_bridge.scope.session import ScopeSession
    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.preview import PreviewSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreenPlan:
    """What one further screen will do: its server, pipeline, size, outputs and prompt bank."""

    name: str
    #: None: a built-in emulator of its own.
    scope_url: str | None
    pipeline: str
    width: int
    height: int
    denoising: tuple[int, ...]
    min_send_interval: float
    max_send_interval: float
    outputs: tuple[str, ...]
    video_size: tuple[int, int]
    video_fps: float
    video_device: str | None
    video_backend: str | None
    slate_after: float
    #: Theme name -> the prompts it sends on this screen.
    prompts: dict[str, tuple[PromptSpec, ...]] = field(default_factory=dict)


def screen_plans(profile: ShowProfile, options: RunOptions) -> tuple[ScreenPlan, ...]:
    """The profile's further screens as plans; ``--rehearse`` puts each on a built-in emulator."""
    from metadj_bridge.scope.api import normalise_url

    plans = []
    for screen in profile.screens:
        scope, video = screen.scope, screen.video
        width, height = scope_size(scope)
        url = None if options.rehearse or scope.url is None else normalise_url(scope.url)
        plans.append(ScreenPlan(
            name=screen.name, scope_url=url, pipeline=scope.pipeline, width=width, height=height,
            denoising=tuple(scope.denoising), min_send_interval=scope.min_send_interval,
            max_send_interval=scope.max_send_interval, outputs=video.outputs,
            video_size=video.size or (width, height), video_fps=video.fps, video_device=video.device,
            video_backend=video.backend, slate_after=video.slate_after, prompts=dict(screen.prompts),
        ))
    return tuple(plans)


def scope_size(scope: ScopeSettings) -> tuple[int, int]:
    """The pipeline's load size a ``scope:`` section asks for: its resolution, else its aspect's preset (16:9)."""
    if scope.resolution is not None:
        return scope.resolution
    width, height = parameters.ASPECT_PRESETS[scope.aspect or "16:9"]
    return width, height


def check_screens(main_url: str | None, plans: tuple[ScreenPlan, ...]) -> None:
    """Two screens on one Scope server cannot work (one pipeline at a time): a ConfigError naming both."""
    seen: dict[str, str] = {}
    if main_url is not None:
        seen[main_url] = MAIN_SCREEN
    for plan in plans:
        if plan.scope_url is None:
            continue
        other = seen.get(plan.scope_url)
        if other is not None:
            raise ConfigError(f"screens {other!r} and {plan.name!r} both use the Scope server {plan.scope_url}; "
                              "a server runs one pipeline at a time: give each screen its own")
        seen[plan.scope_url] = plan.name


def shared_server(profile: ShowProfile) -> tuple[str, ConfigError] | None:
    """The first screen of ``profile`` that ``run`` would refuse for a Scope server another screen (or the main
    one) already uses, and the error run gives, for ``check``; None when every screen has its own."""
    from metadj_bridge.run.plan import RunOptions
    from metadj_bridge.scope.api import normalise_url

    try:
        main = normalise_url(profile.scope.url) if profile.scope.url is not None else None
        plans = screen_plans(profile, RunOptions())
    except ConfigError:
        return None  # a URL loading let through but run refuses: run says so itself
    for count, screen in enumerate(profile.screens, 1):
        try:
            check_screens(main, plans[:count])
        except ConfigError as exc:
            return screen.name, exc
    return None


class PromptBank:
    """Rewords the show's prompts for one screen: each theme's prompt texts -> the screen's, by position."""

    def __init__(self, screen: str, bank: Mapping[str, tuple[PromptSpec, ...]],
                 profile: Callable[[], ShowProfile]) -> None:
        self.screen = screen
        self.bank = dict(bank)
        self._profile = profile
        self._made_for: ShowProfile | None = None
        self._table: dict[str, str] = {}

    def table(self) -> dict[str, str]:
        """Show text -> screen text, made again when the profile changes (a reload or a switch)."""
        profile = self._profile()
        if profile is not self._made_for:
            # The running profile's words for this screen (a switch or reload may bring new ones).
            self.bank = next((dict(s.prompts) for s in profile.screens if s.name == self.screen), self.bank)
            table: dict[str, str] = {}
            for theme in profile.themes:
                own = self.bank.get(theme.name)
                if not own:
                    continue
                for i, spec in enumerate(theme.prompts):
                    mine = own[min(i, len(own) - 1)]
                    table[spec.text] = mine.text
                    if spec.intense:
                        table[spec.intense] = mine.intense or mine.text
                if theme.intense:
                    table[theme.intense] = own[0].intense or own[0].text
            self._table, self._made_for = table, profile
        return self._table

    def reword(self, prompts: Any) -> Any:
        """A ``prompts`` value with each known text replaced; texts two prompts now share are merged."""
        table = self.table()
        if not table or not isinstance(prompts, list):
            return prompts
        out: list[dict[str, Any]] = []
        where: dict[str, int] = {}
        for item in prompts:
            original = item.get("text") if isinstance(item, Mapping) else None
            if not isinstance(original, str):
                return prompts
            text = table.get(original, original)
            weight = item.get("weight", 1.0)
            if text in where:
                merged = out[where[text]]
                merged["weight"] = merged.get("weight", 1.0) + weight
                continue
            where[text] = len(out)
            out.append({**item, "text": text})
        return out


class ScreenFeed:
    """One further screen's share of the main sender's changes (a ``ParameterMirror``)."""

    def __init__(self, name: str, sender: ParameterSender, bank: PromptBank) -> None:
        self.name = name
        self.sender = sender
        self.bank = bank
        self._refused: set[str] = set()
        self._rejected = RateLimitedWarning(log, f"screen {name}: values its pipeline refused (left out)")

    def reword(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(params)
        if "prompts" in out:
            out["prompts"] = self.bank.reword(out["prompts"])
        transition = out.get("transition")
        if isinstance(transition, Mapping) and "target_prompts" in transition:
            out["transition"] = {**transition, "target_prompts": self.bank.reword(transition["target_prompts"])}
        return out

    def apply(self, params: Mapping[str, Any]) -> None:
        schema = self.sender.schema
        checked: dict[str, Any] = {}
        for key, value in self.reword(params).items():
            try:
                checked[key] = schema.check(key, value)
            except ParameterError as exc:
                if key not in self._refused:  # said once per key: a pipeline without it will never take it
                    self._refused.add(key)
                    log.warning("screen %s: %s; this screen goes on without it", self.name, exc)
                    self._rejected.mark()
                else:
                    self._rejected.note(str(exc))
        if checked:
            self.sender.apply(checked, checked_by=schema)

    def keep_clear(self, start: float, end: float) -> None:
        self.sender.keep_clear(start, end)


@dataclass
class Screen:
    """One further screen while the show runs."""

    plan: ScreenPlan
    sender: ParameterSender
    session: ScopeSession
    feed: ScreenFeed
    preview: PreviewSink
    video: OutputClock | None = None
    url: str = ""
    #: The task that keeps its session alive, wrapped so that its end never ends the show.
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    def status(self) -> dict[str, Any]:
        """This screen in the status snapshot (``/status``'s ``screens``)."""
        return screen_status(self.name, self.session, self.video, self.preview)

    def problems(self) -> list[str]:
        parts: list[Any] = [self.session, self.video]
        return [f"screen {self.name}: {p}" for part in parts if part is not None
                for p in getattr(part, "problems", list)()]


def screen_status(name: str, session: ScopeSession, video: OutputClock | None,
                  preview: PreviewSink | None) -> dict[str, Any]:
    st = session.status()
    out: dict[str, Any] = {
        "name": name, "state": st["state"], "url": st["url"], "emulator": st["emulator"],
        "pipeline": st["pipeline"], "fps_in": round(st["fps_in"], 2), "frames_in": st["frames_in"],
        "sessions": st["sessions_started"], "last_error": st["last_error"], "sent": st["sent"],
        "outputs": [], "frames_shown": 0, "repeats": 0, "slates": 0,
        "preview_url": preview.url if preview is not None else None,
    }
    if video is not None:
        v = video.stats()
        out.update(outputs=list(v.sinks), frames_shown=v.frames_shown, repeats=v.repeats, slates=v.slates)
    return out


async def open_screens(stack: contextlib.AsyncExitStack, plans: tuple[ScreenPlan, ...], main: ParameterSender,
                       profile: Callable[[], ShowProfile], *, emulator_fps: float | None = None,
                       no_frame_timeout: float = 5.0, audio: bool = False) -> list[Screen]:
    """Every further screen opened onto ``stack`` and started, its feed on ``main``. A screen whose server is
    wrong or away does not stop the others: its session keeps trying while the show goes on."""
    screens = []
    for plan in plans:
        screen = await _open_screen(stack, plan, main, profile, emulator_fps, no_frame_timeout, audio)
        screens.append(screen)
    return screens


async def _open_screen(stack: contextlib.AsyncExitStack, plan: ScreenPlan, main: ParameterSender,
                       profile: Callable[[], ShowProfile], emulator_fps: float | None,
                       no_frame_timeout: float, audio: bool) -> Screen:
    from metadj_bridge.scope.pacing import GATHER
    from metadj_bridge.scope.sender import PacerConfig, ParameterSender
    from metadj_bridge.scope.session import ScopeSession, SessionConfig
    from metadj_bridge.video.preview import PreviewSink

    url = plan.scope_url or await _own_emulator(stack, plan, emulator_fps)
    info = parameters.pipeline_info(plan.pipeline)
    sender = ParameterSender(parameters.ParameterSchema(plan.pipeline), pacer=PacerConfig(
        min_interval=plan.min_send_interval, max_interval=plan.max_send_interval,
        chunk_frames=info.chunk_frames, gather=GATHER))
    feed = ScreenFeed(plan.name, sender, PromptBank(plan.name, plan.prompts, profile))
    feed.apply(main.state.desired)  # where the show is now, in this screen's words
    initial = sender.state.desired
    session = ScopeSession(SessionConfig(
        url=url, pipeline_ids=[plan.pipeline], prompts=initial.get("prompts") or "",
        denoising_step_list=list(plan.denoising), no_frame_timeout=no_frame_timeout, input_mode="text",
        load_params={"width": plan.width, "height": plan.height, "vace_enabled": False},
        fail_fast_on_permanent_errors=False,  # a wrong server shows on its screen; the show goes on
    ), sender)
    preview = PreviewSink()
    screen = Screen(plan=plan, sender=sender, session=session, feed=feed, preview=preview, url=url)
    screen.video = await _open_screen_video(stack, plan, session, preview, audio)
    stack.push_async_callback(session.aclose)
    await session.start()
    main.mirrors.append(feed)
    stack.callback(_unhook, main, feed)
    screen.task = asyncio.get_running_loop().create_task(_watch(screen), name=f"screen-{plan.name}")
    stack.push_async_callback(_cancel, screen.task)
    log.info("screen %s: %s at %s, %dx%d, outputs: %s", plan.name, plan.pipeline, url, plan.width, plan.height,
             ", ".join(plan.outputs) or "the web page only")
    return screen


async def _own_emulator(stack: contextlib.AsyncExitStack, plan: ScreenPlan, fps: float | None) -> str:
    from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator

    emulator = ScopeEmulator(EmulatorConfig(host="127.0.0.1", port=0, fps=fps))
    stack.push_async_callback(emulator.aclose)
    await emulator.start()
    log.info("screen %s: no Scope URL given: started a built-in Scope emulator at %s", plan.name, emulator.url)
    return emulator.url


async def _open_screen_video(stack: contextlib.AsyncExitStack, plan: ScreenPlan, session: ScopeSession,
                             preview: PreviewSink, audio: bool) -> OutputClock:
    """The screen's output clock: its outputs and its preview (the web page's picture of this screen). With
    ``audio`` its recordings get a sound track, the music joined once the analysis runs."""
    from metadj_bridge.run.parts import open_output_clock

    return await open_output_clock(
        stack, session, plan.outputs, size=plan.video_size, fps=plan.video_fps, slate_after=plan.slate_after,
        device=plan.video_device, backend=plan.video_backend, preview=preview, always_preview=True, audio=audio)


async def _watch(screen: Screen) -> None:
    """Wait on the screen's session supervisor; its end (it should not end before the show) is said, not raised."""
    supervisor = screen.session.supervisor
    if supervisor is None:
        return
    try:
        await supervisor
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - one screen's end must not end the show
        log.error("screen %s: its Scope session ended: %s; the other screens go on", screen.name, exc)


def _unhook(main: ParameterSender, feed: ScreenFeed) -> None:
    with contextlib.suppress(ValueError):
        main.mirrors.remove(feed)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
