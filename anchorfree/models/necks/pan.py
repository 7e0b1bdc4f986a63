"""Slim Path Aggregation Network: PANet (Liu et al., CVPR 2018) as the light necks of nanodet.

PANet adds a bottom-up path to the top-down FPN, so that the fine levels' localisation signal
reaches the coarse levels through a few layers. The slim version keeps only cheap operations:

* lateral 1x1 convs (bias, no norm) to ``out_channels``: ``L_i = conv1x1(C_i)``;
* top-down path: ``T_last = L_last``, ``T_i = L_i + nearest_upsample(T_{i+1})`` (no 3x3 convs);
* bottom-up path: ``N_first = block(T_first)``, ``N_{i+1} = block(T_{i+1} + down(N_i))``;
* ``num_extra_levels`` more levels, each a stride-2 block on the previous output.

``neck.block`` is the block on each output: ``dwconv`` (default) a depthwise-separable 3x3, i.e.
depthwise 3x3 → BN → act → pointwise 1x1 → BN → act; ``conv`` a 3x3 conv → BN → act; ``none`` no
block (nanodet-m's PAN, additions only). ``neck.downsample`` is ``down``: ``interp`` resizes
bilinearly to the next level's size (nanodet), ``conv`` is a stride-2 block as PANet's stride-2 3x3
conv. Stride-2 blocks are of the ``block`` kind (``conv`` when it is ``none``). ``neck.activation``
is the activation of every block.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn, Tensor

from ...config import NeckConfig
from ...config_checks import check_choice
from .fpn import _init
from ..layers import conv_block



class PAN(nn.Module):
    """C3..C5 (any number of levels) → ``len(in_channels) + num_extra_levels`` maps of ``out_channels``."""

    def __init__(self, in_channels: list[int], cfg: NeckConfig) -> None:
        super().__init__()
        check_choice("model.neck.block", cfg.block)
        check_choice("model.neck.downsample", cfg.downsample)
        c, strided = cfg.out_channels, ("conv" if cfg.block == "none" else cfg.block)

        def block(kind: str, stride: int = 1) -> nn.Module:
            if kind == "none":
                return nn.Identity()
            return nn.Sequential(*conv_block(c, c, kind, nn.BatchNorm2d, cfg.activation,
                                             ("neck.block", "neck.activation"), stride=stride))

        self.lateral = nn.ModuleList(_init(nn.Conv2d(ch, c, 1)) for ch in in_channels)
        self.out_blocks = nn.ModuleList(block(cfg.block) for _ in in_channels)
        self.down_blocks = None
        if cfg.downsample == "conv":
            self.down_blocks = nn.ModuleList(block(strided, 2) for _ in in_channels[1:])
        self.extra_blocks = nn.ModuleList(block(strided, 2) for _ in range(cfg.num_extra_levels))
        self.out_channels = c
        self.num_levels = len(in_channels) + cfg.num_extra_levels

    def downsample(self, x: Tensor, i: int, like: Tensor) -> Tensor:
        """``N_i`` brought to the size of level ``i + 1``."""
        if self.down_blocks is None:
            return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
        x = self.down_blocks[i](x)
        if x.shape[-2:] != like.shape[-2:]:  # an odd size, rounded differently by the body's stride
            x = F.interpolate(x, size=like.shape[-2:], mode="nearest")
        return x

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        inner = [lateral(x) for lateral, x in zip(self.lateral, feats)]
        for i in range(len(inner) - 2, -1, -1):
            inner[i] = inner[i] + F.interpolate(inner[i + 1], size=inner[i].shape[-2:], mode="nearest")
        outs = [self.out_blocks[0](inner[0])]
        for i in range(1, len(inner)):
            outs.append(self.out_blocks[i](inner[i] + self.downsample(outs[-1], i - 1, inner[i])))
        for extra in self.extra_blocks:
            outs.append(extra(outs[-1]))
        return outs
