"""pyproject.toml as Debian 12 builds it: its own setuptools (66), its own python3 library floors."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DEBIAN_PYTHON = "/usr/bin/python3"
# what bookworm ships (python3-click, python3-dnspython, python3-filelock, python3-gnupg)
BOOKWORM = {"click": "8.1.3", "dnspython": "2.3.0", "filelock": "3.9", "python-gnupg": "0.4.9"}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_dependency_floors_are_what_bookworm_ships():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", dep).groups()
        floors[name] = floor
    assert set(floors) == set(BOOKWORM)
    for name, floor in floors.items():
        assert _version(floor) <= _version(BOOKWORM[name]), f"{name}>={floor} is above bookworm's {BOOKWORM[name]}"


def _debian_setuptools() -> str:
    if not Path(DEBIAN_PYTHON).exists():
        pytest.skip("no /usr/bin/python3")
    out = subprocess.run([DEBIAN_PYTHON, "-c", "import setuptools; print(setuptools.__version__)"],
                         capture_output=True, text=True)
    if out.returncode:
        pytest.skip("Debian's python3-setuptools is not installed")
    return out.stdout.strip()


def test_wheel_builds_with_debian_setuptools(tmp_path):
    version = _debian_setuptools()
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mta", src / "mta", ignore=shutil.ignore_patterns("__pycache__"))
    code = "from setuptools import build_meta as b; print(b.build_wheel('../dist'))"
    out = subprocess.run([DEBIAN_PYTHON, "-c", code], cwd=src, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"setuptools {version}: {out.stderr[-2000:]}"
    wheel = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mta/submit.py" in names
    assert re.search(r"^Requires-Dist: dnspython ?\(?>=2.3.0", meta, re.M), meta[:600]
    for command in ("sendmail", "mailq", "newaliases", "runq"):
        assert re.search(rf"^{command} = ", entry, re.M), command
