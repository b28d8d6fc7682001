"""Prompt themes: which theme is active, which of its prompts has the focus, and the prompt list Scope gets.

Choices where the profile format says nothing:

- ``theme.select`` / ``prompt.select``: a 0..1 value picks by position in equal zones (``int(v * n)``).
- ``random`` never picks the current theme or prompt when there are two or more.
- A non-blend theme sends its focus prompt alone, at its own weight (1 when that weight is 0). An active
  ``prompt.mix`` replaces it with the two mixed prompts at (1 - v, v).
- A blend theme sends every prompt at its weight, with the weights the mappings set on top.
- Prompts whose weight is 0 are left out; when nothing is left, the focus prompt goes at weight 1.
- ``prompt.intensity`` (with the ``accent`` pulse on top) adds the focus prompt's intense variant (its own, else
  the theme's) last, at that share of the total weight; the calm prompts keep their proportions in the rest. A
  theme without a variant ignores it.
- Weights are rounded to 4 decimals (a settling smoother does not resend the prompts for seconds).
- The cycle counts bars where the tempo's ``bar_position`` begins them (``TempoState.bar``: the music's one when
  the source hears it) and only runs while a tempo plays. It counts from the last theme change (a manual change
  restarts the count), and the prompt count from the last focus move.

Pure: the engine owns the seeded random generator and passes it in.
"""

from __future__ import annotations

import random
from typing import Any

from metadj_bridge.errors import ConfigError
from metadj_bridge.profile.model import CycleSettings, Theme
from metadj_bridge.signals import TempoState

__all__ = ["ThemeCycle", "ThemeDeck", "pick_index", "select_index"]


def select_index(value: float, count: int) -> int:
    """The position a 0..1 value selects among ``count`` items (equal zones)."""
    k = int(value * count) if value > 0 else 0
    return k if k < count else count - 1


def pick_index(op: str, current: int, count: int, rng: random.Random, value: float = 0.0) -> int:
    """The index ``op`` (next, previous, random, select) moves to from ``current``."""
    if count <= 1:
        return 0
    if op == "next":
        return (current + 1) % count
    if op == "previous":
        return (current - 1) % count
    if op == "random":
        k = rng.randrange(count - 1)
        return k if k < current else k + 1
    if op == "select":
        return select_index(value, count)
    raise ValueError(f"unknown op {op!r}")


def _prompt(text: str, weight: float) -> dict[str, Any]:
    return {"text": text, "weight": round(weight, 4) + 0.0}


