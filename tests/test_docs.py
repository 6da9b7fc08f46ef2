"""The front door and the text around the code: README.md stays a short front door whose Python example runs and
whose command list is complete, every relative link resolves, no text points outside the repository, and each
shared default is written once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from simplehand_deploy.cli import bench, deploy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end >= 0 else len(text)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_a_short_front_door():
    assert README.stat().st_size <= 12 * 1024, f"README.md is {README.stat().st_size} bytes; move detail to docs/"


def test_command_list_is_complete():
    """Every command `--help` lists, and every make target, has its row in the README's command list."""
    commands = _section(README.read_text(), "Commands")
    missing = [f"{app.info.name} {name}" for app in (deploy, bench)
               for name in typer.main.get_command(app).commands  # type: ignore[attr-defined]
               if f"| `{name}` |" not in commands]
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony is not None
    missing += [f"make {t}" for t in phony.group(1).split() if f"| `make {t}` |" not in commands]
    assert not missing, f"not in README.md's command list: {missing}"


def test_pipeline_table_names_real_functions():
    """The "Python" column of the pipeline table names what `simplehand_deploy` exports (or `module.function`)."""
    import importlib

    import simplehand_deploy

    rows = [line.split("|")[3] for line in _section(README.read_text(), "Pipeline at a glance").splitlines()
            if line.startswith("| ") and not line.startswith("| stage")]
    names = [n for cell in rows for n in re.findall(r"`([\w.]+)`", cell)]
    assert len(names) >= 8
    for name in names:
        module, _, attr = name.rpartition(".")
        owner = importlib.import_module(f"simplehand_deploy.{module}") if module else simplehand_deploy
        assert callable(getattr(owner, attr, None)), name


def _links(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), path.name) for m in LINK.finditer(path.read_text())]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target, _ in _links(doc):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), re.M)}
            if anchor not in headings:
                broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_link_check_sees_a_broken_link(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("[a](missing.md) [b](x.md#nope)\n# Title\n")
    assert [t for t, _ in _links(doc)] == ["missing.md", "x.md#nope"]
    assert not (tmp_path / "missing.md").exists() and _slug("Title") == "title" != "nope"


def test_python_example_runs(tmp_path):
    """The README's example, extracted and executed as written, on CPU (tiny config), in an empty folder."""
    block = re.search(r"```python\n(.*?)```", _section(README.read_text(), "Python"), re.S)
    assert block is not None, "README.md's Python section has no ```python block"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 15
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert all(p in res.stdout for p in ("fp32", "fp16", "int8")), res.stdout[-2000:]
    assert (tmp_path / "runs" / "tiny-int8.onnx").is_file()


# written in pieces so that this file does not match itself when the same pattern is grepped over the repository
STALE = re.compile("|".join((r"\bissues? [0-9]", "issue" + "'s", "no" + "tes/", r"\.\./" + "shared")), re.I)
SCANNED = ["simplehand_deploy", "benchmarks", "tests", "docs", ".github", "README.md", "Makefile", "pyproject.toml"]


def _text_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif name == "benchmarks":
            files += [*sorted(path.glob("*.py")), path / "README.md"]
        else:
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yml", ".yaml"))
    return [f for f in files if f.exists() and f != Path(__file__).resolve()]


def test_no_text_points_outside_the_repository():
    """No issue numbers, sessions' notes or sibling folders a reader of the repository cannot open."""
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()[:80]}" for f in _text_files()
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if STALE.search(line)]
    assert not hits, "\n".join(hits)
    for sample in ("see issue" + " 12", "the Issue" + "'s goal", "no" + "tes/x.md", "../" + "shared/x"):
        assert STALE.search(sample), sample


DEFAULTS = re.compile(r'1, ?8, ?64|4096|"minmax"')
OWNERS = {"defaults.py", "literals.py"}  # the shared defaults; the calibration method vocabulary


def test_each_shared_default_is_written_once():
    """The TensorRT profile and workspace and the calibration method appear only in their owners; the rest read them."""
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "simplehand_deploy").rglob("*.py"))
            if p.name not in OWNERS for i, line in enumerate(p.read_text().splitlines(), 1) if DEFAULTS.search(line)]
    assert not hits, f"a default restated outside simplehand_deploy/defaults.py: {hits}"
    assert DEFAULTS.search('profile = "1,8,64"') and DEFAULTS.search("workspace_mb: int = 4096")
