"""Necks: FPN and PAN (multi-level, for the FPN heads), the up-convolution neck (one stride-4 map, CenterNet)
and ``none`` (the backbone's maps as they are: the Hourglass stacks of CornerNet)."""
from __future__ import annotations

from torch import nn, Tensor

from ...config import NeckConfig
from ...errors import ConfigError
from .csp_pan import CSPPAN
from .fpn import FPN
from .pan import PAN
from .upconv import UpConvNeck

__all__ = ["CSPPAN", "FPN", "PAN", "UpConvNeck", "Identity", "build_neck", "NECKS"]


class Identity(nn.Module):
    """``neck.type=none``: pass the backbone's maps on."""

    def __init__(self, in_channels: list[int], cfg: NeckConfig) -> None:
        super().__init__()
        if len(set(in_channels)) != 1:
            raise ConfigError(f"neck.type=none needs backbone maps of equal channels, got {in_channels}")
        self.out_channels = in_channels[0]
        self.num_levels = len(in_channels)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return list(feats)


NECKS = {"fpn": FPN, "pan": PAN, "csp_pan": CSPPAN, "upconv": UpConvNeck, "none": Identity}


def build_neck(in_channels: list[int], cfg: NeckConfig) -> nn.Module:
    if cfg.type not in NECKS:
        raise ConfigError(f"unknown neck.type '{cfg.type}'; available: {', '.join(NECKS)}")
    return NECKS[cfg.type](in_channels, cfg)
