"""The SimpleHand network: a timm backbone (FastViT or HRNet), 2-D keypoint head, keypoint-guided mesh head.

Any timm trunk whose `forward_features` gives a (B, C, 7, 7) map at 224 x 224 fits: the uv head
pools it, the mesh head deconvolves it to the 28 x 28 token grid.

Written from the architecture digest (`shared/reference/simplehand-architecture.md` §2); the
parameter names reproduce the official state-dict layout so official checkpoints load strictly.

Deployment choices that differ in form (not in numbers) from the official code:
* the DETR sine position map for the 28x28 token grid is a precomputed buffer (no CumSum,
  Sin/Cos or shape plumbing at run time);
* attention is written out with explicit q/k/v slices of the packed projection (same keys as
  `nn.MultiheadAttention`), q scaled before the first matmul, which is the pattern TensorRT fuses;
* every add is out-of-place and nothing depends on Python-side shapes, so the legacy and dynamo
  ONNX exporters give clean graphs with a dynamic batch axis.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import DEFAULT_CONFIG, IMAGE_SIZE, NUM_JOINTS, NUM_VERTICES, ModelConfig, get_config


def sine_position_map(channels: int, height: int, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR-style normalised 2-D sine encoding, shape (1, channels, height, width).

    Channels [0, channels/2) encode the row, the rest the column; within each half, even
    channels are sin and odd channels cos of position / temperature^(2*floor(k/2)/half).
    """
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    rows = torch.arange(1, height + 1, dtype=torch.float32)
    cols = torch.arange(1, width + 1, dtype=torch.float32)
    y = (rows / (rows[-1] + eps) * scale)[:, None].expand(height, width)
    x = (cols / (cols[-1] + eps) * scale)[None, :].expand(height, width)
    k = torch.arange(half, dtype=torch.float32)
    div = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / half)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        p = pos[:, :, None] / div  # (H, W, half)
        return torch.stack((p[:, :, 0::2].sin(), p[:, :, 1::2].cos()), dim=3).flatten(2)

    return torch.cat((encode(y), encode(x)), dim=2).permute(2, 0, 1).unsqueeze(0).contiguous()


class PackedAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter layout.

    `in_proj_weight` rows are ordered q, k, v. Dropout on the attention weights as in training.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        attn = F.dropout(attn, p=self.dropout, training=self.training)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, drop_path: float) -> None:
        super().__init__()
        from timm.layers import DropPath, Mlp

        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = PackedAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.token_mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TokenUpsample(nn.Module):
    """A learned affine mix over the token axis (shared across channels): (B, n_in, C) -> (B, n_out, C)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.upsample = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x.transpose(1, 2)).transpose(1, 2)


class MeshHead(nn.Module):
    """Feature map + 2-D keypoints -> 778 vertices, via 21 sampled tokens and three attention stages."""

    def __init__(self, in_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        d0 = cfg.deconv_dim
        dims = cfg.dims
        n1, n2, n3 = cfg.token_nums
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(in_channels, d0, kernel_size=4, stride=4, padding=0, bias=False),
            nn.BatchNorm2d(d0),
            nn.ReLU(),
        )
        grid = (IMAGE_SIZE // 32) * 4
        self.register_buffer("pos_map", sine_position_map(d0, grid, grid), persistent=False)
        in_dims = (d0, dims[0], dims[1])
        outs = (n2, n3, NUM_VERTICES)
        for i, (n_tok, d_in, d_out, n_out) in enumerate(zip(cfg.token_nums, in_dims, dims, outs, strict=True), 1):
            pos = nn.Parameter(torch.empty(1, n_tok, d_in))
            nn.init.trunc_normal_(pos, std=0.02)
            setattr(self, f"pos_emb_{i}", pos)
            setattr(self, f"proj_{i}", nn.Linear(d_in, d_out))
            block = AttentionBlock(d_out, cfg.num_heads, cfg.mlp_ratio, cfg.head_dropout, cfg.head_drop_path)
            setattr(self, f"encoder_{i}", nn.Sequential(block))
            setattr(self, f"upsample_{i}", TokenUpsample(n_tok, n_out))
        self.pred_final = nn.Linear(dims[2], 3)
        if n1 != NUM_JOINTS:
            raise ValueError(f"the first token count must be {NUM_JOINTS} (one per keypoint), got {n1}")

    def forward(self, features: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        fmap = self.deconv(features) + self.pos_map
        grid = (uv * 2 - 1).clamp(-1, 1).unsqueeze(2)  # (B, 21, 1, 2), x then y
        tokens = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        x = tokens.squeeze(3).transpose(1, 2)  # (B, 21, C)
        for i in (1, 2, 3):
            x = x + getattr(self, f"pos_emb_{i}")
            x = getattr(self, f"proj_{i}")(x)
            x = getattr(self, f"encoder_{i}")(x)
            x = getattr(self, f"upsample_{i}")(x)
        return self.pred_final(x)


def _zero_init_residuals(backbone: nn.Module) -> None:
    """Start every residual block that supports it (timm's ResNet blocks, which HRNet is built of) as the identity.

    timm's HRNet leaves its blocks' last BatchNorm at gain 1; with fresh BatchNorm statistics (eval mode divides by
    1) the ~100 residual blocks of HRNet-W48 then compound to features of ~4e8 and uv of ~7e7, so seed-initialised
    outputs are noise and an FP32 export cannot match them to 1e-4. Zero-initialising the last gain (as timm's
    ResNets do by default) keeps them at O(1-10). FastViT has no such blocks (it has layer scale instead).
    Weights loaded from a checkpoint replace all of this.
    """
    for module in backbone.modules():
        init = getattr(module, "zero_init_last", None)
        if module is not backbone and callable(init):
            init()


class SimpleHand(nn.Module):
    """image (B, 3, 224, 224) BGR 0..255 -> uv (B, 21, 2) in [0, 1] of the crop, vertices (B, 778, 3) metres.

    Vertices are root-relative (joint 9) in the crop camera frame. Normalisation (/255 - 0.5)
    happens inside, so the exported graph consumes raw crops.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        import timm

        self.cfg = cfg
        # timm's HRNet takes no drop_path_rate (it raises on unknown arguments): only pass a non-zero rate.
        drop: dict[str, Any] = {"drop_path_rate": cfg.drop_path_rate} if cfg.drop_path_rate else {}
        # timm's models add forward_features / num_features, which nn.Module's type does not know
        self.backbone = cast(Any, timm.create_model(cfg.backbone, pretrained=False, **drop, **cfg.backbone_kwargs))
        _zero_init_residuals(self.backbone)
        channels = int(self.backbone.num_features)
        self.keypoints_2d_head = nn.Linear(channels, NUM_JOINTS * 2)
        self.mesh_head = MeshHead(channels, cfg)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image / 255.0 - 0.5
        features = self.backbone.forward_features(x)
        uv = self.keypoints_2d_head(features.mean(dim=(2, 3))).reshape(-1, NUM_JOINTS, 2)
        vertices = self.mesh_head(features, uv)
        return uv, vertices

    @property
    def is_fused(self) -> bool:
        return any(getattr(m, "inference_mode", False) for m in self.backbone.modules())


def fuse(model: SimpleHand) -> SimpleHand:
    """Apply timm's FastViT re-parameterisation in place (inference only; the state dict changes).

    Fusion folds the train-time multi-branch convolutions into single convs; outputs agree with
    the unfused model to ~1e-5 on vertices. HRNet has no re-parameterisable blocks: a no-op there
    (its BatchNorms fold into the convolutions at ONNX simplification instead).
    """
    try:
        from timm.utils import reparameterize_model
    except ImportError:  # pragma: no cover - very old timm
        from timm.models import reparameterize_model  # type: ignore[no-redef]
    model.eval()
    reparameterize_model(model.backbone, inplace=True)
    return model


def create_model(config: str | ModelConfig = DEFAULT_CONFIG, seed: int | None = 0) -> SimpleHand:
    """Build a SimpleHand in eval mode; with `seed` the initial weights are reproducible."""
    cfg = get_config(config) if isinstance(config, str) else config
    if seed is None:
        model = SimpleHand(cfg)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SimpleHand(cfg)
    return model.eval()
