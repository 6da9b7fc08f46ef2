"""Model variants as data.

`fastvit_ma36` is the paper's real-time model and the layout of the official checkpoints;
`hrnet_w48` is the paper's accuracy model (timm's HRNet-W48 classification trunk, whose
`forward_features` ends in the same kind of (B, 2048, 7, 7) stride-32 map the head expects).
`tiny` keeps every code path of the real model (FastViT RepMixer stages, a self-attention
stage, RepCPE, the MobileOne final conv, the three-stage mesh head) at a size that runs a
forward pass of batch 2 in a few tens of milliseconds on a laptop CPU, so tests exercise the
real architecture rather than a stand-in. `hrnet_tiny` is HRNet's twin for the same purpose:
timm's `hrnet_w18_small` trunk with one block per branch (multi-resolution branches, fuse layers,
the incremental/downsampling head and its 2048-channel final layer all kept).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGE_SIZE = 224
NUM_JOINTS = 21
NUM_VERTICES = 778
ROOT_INDEX = 9  # middle-finger MCP in FreiHAND order: outputs are relative to this joint


@dataclass(frozen=True)
class ModelConfig:
    """Everything that changes the shape of a SimpleHand network."""

    name: str
    backbone: str
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    drop_path_rate: float = 0.2  # 0: not passed to timm (HRNet's constructor has no drop path)
    deconv_dim: int = 256
    token_nums: tuple[int, int, int] = (21, 84, 336)
    dims: tuple[int, int, int] = (256, 128, 64)
    num_heads: int = 4
    mlp_ratio: float = 4.0
    head_dropout: float = 0.1
    head_drop_path: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["token_nums"] = list(self.token_nums)
        d["dims"] = list(self.dims)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["token_nums"] = tuple(d["token_nums"])
        d["dims"] = tuple(d["dims"])
        d["backbone_kwargs"] = _tuples(d.get("backbone_kwargs", {}))
        return cls(**d)


def _tuples(value: Any) -> Any:
    """JSON gives lists where the config holds tuples (also inside HRNet's per-stage dicts): restore them."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


CONFIGS: dict[str, ModelConfig] = {
    "fastvit_ma36": ModelConfig(name="fastvit_ma36", backbone="fastvit_ma36"),
    "tiny": ModelConfig(
        name="tiny",
        # MA36's own constructor with one block per stage and narrow widths: the last stage keeps
        # self-attention + RepCPE and the MobileOne final conv, exactly like the real model.
        backbone="fastvit_ma36",
        backbone_kwargs={"layers": (1, 1, 1, 1), "embed_dims": (16, 32, 64, 128), "mlp_ratios": (2, 2, 2, 2)},
        drop_path_rate=0.0,
        deconv_dim=32,
        dims=(32, 32, 16),
        num_heads=2,
        mlp_ratio=2.0,
    ),
    "hrnet_w48": ModelConfig(name="hrnet_w48", backbone="hrnet_w48", drop_path_rate=0.0),
    "hrnet_tiny": ModelConfig(
        name="hrnet_tiny",
        backbone="hrnet_w18_small",
        backbone_kwargs={
            f"stage{i}": {"num_modules": 1, "num_branches": i, "block_type": "BOTTLENECK" if i == 1 else "BASIC",
                          "num_blocks": (1,) * i, "num_channels": (8, 16, 32, 64)[:i] if i > 1 else (16,),
                          "fuse_method": "SUM"}
            for i in (1, 2, 3, 4)
        },
        drop_path_rate=0.0,
        deconv_dim=32,
        dims=(32, 32, 16),
        num_heads=2,
        mlp_ratio=2.0,
    ),
}

DEFAULT_CONFIG = "fastvit_ma36"


def get_config(name: str) -> ModelConfig:
    """Look up a variant by name; the error lists the known ones."""
    try:
        return CONFIGS[name]
    except KeyError:
        known = ", ".join(sorted(CONFIGS))
        from .errors import UsageError

        raise UsageError(f"unknown config {name!r}; choose one of: {known}") from None
