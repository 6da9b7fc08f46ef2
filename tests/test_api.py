"""The public Python API: `simplehand_deploy.<name>` for the main path, loaded on first use (PEP 562)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import simplehand_deploy

INIT = Path(simplehand_deploy.__file__)
HEAVY = ("torch", "onnx", "onnxruntime", "polars", "numpy", "tensorrt")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=INIT.parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
    return [m for m in res.stdout.strip().split(",") if m]


def test_import_loads_no_heavy_library():
    assert _loaded_after("import simplehand_deploy; simplehand_deploy.__version__") == []
    # the probe sees a heavy import when there is one: the first public function pulls torch in
    assert "torch" in _loaded_after("import simplehand_deploy; simplehand_deploy.create_model")


@pytest.mark.parametrize("name", sorted(simplehand_deploy._EXPORTS))
def test_every_public_name_resolves_to_its_owner(name):
    value = getattr(simplehand_deploy, name)
    owner = f"simplehand_deploy.{simplehand_deploy._EXPORTS[name]}"
    assert value.__module__.startswith(owner), (name, value.__module__, owner)
    assert name in dir(simplehand_deploy) and name in simplehand_deploy.__all__


def test_type_checkers_see_the_same_names():
    """The TYPE_CHECKING re-exports (what IDEs and mypy read) name exactly the lazily exported functions."""
    tree = ast.parse(INIT.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.asname or a.name: (node.module or "") for node in block.body if isinstance(node, ast.ImportFrom)
            for a in node.names}
    assert seen == simplehand_deploy._EXPORTS


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        simplehand_deploy.nope  # noqa: B018
