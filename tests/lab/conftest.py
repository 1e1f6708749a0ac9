"""The lab (scripts/lab_*.py) for the tests: a lab of their own, namespaces smpy-labt-*."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import lab_net  # noqa: E402, F401 (for the tests)
import lab_setup  # noqa: E402
import lab_story  # noqa: E402

PREFIX = "smpy-labt"


def make_lab(topo: dict, up: tuple[str, ...]):
    """Body of a fixture: a Story in a fresh lab with only the MTAs in up started."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    for tool in ("ip", "unshare", "nsd", "swaks"):
        if not shutil.which(tool):
            pytest.skip(f"the lab needs {tool} (scripts/install-test-deps)")
    if any(h["kind"] == "postfix" for h in topo["hosts"]) and not shutil.which("postfix"):
        pytest.skip("Postfix is not installed (scripts/install-test-deps)")
    state = Path(tempfile.mkdtemp(prefix="smpy-labt.")) / "lab"
    os.chmod(state.parent, 0o755)  # Postfix's daemons and local users go through it
    try:
        lab = lab_setup.Lab.create(state, topo, PREFIX, up=up)
    except SystemExit as exc:
        pytest.fail(str(exc))
    try:
        yield lab_story.Story(lab)
    finally:
        lab.destroy()
        shutil.rmtree(state.parent, ignore_errors=True)
