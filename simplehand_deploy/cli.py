"""Command-line interface: `simplehand-deploy` (the pipeline) and `simplehand-bench` (measurement).

Each command parses its options into one config value (`XConfig.from_cli`, in the module that owns
the job and holds its defaults), calls one library function and renders the value it returns; no
computation here (docs/architecture.md). Library imports happen inside the command bodies so `--help`
is instant and never imports TensorRT. Errors become exit codes:
UsageError -> 2, VerificationError -> 1, both printed as one line on stderr (no traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import DEFAULT_CONFIG
from .defaults import DEFAULT_CALIB_NUM, DEFAULT_METHOD, DEFAULT_WORKSPACE_MB, profile_text
from .errors import UsageError, VerificationError

deploy = typer.Typer(
    name="simplehand-deploy",
    help=(
        "SimpleHand from PyTorch weights to ONNX, FP16/INT8 and TensorRT engines.\n\n"
        "Typical flow: synth -> calib-set -> export -> fp16 / int8 -> drift -> build (or all at once: engine)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench = typer.Typer(
    name="simplehand-bench",
    help="Latency across batch sizes and accuracy drift versus PyTorch eager, per backend and precision.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@deploy.callback()
def _deploy_main() -> None:
    """SimpleHand from PyTorch weights to ONNX, FP16/INT8 and TensorRT engines."""


@bench.callback(invoke_without_command=True)
def _bench_main(ctx: typer.Context) -> None:
    """Latency across batch sizes and accuracy drift versus PyTorch eager, per backend and precision.

    With no command: benchmark every artifact found in engines/ plus torch eager on this machine.
    """
    if ctx.invoked_subcommand is None:
        _bench(("latency",), False, False)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a Typer app and map our exceptions to exit codes; returns the code."""
    try:
        app(args=argv, standalone_mode=False)
    except UsageError as exc:
        _err(str(exc))
        return 2
    except VerificationError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        _err("aborted")
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except Exception as exc:  # click's own usage errors arrive here in non-standalone mode
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click.ClickException (typer may vendor click)
            exc.show()
            return int(exc.exit_code)
        raise
    return 0


def deploy_app(argv: list[str] | None = None) -> None:
    sys.exit(_run(deploy, argv))


def bench_app(argv: list[str] | None = None) -> None:
    sys.exit(_run(bench, argv))


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr)


# Common option types -------------------------------------------------------------------------

CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Weights: official simpleHand file, our checkpoint, or a state dict. "
                 "Absent: seed-initialised weights (announced)."),
]
ConfigOpt = Annotated[str | None, typer.Option("--config", help=f"Model variant: {DEFAULT_CONFIG} (the paper's, "
                                                "default), hrnet_w48 (the paper's accuracy model), or the test twins "
                                                "tiny / hrnet_tiny.")]
BuffersOpt = Annotated[str | None, typer.Option("--buffers", help="TensorRT's CUDA buffers: auto (torch if it has "
                                                "CUDA, else cuda-python, else pycuda), torch, cuda-python or "
                                                "pycuda (Jetson images without a CUDA torch).")]


# ============================================================================================
# simplehand-deploy: model
# ============================================================================================


@deploy.command()
def predict(
    input: Annotated[Path, typer.Option("--input", help="float32 .npy (B,3,224,224), BGR, 0..255 crops.")],
    output: Annotated[Path, typer.Option("--output", help="Output .npz with uv (B,21,2), vertices (B,778,3).")],
    checkpoint: CheckpointOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    fuse: Annotated[bool, typer.Option("--fuse", help="Apply FastViT re-parameterisation first.")] = False,
    mano: Annotated[Path | None, typer.Option("--mano", help="MANO_RIGHT.pkl: also output joints.")] = None,
    regressor: Annotated[Path | None, typer.Option("--regressor", help="(21,778) .npy: also output joints.")] = None,
    device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda:0.")] = "cpu",
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Trust a checkpoint holding objects.")] = False,
) -> None:
    """Run the PyTorch model on preprocessed crops and save uv, vertices (and joints)."""
    from .predict import PredictConfig, run_predict

    run_predict(PredictConfig.from_cli(input=input, output=output, checkpoint=checkpoint, config=config, fuse=fuse,
                                       mano=mano, regressor=regressor, device=device, allow_pickle=allow_pickle))


# ============================================================================================
# simplehand-deploy: data
# ============================================================================================

