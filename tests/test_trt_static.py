"""Static check of the package: mypy, the TensorRT layer against tensorrt-stubs, on a machine without TensorRT.

The published stubs (10.13) cannot be used as installed: the stub-only `tensorrt/` folder has no
py.typed marker (mypy then skips it) and a few generated signatures are not valid Python
(parameters named `in`, a non-default parameter after defaults). We copy them to a temporary
folder, repair those lines mechanically, and point MYPYPATH at it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub_root() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or not spec.origin:
        return None
    site = Path(spec.origin).parent.parent
    return site if (site / "tensorrt_bindings" / "tensorrt.pyi").is_file() else None


def _repair(text: str) -> str:
    text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", text)  # `in` is a keyword
    text = re.sub(r"^import tensorrt_libs.*$", "", text, flags=re.M)
    # add_scale_nd: a parameter without default after defaulted ones
    return text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = 0)")


@pytest.fixture(scope="module")
def stub_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = _stub_root()
    if site is None:
        pytest.skip("tensorrt-stubs is not installed (make install puts it in .venv)")
    out = tmp_path_factory.mktemp("trt-stubs")
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / pkg, out / pkg)
        for pyi in (out / pkg).rglob("*.pyi"):
            pyi.write_text(_repair(pyi.read_text()))
    return out


def _mypy(target: Path, stub_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(stub_path)}
    cmd = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", "--ignore-missing-imports",
           "--python-version", "3.10", str(target)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _our_errors(res: subprocess.CompletedProcess[str], prefix: str) -> list[str]:
    """mypy lines about our files (the generated stubs carry hundreds of errors of their own)."""
    return [line for line in res.stdout.splitlines() if line.startswith(prefix) and ": error:" in line]


def test_package_type_checks_against_stubs(stub_path):
    """`mypy simplehand_deploy` is clean, the TensorRT layer checked against the repaired stubs (`make test` runs
    this; the stubs' own errors are switched off in pyproject.toml's [tool.mypy], never ours)."""
    res = _mypy(ROOT / "simplehand_deploy", stub_path)
    assert "errors prevented further checking" not in res.stdout, res.stdout[-2000:]
    assert not _our_errors(res, "simplehand_deploy"), "\n".join(_our_errors(res, "simplehand_deploy"))
    assert res.returncode == 0 and "Success: no issues found" in res.stdout, res.stdout[-3000:]


def test_stub_check_catches_removed_api(stub_path, tmp_path):
    """The check has teeth: TRT 8-only calls (build_engine, max_workspace_size) fail against the 10.x stubs."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f() -> None:\n"
        "    import tensorrt as trt\n"
        "    b = trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
        "    c = b.create_builder_config()\n"
        "    b.build_engine(b.create_network(0), c)\n"
    )
    res = _mypy(probe, stub_path)
    errors = _our_errors(res, str(probe))
    assert any("build_engine" in e for e in errors), res.stdout[-2000:]
