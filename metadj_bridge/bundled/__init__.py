"""What ships inside the package: the show profiles (``profiles/``) and the service files (``service/``).

They are package data, so a wheel, pipx or an editable install all find them here, from any working directory.
A profile argument that names no file but a bundled profile (``midimix-show``, ``controllers/midimix``) means
that profile::

    metadj-bridge run --profile midimix-show
    metadj-bridge profiles                      # the list, with where each file is
    metadj-bridge profiles --copy midimix-show my-show.yaml   # a copy of your own to edit

This room holds files, not behaviour: it may import only the ground floor (``errors``), so the CLI, ``run``,
``doctor`` and ``check`` can all find the bundled files without pulling anything else in.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from metadj_bridge.errors import ConfigError, reason

HERE = Path(__file__).resolve().parent
PROFILES_DIR = HERE / "profiles"
SERVICE_DIR = HERE / "service"


def bundled_names() -> list[str]:
    """Every bundled profile by the name ``--profile`` takes: ``default``, ``controllers/midimix`` ..."""
    return sorted(path.relative_to(PROFILES_DIR).with_suffix("").as_posix() for path in PROFILES_DIR.rglob("*.yaml"))


def bundled_profile(name: str = "default") -> Path:
    """The bundled profile called ``name`` (with or without ``.yaml``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = PROFILES_DIR / f"{stem}.yaml"
    if stem not in bundled_names():
        raise ConfigError(f"no bundled profile {name!r} (bundled: {', '.join(bundled_names())}); "
                          "give a profile file with --profile FILE")
    return path


def resolve_profile(argument: str) -> str:
    """A ``--profile`` argument as a path: an existing file as it is; else a bundled profile of that name; else the
    argument unchanged (the loader then says the file is missing)."""
    if os.path.exists(argument):
        return argument
    stem = argument[:-5] if argument.endswith(".yaml") else argument
    if stem.replace("\\", "/") in bundled_names():
        return str(PROFILES_DIR / f"{stem}.yaml")
    return argument


def copy_profile(name: str, destination: str) -> Path:
    """Copy a bundled profile to ``destination`` (a file, or a folder to put it in); never overwrites.
    The profiles it extends follow with :func:`copy_bases`."""
    source = bundled_profile(name)
    target = Path(destination)
    try:
        if target.is_dir() or destination.endswith(("/", os.sep)):  # `--copy NAME shows/`: a folder, made if need be
            target = target / source.name
        if target.exists():
            raise ConfigError(f"{target} exists already; give another name")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except (OSError, ValueError) as exc:  # a read-only disk, a name too long, a NUL byte
        raise ConfigError(f"cannot copy the profile to {str(target)!r}: {reason(exc)}") from None
    return target


#: ``extends: a.yaml`` or ``extends: [a.yaml, b.yaml]`` at the top of a bundled profile (the bundled files are ours).
_EXTENDS = re.compile(r"^extends:[ \t]*\[?([^\]#\n]*)", re.MULTILINE)


def bundled_bases(path: Path) -> list[str]:
    """The bundled profiles ``path`` (a bundled profile) extends, as relative paths, bases of bases included."""
    found: list[str] = []
    todo = [path]
    while todo:
        current = todo.pop()
        match = _EXTENDS.search(current.read_text(encoding="utf-8"))
        for item in (match.group(1).split(",") if match else []):
            rel = item.strip().strip("'\"")
            base = (current.parent / rel).resolve()
            if rel and base.is_file() and PROFILES_DIR in base.parents:
                name = base.relative_to(PROFILES_DIR).as_posix()
                if name not in found:
                    found.append(name)
                    todo.append(base)
    return found


def copy_bases(name: str, target: Path) -> tuple[list[Path], list[Path]]:
    """Put the bundled profiles that ``name`` extends beside its copy ``target``, at the same relative paths
    (``midimix-show`` brings ``controllers/midimix.yaml``), so the copy loads where it lands; a base already there
    is kept as it is (your own edited controller layout). Returns (copied, kept)."""
    source = bundled_profile(name)
    copied: list[Path] = []
    kept: list[Path] = []
    for base in bundled_bases(source):
        rel = os.path.relpath(PROFILES_DIR / base, source.parent)
        dest = target.parent / rel
        try:
            if dest.exists():
                kept.append(dest)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PROFILES_DIR / base, dest)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot copy {base}, which {name} extends, to {str(dest)!r}: {reason(exc)}") from None
        copied.append(dest)
    return copied, kept


def service_file(kind: str) -> str:
    """The service file for ``systemd`` (Linux) or ``launchd`` (macOS), with this install's ``metadj-bridge``
    program filled in, so it can be saved as it is."""
    names = {"systemd": "metadj-bridge.service", "launchd": "com.metadj.bridge.plist"}
    if kind not in names:
        raise ConfigError(f"no service file for {kind!r} (there is one for: {', '.join(names)})")
    text = (SERVICE_DIR / names[kind]).read_text(encoding="utf-8")
    program = shutil.which("metadj-bridge") or str(Path(sys.executable).with_name("metadj-bridge"))
    if kind == "systemd":
        return text.replace("%h/.venvs/metadj/bin/metadj-bridge", program)
    return text.replace("/Users/YOU/.venvs/metadj/bin/metadj-bridge", program)


def print_profiles(copy: list[str] | None = None) -> int:
    """``metadj-bridge profiles``: each bundled profile with its file, or ``--copy NAME DEST``."""
    if copy:
        target = copy_profile(*copy)
        copied, kept = copy_bases(copy[0], target)
        print(f"{target}: a copy of the bundled {copy[0]!r}; play it with `metadj-bridge run --profile {target}`")
        for base in copied:
            print(f"{base}: a copy of the bundled profile it extends")
        for base in kept:
            print(f"{base}: already there, kept as it is (the profile extends it)")
        return 0
    for name in bundled_names():
        print(f"{name:<24} {PROFILES_DIR / name}.yaml")
    return 0
