"""Training: the paper's losses and schedule, one process or `torchrun` DDP, resumable bit-for-bit.

* Losses (architecture notes §5): L1 on uv (x1, per-joint validity), joints (x10) and vertices
  (x10, both gated by xyz validity); joints = regressor @ vertices (synthetic hands bring their own
  regressor; FreiHAND needs the user's MANO file, otherwise the joint loss is skipped, loudly).
* AdamW lr 5e-4, weight decay 1e-2 except parameters whose name contains "bn" or "bias"; linear
  warm-up over the first 2.5% of steps (5 of 200 epochs), constant, then x0.1 from half-way (100 of
  200 epochs); grad-norm clip 1.0; AMP only on CUDA.
* Sampling with replacement, as the official loop: batch b of step s on rank r draws indices and
  augmentations from generators seeded by (seed, s, r), and torch's RNG state (dropout, drop-path)
  is saved in every checkpoint. Resuming therefore reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DEFAULT_CONFIG
from .errors import UsageError
from .fileio import utc_now

LOSS_WEIGHTS = {"uv": 1.0, "joints": 10.0, "vertices": 10.0}


@dataclass(frozen=True)
class TrainConfig:
    """`simplehand-deploy train` (and `testing.quick_tiny_checkpoint`): every default is the command's."""

    config: str = DEFAULT_CONFIG
    out: str = "runs/train"
    freihand: str | None = None
    synthetic: bool = False
    synthetic_num: int = 2048
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 32
    seed: int = 0
    resume: bool = False
    lr: float = 5e-4
    weight_decay: float = 1e-2
    mano: str | None = None
    save_every: int = 0  # steps; 0 = only at the end (and at epoch ends with --epochs)
    stop_after: int | None = None  # save and stop after this many steps of this invocation (resume later)
    # In-plane augmentation range (radians); None follows the data: the official full circle (pi) on FreiHAND,
    # +-45 degrees on synthetic hands (generated within 45 degrees of upright).
    rotation: float | None = None
    log_every: int = 10
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> TrainConfig:
        """Options left at None take the defaults above (paths become strings); the model variant and a length
        (--steps or --epochs) are checked before any work."""
        from .config import get_config

        given: dict[str, Any] = {k: str(v) if isinstance(v, os.PathLike) else v
                                 for k, v in options.items() if v is not None}
        cfg = cls(progress=not quiet, **given)
        get_config(cfg.config)
        if cfg.steps is None and cfg.epochs is None:
            raise UsageError("give --steps N or --epochs E")
        return cfg


def default_rotation(cfg: TrainConfig) -> float:
    """The in-plane augmentation range in effect: `cfg.rotation`, else the one that fits the data source."""
    if cfg.rotation is not None:
        return cfg.rotation
    from .data.synthetic import MAX_ROLL

    return MAX_ROLL if cfg.synthetic else OFFICIAL_ROTATION


OFFICIAL_ROTATION = float(np.pi)  # the official recipe: any in-plane angle


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if ("bn" in name or "bias" in name) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, total: int) -> float:
    warmup = max(1, round(total * 0.025))
    if step < warmup:
        return (step + 1) / warmup
    return 1.0 if step < total // 2 else 0.1


