"""Exact per-channel rescaling of a fused FastViT's residual stream, to even out its channels before per-tensor INT8.

Inside a stage the stream is written by the token mixers (depthwise convs after fusion, or the fused
conditional positional encoding) and by the layer-scaled MLP / attention branches, and read by depthwise
convs (the MLP's first conv, the next token mixer, the next stage's downsample, the final conv) or by a
BatchNorm (the attention block's norm). With a positive diagonal D per stage, the stream is stored as
D^-1 x: every writer's output rows (a depthwise filter and its bias, a layer scale) are divided by D,
every reader absorbs D (a depthwise filter of input channel c is multiplied by D_c; BatchNorm's scale
by D and its mean divided by D). Per-channel weight scales make this free for the weights; the FP32
model is unchanged up to rounding. D_c = max|x_c| / max_c' max|x_c'| over calibration crops (floored), so
after rescaling every channel spans the range of the widest one and a per-tensor scale resolves the small
channels as finely as the large one.

What it cannot reach: the stream's first tensor in each stage is a GELU output (the stem's or the
downsample's), which a diagonal cannot pass through exactly; those tensors (the most sensitive inputs
on tiny) keep their per-tensor resolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

# The smallest D: a channel is amplified at most this much (near-silent channels would otherwise blow up).
MIN_FACTOR = 1 / 16


def _dw(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels


def _stage_parts(backbone: Any) -> Iterator[tuple[int, Any, list[Any], Any]]:
    """(index, stage, its blocks, the module that reads the stage's last stream tensor)."""
    stages = list(backbone.stages)
    for i, stage in enumerate(stages):
        reader = stages[i + 1].downsample.proj[0].reparam_conv if i + 1 < len(stages) else \
            backbone.final_conv.reparam_conv
        yield i, stage, list(stage.blocks), reader


def stream_maxima(model: Any, images: np.ndarray, batch: int = 16) -> list[torch.Tensor]:
    """Per stage, per channel max |x| over the stream tensors after the stage's first writer (calibration crops)."""
    bb = model.backbone
    maxima: list[torch.Tensor | None] = [None] * len(bb.stages)
    hooks = []

    def track(i: int) -> Any:
        def hook(_m: Any, _inp: Any, out: torch.Tensor) -> None:
            m = out.detach().abs().amax(dim=(0, 2, 3))
            prev = maxima[i]
            maxima[i] = m if prev is None else torch.maximum(prev, m)
        return hook

    for i, stage, blocks, _ in _stage_parts(bb):
        if not isinstance(stage.pos_emb, nn.Identity):
            hooks.append(stage.pos_emb.register_forward_hook(track(i)))
        for b in blocks:
            hooks.append(b.register_forward_hook(track(i)))
            if hasattr(b, "token_mixer") and hasattr(b.token_mixer, "reparam_conv"):
                hooks.append(b.token_mixer.register_forward_hook(track(i)))
    try:
        with torch.no_grad():
            for k in range(0, len(images), batch):
                model(torch.from_numpy(np.ascontiguousarray(images[k : k + batch])))
    finally:
        for h in hooks:
            h.remove()
    return [m for m in maxima if m is not None]


@torch.no_grad()
def rescale_residual_stream(model: Any, images: np.ndarray, alpha: float = 1.0) -> list[dict[str, float]]:
    """Rescale the fused model's residual stream in place (see the module docstring); returns per stage the
    spread of channel maxima before (max/median) and the smallest D. `alpha` < 1 equalises part of the way
    (D = (max|x_c| / max)^alpha, SmoothQuant's migration strength)."""
    bb = model.backbone
    if not model.is_fused:
        raise ValueError("rescale_residual_stream needs a fused model (the depthwise token mixers)")
    maxima = stream_maxima(model, images)
    report = []
    for (i, stage, blocks, reader), m in zip(_stage_parts(bb), maxima, strict=True):
        d = (m / m.max()).pow(alpha).clamp(min=MIN_FACTOR)
        inv = 1 / d
        first_writer_done = False
        if not isinstance(stage.pos_emb, nn.Identity):  # fused RepCPE: a depthwise conv writing the stream
            conv = stage.pos_emb.reparam_conv
            conv.weight.mul_(inv.view(-1, 1, 1, 1))
            conv.bias.mul_(inv)
            first_writer_done = True
        for b in blocks:
            if hasattr(b.token_mixer, "reparam_conv"):  # RepMixer: depthwise writer
                conv = b.token_mixer.reparam_conv
                if not first_writer_done:  # reads the unscaled entry, writes the scaled stream
                    conv.weight.mul_(inv.view(-1, 1, 1, 1))
                conv.bias.mul_(inv)
                first_writer_done = True
                _mlp_reads(b.mlp, d)
                b.layer_scale.gamma.mul_(inv.view(b.layer_scale.gamma.shape))
            else:  # attention block: BatchNorm reads, two layer-scaled branches write
                if not first_writer_done:
                    raise ValueError(f"stage {i}: an attention block first; nothing writes the scaled stream")
                bn = b.norm
                bn.weight.mul_(d)
                bn.running_mean.mul_(inv)
                b.layer_scale_1.gamma.mul_(inv.view(b.layer_scale_1.gamma.shape))
                _mlp_reads(b.mlp, d)
                b.layer_scale_2.gamma.mul_(inv.view(b.layer_scale_2.gamma.shape))
        _dw_reader(reader, d)
        report.append({"stage": i, "channel_max_spread": float(m.max() / m.median()), "min_factor": float(d.min())})
    return report


def _mlp_reads(mlp: Any, d: torch.Tensor) -> None:
    conv = mlp.conv.conv
    assert _dw(conv), "the ConvMlp's first conv is depthwise"
    conv.weight.mul_(d.view(-1, 1, 1, 1))


def _dw_reader(conv: nn.Conv2d, d: torch.Tensor) -> None:
    assert conv.groups == conv.in_channels, "the stream's reader is a grouped conv, one input channel per group"
    per = conv.out_channels // conv.groups
    conv.weight.mul_(d.repeat_interleave(per).view(-1, 1, 1, 1))
