"""Model variants as data.

`fastvit_ma36` is the paper's real-time model and the layout of the official checkpoints.
`tiny` keeps every code path of the real model (FastViT RepMixer stages, a self-attention
stage, RepCPE, the MobileOne final conv, the three-stage mesh head) at a size that runs a
forward pass of batch 2 in a few tens of milliseconds on a laptop CPU, so tests exercise the
real architecture rather than a stand-in.
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
    drop_path_rate: float = 0.2
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
        d["backbone_kwargs"] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in d.get("backbone_kwargs", {}).items()
        }
        return cls(**d)


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