def losses(uv: torch.Tensor, vertices: torch.Tensor, batch: dict[str, torch.Tensor],
           regressor: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """L1 losses as the official code defines them (mean over batch of mean over points of summed |diff|)."""
    out = {"uv": ((uv - batch["uv"]).abs().sum(-1) * batch["uv_valid"]).mean(-1).mean() * LOSS_WEIGHTS["uv"]}
    valid = batch["xyz_valid"] * batch["has_vertices"]
    out["vertices"] = ((vertices - batch["vertices"]).abs().sum(-1).mean(-1) * valid).mean() * LOSS_WEIGHTS[
        "vertices"]
    if regressor is not None:
        joints = regressor @ vertices
        out["joints"] = ((joints - batch["xyz"]).abs().sum(-1).mean(-1) * batch["xyz_valid"]).mean() * LOSS_WEIGHTS[
            "joints"]
    out["total"] = sum(out.values())  # type: ignore[assignment]
    return out


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _dataset(cfg: TrainConfig, out: Path, rank: int) -> tuple[Any, np.ndarray | None]:
    from .data.freihand import FreiHAND

    if (cfg.freihand is None) == (not cfg.synthetic):
        raise UsageError("give exactly one data source: --freihand DIR or --synthetic")
    if cfg.synthetic:
        from .data.synthetic import generate, regressor

        if cfg.synthetic_num < 1:
            raise UsageError(f"--synthetic-num {cfg.synthetic_num}: the dataset would be empty")
        root = out / f"synthetic-{cfg.synthetic_num}-seed{cfg.seed}"
        if rank == 0 and not (root / "training_K.json").is_file():
            generate(root, cfg.synthetic_num, seed=cfg.seed, progress=cfg.progress)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        return FreiHAND(root, "training"), regressor()
    assert cfg.freihand is not None
    ds = FreiHAND(cfg.freihand, "training")
    if cfg.mano:
        from .joints import load_regressor

        return ds, load_regressor(cfg.mano)
    print("note: no --mano given: training without the joint loss (MANO's regressor is needed for joints)",
          file=sys.stderr)
    return ds, None


def _batch(crops: Any, step: int, rank: int, batch_size: int, seed: int, device: str) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng([seed, step, rank])
    idx = rng.integers(0, len(crops), batch_size)
    items = [crops.item(int(i), step * 1_000_003 + rank * 10_007 + k) for k, i in enumerate(idx)]
    return {k: torch.from_numpy(np.stack([it[k] for it in items])).to(device) for k in items[0]}


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the path of `last.pt`."""
    from .checkpoint import save_checkpoint
    from .config import get_config
    from .data.augment import TrainCrops
    from .model import create_model

    get_config(cfg.config) if not cfg.resume else None
    out = Path(cfg.out)
    _check_writable(out)
    rank, world = _dist()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dataset, reg = _dataset(cfg, out, rank)
    if len(dataset) == 0:
        raise UsageError("the training dataset is empty")
    crops = TrainCrops(dataset, cfg.seed, default_rotation(cfg))
    per_epoch = max(1, len(dataset) // (cfg.batch_size * world))
    total = cfg.steps if cfg.steps is not None else (cfg.epochs or 1) * per_epoch
    if total < 1:
        raise UsageError("--steps/--epochs must give at least one step")

    torch.manual_seed(cfg.seed + rank)
    model = create_model(cfg.config, seed=cfg.seed).to(device).train()
    backbone: Any = model.backbone
    head = backbone.get_classifier()
    for p in head.parameters():  # kept for the official key layout, never run
        p.requires_grad_(False)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total))
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda")
    start = 0
    last = out / "last.pt"
    if cfg.resume:
        start = _resume(cfg, last, model, opt, sched, scaler, rank, total)
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0] if device == "cuda" else None)
    reg_t = torch.from_numpy(reg).to(device) if reg is not None else None

    def save(step: int, name: str = "last.pt") -> None:
        rngs = [torch.get_rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, torch.get_rng_state())
            rngs = gathered
        if rank == 0:
            save_checkpoint(out / name, model, step=step, extra={
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "rng": rngs, "train_config": asdict(cfg), "world_size": world,
                "provenance": {"tool": "simplehand-deploy train", "time": utc_now()}})

    log_path = out / "log.csv"
    interrupted = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    old = signal.signal(signal.SIGINT, _stop)  # every rank: torchrun forwards Ctrl-C to all of them
    bar = _LossBar(f"train {cfg.config}", total - start, cfg.progress and rank == 0)
    step = start
    try:
        for step in bar.iterate(range(start, total)):
            batch = _batch(crops, step, rank, cfg.batch_size, cfg.seed, device)
            parts = _step(net, model, batch, reg_t, opt, sched, scaler, device)
            if rank == 0 and (step % cfg.log_every == 0 or step == total - 1):
                bar.loss = _log(log_path, step, parts, float(sched.get_last_lr()[0]))
            if cfg.save_every and (step + 1) % cfg.save_every == 0:
                save(step + 1)
            if cfg.epochs and (step + 1) % per_epoch == 0:
                save(step + 1, f"epoch_{(step + 1) // per_epoch}.pt")
            if world > 1:  # ranks must leave the loop on the same step, or the next all-reduce hangs
                flag = torch.tensor([float(interrupted)], device=device)
                torch.distributed.all_reduce(flag)
                interrupted = bool(flag.item() > 0)
            if interrupted or (cfg.stop_after is not None and step + 1 - start >= cfg.stop_after):
                step += 1
                break
        else:
            step = total
    finally:
        bar.close()
        signal.signal(signal.SIGINT, old)
    save(step)
    if rank == 0:
        from .fileio import write_json_atomic

        write_json_atomic(out / "summary.json", {"steps": step, "total": total, "world_size": world,
                                                 "interrupted": interrupted, "last_logged_loss_total": bar.loss,
                                                 "config": asdict(cfg)})
    if interrupted:
        print(f"interrupted: saved {last} at step {step}; continue with --resume", file=sys.stderr)
    if world > 1:
        torch.distributed.barrier()
    return last


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: not writable ({exc.strerror})") from None


def _resume(cfg: TrainConfig, last: Path, model: torch.nn.Module, opt: Any, sched: Any, scaler: Any, rank: int,
            total: int) -> int:
    """Restore weights, optimiser, schedule, scaler and RNG from `last`; returns the step to continue from."""
    from .checkpoint import load_checkpoint

    if not last.is_file():
        raise UsageError(f"--resume: no {last} to resume from")
    state = torch.load(last, map_location="cpu", weights_only=False)
    before = state.get("train_config", {})
    if before.get("config", cfg.config) != cfg.config:
        raise UsageError(f"--resume: {last} was trained with --config {before['config']}, not {cfg.config}")
    changed = [k for k in ("seed", "batch_size", "steps", "epochs", "lr", "synthetic_num", "freihand", "rotation")
               if k in before and before[k] != getattr(cfg, k)]
    if changed and rank == 0:
        print(f"note: --resume with changed {', '.join(changed)}: the run continues, but will not equal an "
              "uninterrupted one", file=sys.stderr)
    resumed, _ = load_checkpoint(last)
    model.load_state_dict(resumed.state_dict())
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
    start = int(state["step"])
    if start >= total:
        print(f"note: {last} is already at step {start} >= {total}", file=sys.stderr)
    return start


def _step(net: torch.nn.Module, model: torch.nn.Module, batch: dict[str, torch.Tensor], reg: torch.Tensor | None,
          opt: Any, sched: Any, scaler: Any, device: str) -> dict[str, torch.Tensor]:
    """One optimiser step (mixed precision on CUDA, gradient clipping at 1.0); returns the loss parts."""
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=device == "cuda"):
        uv, vertices = net(batch["image"])
    parts = losses(uv.float(), vertices.float(), batch, reg)
    opt.zero_grad(set_to_none=True)
    scaler.scale(parts["total"]).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
    sched.step()
    return parts


class _LossBar:
    """A rich bar (steps, latest logged loss, ETA) on stderr; silent when disabled (quiet, or not rank 0)."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.loss: float | None = None
        self._progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                                      transient=True, console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task(label, total=total, loss="-")

    def iterate(self, steps: range) -> Any:
        for s in steps:
            yield s
            if self._progress is not None:
                self._progress.update(self._task, advance=1, loss="-" if self.loss is None else f"{self.loss:.4f}")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _log(path: Path, step: int, parts: dict[str, torch.Tensor], lr: float) -> float:
    """Append one row to log.csv; returns the total loss (shown on the progress bar)."""
    row = {"step": step, "lr": lr, **{f"loss_{k}": float(v.detach()) for k, v in parts.items()}}
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    return row["loss_total"]