class ThemeDeck:
    """The themes of one profile, the active one and its focus prompt."""

    def __init__(self, themes: tuple[Theme, ...], start_theme: str | None = None) -> None:
        if not themes:
            raise ConfigError("themes: a profile needs at least one theme with at least one prompt")
        for theme in themes:
            if not theme.prompts:
                raise ConfigError(f"{theme.where or 'themes.' + theme.name}: theme {theme.name!r} has no prompts")
        self.themes = themes
        self.names = tuple(t.name for t in themes)
        self.start_index = 0
        if start_theme is not None:
            if start_theme not in self.names:
                raise ConfigError(f"start_theme: {start_theme!r} is not a theme (themes: {', '.join(self.names)})")
            self.start_index = self.names.index(start_theme)
        self.index = self.start_index
        self.focus = 0

    @property
    def theme(self) -> Theme:
        return self.themes[self.index]

    @property
    def name(self) -> str:
        return self.names[self.index]

    def index_of(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None

    def set_theme(self, index: int) -> None:
        self.index = index
        self.focus = 0

    def prompts(self, mix: tuple[int, int, float] | None = None,
                overrides: dict[int, float] | None = None, intensity: float = 0.0) -> list[dict[str, Any]]:
        """The prompt list for the active theme: ``mix`` = (a, b, v) applies to a non-blend theme,
        ``overrides`` = {index: weight} to a blend theme. Indices outside the theme are ignored. An
        ``intensity`` above 0 adds the focus prompt's intense variant (when there is one) with that share of the
        weight, the other prompts sharing the rest in their own proportions."""
        out = self._calm_prompts(mix, overrides)
        v = 0.0 if intensity < 0 else 1.0 if intensity > 1 else intensity
        intense = self.theme.intense_of(self.focus) if v > 0 else None
        if intense is None or round(v, 4) <= 0:
            return out
        total = sum(p["weight"] for p in out) or 1.0
        scaled = [_prompt(p["text"], p["weight"] / total * (1.0 - v)) for p in out]
        return [p for p in scaled if p["weight"] > 0] + [_prompt(intense, v)]

    def _calm_prompts(self, mix: tuple[int, int, float] | None,
                      overrides: dict[int, float] | None) -> list[dict[str, Any]]:
        theme = self.theme
        bank = theme.prompts
        focus = bank[self.focus]
        if not theme.blend:
            if mix is not None:
                a, b, v = mix
                if 0 <= a < len(bank) and 0 <= b < len(bank):
                    v = 0.0 if v < 0 else 1.0 if v > 1 else v
                    out = [_prompt(bank[i].text, w) for i, w in ((a, 1.0 - v), (b, v)) if round(w, 4) > 0]
                    if a == b:
                        out = [_prompt(bank[a].text, 1.0)]
                    return out
            return [_prompt(focus.text, focus.weight if focus.weight > 0 else 1.0)]
        weights = [p.weight for p in bank]
        for i, w in (overrides or {}).items():
            if 0 <= i < len(weights):
                weights[i] = w if w > 0 else 0.0
        out = [_prompt(p.text, w) for p, w in zip(bank, weights, strict=True) if round(w, 4) > 0]
        return out or [_prompt(focus.text, 1.0)]


class ThemeCycle:
    """Themes (and prompts) that change by themselves every so many bars."""

    def __init__(self, settings: CycleSettings | None, names: tuple[str, ...]) -> None:
        self.settings = settings
        self.members: tuple[int, ...] = ()
        if settings is not None:
            if settings.every_bars < 1:
                raise ConfigError(f"{settings.where or 'cycle'}: every_bars {settings.every_bars} must be >= 1")
            if settings.prompt_every_bars is not None and settings.prompt_every_bars < 1:
                raise ConfigError(
                    f"{settings.where or 'cycle'}: prompt_every_bars {settings.prompt_every_bars} must be >= 1"
                )
            for name in settings.themes:
                if name not in names:
                    raise ConfigError(f"{settings.where or 'cycle'}: {name!r} is not a theme ({', '.join(names)})")
            self.members = tuple(names.index(n) for n in settings.themes) or tuple(range(len(names)))
        self.bar: int | None = None
        self._theme_anchor: int | None = None
        self._prompt_anchor: int | None = None

    def advance(self, tempo: TempoState | None) -> tuple[bool, bool]:
        """(theme change due, prompt move due) at this step."""
        if self.settings is None or tempo is None or not tempo.playing or tempo.beats_per_bar < 1:
            return False, False
        bar = tempo.bar
        if self.bar is not None and bar - self.bar > 1:
            # Bars that went by between two steps went by while the show stood still (the bridge frozen, the
            # computer asleep): none counts, the cycle goes on from where it was instead of moving on at once.
            skipped = bar - self.bar
            self._theme_anchor = None if self._theme_anchor is None else self._theme_anchor + skipped
            self._prompt_anchor = None if self._prompt_anchor is None else self._prompt_anchor + skipped
        self.bar = bar
        if self._theme_anchor is None or bar < self._theme_anchor:
            self._theme_anchor = bar
        if self._prompt_anchor is None or bar < self._prompt_anchor:
            self._prompt_anchor = bar
        theme_due = bar - self._theme_anchor >= self.settings.every_bars
        every = self.settings.prompt_every_bars
        prompt_due = every is not None and bar - self._prompt_anchor >= every
        return theme_due, prompt_due

    def restart(self, theme: bool = True) -> None:
        """Count from the current bar again (after a theme change, or a focus move when ``theme`` is False)."""
        if theme:
            self._theme_anchor = self.bar
        self._prompt_anchor = self.bar

    def next_theme(self, current: int, rng: random.Random) -> int:
        members = self.members
        if not members:
            return current
        if self.settings is not None and self.settings.order == "random":
            others = [i for i in members if i != current]
            return rng.choice(others) if others else current
        if current in members:
            return members[(members.index(current) + 1) % len(members)]
        return members[0]