@deploy.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (FreiHAND v2 layout).")],
    num: Annotated[int, typer.Option("--num", help="Training samples.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed (same seed, same data).")] = 0,
    eval_num: Annotated[int, typer.Option("--eval-num", help="Evaluation samples.")] = 0,
    layout: Annotated[str, typer.Option("--layout", help="freihand (v2 layout) or dexycb (the DexYCB release's "
                                        "folders, 640x480 frames, right and left hands, a few handless frames; "
                                        "--num frames).")] = "freihand",
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Generate synthetic hands in FreiHAND's (or DexYCB's) on-disk format (the embedded default data set)."""
    from .data.synthetic import SynthConfig, run_synth

    cfg = SynthConfig.from_cli(out=out, num=num, seed=seed, eval_num=eval_num, layout=layout, quiet=quiet)
    path = run_synth(cfg)
    what = "frames in DexYCB layout" if cfg.layout == "dexycb" else f"training + {cfg.eval_num} evaluation samples"
    _say(f"wrote {cfg.num} {what} to {path}", quiet)


@deploy.command("calib-set")
def calib_set(
    out: Annotated[Path, typer.Option("--out", help="Set folder, e.g. calibration/freihand-256.")],
    freihand: Annotated[Path | None, typer.Option("--freihand", help="FreiHAND v2 folder or JSON image list.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Use generated synthetic hands instead.")] = False,
    dexycb: Annotated[Path | None, typer.Option("--dexycb", help="DexYCB release folder (or `synth --layout "
                                                "dexycb`); left hands are mirrored, handless frames skipped.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="FreiHAND: training (default) or evaluation. DexYCB: "
                                              "s0-train, s0-val, s0-test (full release) or all (any subset); "
                                              "default s0-train on the full release, else all.")] = None,
    num: Annotated[int, typer.Option("--num", help="Number of crops (stratified sample).")] = DEFAULT_CALIB_NUM,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    scale_enlarge: Annotated[float, typer.Option("--scale-enlarge", help="Box enlargement (1.25 = eval).")] = 1.25,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Build a calibration set: N preprocessed crops + labels + a manifest with sha256 hashes."""
    from .calibration import CalibSetConfig, run_calib_set

    cfg = CalibSetConfig.from_cli(out=out, freihand=freihand, synthetic=synthetic, split=split, num=num, seed=seed,
                                  scale_enlarge=scale_enlarge, quiet=quiet, dexycb=dexycb)
    path = run_calib_set(cfg)
    _say(f"wrote calibration set {path} ({cfg.num} crops)", quiet)


# ============================================================================================
# simplehand-deploy: training and evaluation
# ============================================================================================

