"""Architecture rules that a grep or an import can check: where sidecars are read, what the CLI imports."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "simplehand_deploy"
HEAVY = ("numpy", "polars", "onnx", "torch")

# Derivations of a sidecar's path from an artifact's, and the old dict readers.
SIDECAR_PATTERNS = (r'with_suffix\(\s*["\']\.json["\']', r'with_suffix\(\s*["\']\.[\w.]*json["\']', r"read_sidecar",
                    r"\bsidecar_path\(", r'\+\s*["\']\.json["\']', r"_sidecar_for")
# `.json` files beside something that are not artifact sidecars: FreiHAND's per-image label files (data).
NOT_SIDECARS = {("data/freihand.py", 'ann_path = img.with_suffix(".json")')}


def _sources() -> list[tuple[str, str]]:
    return [(str(p.relative_to(PACKAGE)), p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))]


def test_only_artifact_py_derives_or_parses_sidecars():
    hits = []
    for rel, text in _sources():
        if rel == "artifact.py":
            continue
        for line in text.splitlines():
            if any(re.search(p, line) for p in SIDECAR_PATTERNS) and (rel, line.strip()) not in NOT_SIDECARS:
                hits.append(f"{rel}: {line.strip()}")
    assert hits == [], "sidecar paths/parsing outside artifact.py:\n" + "\n".join(hits)


# Keys that exist only in sidecars: reading one by name outside artifact.py means a sidecar dict is indexed.
SIDECAR_KEYS = ("key_inputs", "sensitivity_repair", "int8_mac_share", "precision_mix", "int8_target",
                "artifact_format", "source_sha256", "onnx_sha256", "precision_verified", "checked_on")
KEY_ACCESS = re.compile(r'(\[\s*|\.get\(\s*)["\'](' + "|".join(SIDECAR_KEYS) + r')["\']')


def test_no_caller_indexes_a_sidecar_dict():
    """Sidecar sections are typed values: nobody reaches into `side["int8_mac_share"]` or `.get("key_inputs")`."""
    hits = [f"{rel}: {line.strip()}" for rel, text in _sources() if rel != "artifact.py"
            for line in text.splitlines() if KEY_ACCESS.search(line)]
    assert hits == [], "\n".join(hits)
    assert KEY_ACCESS.search('share = side.get("int8_mac_share")') and KEY_ACCESS.search('rep["checked_on"]["crops"]')


def test_the_sidecar_check_would_catch_a_reader():
    """The scan above is not vacuous: the readers it replaced match its patterns."""
    old = ['side = plan.with_suffix(".json")', "meta = {**read_sidecar(src)}",
           "write_json_atomic(sidecar_path(out), m)", 'layers = plan.with_suffix(".layers.json")']
    assert all(any(re.search(p, line) for p in SIDECAR_PATTERNS) for line in old)


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):  # every import, module level or inside a function
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_cli_imports_no_numpy_polars_onnx_torch():
    imported = _imported_modules(ast.parse((PACKAGE / "cli.py").read_text()))
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert imported <= {"__future__", "sys", "json", "pathlib", "typing", "typer", "rich"}, sorted(imported)
    assert "numpy" in _imported_modules(ast.parse("def f():\n    import numpy as np\n"))  # lazy imports count


def test_help_loads_no_heavy_module():
    code = ("import sys\nfrom simplehand_deploy.cli import _run, bench, deploy\n"
            "codes = [_run(deploy, ['--help']), _run(bench, ['--help']), _run(deploy, ['int8', '--help']),"
            " _run(bench, ['latency', '--help'])]\n"
            f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
            "print(codes, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0] []"


def test_engine_and_bench_commands_build_one_value_and_call_one_function():
    """build/engine/triton/regress/baseline/report: at most one `from_cli`, exactly one library call that
    does the work, no TensorRT profile parsing, polars or dict reading in the command body."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    bodies = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    work = {"build": ("BuildConfig", "run_build"), "engine": ("EngineJobConfig", "run_engine_job"),
            "triton": ("TritonConfig", "write_repository"), "regress": ("GateConfig", "gate"),
            "baseline_cmd": (None, "record_baseline"), "report": (None, "write_report")}
    for func, (config, call) in work.items():
        nodes = [n for stmt in bodies[func].body for n in ast.walk(stmt)]  # the body, not the option types
        called = [n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                  for n in nodes if isinstance(n, ast.Call)]
        assert called.count(call) == 1, (func, called)
        if config is not None:
            assert called.count("from_cli") == 1 and any(
                isinstance(n, ast.Attribute) and n.attr == "from_cli" and getattr(n.value, "id", "") == config
                for n in nodes), (func, called)
        assert not {"_profile", "parse_profile", "load_frame", "write_baseline", "n_unique", "export_triton",
                    "validate_repository", "build_engine"} & set(called), (func, called)
        assert not any(isinstance(n, ast.Subscript) for n in nodes), func  # no frame/dict indexing
    assert "_profile" not in bodies
