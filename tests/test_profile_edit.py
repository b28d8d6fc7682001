"""Editing a profile in place (`learn --write`): the file keeps its layout, and a bad edit never reaches the disk."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.profile import ProfileError, load_profile
from metadj_bridge.profile.edit import add_mapping, detect_indent
from metadj_bridge.profile.model import Range, SignalSource

LEARNED: dict[str, Any] = {
    "source": "midi.cc.1.7",
    "transforms": [{"range": {"in": [0.031, 0.9], "out": [0, 1]}}],
    "target": "noise_scale",
}

FOUR_SPACES = """\
# club night: four-space indent throughout
scope:
    url: http://127.0.0.1:8000   # the GPU box

themes:
    neon:
        prompts:
            - neon city at night
            - "rain on glass"

mappings:
    filter:    # the big knob
        source: midi.cc.1.74
        target: noise_scale

    kick:
        trigger: midi.note.10.36
        target: theme.next  # the pad on the left
# next: the cycle

cycle: {every_bars: 16}
"""

FLOW = """\
themes: {neon: {prompts: [neon city]}}
mappings: {filter: {source: midi.cc.1.74, target: noise_scale}, kick: {trigger: midi.note.10.36, target: theme.next}}
"""


def write(tmp_path: Path, text: str, name: str = "show.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def mappings_of(path: Path) -> dict[str, Any]:
    return {m.name: m for m in load_profile(path).mappings}


def only_insertions(old: str, new: str) -> list[str]:
    """The lines the edit added; fails when it changed or removed any line of the original."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    added: list[str] = []
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        assert op in ("equal", "insert"), f"changed {old.splitlines()[a1:a2]} -> {new.splitlines()[b1:b2]}"
        if op == "insert":
            added += new.splitlines()[b1:b2]
    return added


def assert_learned(mapping: Any) -> None:
    assert mapping.source == SignalSource("midi.cc.1.7", where=mapping.source.where)
    assert mapping.target.name == "noise_scale"
    assert isinstance(mapping.transforms[0], Range)
    assert (mapping.transforms[0].in_lo, mapping.transforms[0].in_hi) == (0.031, 0.9)


def test_a_four_space_file_gets_a_four_space_entry_and_keeps_every_line(tmp_path: Path) -> None:
    path = write(tmp_path, FOUR_SPACES)
    before = mappings_of(path)
    assert add_mapping(path, "sweep", LEARNED) == "sweep"
    text = path.read_text(encoding="utf-8")
    added = only_insertions(FOUR_SPACES, text)  # comments, blank lines and quotes all stay
    assert added == ["", "    sweep:", "        source: midi.cc.1.7", "        transforms:",
                     "            - range: {in: [0.031, 0.9], out: [0, 1]}", "        target: noise_scale"]
    # The entry goes after the last one; what followed it (a comment, the gap before the next section) still does.
    assert text.index("    sweep:") < text.index("# next: the cycle") < text.index("cycle:")
    after = mappings_of(path)
    assert list(after) == ["filter", "kick", "sweep"]
    for name, mapping in before.items():  # the old mappings read exactly as before (their positions aside)
        assert after[name].source == mapping.source and after[name].target == mapping.target
    assert_learned(after["sweep"])
    assert load_profile(path).cycle is not None


def test_flow_style_mappings_get_the_entry_inside_them(tmp_path: Path) -> None:
    path = write(tmp_path, FLOW)
    assert add_mapping(path, "sweep", LEARNED) == "sweep"
    text = path.read_text(encoding="utf-8")
    assert text.count("mappings:") == 1 and text.splitlines()[0] == FLOW.splitlines()[0]
    assert text.splitlines()[1].startswith("mappings: {filter: {source: midi.cc.1.74, target: noise_scale}, kick: ")
    after = mappings_of(path)
    assert list(after) == ["filter", "kick", "sweep"]
    assert (after["kick"].target.kind, after["kick"].target.name) == ("theme", "next")
    assert_learned(after["sweep"])