@deploy.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, epoch_N.pt, log.csv, summary.json.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    freihand: Annotated[Path | None, typer.Option("--freihand", help="FreiHAND v2 folder.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Train on generated synthetic hands.")] = False,
    synthetic_num: Annotated[int, typer.Option("--synthetic-num", help="Synthetic training samples.")] = 2048,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimiser steps (or use --epochs).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Passes over the data (saves epoch_N.pt).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Per-process batch size.")] = 32,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt (bit-for-bit).")] = False,
    lr: Annotated[float, typer.Option("--lr", help="Base learning rate (paper: 5e-4 at batch 256).")] = 5e-4,
    mano: Annotated[Path | None, typer.Option("--mano", help="MANO_RIGHT.pkl for the joint loss on FreiHAND.")] = None,
    save_every: Annotated[int, typer.Option("--save-every", help="Also save last.pt every N steps.")] = 0,
    stop_after: Annotated[int | None, typer.Option("--stop-after", help="Save and stop after N steps of this "
                                                    "invocation (time-boxed jobs); continue with --resume.")] = None,
    rotation: Annotated[float | None, typer.Option("--rotation", help="In-plane augmentation range in radians "
                                                     "(default: pi, the official full circle, on FreiHAND; 0.785 = "
                                                     "45 degrees on synthetic hands, generated within 45 degrees of "
                                                     "upright).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Train SimpleHand (paper losses, AdamW, warm-up + step decay); runs unchanged under torchrun (DDP)."""
    from .train import TrainConfig
    from .train import train as run_training

    path = run_training(TrainConfig.from_cli(
        config=config, out=out, freihand=freihand, synthetic=synthetic, synthetic_num=synthetic_num, steps=steps,
        epochs=epochs, batch_size=batch_size, seed=seed, resume=resume, lr=lr, mano=mano, save_every=save_every,
        stop_after=stop_after, rotation=rotation, quiet=quiet))
    _say(f"saved {path}", quiet)


@deploy.command("eval")
def eval_cmd(
    checkpoint: CheckpointOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    freihand: Annotated[Path | None, typer.Option("--freihand", help="FreiHAND v2 folder.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Evaluate on generated synthetic hands.")] = False,
    synthetic_num: Annotated[int, typer.Option("--synthetic-num", help="Synthetic evaluation samples.")] = 64,
    dexycb: Annotated[Path | None, typer.Option("--dexycb", help="DexYCB folder: PA-MPJPE against joint_3d (needs "
                                                "--mano for our joints); PA-MPVPE when vertices are known "
                                                "(--mano MANO_RIGHT.pkl, --mano-left for left hands).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="FreiHAND: evaluation (default) or training. DexYCB: "
                                              "s0-test (default on the full release), s0-val, s0-train or all "
                                              "(default on a subset).")] = None,
    mano: Annotated[Path | None, typer.Option("--mano", help="MANO_RIGHT.pkl: enables joint metrics.")] = None,
    mano_left: Annotated[Path | None, typer.Option("--mano-left", help="MANO_LEFT.pkl: DexYCB's left-hand "
                                                   "vertices (from pose_m), then mirrored.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N samples.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """FreiHAND protocol: crop x1.25, root-relative, Procrustes-aligned PA-MPJPE/PA-MPVPE, AUC, F@5/F@15."""
    from .evaluate import EvalConfig, metrics_table, run_eval, skipped_lines

    metrics = run_eval(EvalConfig.from_cli(checkpoint=checkpoint, config=config, freihand=freihand,
                                           synthetic=synthetic, synthetic_num=synthetic_num, split=split, mano=mano,
                                           limit=limit, progress=not json_out, dexycb=dexycb, mano_left=mano_left))
    if json_out:
        import json

        print(json.dumps(metrics))
        return
    from rich.console import Console

    console = Console()
    console.print(metrics_table(metrics))
    for line in skipped_lines(metrics):
        console.print(line)


# ============================================================================================
# simplehand-deploy: export, precision, drift
# ============================================================================================

@deploy.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Output .onnx path (a .json sidecar is written beside it).")],
    checkpoint: CheckpointOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    opset: Annotated[int, typer.Option("--opset", help="17 (TensorRT >= 8.6) or 16 (TensorRT 8.5).")] = 17,
    dynamo: Annotated[bool, typer.Option("--dynamo", help="Use torch's dynamo exporter (needs onnxscript).")] = False,
    no_simplify: Annotated[bool, typer.Option("--no-simplify", help="Skip onnxsim.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Export fused FP32 ONNX (dynamic batch), simplified, graph-checked, parity-checked in ONNX Runtime."""
    from .export import ExportConfig, run_export

    run_export(ExportConfig.from_cli(out=out, checkpoint=checkpoint, config=config, opset=opset, dynamo=dynamo,
                                     no_simplify=no_simplify, quiet=quiet))


@deploy.command()
def fp16(
    onnx: Annotated[Path, typer.Option("--onnx", help="FP32 ONNX from `export`.")],
    out: Annotated[Path, typer.Option("--out", help="Output FP16 .onnx.")],
    block: Annotated[list[str] | None, typer.Option("--block", help="Op type or node name kept FP32 (repeat); "
                                                     "default LayerNormalization, Softmax, GridSample.")] = None,
) -> None:
    """FP16 graph with FP32 I/O and an FP32 island (norms, softmax, grid path, vertex head)."""
    from .precision import Fp16Config, run_fp16

    art = run_fp16(Fp16Config.from_cli(onnx=onnx, out=out, block=block))
    _say(f"wrote {art.path}")


@deploy.command()
def int8(
    onnx: Annotated[Path, typer.Option("--onnx", help="FP32 ONNX from `export`.")],
    calib: Annotated[Path, typer.Option("--calib", help="Calibration set folder (calib-set).")],
    out: Annotated[Path, typer.Option("--out", help="Output Q/DQ .onnx.")],
    method: Annotated[str, typer.Option("--method", help="minmax, entropy or percentile.")] = DEFAULT_METHOD,
    quantizer: Annotated[str, typer.Option("--quantizer", help=(
        "ort (default): ours, ONNX Runtime's calibrators with TensorRT-style placement. modelopt: NVIDIA ModelOpt "
        "0.47 ONNX PTQ in its own venv (`make modelopt` -> .venv-modelopt/, or $SIMPLEHAND_MODELOPT_VENV); its own "
        "placement (--placement/--max-drift-mm do not apply), --method minmax (its max) or entropy, FP16 remainder, "
        "opset 19 (TensorRT >= 10)."))] = "ort",
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Extra node names to keep float.")] = None,
    placement: Annotated[str, typer.Option(
        "--placement", help="dense (default): INT8 on the backbone's dense convs/matmuls and the deconv, depthwise "
        "convs and the token regressor float (the INT8 share of MACs is in the sidecar); all: every weighted layer "
        "outside the uv head, grid path and vertex head; matched: all + the vertex head's token upsample INT8, "
        "the token regressor's activation x activation MatMuls float (ModelOpt's layer set).")] = "dense",
    max_drift_mm: Annotated[float | None, typer.Option(
        "--max-drift-mm", help="Sensitivity repair: keep the most sensitive layer groups float until drift <= D mm "
        "on held-out crops (the last 25% of the calibration set, at least 8, not used to calibrate); exit 1 if "
        "the budget cannot be met."
    )] = None,
    target: Annotated[str, typer.Option(
        "--target", help="trt10 (default): for TensorRT >= 10 (strongly typed), opset 19, FP16 scales and an FP16 "
        "remainder outside the FP32 island (norms, softmax, grid path, heads); trt8: for TensorRT 8.6, opset <= 17, "
        "FP32 scales (builder flags pick the rest).")] = "trt10",
    scale_search: Annotated[bool, typer.Option(
        "--scale-search", help="After calibration, tune each activation scale (multipliers 0.5..1.2, coordinate "
        "descent) to minimise mean vertex drift vs the FP32 graph on the calibration crops (never on held-out "
        "crops); recorded in the sidecar. --quantizer ort only.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Explicit INT8 Q/DQ graph calibrated on the crops (symmetric, per-channel weights; --target trt10 or trt8)."""
    from .precision import Int8Config, run_int8

    result = run_int8(Int8Config.from_cli(onnx=onnx, calib=calib, out=out, method=method, quantizer=quantizer,
                                          exclude=exclude, placement=placement, max_drift_mm=max_drift_mm,
                                          target=target, scale_search=scale_search, quiet=quiet))
    for line in result.lines():
        _say(line, quiet)
    failure = result.failure()
    if failure:
        raise VerificationError(failure)


@deploy.command()
def qat(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Trained weights to fine-tune (the FP32 teacher; "
                                             "drift is always measured against them).")],
    config: Annotated[str, typer.Option("--config", help="Model variant of the checkpoint (tiny, fastvit_ma36).")],
    calib: Annotated[Path, typer.Option("--calib", help="Calibration set folder: initial activation scales and the "
                                        "export's calibration.")],
    data: Annotated[Path, typer.Option("--data", help="Fine-tuning crops (a calib-set folder of any size; labels "
                                       "unused unless --label-weight).")],
    out: Annotated[Path, typer.Option("--out", help="Output Q/DQ .onnx for --target; the other target is written "
                                      "beside it as <stem>.<target>.onnx.")],
    val: Annotated[Path | None, typer.Option("--val", help="Early-stopping crops (default: the last 10% of --data, "
                                             "never trained on).")] = None,
    placement: Annotated[str, typer.Option("--placement", help="dense (default), all or matched: as `int8`.")
                         ] = "dense",
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node name or op type kept float "
                                                      "(repeat).")] = None,
    method: Annotated[str, typer.Option("--method", help="Initial activation scales: minmax (default) or "
                                        "entropy.")] = DEFAULT_METHOD,
    target: Annotated[str, typer.Option("--target", help="trt10 (default) or trt8: which artifact is --out (both "
                                        "are written).")] = "trt10",
    steps: Annotated[int, typer.Option("--steps", help="Fine-tuning steps (tiny: ~0.4 s each on 2 cores).")] = 600,
    lr: Annotated[float, typer.Option("--lr", help="AdamW lr of the weights, cosine to 0 (activation scales: "
                                      "x100).")] = 1e-4,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    label_weight: Annotated[float, typer.Option("--label-weight", help="Weight of an L1 loss against the crops' "
                                                "labels, added to the distillation loss (default 0: labels "
                                                "unused).")] = 0.0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    save_checkpoint: Annotated[Path | None, typer.Option("--save-checkpoint", help="Also save the fine-tuned "
                                                         "weights (our checkpoint format).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Quantisation-aware fine-tuning: fake quantisation matching our Q/DQ graph (same placement, learned
    activation scales), distilled from the FP32 checkpoint, exported for trt10 and trt8. Opt-in: `make engine`
    stays post-training."""
    from .precision.qat import QatConfig, run_qat

    result = run_qat(QatConfig.from_cli(checkpoint=checkpoint, config=config, calib=calib, data=data, out=out,
                                        val=val, placement=placement, exclude=exclude, method=method, target=target,
                                        steps=steps, lr=lr, batch_size=batch_size, label_weight=label_weight,
                                        device=device, seed=seed, save_checkpoint=save_checkpoint, quiet=quiet))
    for line in result.lines():
        _say(line, quiet)


@deploy.command("int8-sensitivity")
def int8_sensitivity(
    onnx: Annotated[Path, typer.Option("--onnx", help="A Q/DQ INT8 graph (int8, qat or ModelOpt).")],
    calib: Annotated[Path, typer.Option("--calib", help="Crops to measure drift on (held-out crops: not the "
                                        "calibration set).")],
    out: Annotated[Path, typer.Option("--out", help="Results folder (parquet/CSV/markdown + bar plot).")],
    top: Annotated[int, typer.Option("--top", help="Layers in the bar plot.")] = 20,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Per quantised layer: drift (mm) when only its activation, and when only its weight, is INT8 (its own
    placement and scales; reference: the same graph without Q/DQ), with its MACs. tiny: minutes; fastvit_ma36:
    about an hour on 2 cores."""
    from .bench.sensitivity import SensitivityConfig, run_sensitivity

    folder = run_sensitivity(SensitivityConfig.from_cli(onnx=onnx, calib=calib, out=out, top=top, quiet=quiet))
    _say(f"wrote {folder}", quiet)


@deploy.command()
def drift(
    onnx: Annotated[list[Path], typer.Option("--onnx", help="ONNX graphs to compare (repeat).")],
    calib: Annotated[Path, typer.Option("--calib", help="Calibration set folder.")],
    checkpoint: CheckpointOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    mano: Annotated[Path | None, typer.Option("--mano", help="MANO_RIGHT.pkl: PA-MPJPE on FreiHAND crops "
                                              "(synthetic sets carry their own regressor).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
) -> None:
    """Drift of each graph (ONNX Runtime, CPU) vs PyTorch FP32 eager on the same crops: mm and px."""
    from .drift import DriftConfig, render_table, run_drift

    df = run_drift(DriftConfig.from_cli(onnx=onnx, calib=calib, checkpoint=checkpoint, config=config, mano=mano,
                                        quiet=json_out))
    if json_out:
        import json

        print(json.dumps(df.to_dicts(), indent=2))
    else:
        from rich.console import Console

        Console().print(render_table(df))


# ============================================================================================
# simplehand-deploy: TensorRT build and `engine`
# ============================================================================================

@deploy.command()
def build(
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX artifact (fp32, fp16 or Q/DQ int8).")],
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or int8.")] = "fp16",
    out: Annotated[Path, typer.Option("--out", help="Engine folder (plan + JSON sidecar by content key).")] = Path(
        "engines"),
    profile: Annotated[str, typer.Option("--profile", help="Batch MIN,OPT,MAX of the optimisation profile.")] = (
        profile_text()),
    workspace_mb: Annotated[int, typer.Option("--workspace-mb")] = DEFAULT_WORKSPACE_MB,
    opt_level: Annotated[int | None, typer.Option("--opt-level", help="Builder optimisation level 0-5.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the cache key matches.")] = False,
    tf32: Annotated[bool, typer.Option("--tf32/--no-tf32", help="TensorRT's default TF32 for FP32 layers "
                                       "(--no-tf32: true FP32; recorded in the key and sidecar).")] = True,
    buffers: BuffersOpt = None,
) -> None:
    """Build (or reuse) a TensorRT engine: name-based API, flags on TRT < 10, strongly typed on >= 10."""
    from .trt.build import BuildConfig, run_build

    art = run_build(BuildConfig.from_cli(onnx=onnx, precision=precision, out=out, profile=profile,
                                         workspace_mb=workspace_mb, opt_level=opt_level, force=force, tf32=tf32,
                                         buffers=buffers))
    _say(f"{'reused' if art.cached else 'built'} {art.plan} (key {art.key}, {art.seconds:.0f} s)")


@deploy.command("check-engine")
def check_engine_cmd(
    layers: Annotated[Path, typer.Argument(help="Engine-inspector JSON: the builder's <key>.layers.json or "
                                           "`trtexec --exportLayerInfo=F --profilingVerbosity=detailed`.")],
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or int8.")],
    min_share: Annotated[float | None, typer.Option("--min-share", help="Minimum weighted share of compute layers "
                                                    "in that precision (default 0.5; with --onnx and int8: the "
                                                    "graph's own INT8 MAC share minus 0.2, as the builder "
                                                    "requires).")] = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="The ONNX graph the engine was built from: weigh "
                                              "layers by its MACs (the nodes each layer's name contains) instead "
                                              "of Weights.Count, which Myelin GEMMs may lack.")] = None,
) -> None:
    """Which precision did the engine's convolutions / GEMMs really run in? Exit 0 ok, 1 short or unverifiable."""
    from .trt.inspect import check_engine, format_report

    report, verdict = check_engine(layers, precision, min_share, onnx=onnx)
    for line in format_report(report):
        print(line)
    if not verdict.ok:
        raise VerificationError(f"{layers}: {verdict.message}")
    print(f"ok: {verdict.message}")


@deploy.command()
def engine(
    checkpoint: CheckpointOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    freihand: Annotated[Path | None, typer.Option("--freihand", help="FreiHAND folder for calibration crops; "
                                                   "default: synthetic FreiHAND-format hands.")] = None,
    dexycb: Annotated[Path | None, typer.Option("--dexycb", help="DexYCB folder for calibration crops instead "
                                                "(s0-train on the full release, else every frame).")] = None,
    calib_num: Annotated[int, typer.Option("--calib-num", help="Calibration crops.")] = DEFAULT_CALIB_NUM,
    out: Annotated[Path, typer.Option("--out", help="Artifact folder.")] = Path("engines"),
    precisions: Annotated[str, typer.Option("--precisions", help="Comma list of fp32,fp16,int8.")] = "fp32,fp16,int8",
    method: Annotated[str, typer.Option("--method", help="INT8 calibration: minmax, entropy, percentile.")] = (
        DEFAULT_METHOD),
    profile: Annotated[str, typer.Option("--profile", help="Batch MIN,OPT,MAX.")] = profile_text(),
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
    tf32: Annotated[bool, typer.Option("--tf32/--no-tf32", help="TensorRT engines with TensorRT's default TF32 "
                                       "(--no-tf32 clears it).")] = True,
) -> None:
    """The main job (`make engine`): calibration set, weights, FP32/FP16/INT8 ONNX, TensorRT engines if possible."""
    from rich.console import Console

    from .pipeline import EngineJobConfig, run_engine_job, summary_table

    job = run_engine_job(EngineJobConfig.from_cli(config=config, checkpoint=checkpoint, freihand=freihand,
                                                  dexycb=dexycb,
                                                  calib_num=calib_num, out=out, precisions=precisions, method=method,
                                                  profile=profile, quiet=quiet, tf32=tf32))
    Console(stderr=True).print(summary_table(job))
    if job.failed:
        raise VerificationError("some artifacts failed to build (see the summary)")


# ============================================================================================
# simplehand-deploy: triton
# ============================================================================================


@deploy.command()
def triton(
    out: Annotated[Path, typer.Option("--out", help="Model repository root, e.g. model_repository/.")],
    engine: Annotated[Path | None, typer.Option("--engine", help="TensorRT plan (platform tensorrt_plan).")] = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="ONNX graph (platform onnxruntime_onnx).")] = None,
    name: Annotated[str, typer.Option("--name", help="Model name in the repository.")] = "simplehand",
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="max_batch_size (default: the engine "
                                                  "profile's max, from TensorRT or the sidecar).")] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Parse config.pbtxt with Triton's schema "
                                        "when tritonclient is installed.")] = True,
) -> None:
    """Write a Triton model repository: <name>/config.pbtxt (dynamic batching) + <name>/1/model.plan|onnx."""
    from .triton import TritonConfig, write_repository

    model = write_repository(TritonConfig.from_cli(out=out, engine=engine, onnx=onnx, name=name, max_batch=max_batch,
                                                   check=check))
    _say(f"triton: wrote {model.model_dir}" + (" (config.pbtxt checked against Triton's ModelConfig schema)"
                                                 if model.checked else ""))


# ============================================================================================
# simplehand-bench: harness
# ============================================================================================

RunnersOpt = Annotated[str | None, typer.Option("--runners", help="Comma list: torch (fused eager), torch_unfused "
                                                 "(training-time model), torch_compile, onnxruntime, tensorrt "
                                                 "(default: torch,onnxruntime,tensorrt).")]
BatchOpt = Annotated[str | None, typer.Option("--batch-sizes", help="Comma list; default 1,2,4,8 on CPU, "
                                               "1,2,4,8,16,32,64 on GPU.")]
DurationOpt = Annotated[float | None, typer.Option("--duration", help="Minimum timed seconds per cell "
                                                  "(default 3, trtexec's).")]
ItersOpt = Annotated[int | None, typer.Option("--iterations", help="Minimum timed iterations per cell (default 10).")]
WarmupOpt = Annotated[float | None, typer.Option("--warmup", help="Warm-up seconds per cell (default 0.2).")]
OnnxOpt = Annotated[list[Path] | None, typer.Option("--onnx", help="ONNX artifact(s); default: found in engines/.")]
EnginesOpt = Annotated[list[Path] | None, typer.Option("--engines", help="TensorRT plan(s); default: engines/*.plan.")]
CalibOpt = Annotated[Path | None, typer.Option("--calib", help="Calibration set for accuracy; default: a synthetic "
                                               "set of 16 crops in calibration/.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Results folder (default benchmarks/results/<run-id>/).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the rows as JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars or tables.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU intra-op threads for torch and ONNX Runtime "
                                                "alike (default: each library's own; the number in effect is "
                                                "recorded as cpu_threads).")]


def _bench(kinds: tuple[str, ...], json_out: bool | None, quiet: bool | None, *, accuracy_only: bool = False,
           **options: Any) -> None:
    """Build the run's config, run it, render what it returns."""
    from .bench.run import BenchConfig, run_bench

    cfg = BenchConfig.from_cli(kinds, quiet=bool(quiet or json_out), **options)
    run = run_bench(cfg.accuracy_only() if accuracy_only else cfg)
    _render_bench(run, bool(json_out), bool(quiet))
    if run.failed_all:
        raise VerificationError(f"no runner produced a result (see the status column in {run.path})")


def _render_bench(run: Any, json_out: bool, quiet: bool) -> None:
    import json

    if json_out:
        print(json.dumps(run.rows(), default=str, indent=1))
        return
    if quiet:
        if run.cov_warning():
            _say(run.cov_warning())
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for table in run.tables():
        console.print(table)
    lines = run.trtexec_lines()
    if lines:
        console.print("equivalent trtexec commands (GPU compute, one inference queued ahead):")
        for line in lines:
            console.print(f"  {escape(line)}", soft_wrap=True)
    if run.cov_warning():
        console.print(f"[yellow]{escape(run.cov_warning())}[/]")
    if run.simulated_precision_note:
        console.print("[dim]note: ONNX Runtime FP16/INT8 on CPU simulate TensorRT precision for accuracy; their "
                      "CPU latency is not what FP16/INT8 buys on a GPU.[/]")
    console.print(f"results: {run.path}")


@bench.command()
def latency(runners: RunnersOpt = None, batch_sizes: BatchOpt = None, duration: DurationOpt = None,
            iterations: ItersOpt = None, warmup: WarmupOpt = None, config: ConfigOpt = None,
            checkpoint: CheckpointOpt = None, onnx: OnnxOpt = None, engines: EnginesOpt = None,
            out: OutOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False, threads: ThreadsOpt = None,
            buffers: BuffersOpt = None) -> None:
    """Latency table across batch sizes for each runner (trtexec statistics), written as results files."""
    _bench(("latency",), json_out, quiet, runners=runners, batch_sizes=batch_sizes, duration=duration,
           iterations=iterations, warmup=warmup, config=config, checkpoint=checkpoint, onnx=onnx, engines=engines,
           out=out, threads=threads, buffers=buffers)


@bench.command()
def accuracy(runners: RunnersOpt = None, config: ConfigOpt = None, checkpoint: CheckpointOpt = None,
             onnx: OnnxOpt = None, engines: EnginesOpt = None, calib: CalibOpt = None, out: OutOpt = None,
             json_out: JsonOpt = False, quiet: QuietOpt = False, threads: ThreadsOpt = None,
             buffers: BuffersOpt = None) -> None:
    """Drift of every runner vs torch FP32 eager on the same crops (mm, px), plus metrics vs labels."""
    _bench(("accuracy",), json_out, quiet, accuracy_only=True, runners=runners, config=config, checkpoint=checkpoint,
           onnx=onnx, engines=engines, calib=calib, out=out, threads=threads, buffers=buffers)


@bench.command()
def run(runners: RunnersOpt = None, batch_sizes: BatchOpt = None, duration: DurationOpt = None,
        iterations: ItersOpt = None, warmup: WarmupOpt = None, config: ConfigOpt = None,
        checkpoint: CheckpointOpt = None, onnx: OnnxOpt = None, engines: EnginesOpt = None, calib: CalibOpt = None,
        out: OutOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False, threads: ThreadsOpt = None,
        buffers: BuffersOpt = None) -> None:
    """Latency and accuracy in one results folder."""
    _bench(("latency", "accuracy"), json_out, quiet, runners=runners, batch_sizes=batch_sizes, duration=duration,
           iterations=iterations, warmup=warmup, config=config, checkpoint=checkpoint, onnx=onnx, engines=engines,
           calib=calib, out=out, threads=threads, buffers=buffers)


@bench.command("env")
def env_cmd(json_out: JsonOpt = False) -> None:
    """GPU, driver, CUDA, TensorRT, torch, ONNX Runtime, CPU, Jetson model and power mode (read, never changed)."""
    from .env import details

    info = details()
    if json_out:
        import json

        print(json.dumps(info, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="simplehand-bench env")
    table.add_column("key")
    table.add_column("value")
    for k, v in info.items():
        table.add_row(k, str(v) if v not in ("", None) else "[dim]-[/]")
    Console().print(table)


# ============================================================================================
# simplehand-bench: regress, baseline, report
# ============================================================================================


@bench.command()
def regress(
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline: a baseline .json, a baselines folder "
                                           "(<device-slug>.json is picked), or a results folder/file.")],
    current: Annotated[Path, typer.Option("--current", help="Run under test: a results folder or one of its "
                                          "files; the results root takes its newest run.")],
    latency_tol: Annotated[str, typer.Option("--latency-tol", help="Allowed latency/throughput loss: 10% or 0.1. "
                                             "A row fails when worse than this AND significantly so "
                                             "(batch means of the kept samples).")] = "10%",
    drift_tol_mm: Annotated[float, typer.Option("--drift-tol-mm", help="Allowed drift increase (mm).")] = 0.05,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one testcase per row).")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write markdown (CI step summary).")] = None,
    allow_env_change: Annotated[bool, typer.Option("--allow-env-change", help="Compare across different GPU "
                                                   "names, TensorRT versions, CPU models or --threads (noted "
                                                   "in the report).")] = False,
    device: Annotated[str | None, typer.Option("--device", help="Device slug to pick from a results root.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the verdict line.")] = False,
) -> None:
    """Gate a run against a baseline: exit 1 on a regression, 0 when clean, 2 on bad input."""
    from rich.console import Console

    from .bench.baseline import GateConfig, gate
    from .bench.regress import failure_line, render_table

    result = gate(GateConfig.from_cli(baseline=baseline, current=current, latency_tol=latency_tol,
                                      drift_tol_mm=drift_tol_mm, allow_env_change=allow_env_change, device=device,
                                      junit=junit, markdown=markdown))
    report = result.report
    _say(f"regress: baseline {result.baseline} vs current {result.current}", quiet)
    if not quiet:
        Console(width=max(Console().width, 160)).print(render_table(report))
    if not report.passed:
        raise VerificationError(failure_line(report))
    _say(report.summary())


