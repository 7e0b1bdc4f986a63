"""Feature Pyramid Network (Lin et al., 2017) with the P6/P7 extension of RetinaNet and FCOS.

Top-down path: ``P_i = conv3x3(lateral1x1(C_i) + nearest_upsample(inner_{i+1}))``; extra levels
are stride-2 3x3 convs on C5 (RetinaNet paper) or P5 (FCOS, torchvision), with a ReLU before P7.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn, Tensor

from ...config import NeckConfig
from ...config_checks import check_choice


def _init(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_uniform_(conv.weight, a=1)  # caffe2 XavierFill, as in Detectron and torchvision
    nn.init.zeros_(conv.bias)
    return conv


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], cfg: NeckConfig) -> None:
        super().__init__()
        check_choice("model.neck.extra_from", cfg.extra_from)
        c = cfg.out_channels
        self.inner_blocks = nn.ModuleList(_init(nn.Conv2d(ch, c, 1)) for ch in in_channels)
        self.layer_blocks = nn.ModuleList(_init(nn.Conv2d(c, c, 3, padding=1)) for _ in in_channels)
        self.extra_from = cfg.extra_from
        self.relu_before_extra = cfg.relu_before_extra
        extra_in = c if cfg.extra_from == "p5" else in_channels[-1]
        self.extra_blocks = nn.ModuleList(
            _init(nn.Conv2d(extra_in if i == 0 else c, c, 3, stride=2, padding=1)) for i in range(cfg.num_extra_levels)
        )
        self.out_channels = c
        self.num_levels = len(in_channels) + cfg.num_extra_levels

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        inner = self.inner_blocks[-1](feats[-1])
        outs = [self.layer_blocks[-1](inner)]
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.inner_blocks[i](feats[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.layer_blocks[i](inner))
        x = outs[-1] if self.extra_from == "p5" else feats[-1]
        for i, conv in enumerate(self.extra_blocks):
            if i > 0 and self.relu_before_extra:
                x = F.relu(x)
            x = conv(x)
            outs.append(x)
        return outs