def test_a_missing_section_is_added_and_the_indent_follows_the_file(tmp_path: Path) -> None:
    text = "# a show\nthemes:\n  neon:\n    prompts:\n    - neon city   # first\n"
    path = write(tmp_path, text)
    assert detect_indent(text) == (2, 2, 0)
    assert add_mapping(path, "sweep", LEARNED) == "sweep"
    added = only_insertions(text, path.read_text(encoding="utf-8"))
    assert added[:2] == ["mappings:", "  sweep:"] and "    - range: {in: [0.031, 0.9], out: [0, 1]}" in added
    assert_learned(mappings_of(path)["sweep"])


def test_a_taken_slot_name_gets_the_next_free_one(tmp_path: Path) -> None:
    base_text = ("themes:\n  neon:\n    prompts: [a]\nmappings:\n  pad:\n    trigger: midi.note.1.1\n"
                 "    target: theme.next\n")
    base = write(tmp_path, base_text, "base.yaml")
    path = write(tmp_path, "extends: base.yaml\nmappings:\n  filter:\n    source: midi.cc.1.74\n"
                 "    target: noise_scale\n")
    assert add_mapping(path, "filter", LEARNED) == "filter_2"
    assert add_mapping(path, "filter", LEARNED) == "filter_3"
    assert add_mapping(path, "pad", LEARNED) == "pad_2"  # taken in the base: the child would replace it
    after = mappings_of(path)
    assert after["filter"].source.name == "midi.cc.1.74"
    assert (after["pad"].target.kind, after["pad"].target.name) == ("theme", "next")
    for name in ("filter_2", "filter_3", "pad_2"):
        assert_learned(after[name])
    assert base.read_text(encoding="utf-8") == base_text  # the base is never touched


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("themes:\n  neon:\n    prompts: [a\n", "YAML syntax error"),
        ("themes:\n  neon:\n    prompts: [a]\ncycle: {every: 16}\n", "cycle.every: unknown key"),
        ("mappings:\n  a:\n    source: midi.cc.1.1\n    target: noise_scale\n", "at least one theme"),
    ],
    ids=["not-yaml", "not-a-profile", "no-themes"],
)
def test_a_file_that_does_not_load_is_refused_and_unchanged(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError, match=fragment) as caught:
        add_mapping(path, "sweep", LEARNED)
    assert str(path) in str(caught.value) and "left unchanged" in str(caught.value)
    assert path.read_text(encoding="utf-8") == text
    assert os.listdir(tmp_path) == ["show.yaml"]  # no temporary file left behind


def test_an_edit_that_would_not_load_back_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, FOUR_SPACES)
    broken = {**LEARNED, "target": "no_such_parameter"}
    with pytest.raises(ProfileError) as caught:
        add_mapping(path, "sweep", broken)
    message = str(caught.value)
    assert message.startswith(f"{path}: the edited profile would not load") and "no_such_parameter" in message
    assert ".tmp" not in message  # the error names the profile, not the temporary file
    assert path.read_text(encoding="utf-8") == FOUR_SPACES
    assert os.listdir(tmp_path) == ["show.yaml"]


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        add_mapping(tmp_path / "nope.yaml", "sweep", LEARNED)
    assert os.listdir(tmp_path) == []


def test_windows_line_ends_and_the_file_mode_stay(tmp_path: Path) -> None:
    text = "themes:\r\n  neon:\r\n    prompts: [a]\r\n"
    path = tmp_path / "show.yaml"
    path.write_bytes(text.encode())
    path.chmod(0o640)
    add_mapping(path, "sweep", LEARNED)
    data = path.read_bytes()
    assert data.startswith(text.encode()) and b"\n" not in data.replace(b"\r\n", b"")
    assert path.stat().st_mode & 0o777 == 0o640
    assert_learned(mappings_of(path)["sweep"])


def test_a_symlinked_profile_stays_a_link(tmp_path: Path) -> None:
    real = write(tmp_path, "themes:\n  neon:\n    prompts: [a]\n", "real.yaml")
    link = tmp_path / "show.yaml"
    link.symlink_to(real.name)
    add_mapping(link, "sweep", LEARNED)
    assert link.is_symlink() and "sweep:" in real.read_text(encoding="utf-8")
