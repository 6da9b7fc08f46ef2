"""Evaluation: the official protocol's wiring (order, keys, skipped metrics), official-format files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.errors import UsageError
from simplehand_deploy.evaluate import evaluate_model


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from simplehand_deploy.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("eval") / "synth", 1, seed=5, eval_num=5, progress=False)


class _Oracle(torch.nn.Module):
    """Returns the given vertices in dataset order, batch after batch: a perfect model, if the wiring is right."""

    def __init__(self, vertices: np.ndarray) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.queue = torch.from_numpy(np.ascontiguousarray(vertices, np.float32))
        self.pos = 0

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = image.shape[0]
        v = self.queue[self.pos:self.pos + b] + 0.01  # a root offset: the protocol is translation-free
        self.pos += b
        return torch.zeros(b, 21, 2), v


def test_perfect_predictions_score_perfectly_across_batches(synth_root):
    from simplehand_deploy.data.augment import eval_sample
    from simplehand_deploy.data.freihand import FreiHAND
    from simplehand_deploy.data.synthetic import regressor

    ds = FreiHAND(synth_root, "evaluation")
    gt = np.stack([eval_sample(ds[i])["vertices"] for i in range(len(ds))])
    m = evaluate_model(_Oracle(gt), ds, regressor(), batch_size=2)  # 5 samples: batches of 2, 2, 1
    assert m["num"] == 5 and m["skipped"] == {}
    assert m["pa_mpvpe_mm"] < 1e-3 and m["pa_mpjpe_mm"] < 1e-3 and m["f5"] == 1.0 and m["auc_vertices"] > 0.99
    shuffled = evaluate_model(_Oracle(gt[::-1]), ds, regressor(), batch_size=2)  # wrong order must be caught
    assert shuffled["pa_mpvpe_mm"] > 1.0


def test_limit_and_empty(synth_root):
    from simplehand_deploy.data.freihand import FreiHAND
    from simplehand_deploy.model import create_model

    ds = FreiHAND(synth_root, "evaluation")
    m = evaluate_model(create_model("tiny"), ds, None, limit=2)
    assert m["num"] == 2 and "pa_mpjpe_mm" not in m and set(m["skipped"]) == {"pa_mpjpe_mm", "auc_joints"}
    assert m["pa_mpvpe_mm"] > 0 and 0 <= m["f15"] <= 1
    with pytest.raises(UsageError, match="empty"):
        evaluate_model(create_model("tiny"), [], None)


def test_eval_cli_freihand_layout_says_what_was_skipped(synth_root, tiny_checkpoint, capsys):
    args = ["eval", "--checkpoint", str(tiny_checkpoint), "--config", "tiny", "--freihand", str(synth_root)]
    assert _run(deploy, [*args, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["num"] == 5 and "pa_mpvpe_mm" in metrics and "pa_mpjpe_mm" not in metrics
    assert "--mano" in metrics["skipped"]["pa_mpjpe_mm"]
    assert _run(deploy, args) == 0
    out = capsys.readouterr().out
    assert "pa_mpvpe_mm" in out and "skipped pa_mpjpe_mm" in out


def test_eval_loads_official_format_file(parity_checkpoint, capsys):
    code = _run(deploy, ["eval", "--checkpoint", str(parity_checkpoint), "--config", "fastvit_ma36", "--synthetic",
                         "--synthetic-num", "2", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["num"] == 2 and metrics["pa_mpvpe_mm"] > 0 and metrics["pa_mpjpe_mm"] > 0
    assert set(metrics) >= {"pa_mpjpe_mm", "pa_mpvpe_mm", "auc_joints", "auc_vertices", "f5", "f15"}


def test_eval_bad_input(tmp_path, synth_root, capsys):
    assert _run(deploy, ["eval", "--config", "tiny", "--freihand", str(tmp_path / "missing")]) == 2
    assert _run(deploy, ["eval", "--config", "tiny", "--freihand", str(synth_root), "--synthetic"]) == 2
    assert "exactly one data source" in capsys.readouterr().err
    assert _run(deploy, ["eval", "--config", "nope", "--synthetic"]) == 2
    assert "unknown config" in capsys.readouterr().err
