"""benchmarks/gpu_check.py on a CPU-only machine: one clear line, exit 2; rows in the harness's schema, written
after every section (a killed run keeps them), the INT8 artifact per TensorRT version, compile last."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_only_box_exits_2_with_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert _load().main(["--batches", "1"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "Traceback" not in err


def test_bad_arguments_exit_2(capsys):
    mod = _load()
    assert mod.main(["--batches", "0,x"]) == 2
    assert mod.main(["--sections", "eager,warp"]) == 2
    assert "warp" in capsys.readouterr().err


def _row(**kw):
    base = {"runner": "torch", "precision": "fp32", "batch_size": 8, "measurement": "latency", "status": "ok",
            "cuda_graphs": False, "latency_p50_ms": 3.25, "throughput_img_s": 2461.5, "vertex_drift_mean_mm": 0.0,
            "device_name": "NVIDIA X", "note": ""}
    return {**base, **kw}


def test_writer_uses_the_harness_schema_and_files(tmp_path):
    """With polars the folder is the harness's own (results.parquet/csv/json/md + env.json), readable by
    `simplehand-bench report`/`regress` (read_results)."""
    from simplehand_deploy.bench.results import RESULT_COLUMNS, read_results

    mod = _load()
    rows = [_row(runner="tensorrt", precision="fp16", batch_size=None,
                 status="skipped: TensorRT is not installed | apt"), _row()]
    folder = mod.write(rows, {"run_id": "r1", "device_name": "NVIDIA X"}, tmp_path / "r1-gpu-check")
    for name in ("results.parquet", "results.csv", "results.json", "results.md", "env.json"):
        assert (folder / name).is_file(), name
    df = read_results(folder)
    assert df["latency_p50_ms"].to_list()[1] == 3.25 and df["runner"].to_list() == ["tensorrt", "torch"]
    assert "installed \\| apt" in (folder / "results.md").read_text()
    assert not [c for c in rows[0] if c not in RESULT_COLUMNS and c != "note"]


def test_rows_carry_harness_column_names(tmp_path):
    """Every column a gpu_check row can carry is a harness column (the free-text `note` apart)."""
    from types import SimpleNamespace

    from simplehand_deploy.bench.results import RESULT_COLUMNS

    mod = _load()
    rows = mod.Rows(SimpleNamespace(sections=list(mod.SECTIONS), quiet=True, verbose=False),
                    common={"config": "tiny", "weights": "seed0", "device_name": "NVIDIA X"})
    timing = mod._stats([1.0, 2.0, 3.0]) | {"throughput_exec_s": 500.0, "iterations": 3, "duration_s": 0.1}
    rows.add("tensorrt", "int8", 8, "ok", "TRT 10.3", timing=timing, drift=0.5, cuda_graphs=True,
             precision_mix="int8+fp16", precision_verified=True, engine_device_memory_mb=12.0, artifact="e.plan")
    rows.add("onnxruntime", "fp32", 1, "ok", timing=dict(timing), scope="host")
    rows.section("ort", lambda: (_ for _ in ()).throw(mod.SkipSection("no CUDAExecutionProvider")))
    for row in rows.rows:
        assert not [c for c in row if c not in RESULT_COLUMNS and c != "note"], row
    first = rows.rows[0]
    assert first["throughput_img_s"] == 8 * 500.0 and first["timing_scope"] == "gpu_compute"
    assert first["precision_mix"] == "int8+fp16" and first["precision_verified"] is True
    assert rows.rows[1]["timing_scope"] == "host" and rows.rows[2]["status"] == "skipped: no CUDAExecutionProvider"


def test_int8_artifact_follows_the_installed_tensorrt(tmp_path):
    """gpu_check builds TensorRT INT8 from the artifact the pipeline picks for that version."""
    from types import SimpleNamespace

    mod = _load()
    assert mod.int8_target("10.3.0.30") == "trt10" and mod.int8_target("11.1.0") == "trt10"
    assert mod.int8_target("8.6.2.3") == "trt8" and mod.int8_target("9.2.0") == "trt8"
    check = object.__new__(mod.Check)
    check.args = SimpleNamespace(engines_dir=str(tmp_path))
    check.info = SimpleNamespace(config="tiny", short="seed0")
    for target in ("trt10", "trt8"):
        (tmp_path / f"simplehand-tiny-seed0-int8-{target}.onnx").write_bytes(b"x")
    assert check._onnx("int8", mod.int8_target("8.6.2.3")).name == "simplehand-tiny-seed0-int8-trt8.onnx"
    assert check._onnx("int8", mod.int8_target("10.3.0")).name == "simplehand-tiny-seed0-int8-trt10.onnx"
    assert check._onnx("fp16") is None


def test_sections_degrade_to_rows_not_crashes():
    from types import SimpleNamespace

    mod = _load()
    check = mod.Rows(SimpleNamespace(sections=["ort", "trt"], quiet=True, verbose=False))

    def missing():
        raise mod.SkipSection("onnxruntime has no CUDAExecutionProvider")

    def broken():
        raise RuntimeError("boom")

    check.section("ort", missing)
    check.section("trt", broken)
    check.section("compile", broken)  # not selected: no row
    assert [(r["runner"], r["status"].split(":")[0]) for r in check.rows] == [("onnxruntime", "skipped"),
                                                                              ("tensorrt", "error")]
    assert "CUDAExecutionProvider" in check.rows[0]["status"] and "boom" in check.rows[1]["status"]


def test_compile_runs_last_and_a_late_section_is_skipped(tmp_path):
    """The inductor compile (unmeasured time for fastvit_ma36) is the last section; past the deadline a section
    becomes one skipped row and the files are still written."""
    from types import SimpleNamespace

    mod = _load()
    assert mod.SECTIONS[-1] == "compile"
    ran = []

    class Stub(mod.Rows):
        def sections(self):
            return {name: (lambda n=name: ran.append(n) or self.add(mod.RUNNER[n], "fp32", 1, "ok"))
                    for name in mod.SECTIONS}

    check = Stub(SimpleNamespace(sections=["compile", "eager"], quiet=True, verbose=False))
    mod.run(check, {"device_name": "x"}, tmp_path / "a", deadline_s=60)
    assert ran == ["eager", "compile"]  # SECTIONS order, whatever --sections says
    late = Stub(SimpleNamespace(sections=["eager", "trt"], quiet=True, verbose=False))
    mod.run(late, {"device_name": "x"}, tmp_path / "b", deadline_s=-1)
    assert [r["status"].split(" (")[0] for r in late.rows] == ["skipped: time budget"] * 2
    assert json.loads((tmp_path / "b" / "results.json").read_text())[1]["runner"] == "tensorrt"


def test_a_compile_still_running_at_the_budget_is_abandoned(tmp_path):
    import threading
    import time
    from types import SimpleNamespace

    mod = _load()
    release = threading.Event()

    class Stub(mod.Rows):
        def sections(self):
            def compiling():
                release.wait(30)
                self.add("torch_compile", "fp16", 1, "ok")  # too late: must not appear

            return {"eager": lambda: self.add("torch", "fp32", 1, "ok"), "compile": compiling}

    check = Stub(SimpleNamespace(sections=["eager", "compile"], quiet=True, verbose=False))
    t0 = time.monotonic()
    assert mod.run(check, {"device_name": "x"}, tmp_path, budget_s=1.0) is True
    assert time.monotonic() - t0 < 5
    assert [r["status"] for r in check.rows] == ["ok", "skipped: time budget (still compiling at --budget-s 1)"]
    assert json.loads((tmp_path / "results.json").read_text())[1]["runner"] == "torch_compile"
    release.set()  # (main leaves with os._exit here; the test lets the worker finish instead)
    quick = Stub(SimpleNamespace(sections=["compile"], quiet=True, verbose=False))
    assert mod.run(quick, {"device_name": "x"}, tmp_path / "q", budget_s=30) is False
    assert quick.rows[0]["status"] == "ok"


_DRIVER = """
import json, sys, time, importlib.util
from pathlib import Path
from types import SimpleNamespace
if {block}:
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('polars', 'tensorrt'):
                raise ImportError('blocked ' + name)
    sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location('gpu_check', {script!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)

class Stub(m.Rows):  # the GPU sections stubbed out: two finish, the third never does
    def sections(self):
        def done(runner, graphs):
            return lambda: self.add(runner, 'fp32', 8, 'ok', timing=m._stats([2.0, 2.0]) | {{
                'throughput_exec_s': 500.0, 'iterations': 2, 'duration_s': 0.1}}, cuda_graphs=graphs)
        def hang():
            time.sleep(600)
        return {{'eager': done('torch', False), 'graphs': done('torch', True), 'ort': hang}}

check = Stub(SimpleNamespace(sections=['eager', 'graphs', 'ort', 'compile'], quiet=True, verbose=False),
             common={{'device_name': 'NVIDIA X', 'config': 'tiny'}})
m.run(check, {{'device_name': 'NVIDIA X'}}, Path({folder!r}))
"""


@pytest.mark.parametrize("polars", [True, False], ids=["harness-writer", "bare-gpu-image"])
def test_killed_run_keeps_the_finished_sections(tmp_path, polars):
    """A run killed at the slot's limit keeps every finished section's rows, in the harness's files."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "run-gpu-check"
    code = _DRIVER.format(block=not polars, script=str(ROOT / "benchmarks" / "gpu_check.py"), folder=str(folder))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    rows = []
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and proc.poll() is None:
            try:
                rows = json.loads((folder / "results.json").read_text())
                md = (folder / "results.md").read_text()  # written after results.json
            except (OSError, ValueError):
                rows, md = [], ""
            if len(rows) == 2 and md.count("| torch") == 2:
                break  # the second section's files are all written; the third section hangs
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-2000:]  # still hanging in the third section
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [(r["runner"], r["cuda_graphs"]) for r in rows] == [("torch", False), ("torch", True)]
    files = {"results.csv", "results.json", "results.md", "env.json"} | ({"results.parquet"} if polars else set())
    assert files <= {p.name for p in folder.iterdir()}
    header = (folder / "results.csv").read_text().splitlines()[0].split(",")
    assert {"runner", "precision", "batch_size", "status", "latency_p50_ms", "throughput_img_s"} <= set(header)
    md = (folder / "results.md").read_text()
    assert md.startswith("# simplehand-bench results: NVIDIA X") and md.count("| torch") == 2


