"""Conv blocks shared by the head towers and the PAN neck: conv → norm → activation, plain 3x3 or
depthwise-separable (a depthwise 3x3 and a pointwise 1x1, MobileNets, Howard et al. 2017)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn, Tensor

from ..errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),  # nanodet's slope
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
}

CONV_KINDS = ("conv", "dwconv")


def activation(name: str, key: str) -> nn.Module:
    """A fresh in-place activation module; ``key`` names the config field in errors."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"{key} must be one of {', '.join(ACTIVATIONS)}, got '{name}'")
    return ACTIVATIONS[name]()


def conv_block(in_channels: int, out_channels: int, kind: str, norm: Callable[[int], nn.Module] | None,
               act: str, keys: tuple[str, str], stride: int = 1, bias: bool = False,
               init: Callable[[nn.Conv2d], None] | None = None) -> list[nn.Module]:
    """Layers of one block: ``conv``: 3x3 conv → norm → act; ``dwconv``: depthwise 3x3 → norm → act →
    pointwise 1x1 → norm → act. ``init`` is applied to each conv right after it is created (the order of
    random draws stays that of a conv → init loop); ``keys`` name the config fields of ``kind`` and ``act``
    in errors."""
    if kind not in CONV_KINDS:
        raise ConfigError(f"{keys[0]} must be one of {', '.join(CONV_KINDS)}, got '{kind}'")
    if kind == "conv":
        shapes = [(in_channels, out_channels, 3, 1)]
    else:
        shapes = [(in_channels, in_channels, 3, in_channels), (in_channels, out_channels, 1, 1)]
    layers: list[nn.Module] = []
    for i, (cin, cout, k, groups) in enumerate(shapes):
        conv = nn.Conv2d(cin, cout, k, stride=stride if i == 0 else 1, padding=k // 2, groups=groups, bias=bias)
        if init is not None:
            init(conv)
        layers.append(conv)
        if norm is not None:
            layers.append(norm(cout))
        layers.append(activation(act, keys[1]))
    return layers


class FloatConv2d(nn.Conv2d):
    """A prediction layer that computes in float32 under autocast (bf16 on CPUs, AMP on CUDA); the same
    module, weights and state-dict keys as ``nn.Conv2d``, and the same graph where autocast is off (export).

    bf16 keeps 8 bits of mantissa: a heatmap's logits come out in steps of ~0.016 near -2, so a map of
    5120 distinct values has 8, whole regions tie, and peak picking (a location equal to its 3×3 max)
    returns plateaus instead of peaks — CornerNet then pairs no corner at all. In float32 this one conv
    costs little and keeps the values distinct."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class ConvBN(nn.Module):
    """``conv → BatchNorm → ReLU`` (or no activation) with the conv and norm named ``conv`` and ``bn``
    (mmcv's ``ConvModule`` layout, so mmdetection checkpoints map key by key); no conv bias. ``transposed``
    makes the conv a ``ConvTranspose2d`` (the up-convolutions of CenterNet's neck)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int | None = None,
                 act: bool = True, transposed: bool = False) -> None:
        super().__init__()
        padding = kernel // 2 if padding is None else padding
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))
