"""The GitHub workflows pass actionlint (with shellcheck on their `run:` scripts); both come with the `dev` extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".github" / "actionlint.yaml"


def _tool(name: str) -> str:
    """The executable installed next to this interpreter (the venv's bin/), else the one on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[dev]'` (or `make install`) brings it")
    return found


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    cmd = [_tool("actionlint"), "-no-color", "-config-file", str(CONFIG), "-shellcheck", _tool("shellcheck"),
           *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_workflows_pass_actionlint() -> None:
    files = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert {f.name for f in files} >= {"cpu.yml", "gpu.yml", "jetson.yml"}
    res = _actionlint(*files)
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint_catches_what_it_should(tmp_path: Path) -> None:
    """The check has teeth: an unknown runner label, a bad expression and an unquoted variable are each reported."""
    text = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    broken = {
        "label": text.replace("[self-hosted, gpu]", "[self-hosted, gpux]"),
        "expression": text.replace("${{ vars.SIMPLEHAND_WEIGHTS }}", "${{ vars.SIMPLEHAND_WEIGHTS }"),
        "shellcheck": text.replace('CONFIG="$CONFIG"', "CONFIG=$CONFIG"),
    }
    for what, body in broken.items():
        assert body != text, what
        path = tmp_path / f"{what}.yml"
        path.write_text(body)
        res = _actionlint(path)
        assert res.returncode == 1 and f"{what}.yml" in res.stdout, (what, res.stdout + res.stderr)
