"""Stacked Hourglass network (Newell et al., ECCV 2016) as CornerNet's backbone (Law & Deng 2018, Sec. 4.1).

A stem (7×7 conv, stride 2 → a residual block, stride 2) brings the image to stride 4. Each hourglass
module is recursive: at every depth a residual path at the current resolution (``up1``) is added to
``low1`` (stride-2 residual blocks to the next channel count) → the next, deeper module (or residual
blocks at the bottom) → ``low3`` (back to the current channels) → nearest-neighbour upsampling.
CornerNet's HG-104 stacks two modules of depth 5 with channels 256, 256, 384, 384, 384, 512 and
2, 2, 2, 2, 2, 4 residual blocks; after each module a 3×3 conv gives that stack's output, and
between stacks the input and the output are merged by 1×1 convs (``inters``). Every stack's output is
a prediction map: the head is applied to all of them in training (intermediate supervision) and to
the last at inference.

Module names follow mmdetection's ``HourglassNet`` (``stem``, ``hourglass_modules``, ``inters``,
``conv1x1s``, ``out_convs``, ``remap_convs``; ``conv``/``bn`` inside each conv block).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn, Tensor
from torchvision.models.resnet import BasicBlock

from ...config import BackboneConfig
from ...errors import ConfigError
from ..layers import ConvBN


def res_layer(in_channels: int, out_channels: int, blocks: int, stride: int = 1,
              downsample_first: bool = True) -> nn.Sequential:
    """``blocks`` basic residual blocks from ``in_channels`` to ``out_channels``; the block that changes
    channels or stride (the first, or with ``downsample_first=False`` the last) gets a 1×1 conv + BN shortcut."""
    def block(cin: int, cout: int, s: int) -> BasicBlock:
        down = None
        if s != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=s, bias=False), nn.BatchNorm2d(cout))
        return BasicBlock(cin, cout, stride=s, downsample=down)

    if downsample_first:
        layers = [block(in_channels, out_channels, stride)] + [block(out_channels, out_channels, 1)
                                                              for _ in range(blocks - 1)]
    else:
        layers = [block(in_channels, in_channels, 1) for _ in range(blocks - 1)] + [block(in_channels, out_channels,
                                                                                          stride)]
    return nn.Sequential(*layers)


class HourglassModule(nn.Module):
    """One hourglass of ``depth`` down-samplings; ``channels[i]`` / ``blocks[i]`` at depth ``i``."""

    def __init__(self, depth: int, channels: list[int], blocks: list[int]) -> None:
        super().__init__()
        cur, nxt = channels[0], channels[1]
        self.up1 = res_layer(cur, cur, blocks[0])
        self.low1 = res_layer(cur, nxt, blocks[0], stride=2)
        self.low2 = (HourglassModule(depth - 1, channels[1:], blocks[1:]) if depth > 1
                     else res_layer(nxt, nxt, blocks[1]))
        self.low3 = res_layer(nxt, cur, blocks[0], downsample_first=False)

    def forward(self, x: Tensor) -> Tensor:
        up1 = self.up1(x)
        low = self.low3(self.low2(self.low1(x)))
        return up1 + F.interpolate(low, size=up1.shape[-2:], mode="nearest")


class HourglassNet(nn.Module):
    """``forward`` returns one stride-4 map of ``feat_channels`` per stack."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if cfg.weights:
            raise ConfigError("backbone.weights: the Hourglass has no published ImageNet weights (CornerNet trains it "
                              "from scratch); remove backbone.weights, or start from a trained CornerNet run with "
                              "--weights")
        stacks, depth = cfg.hourglass_stacks, cfg.hourglass_depth
        channels, blocks = list(cfg.hourglass_channels), list(cfg.hourglass_blocks)
        if stacks < 1:
            raise ConfigError(f"backbone.hourglass_stacks must be >= 1, got {stacks}")
        if len(channels) != len(blocks) or len(channels) <= depth or depth < 1:
            raise ConfigError("backbone.hourglass_channels and hourglass_blocks need hourglass_depth + 1 entries "
                              f"each (depth {depth}), got {channels} and {blocks}")
        if min(blocks) < 1 or min(channels) < 1:
            raise ConfigError(f"backbone.hourglass_blocks and hourglass_channels must be >= 1, got {blocks}, {channels}")
        cur, feat = channels[0], cfg.hourglass_feat_channels
        self.stem = nn.Sequential(ConvBN(3, cur // 2, 7, stride=2, padding=3), res_layer(cur // 2, cur, 1, stride=2))
        self.hourglass_modules = nn.ModuleList(HourglassModule(depth, channels, blocks) for _ in range(stacks))
        # one residual block per stack boundary, held in one layer as mmdetection does (keys ``inters.{i}.conv1``)
        self.inters = res_layer(cur, cur, stacks - 1) if stacks > 1 else nn.Sequential()
        self.conv1x1s = nn.ModuleList(ConvBN(cur, cur, 1, act=False) for _ in range(stacks - 1))
        self.out_convs = nn.ModuleList(ConvBN(cur, feat, 3) for _ in range(stacks))
        self.remap_convs = nn.ModuleList(ConvBN(feat, cur, 1, act=False) for _ in range(stacks - 1))
        self.out_channels = [feat] * stacks
        self.out_strides = [4] * stacks

    def forward(self, x: Tensor) -> list[Tensor]:
        inter = self.stem(x)
        outs = []
        for i, (hourglass, out_conv) in enumerate(zip(self.hourglass_modules, self.out_convs)):
            out = out_conv(hourglass(inter))
            outs.append(out)
            if i < len(self.inters):
                inter = self.inters[i](F.relu(self.conv1x1s[i](inter) + self.remap_convs[i](out)))
        return outs
