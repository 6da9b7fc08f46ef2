"""Test support that the benchmarks use too (numpy.testing's pattern): nothing here runs in a deployment.

* the weights behind the official-model parity fixture, regenerated from their published recipe
  (`tests/fixtures/parity/README.md`): the recipe walks the official state-dict layout in order with
  one seeded generator, so a faithful model loading these weights reproduces the official outputs; the
  layout file ships in `tests/fixtures/` and its path is an argument, so nothing depends on the test tree;
* `save_official`: a state dict wrapped the way the official training script saves it;
* `quick_tiny_checkpoint`: a `tiny` model trained briefly on synthetic hands (drift figures that mean something);
  `python -m simplehand_deploy.testing --out DIR` trains it from the shell (CI's drift gate), so the recipe is
  written only here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_path

RECIPE_SEED = 20241002
INPUT_SEED = 7


def read_layout(tsv: str | os.PathLike[str]) -> list[tuple[str, str, tuple[int, ...]]]:
    """Rows of `key<TAB>dtype<TAB>shape` (shape comma-separated, empty for 0-d)."""
    rows = []
    for line in Path(tsv).read_text().splitlines():
        if not line.strip():
            continue
        key, dtype, shape = [*line.split("\t"), ""][:3]
        rows.append((key, dtype, tuple(int(s) for s in shape.split(",") if s)))
    return rows


def recipe_state_dict(tsv: str | os.PathLike[str], seed: int = RECIPE_SEED) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, dtype, shape in read_layout(tsv):
        if dtype.startswith("int"):
            sd[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            sd[key] = torch.randn(shape, generator=g) * 0.1
        elif key.endswith(".weight") and len(shape) == 1:
            sd[key] = 1 + torch.randn(shape, generator=g) * 0.02
        elif len(shape) >= 2 and "pos_emb" not in key and not key.endswith(".gamma"):
            fan_in = int(np.prod(shape)) // shape[0]
            sd[key] = torch.randn(shape, generator=g) / fan_in**0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.02
    return sd


def recipe_input(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(INPUT_SEED)) * 255


def save_official(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], epoch: int = 200) -> Path:
    """Wrap a state dict the way the official training script saves it."""
    with atomic_path(path) as tmp:
        torch.save({"epoch": epoch, "state_dict": state_dict}, tmp)
    return Path(path)


QUICK_TINY_STEPS = 300


def quick_tiny_checkpoint(out_dir: str | os.PathLike[str], steps: int = QUICK_TINY_STEPS, seed: int = 0) -> Path:
    """A `tiny` model trained briefly on synthetic hands (for drift figures that mean something).

    In-plane augmentation is off: in a few hundred steps the tiny model learns the hand's shape (held-out
    PA-MPVPE ~41 -> ~23 mm after 120 x 8 crops) but not arbitrary orientations, whose average is a blob.
    """
    from .train import TrainConfig, train

    cfg = TrainConfig(config="tiny", out=str(out_dir), synthetic=True, synthetic_num=256, steps=steps,
                      batch_size=16, seed=seed, lr=2e-3, rotation=0.0, progress=False)
    last = Path(out_dir) / "last.pt"
    return last if last.is_file() else train(cfg)


MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


def write_mano_like(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """A random model file with MANO's keys, shapes and kinematic tree (plain numpy pickle, as the cleaned
    conversions are): MANO itself is licensed and never shipped, so the forward pass and the DexYCB path are
    tested on this. Every joint regresses from its own vertex group, every vertex is skinned to a few joints."""
    import pickle

    from .config import NUM_VERTICES

    rng = np.random.default_rng(seed)
    v = NUM_VERTICES
    owner = rng.integers(0, 16, v)
    owner[:16] = np.arange(16)  # every joint owns at least one vertex
    regressor = np.zeros((16, v))
    regressor[owner, np.arange(v)] = 1.0
    regressor /= regressor.sum(axis=1, keepdims=True)
    weights = rng.dirichlet(np.full(3, 0.5), v)
    skin = np.zeros((v, 16))
    for k, parent in enumerate((owner, np.array([max(MANO_PARENTS[o], 0) for o in owner]), rng.integers(0, 16, v))):
        np.add.at(skin, (np.arange(v), parent), weights[:, k])
    components, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    kintree = np.array([[2**32 - 1, *MANO_PARENTS[1:]], list(range(16))], dtype=np.int64)
    data = {
        "v_template": rng.normal(0, 0.03, (v, 3)), "shapedirs": rng.normal(0, 0.004, (v, 3, 10)),
        "posedirs": rng.normal(0, 0.002, (v, 3, 135)), "J_regressor": regressor, "weights": skin,
        "kintree_table": kintree, "hands_components": components, "hands_mean": rng.normal(0, 0.2, 45),
        "f": rng.integers(0, v, (1538, 3)).astype(np.uint32), "bs_style": "lbs", "bs_type": "lrotmin",
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f)
    return Path(path)


def slowed_copy(onnx_path: str | os.PathLike[str], out: str | os.PathLike[str], units: int, *,
                output: str = "uv", width: int = 32, seed: int = 0) -> Path:
    """A copy of an ONNX graph that is slower on purpose by `units` side branches the graph must compute.

    Each branch multiplies the input image, seen as (B, 3*224, 224) rows, by its own (224, width) matrix and
    sums the result; the sum, times zero, is added to `output`. The contract (I/O names, dtypes, shapes) and
    the outputs' values are unchanged, the cost grows with the batch like the model's: a real slowdown for
    testing the A/B gate (`simplehand-bench compare`), never for deployment.
    """
    import onnx
    from onnx import helper, numpy_helper

    if units < 1:
        raise ValueError("units must be >= 1")
    model = onnx.load(str(onnx_path))
    graph = model.graph
    image = graph.input[0].name
    producer = next(n for n in graph.node if output in n.output)
    pre = f"{output}__before_slowdown"
    producer.output[list(producer.output).index(output)] = pre
    for node in graph.node:  # the graph's own consumers keep reading the original value
        for j, name in enumerate(node.input):
            if name == output:
                node.input[j] = pre
    rng = np.random.default_rng(seed)
    c, h, w = (d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:])
    shape = numpy_helper.from_array(np.array([0, c * h, w], dtype=np.int64), "slowdown_shape")
    zero = numpy_helper.from_array(np.zeros((), dtype=np.float32), "slowdown_zero")
    graph.initializer.extend([shape, zero])
    nodes = [helper.make_node("Reshape", [image, "slowdown_shape"], ["slowdown_rows"])]
    sums = []
    for i in range(units):
        weight = numpy_helper.from_array((rng.standard_normal((w, width)) / w).astype(np.float32), f"slowdown_w{i}")
        graph.initializer.append(weight)
        nodes += [helper.make_node("MatMul", ["slowdown_rows", weight.name], [f"slowdown_mm{i}"]),
                  helper.make_node("ReduceSum", [f"slowdown_mm{i}"], [f"slowdown_sum{i}"], keepdims=0)]
        sums.append(f"slowdown_sum{i}")
    total = sums[0] if len(sums) == 1 else "slowdown_total"
    if len(sums) > 1:
        nodes.append(helper.make_node("Sum", sums, [total]))
    nodes += [helper.make_node("Mul", [total, "slowdown_zero"], ["slowdown_nothing"]),
              helper.make_node("Add", [pre, "slowdown_nothing"], [output])]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return Path(out)


# The INT8 comparisons' recipe (benchmarks/int8_peers.py, benchmarks/precision_drift.py): one definition of the
# trained tiny they quantise and of the crop sets they calibrate, fine-tune and measure on.
INT8_RECIPE = {"train": "simplehand-deploy train --config tiny --synthetic --steps 300 --seed 1 --rotation 0",
               "calib": "simplehand-deploy calib-set --synthetic --num 32 --seed 1",
               "held_out": "simplehand-deploy calib-set --synthetic --num 64 --seed 777",
               "qat_data": "simplehand-deploy calib-set --synthetic --num 2048 --seed 5"}


def int8_recipe_checkpoint(work: str | os.PathLike[str], steps: int = 300) -> Path:
    """`tiny` trained as INT8_RECIPE["train"] says (the command's defaults otherwise) into `<work>/train`; a
    finished run found there is reused."""
    from .train import TrainConfig, train

    last = Path(work) / "train" / "last.pt"
    if last.is_file():
        return last
    return train(TrainConfig.from_cli(config="tiny", synthetic=True, steps=steps, seed=1, rotation=0.0,
                                      out=str(Path(work) / "train"), quiet=True))


def main(argv: list[str] | None = None) -> int:
    """`python -m simplehand_deploy.testing --out DIR`: the trained tiny (`quick_tiny_checkpoint`) at DIR/last.pt."""
    ap = argparse.ArgumentParser(prog="python -m simplehand_deploy.testing",
                                 description="Train the quick `tiny` on synthetic hands (the test suite's trained "
                                             "fixture and CI's drift gate use this one recipe).")
    ap.add_argument("--out", type=Path, required=True, help="run folder; DIR/last.pt is reused when present")
    ap.add_argument("--steps", type=int, default=QUICK_TINY_STEPS, help="training steps (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(quick_tiny_checkpoint(args.out, steps=args.steps, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
