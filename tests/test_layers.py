"""Architecture: no import cycles inside simplehand_deploy, lazy imports included, and the layer map in
pyproject.toml ([tool.importlinter], drawn in docs/architecture.md) holds and names every module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
grimp = pytest.importorskip("grimp", reason="import-linter (and its grimp) are in the dev extra")


def _graph():
    return grimp.build_graph("simplehand_deploy", exclude_type_checking_imports=True, cache_dir=None)


def _cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(imports.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycles_counting_lazy_imports():
    graph = _graph()
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(imports) == []
    # the check sees function-local imports: one upward lazy import makes a cycle it reports
    imports["simplehand_deploy.fileio"] = imports["simplehand_deploy.fileio"] | {"simplehand_deploy.cli"}
    assert any({"simplehand_deploy.fileio", "simplehand_deploy.cli"} <= set(c) for c in _cycles(imports))


def test_every_module_is_in_a_layer():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # 3.10 (JetPack 6)
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    named = {part.strip() for layer in contract["layers"] for part in layer.replace(":", "|").split("|")}
    top = {m.split(".")[1] for m in _graph().modules if m.count(".") >= 1}
    assert top == named, f"not in a layer: {sorted(top - named)}; no such module: {sorted(named - top)}"
    assert "ignore_imports" not in contract, "the layer contract takes no exceptions: move the module instead"


def test_layer_contract_holds():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.is_file():
        pytest.fail("lint-imports is not installed: `pip install -e '.[dev]'` (import-linter) brings it")
    res = subprocess.run([str(exe), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0 and "1 kept, 0 broken" in res.stdout, res.stdout[-3000:] + res.stderr[-2000:]
