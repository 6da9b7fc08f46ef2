"""benchmarks/qat_ablation.py: its table and its refusals (the preset itself fine-tunes for minutes per variant)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mdtable import table_rows

_SPEC = importlib.util.spec_from_file_location("qat_ablation",
                                               Path(__file__).parents[1] / "benchmarks" / "qat_ablation.py")
assert _SPEC is not None and _SPEC.loader is not None
preset = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(preset)


def _row(name: str, ptq: float, qat: float) -> dict:
    return {"variant": name, "steps": 300, "best_step": 250, "ptq_vertex_drift_mean_mm": ptq,
            "qat_vertex_drift_mean_mm": qat, "ptq_uv_drift_mean_px": 5.0, "qat_uv_drift_mean_px": 4.0,
            "ptq_vertex_drift_teacher_uv_mean_mm": 3.0, "qat_vertex_drift_teacher_uv_mean_mm": 2.5,
            "fine_tune_s": 150.2}


def test_each_variant_s_figures_land_in_its_row() -> None:
    fp16 = {"crops": 16, "ort_fp16_vs_ort_fp32_mm": 0.1, "ort_fp16_optimised_vs_not_mm": 0.06,
            "torch_fp32_vs_ort_fp16_mm": 0.11, "torch_fp16_simulation_vs_ort_fp16_mm": 0.15,
            "torch_fp16_simulation_vs_torch_fp32_mm": 0.18}
    md = preset.ablation_md([_row("all", 5.68, 4.52), _row("dense", 3.38, 2.89)], fp16,
                            [{"placement": "all", "int8_mac_share": 0.9175, "ptq_vertex_drift_mean_mm": 5.524}])
    by = {r["variant"]: r for r in table_rows(md)}
    assert (by["all"]["PTQ drift (mm)"], by["all"]["QAT drift (mm)"]) == ("5.68", "4.52")
    assert (by["dense"]["PTQ drift (mm)"], by["dense"]["QAT drift (mm)"]) == ("3.38", "2.89")
    assert by["dense"]["steps (best)"] == "300 (250)" and by["dense"]["fine-tune (s)"] == "150"
    assert "PyTorch FP16 simulation vs ORT FP16 0.150" in md


def test_variant_names_are_distinct_and_comma_free() -> None:
    names = [n for n, _ in preset.VARIANTS]
    assert len(set(names)) == len(names) and not any("," in n for n in names)
    assert all(set(k) <= set(preset.DEFAULTS) for _, k in preset.VARIANTS)


@pytest.mark.parametrize("argv, said", [(["--variants", "nope"], "--variants 'nope'"), (["--steps", "0"], "--steps 0")])
def test_bad_arguments_exit_with_one_line(argv: list[str], said: str) -> None:
    with pytest.raises(SystemExit) as exc:
        preset.main(argv)
    assert said in str(exc.value) and "\n" not in str(exc.value)


def test_placement_table_shows_share_and_drift() -> None:
    placements = [{"placement": "all", "int8_mac_share": 0.9175, "ptq_vertex_drift_mean_mm": 5.524}]
    md = preset.ablation_md([], None, placements)
    (row,) = table_rows(md.split("Post-training placements")[1])
    assert (row["placement"], row["INT8 MAC share"], row["PTQ drift (mm)"]) == ("all", "91.8%", "5.52")
