"""Does every dependency install from wheels on each Python and OS we promise? No compiler, no sdist.

    python scripts/check_wheels.py                    # builds the project's wheel, then resolves it with pip
    python scripts/check_wheels.py --extras test,link --pythons 3.13,3.14

For each Python version and each platform (Linux x86_64 and aarch64, macOS arm64 and x86_64, Windows x64), pip
resolves the project's wheel and its dependencies with ``--only-binary=:all:`` for that target, without
installing anything (``pip install --dry-run --report``; PyPI serves wheel metadata, so little is downloaded).
A line per target says ``ok`` with the number of packages, or the package that has no wheel there. The exit code
is 1 when any target fails. This needs access to PyPI (or a mirror pip is configured for).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHONS = ("3.11", "3.12", "3.13", "3.14")


def _mac(arch: str) -> list[str]:
    return [f"macosx_{major}_0_{arch}" for major in range(15, 10, -1)] + (
        [f"macosx_10_{minor}_{arch}" for minor in range(15, 8, -1)] if arch == "x86_64" else [])


def _linux(arch: str) -> list[str]:
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"manylinux2014_{arch}"]


#: Each target: a name and the platform tags a machine of that kind accepts (newest first, as pip would).
PLATFORMS: dict[str, list[str]] = {
    "linux-x86_64": _linux("x86_64"),
    "linux-aarch64": _linux("aarch64"),
    "macos-arm64": _mac("arm64"),
    "macos-x86_64": _mac("x86_64"),
    "windows-x64": ["win_amd64"],
}


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True)
    return next(out.glob("metadj_bridge-*.whl"))


def resolve(wheel: Path, extras: str, python: str, platforms: list[str], work: Path) -> tuple[bool, str]:
    """(ok, what): pip's verdict for one target."""
    report = work / "report.json"
    requirement = f"{wheel}[{extras}]" if extras else str(wheel)
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--only-binary=:all:", "--python-version", python, "--target", str(work / "target"),
               "--report", str(report)]
    for tag in platforms:
        command += ["--platform", tag]
    done = subprocess.run([*command, requirement], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        return False, (lines[-1] if lines else done.stderr.strip()[-300:])
    installed = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    return True, f"{len(installed)} packages from wheels"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pythons", default=",".join(PYTHONS), help="comma-separated, default %(default)s")
    parser.add_argument("--platforms", default=",".join(PLATFORMS), help="comma-separated, default %(default)s")
    parser.add_argument("--extras", default="", help="extras to include, e.g. test,link")
    parser.add_argument("--wheel", type=Path, help="an already built wheel of the project")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or build_wheel(Path(tmp))
        for python in args.pythons.split(","):
            for name in args.platforms.split(","):
                ok, what = resolve(wheel, args.extras, python, PLATFORMS[name], Path(tmp))
                failed += not ok
                print(f"{'ok ' if ok else 'NO '} Python {python:<5} {name:<14} {what}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