def test_runs_without_polars_or_tensorrt():
    """A bare GPU image has torch, onnx and numpy only: everything gpu_check imports must load without polars."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('polars', 'tensorrt'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"spec = importlib.util.spec_from_file_location('gpu_check', r'{ROOT / 'benchmarks' / 'gpu_check.py'}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import simplehand_deploy.env, simplehand_deploy.drift, simplehand_deploy.checkpoint\n"
        "import simplehand_deploy.export, simplehand_deploy.trt.build, simplehand_deploy.trt.runtime\n"
        "import time\n"
        "p50 = m.time_host(lambda: time.sleep(0.005), duration=0.0, iterations=3, warmup=0.0)['latency_p50_ms']\n"
        "assert 5.0 <= p50 < 1000, p50  # a 5 ms sleep, timed in milliseconds\n"
        "assert 'polars' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_gpu_timing_goes_through_the_shared_loop():
    """gpu_check times with timing.time_gpu: one inference queued ahead, window throughput."""
    mod = _load()

    class Stream:
        def synchronize(self):
            pass

    class Event:
        n = 0

        def __init__(self):
            self.at = 0

        def record(self):
            self.at = Event.n

        def synchronize(self):
            pass

        def elapsed_ms(self, end):
            return 2.0

    def launch():
        Event.n += 1

    out = mod.time_gpu(launch, Stream(), duration=0.0, iterations=25, warmup=0.0, new_event=Event)
    assert out["latency_p50_ms"] == 2.0 and out["throughput_exec_s"] > 0
