"""Does every dependency install from wheels on each Python and OS we promise? No compiler, no sdist.

    python scripts/check_wheels.py                         # the package and its test extra, 3.11-3.14, all OSes
    python scripts/check_wheels.py --extras link --pythons 3.14

For each Python version and each platform (Linux x86_64 and aarch64, macOS arm64 and x86_64, Windows x64), uv
resolves ``pyproject.toml`` for that target with ``--no-build``: every package must have a wheel there, and the
environment markers (``python_version``, ``sys_platform``) are evaluated for the target, not for this machine
(pip's ``--platform`` cannot do that). Nothing is installed; PyPI's metadata is enough. A line per target says
``ok`` with the number of packages, or which package has no wheel there. The exit code is 1 when any target fails.
Needs uv (``pip install uv``) and access to PyPI (or a mirror uv is configured for).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHONS = ("3.11", "3.12", "3.13", "3.14")

#: Each target: a name and uv's --python-platform for it.
PLATFORMS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "macos-arm64": "aarch64-apple-darwin",
    "macos-x86_64": "x86_64-apple-darwin",
    "windows-x64": "x86_64-pc-windows-msvc",
}


def uv() -> list[str]:
    if find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    if found is None:
        raise SystemExit("this check needs uv: pip install uv")
    return [found]


def resolve(extras: list[str], python: str, platform: str, work: Path) -> tuple[bool, str]:
    """(ok, what): uv's verdict for one target."""
    out = work / "requirements.txt"
    command = [*uv(), "pip", "compile", str(ROOT / "pyproject.toml"), "--quiet", "--no-build", "--no-header",
               "--python-version", python, "--python-platform", platform, "-o", str(out)]
    for extra in extras:
        command += ["--extra", extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = next((line for line in lines if "only found wheels" in line or "no wheels" in line.lower()), None)
        return False, why or (lines[0] if lines else "uv failed")
    pinned = [line for line in out.read_text(encoding="utf-8").splitlines() if "==" in line]
    return True, f"{len(pinned)} packages, all from wheels"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pythons", default=",".join(PYTHONS), help="comma-separated, default %(default)s")
    parser.add_argument("--platforms", default=",".join(PLATFORMS), help="comma-separated, default %(default)s")
    parser.add_argument("--extras", default="test", help="extras to include, comma-separated (default: test)")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for python in args.pythons.split(","):
            for name in args.platforms.split(","):
                ok, what = resolve(extras, python, PLATFORMS[name], Path(tmp))
                failed += not ok
                print(f"{'ok ' if ok else 'NO '} Python {python:<5} {name:<14} {what}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
