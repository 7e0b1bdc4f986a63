"""Backbones: torchvision bodies (ResNet, light CPU bodies), the CSP body of plain convs and the stacked Hourglass."""
from __future__ import annotations

from torch import nn

from ...config import BackboneConfig
from .csp import CSPBody
from .hourglass import HourglassNet
from .torchvision_bodies import BODIES, Backbone, load_imagenet, norm_layer

__all__ = ["BODIES", "Backbone", "CSPBody", "HourglassNet", "build_backbone", "load_imagenet", "norm_layer"]


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """The body named ``cfg.name``; ``out_channels`` lists the channels of the maps it returns."""
    if cfg.name == "hourglass":
        return HourglassNet(cfg)
    if cfg.name == "csp":
        return CSPBody(cfg)
    return Backbone(cfg)
