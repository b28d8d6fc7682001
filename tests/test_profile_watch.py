"""Hot reload with real files: good saves arrive, broken saves are reported once, editors that replace work."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from metadj_bridge.profile import ProfileError, ProfileWatcher
from metadj_bridge.profile.model import ShowProfile
from tests.helpers import wait_for

INTERVAL = 0.05


def profile_text(prompt: str, noise: float = 0.5) -> str:
    return f"themes:\n  main:\n    prompts: [{prompt}]\n    parameters: {{noise_scale: {noise}}}\n"


class Recorder:
    def __init__(self) -> None:
        self.changes: list[ShowProfile] = []
        self.errors: list[ProfileError] = []

    def on_change(self, profile: ShowProfile) -> None:
        self.changes.append(profile)

    def on_error(self, error: ProfileError) -> None:
        self.errors.append(error)

    def prompts(self) -> list[str]:
        return [p.themes[0].prompts[0].text for p in self.changes]


@pytest.fixture
async def watched(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "show.yaml"
    path.write_text(profile_text("first"), encoding="utf-8")
    rec = Recorder()
    watcher = ProfileWatcher(path, rec.on_change, rec.on_error, interval=INTERVAL)
    await watcher.start()
    yield path, rec, watcher
    await watcher.aclose()


async def polls(n: int) -> None:
    await asyncio.sleep(INTERVAL * n)


async def test_a_good_save_is_loaded(watched) -> None:  # type: ignore[no-untyped-def]
    path, rec, _ = watched
    await polls(4)
    assert rec.changes == [] and rec.errors == []  # starting is not a change
    path.write_text(profile_text("second"), encoding="utf-8")
    await wait_for(lambda: rec.changes, 5, "the reload")
    assert rec.prompts() == ["second"]
    # Same size, same moment: the content still counts.
    path.write_text(profile_text("thirds"), encoding="utf-8")
    await wait_for(lambda: len(rec.changes) == 2, 5, "the second reload")
    assert rec.prompts() == ["second", "thirds"] and rec.errors == []


async def test_a_broken_save_is_reported_once_and_a_fix_is_loaded(watched) -> None:  # type: ignore[no-untyped-def]
    path, rec, _ = watched
    path.write_text(profile_text("x", noise=7.5), encoding="utf-8")
    await wait_for(lambda: rec.errors, 5, "the error")
    await polls(8)
    assert len(rec.errors) == 1 and rec.changes == []
    error = rec.errors[0]
    assert error.line == 4 and error.key_path == "themes.main.parameters.noise_scale"
    # Another broken save is another report.
    path.write_text("themes: [\n", encoding="utf-8")
    await wait_for(lambda: len(rec.errors) == 2, 5, "the second error")
    assert "YAML syntax error" in str(rec.errors[1])
    path.write_text(profile_text("fixed"), encoding="utf-8")
    await wait_for(lambda: rec.changes, 5, "the reload after the fix")
    assert rec.prompts() == ["fixed"] and len(rec.errors) == 2


async def test_an_editor_that_saves_by_rename_is_seen(watched) -> None:  # type: ignore[no-untyped-def]
    path, rec, _ = watched
    temp = path.with_name(".show.yaml.swp")
    temp.write_text(profile_text("renamed"), encoding="utf-8")
    os.replace(temp, path)
    await wait_for(lambda: rec.changes, 5, "the reload")
    assert rec.prompts() == ["renamed"]
    # Delete, then write a new file a moment later (some editors): no error for the gap.
    path.unlink()
    await polls(3)
    path.write_text(profile_text("rewritten"), encoding="utf-8")
    await wait_for(lambda: len(rec.changes) == 2, 5, "the second reload")
    assert rec.prompts() == ["renamed", "rewritten"] and rec.errors == []


async def test_a_file_deleted_for_good_is_reported(watched) -> None:  # type: ignore[no-untyped-def]
    path, rec, watcher = watched
    watcher.missing_grace = 0.2
    path.unlink()
    await wait_for(lambda: rec.errors, 5, "the error")
    assert "no such file" in str(rec.errors[0]) and rec.changes == []


async def test_an_edit_to_a_base_reloads_the_profile(tmp_path: Path) -> None:
    base = tmp_path / "controllers" / "base.yaml"
    base.parent.mkdir()
    base.write_text(profile_text("from base"), encoding="utf-8")
    show = tmp_path / "show.yaml"
    show.write_text("extends: controllers/base.yaml\nname: Show\n", encoding="utf-8")
    rec = Recorder()
    watcher = ProfileWatcher(str(show), rec.on_change, rec.on_error, interval=INTERVAL)
    await watcher.start()
    try:
        assert watcher.files == (str(show), str(base))
        base.write_text(profile_text("base edited"), encoding="utf-8")
        await wait_for(lambda: rec.changes, 5, "the reload")
        assert rec.prompts() == ["base edited"] and rec.changes[0].name == "Show"
        # The show stops extending the base: edits to the base no longer matter.
        show.write_text("name: Alone\n" + profile_text("alone"), encoding="utf-8")
        await wait_for(lambda: len(rec.changes) == 2, 5, "the second reload")
        assert watcher.files == (str(show),)
        base.write_text(profile_text("ignored"), encoding="utf-8")
        await polls(8)
        assert rec.prompts() == ["base edited", "alone"]
    finally:
        await watcher.aclose()


async def test_a_failing_callback_does_not_stop_the_watcher(tmp_path: Path) -> None:
    path = tmp_path / "show.yaml"
    path.write_text(profile_text("first"), encoding="utf-8")
    seen: list[str] = []

    def explode(profile: ShowProfile) -> None:
        seen.append(profile.themes[0].prompts[0].text)
        raise RuntimeError("the caller has a bug")

    watcher = ProfileWatcher(path, explode, lambda error: None, interval=INTERVAL)
    await watcher.start()
    path.write_text(profile_text("one"), encoding="utf-8")
    await wait_for(lambda: seen, 5, "the first reload")
    path.write_text(profile_text("two"), encoding="utf-8")
    await wait_for(lambda: len(seen) == 2, 5, "the second reload")
    assert seen == ["one", "two"]
    await watcher.aclose()


async def test_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "show.yaml"
    path.write_text("not: [a profile\n", encoding="utf-8")  # a broken start still watches
    rec = Recorder()
    watcher = ProfileWatcher(path, rec.on_change, rec.on_error, interval=INTERVAL)
    await watcher.start()
    with pytest.raises(RuntimeError, match="already running"):
        await watcher.start()
    path.write_text(profile_text("good"), encoding="utf-8")
    await wait_for(lambda: rec.changes, 5, "the reload")
    await watcher.aclose()
    await watcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await watcher.start()
    path.write_text(profile_text("after close"), encoding="utf-8")
    await polls(6)
    assert rec.prompts() == ["good"] and rec.errors == []
    with pytest.raises(ValueError):
        ProfileWatcher(path, rec.on_change, rec.on_error, interval=0)
