"""Load and save SimpleHand weights: official files, our own checkpoints, bare state dicts.

* official simpleHand: `{"epoch": int, "state_dict": {...}, "optimizer_state_dict": ...}`, keys
  `backbone.*`, `keypoints_2d_head.*`, `mesh_head.*`, sometimes with a DDP `module.` prefix;
* ours: `{"format": "simplehand-deploy", "config": {...}, "state_dict": {...}, "step": int, ...}`;
* a bare state dict.

Loading is strict: a missing, unexpected or mis-shaped key is an error naming the first few keys
and the count, never a silent partial load. Checkpoints whose keys are the fused FastViT layout
(`reparam_conv`) are loaded into a fused model.
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import DEFAULT_CONFIG, ModelConfig, get_config
from .errors import UsageError
from .fileio import atomic_path, sha256_file
from .model import SimpleHand, create_model, fuse

OUR_FORMAT = "simplehand-deploy"


@dataclass
class CheckpointInfo:
    path: str | None
    kind: str  # "official" | "simplehand-deploy" | "state_dict" | "seed"
    sha256: str | None
    config: str
    fused: bool = False
    epoch: int | None = None
    step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """8 hex characters naming the weights in artifact names (`seed0` for seed-initialised)."""
        return self.sha256[:8] if self.sha256 else f"seed{self.extra.get('seed', 0)}"


def _read(path: Path, allow_pickle: bool) -> Any:
    if not path.is_file():
        raise UsageError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        if not allow_pickle and "weights_only" in str(exc):
            raise UsageError(
                f"checkpoint {path}: holds Python objects beyond tensors; if you trust the file, "
                "load it with allow_pickle=True (CLI: --allow-pickle)"
            ) from None
        raise UsageError(f"checkpoint {path}: not a PyTorch checkpoint ({_one_line(exc)})") from None
    except Exception as exc:  # torch raises many types for garbage (KeyError, RuntimeError, EOFError, ...)
        raise UsageError(f"checkpoint {path}: not a readable PyTorch checkpoint ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _split(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    if not isinstance(obj, dict):
        raise UsageError(f"checkpoint {path}: expected a dict of tensors, got {type(obj).__name__}")
    if obj.get("format") == OUR_FORMAT:
        return obj["state_dict"], OUR_FORMAT, obj
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"], "official", obj
    if "model" in obj and isinstance(obj["model"], dict):
        return obj["model"], "official", obj
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, "state_dict", {}
    raise UsageError(f"checkpoint {path}: no 'state_dict' entry and not a bare state dict (keys: {list(obj)[:5]})")


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def check_keys(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Raise a one-line UsageError for missing, unexpected or mis-shaped keys."""
    expected = model.state_dict()
    problems: list[str] = []
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shaped = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} {label} key(s): {', '.join(keys[:3])}{more}")
    if problems:
        raise UsageError(
            f"checkpoint {source}: does not fit config {getattr(getattr(model, 'cfg', None), 'name', None)!r}: "
            + "; ".join(problems)
            + " (pass the matching --config, or check the file)"
        )


def load_checkpoint(
    path: str | os.PathLike[str] | None,
    config: str | ModelConfig | None = None,
    *,
    fused: bool = False,
    seed: int = 0,
    allow_pickle: bool = False,
) -> tuple[SimpleHand, CheckpointInfo]:
    """Return an eval-mode model and a description of where its weights came from.

    `path=None` gives seed-initialised weights (`kind="seed"`). The config embedded in our own
    checkpoints wins over `config`; official files use `config` (default fastvit_ma36).
    """
    if path is None:
        cfg = get_config(config) if isinstance(config, str) else (config or get_config(DEFAULT_CONFIG))
        model = create_model(cfg, seed=seed)
        if fused:
            fuse(model)
        info = CheckpointInfo(None, "seed", None, cfg.name, fused=fused, extra={"seed": seed})
        return model, info
    p = Path(path)
    obj = _read(p, allow_pickle)
    sd, kind, meta = _split(obj, p)
    sd = _strip_prefix(sd)
    if kind == OUR_FORMAT:
        cfg = ModelConfig.from_dict(meta["config"])
    elif isinstance(config, ModelConfig):
        cfg = config
    else:
        cfg = get_config(config or DEFAULT_CONFIG)
    model = create_model(cfg, seed=seed)
    stored_fused = any("reparam_conv" in k for k in sd)
    if stored_fused:
        fuse(model)
    check_keys(model, sd, str(p))
    model.load_state_dict(sd, strict=True)
    model.eval()
    if fused and not stored_fused:
        fuse(model)
    info = CheckpointInfo(
        str(p),
        kind,
        sha256_file(p),
        cfg.name,
        fused=fused or stored_fused,
        epoch=meta.get("epoch") if isinstance(meta.get("epoch"), int) else None,
        step=meta.get("step") if isinstance(meta.get("step"), int) else None,
        extra={k: meta[k] for k in ("provenance",) if k in meta},
    )
    return model, info


def seed_weights_note(config: str) -> str:
    """What a command says on stderr when it runs on seed-initialised weights (no --checkpoint)."""
    return f"note: no --checkpoint given: using seed-initialised {config} weights (not a trained model)"


def load_announced(
    path: str | os.PathLike[str] | None,
    config: str = DEFAULT_CONFIG,
    *,
    fused: bool = False,
    allow_pickle: bool = False,
    announce: bool = True,
) -> tuple[SimpleHand, CheckpointInfo]:
    """`load_checkpoint` for the commands: seed-initialised weights (`path=None`) are announced on stderr first."""
    if path is None and announce:
        print(seed_weights_note(config), file=sys.stderr)
    return load_checkpoint(path, config, fused=fused, allow_pickle=allow_pickle)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SimpleHand,
    *,
    step: int | None = None,
    epoch: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write our checkpoint format atomically (config embedded, so it loads without --config)."""
    net = getattr(model, "module", model)  # unwrap DDP
    payload: dict[str, Any] = {
        "format": OUR_FORMAT,
        "config": net.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "step": step,
        "epoch": epoch,
    }
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
