"""benchmarks/hrnet_vs_fastvit.py: the side-by-side table (the preset itself runs for minutes on the full models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mdtable import table_rows

_SPEC = importlib.util.spec_from_file_location("hrnet_vs_fastvit",
                                               Path(__file__).parents[1] / "benchmarks" / "hrnet_vs_fastvit.py")
assert _SPEC is not None and _SPEC.loader is not None
preset = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(preset)


def _lat(config, runner, precision, batch, ms, status="ok"):
    return {"config": config, "runner": runner, "precision": precision, "measurement": "latency",
            "batch_size": batch, "latency_p50_ms": ms, "status": status}


def _acc(config, runner, precision, mean, p99):
    return {"config": config, "runner": runner, "precision": precision, "measurement": "accuracy", "batch_size": 1,
            "vertex_drift_mean_mm": mean, "vertex_drift_p99_mm": p99, "status": "ok"}


def test_each_config_s_figures_land_in_its_own_column() -> None:
    rows = [_lat("hrnet_w48", "onnxruntime", "fp32", 1, 900.0), _lat("fastvit_ma36", "onnxruntime", "fp32", 1, 300.0),
            _lat("hrnet_w48", "onnxruntime", "fp32", 4, 3000.0), _lat("fastvit_ma36", "onnxruntime", "fp32", 4, 1100.0),
            _acc("hrnet_w48", "onnxruntime", "fp16", 0.5, 1.25),
            _acc("fastvit_ma36", "onnxruntime", "fp16", 0.02, 0.05),
            # a failed row never shows as a figure
            _lat("hrnet_w48", "onnxruntime", "int8", 1, 1.0, status="error: boom")]
    table = table_rows(preset.comparison_md(rows, ["hrnet_w48", "fastvit_ma36"], [1, 4]))
    by = {r["runner"]: r for r in table}
    fp32, fp16, int8 = by["ORT FP32"], by["ORT FP16"], by["ORT INT8 (Q/DQ, trt10)"]
    assert (fp32["hrnet_w48 p50 ms (batch 1)"], fp32["hrnet_w48 p50 ms (batch 4)"]) == ("900", "3000")
    assert (fp32["fastvit_ma36 p50 ms (batch 1)"], fp32["fastvit_ma36 p50 ms (batch 4)"]) == ("300", "1100")
    assert fp32["hrnet_w48 / fastvit_ma36 (batch 1)"] == "3.00x"
    assert fp16["hrnet_w48 drift mean / p99 mm"] == "0.5 / 1.25"
    assert fp16["fastvit_ma36 drift mean / p99 mm"] == "0.02 / 0.05"
    assert int8["hrnet_w48 p50 ms (batch 1)"] == "–" and int8["hrnet_w48 / fastvit_ma36 (batch 1)"] == "–"
