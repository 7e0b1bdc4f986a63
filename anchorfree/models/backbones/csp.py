"""A cross-stage-partial body of plain 3x3 convolutions, built to *train* fast on CPUs.

CSPNet (Wang et al., CVPRW 2020) splits a stage's channels in two: one part goes through the stage's
blocks, the other skips them, and a 1x1 conv fuses both, so gradients reach the stage input through a
short path and the blocks see half the channels. The block used here is the "C2f" form of that idea
(YOLOv8; also CSPNeXt of RTMDet, Lyu et al. 2022): ``x → 1x1 → [a, b]``; ``b`` goes through ``n``
residual bottlenecks of two 3x3 convs, and *every* intermediate output is concatenated,
``1x1([a, b, b_1, ..., b_n])``, a dense-connection variant of CSP.

Why plain convolutions: depthwise convolutions have few FLOPs but their backward pass runs far below the
CPU's peak (oneDNN's depthwise kernels are memory bound), so a depthwise body with half the FLOPs of a
plain one trains no faster. Every conv here is dense (3x3 or 1x1) with BatchNorm and one activation.

Layout (``widths = [w0..w4]``, ``depths = [d1..d4]``)::

    stem    3x3 s2 conv 3 → w0                                     stride 2
    stage1  3x3 s2 conv w0 → w1, C2f(w1, d1)                       stride 4   (C2)
    stage2  3x3 s2 conv w1 → w2, C2f(w2, d2)                       stride 8   (C3)
    stage3  3x3 s2 conv w2 → w3, C2f(w3, d3)                       stride 16  (C4)
    stage4  3x3 s2 conv w3 → w4, C2f(w4, d4), SPPF(w4)             stride 32  (C5)

SPPF (spatial pyramid pooling, fast form; He et al. 2015 / YOLOv5) is three chained 5x5 max-pools whose
outputs are concatenated with their input, giving receptive fields of 5, 9 and 13 cells at C5.
"""
from __future__ import annotations

import torch
from torch import nn, Tensor

from ...config import BackboneConfig
from ...errors import ConfigError
from ..layers import activation


class ConvNormAct(nn.Sequential):
    """``k x k`` conv (no bias) → BatchNorm → activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: str = "silu",
                 key: str = "backbone.csp_activation") -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         activation(act, key))


class Bottleneck(nn.Module):
    """Two 3x3 convs with an identity shortcut: ``x + conv(conv(x))`` (He et al. 2016, basic block)."""

    def __init__(self, channels: int, act: str, key: str, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, act=act, key=key)
        self.conv2 = ConvNormAct(channels, channels, 3, act=act, key=key)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class C2f(nn.Module):
    """Cross-stage-partial block with dense fusion: ``1x1([a, b, b_1, .., b_n])`` where ``[a, b]`` is the
    split of ``1x1(x)`` and ``b_i = bottleneck_i(b_{i-1})`` (CSPNet's split; YOLOv8's C2f fusion)."""

    def __init__(self, cin: int, cout: int, n: int, act: str, key: str = "backbone.csp_activation",
                 shortcut: bool = True, expansion: float = 0.5) -> None:
        super().__init__()
        hidden = max(8, int(cout * expansion))
        self.hidden = hidden
        self.split = ConvNormAct(cin, 2 * hidden, 1, act=act, key=key)
        self.blocks = nn.ModuleList(Bottleneck(hidden, act, key, shortcut) for _ in range(n))
        self.fuse = ConvNormAct((2 + n) * hidden, cout, 1, act=act, key=key)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.split(x).split(self.hidden, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """``1x1(cat(x', p(x'), p²(x'), p³(x')))`` with ``x' = 1x1(x)`` at half width and ``p`` a 5x5 max-pool."""

    def __init__(self, channels: int, act: str, key: str = "backbone.csp_activation") -> None:
        super().__init__()
        hidden = channels // 2
        self.reduce = ConvNormAct(channels, hidden, 1, act=act, key=key)
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.fuse = ConvNormAct(4 * hidden, channels, 1, act=act, key=key)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        p1 = self.pool(x)
        p2 = self.pool(p1)
        return self.fuse(torch.cat([x, p1, p2, self.pool(p2)], dim=1))


class CSPBody(nn.Module):
    """``backbone.name=csp``: the body above; ``forward`` returns the maps of ``out_levels`` (2..5)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if cfg.weights:
            raise ConfigError("backbone.weights: the csp body has no published ImageNet weights; it trains from "
                              "scratch (remove backbone.weights), or start from a trained run with --weights")
        widths, depths, act = list(cfg.csp_widths), list(cfg.csp_depths), cfg.csp_activation
        if len(widths) != 5 or min(widths) < 8:
            raise ConfigError(f"backbone.csp_widths must be 5 channel counts >= 8 (stem, C2..C5), got {widths}")
        if len(depths) != 4 or min(depths) < 1:
            raise ConfigError(f"backbone.csp_depths must be 4 block counts >= 1 (C2..C5), got {depths}")
        if cfg.norm != "bn":
            raise ConfigError(f"backbone.norm must be bn for the csp body (it is trained from scratch), got "
                              f"'{cfg.norm}'")
        if not cfg.out_levels or not set(cfg.out_levels) <= {2, 3, 4, 5}:
            raise ConfigError(f"backbone.out_levels must be one or more of 2..5, got {cfg.out_levels}")
        self.stem = ConvNormAct(3, widths[0], 3, 2, act)
        stages = []
        for level, (cin, cout, n) in enumerate(zip(widths[:-1], widths[1:], depths), start=2):
            layers: list[nn.Module] = [ConvNormAct(cin, cout, 3, 2, act), C2f(cout, cout, n, act)]
            if level == 5:
                layers.append(SPPF(cout, act))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_levels = sorted(cfg.out_levels)
        self.out_channels = [widths[level - 1] for level in self.out_levels]
        self.out_strides = [2 ** level for level in self.out_levels]
        del self.stages[max(self.out_levels) - 1:]  # stages after the last level used
        if cfg.frozen_stages:
            for module in [self.stem, *self.stages[: cfg.frozen_stages]]:
                for p in module.parameters():
                    p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x, outs = self.stem(x), []
        for level, stage in enumerate(self.stages, start=2):
            x = stage(x)
            if level in self.out_levels:
                outs.append(x)
        return outs