@bench.command("compare")
def compare_cmd(
    baseline: Annotated[Path, typer.Option("--baseline", help="A: the reference artifact (what main builds), an "
                                           ".onnx graph or a TensorRT .plan.")],
    current: Annotated[Path, typer.Option("--current", help="B: the artifact under test, the same model's "
                                          "contract (I/O names, dtypes, non-batch shapes) and kind as A.")],
    runner: Annotated[str | None, typer.Option("--runner", help="onnxruntime (default for .onnx) or tensorrt "
                                               "(default for plans); both sides use it.")] = None,
    batch_sizes: Annotated[str | None, typer.Option("--batch-sizes", help="Comma list (default 1,4).")] = None,
    threads: ThreadsOpt = None,
    no_spin: Annotated[bool, typer.Option("--no-spin", help="ONNX Runtime's idle intra-op threads sleep instead of "
                                          "spin-waiting (session.intra_op.allow_spinning=0), on both sides.")] = False,
    rounds: Annotated[int | None, typer.Option("--rounds", help="ABBA blocks (default 8: 16 samples per side). "
                                               "More blocks narrow the interval.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Seconds per sample (default 1.0).")] = None,
    latency_tol: Annotated[str | None, typer.Option("--latency-tol", help="10% (default) or 0.1: a latency row "
                                                    "fails when the 95% interval of the median per-block ratio B/A "
                                                    "lies entirely above 1 + tol (throughput: below 1 - tol).")] = None,
    calib: Annotated[Path | None, typer.Option("--calib", help="Calibration set folder: also compare drift of both "
                                               "sides against the same eager model.")] = None,
    checkpoint: CheckpointOpt = None,
    config: ConfigOpt = None,
    drift_tol_mm: Annotated[float | None, typer.Option("--drift-tol-mm", help="Allowed extra drift of B over A "
                                                       "(mm, default 0.05).")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write markdown (CI step summary).")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one testcase per row).")] = None,
    json_out: JsonOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="Results folder (default "
                                             "benchmarks/results/<run-id>-compare/).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the verdict line.")] = False,
) -> None:
    """A/B in one job: time A and B interleaved on this machine, now; exit 1 if B is slower, 0 if not, 2 on bad input.

    For shared or virtual runners, where a stored baseline cannot tell a slower machine from a slower
    artifact: both sides stay open and alternate in ABBA blocks, so the machine's drift hits both.
    Example: simplehand-bench compare --baseline main.onnx --current pr.onnx --markdown summary.md
    """
    from rich.console import Console

    from .bench.compare import CompareConfig, failure_line, render_table, run_compare

    report = run_compare(CompareConfig.from_cli(
        baseline=baseline, current=current, runner=runner, batch_sizes=batch_sizes, threads=threads,
        spinning=False if no_spin else None, rounds=rounds,
        duration=duration, latency_tol=latency_tol, calib=calib, checkpoint=checkpoint, config=config,
        drift_tol_mm=drift_tol_mm, markdown=markdown, junit=junit, out=out, quiet=bool(quiet or json_out)))
    if json_out:
        import json

        print(json.dumps(report.records(), default=str, indent=1))
    elif not quiet:
        Console(width=max(Console().width, 160)).print(render_table(report))
    _say(f"results: {report.folder}", quiet or json_out)
    if not report.passed:
        raise VerificationError(failure_line(report))
    _say(report.summary(), json_out)


