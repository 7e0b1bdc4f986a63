"""CSP-PAN: a path-aggregation neck (PANet, Liu et al. 2018) whose merge blocks are cross-stage-partial
C2f blocks of plain 3x3 convolutions (see :mod:`anchorfree.models.backbones.csp`), as the necks of
YOLOv8 and RTMDet's CSPNeXtPAFPN, here with one width for every level so that a shared GFL head reads
all of them:

* ``L_i = 1x1(C_i)`` to ``out_channels`` (``c``);
* top-down: ``T_last = L_last``, ``T_i = C2f(cat(L_i, up(T_{i+1})))`` (``2c → c``, nearest upsampling);
* bottom-up: ``N_first = T_first``, ``N_{i+1} = C2f(cat(T_{i+1}, 3x3 s2 conv(N_i)))``;
* ``num_extra_levels`` stride-2 3x3 convs on the last output.

C2f blocks here have no residual shortcut (as in YOLOv8's neck); ``neck.csp_depth`` bottlenecks each.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, Tensor

from ...config import NeckConfig
from ...errors import ConfigError
from ..backbones.csp import C2f, ConvNormAct


class CSPPAN(nn.Module):
    """C3..C5 (any number of levels) → ``len(in_channels) + num_extra_levels`` maps of ``out_channels``."""

    def __init__(self, in_channels: list[int], cfg: NeckConfig) -> None:
        super().__init__()
        c, act, n, key = cfg.out_channels, cfg.activation, cfg.csp_depth, "neck.activation"
        if n < 1:
            raise ConfigError(f"neck.csp_depth must be >= 1, got {n}")
        self.lateral = nn.ModuleList(ConvNormAct(ch, c, 1, act=act, key=key) for ch in in_channels)
        self.top_down = nn.ModuleList(C2f(2 * c, c, n, act, key, shortcut=False) for _ in in_channels[:-1])
        self.down = nn.ModuleList(ConvNormAct(c, c, 3, 2, act=act, key=key) for _ in in_channels[:-1])
        self.bottom_up = nn.ModuleList(C2f(2 * c, c, n, act, key, shortcut=False) for _ in in_channels[:-1])
        self.extra = nn.ModuleList(ConvNormAct(c, c, 3, 2, act=act, key=key) for _ in range(cfg.num_extra_levels))
        self.out_channels = c
        self.num_levels = len(in_channels) + cfg.num_extra_levels

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        inner = [lateral(x) for lateral, x in zip(self.lateral, feats)]
        for i in range(len(inner) - 2, -1, -1):
            up = F.interpolate(inner[i + 1], size=inner[i].shape[-2:], mode="nearest")
            inner[i] = self.top_down[i](torch.cat([inner[i], up], dim=1))
        outs = [inner[0]]
        for i in range(1, len(inner)):
            down = self.down[i - 1](outs[-1])
            if down.shape[-2:] != inner[i].shape[-2:]:  # odd sizes, rounded differently by the body's strides
                down = F.interpolate(down, size=inner[i].shape[-2:], mode="nearest")
            outs.append(self.bottom_up[i - 1](torch.cat([inner[i], down], dim=1)))
        for extra in self.extra:
            outs.append(extra(outs[-1]))
        return outs
