"""Install metadj-bridge as a user would, then play the default show from somewhere else than the checkout.

    python scripts/smoke_install.py                          # a wheel, on this Python
    python scripts/smoke_install.py --python ~/.pyenv/versions/3.13.0/bin/python
    python scripts/smoke_install.py --how pipx               # pipx install . (pipx must be on PATH)
    python scripts/smoke_install.py --how editable

A fresh virtual environment (or pipx's own) gets the project: ``wheel`` builds it with ``pip wheel`` and installs
the file, ``editable`` is ``pip install -e .``. Then, from an empty temporary folder, it runs ``--version``,
``profiles``, ``check default``, ``service systemd`` and ``run --duration 8`` (the built-in emulator, the bundled
demo track, the default profile; the camera if there is one, else the preview), and checks each answer. Exit 1
and the failing command's output when anything is wrong. Needs PyPI (or a mirror) for the dependencies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise SystemExit(f"FAILED ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def _bin(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if os.name == "nt" else "bin") / name)


def install(how: str, python: str, work: Path) -> tuple[str, dict[str, str]]:
    """Install the project; returns the ``metadj-bridge`` program and the environment to run it in."""
    env = dict(os.environ)
    if how == "pipx":
        pipx = shutil.which("pipx")
        if pipx is None:
            raise SystemExit("pipx is not on PATH (pip install pipx)")
        env.update(PIPX_HOME=str(work / "pipx"), PIPX_BIN_DIR=str(work / "pipx-bin"))
        _run([pipx, "install", "--python", python, str(ROOT)], work, env)
        return str(work / "pipx-bin" / "metadj-bridge"), env
    venv = work / "venv"
    _run([python, "-m", "venv", str(venv)], work)
    pip = [_bin(venv, "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--upgrade", "pip"], work)
    if how == "editable":
        _run([*pip, "-e", str(ROOT)], work)
    else:
        _run([_bin(venv, "python"), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
             work)
        wheel = next((work / "dist").glob("metadj_bridge-*.whl"))
        _run([*pip, str(wheel)], work)
    return _bin(venv, "metadj-bridge"), env


def smoke(program: str, env: dict[str, str], where: Path) -> None:
    version = _run([program, "--version"], where)
    assert version.startswith("metadj-bridge "), version
    profiles = _run([program, "profiles"], where)
    assert "default" in profiles and "midimix-show" in profiles, profiles
    checked = _run([program, "check", "default"], where)
    assert checked.startswith("ok  ") and "default.yaml" in checked, checked
    unit = _run([program, "service", "systemd"], where)
    assert "ExecStart=" in unit and "Type=notify" in unit, unit
    env = {**env, "HOME": str(where)}  # show logs and the demo track's cache land in the temporary folder
    ran = _run([program, "run", "--duration", "8"], where, env, timeout=180)
    assert "show profile:" in ran and "default.yaml" in ran, ran
    assert "streaming" in ran and "no video frame" not in ran, ran
    print(ran.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the Python to install for (default: this one)")
    parser.add_argument("--how", choices=["wheel", "pipx", "editable"], default="wheel")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="metadj-smoke-") as tmp:
        work = Path(tmp)
        program, env = install(args.how, args.python, work)
        (work / "elsewhere").mkdir()
        smoke(program, env, work / "elsewhere")
    version = subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"ok: {args.how} install on {version} plays the default show from outside the checkout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