@bench.command("baseline")
def baseline_cmd(
    source: Annotated[list[Path], typer.Option("--from", help="Results folder or file of one device's run "
                                               "(the results root takes its newest run). Repeat it to pool several "
                                               "runs of the same command: the gate then bounds a new run by their "
                                               "run-to-run spread (for shared or noisy machines; 5 runs or more).")],
    out: Annotated[Path, typer.Option("--out", help="Baselines folder.")] = Path("benchmarks/baselines"),
    device: Annotated[str | None, typer.Option("--device", help="Device slug to pick from a results root.")] = None,
) -> None:
    """Record a run (or several, pooled) as this device's baseline: <out>/<device-slug>.json (+ .parquet)."""
    from .bench.baseline import record_baseline

    _say(record_baseline(source, out, device=device).describe())


@bench.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Results folders/files (one or more devices).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md/.csv/.parquet and PNG plots.")] = Path(
        "benchmarks/report"),
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the table.")] = False,
) -> None:
    """Merge results from many devices into one table (markdown, CSV) and throughput/latency plots."""
    from rich.console import Console

    from .bench.report import render_table, write_report

    fleet = write_report(results, out)
    for note in fleet.notes:
        _say(f"note: {note}", quiet)
    if not quiet:
        Console(width=max(Console().width, 160)).print(render_table(fleet.summary))
    _say(fleet.line(), quiet)
