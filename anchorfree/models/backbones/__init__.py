"""Backbones: torchvision bodies (ResNet, light CPU bodies) and the stacked Hourglass."""
from __future__ import annotations

from torch import nn

from ...config import BackboneConfig
from .hourglass import HourglassNet
from .torchvision_bodies import BODIES, Backbone, load_imagenet, norm_layer

__all__ = ["BODIES", "Backbone", "HourglassNet", "build_backbone", "load_imagenet", "norm_layer"]


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """The body named ``cfg.name``; ``out_channels`` lists the channels of the maps it returns."""
    if cfg.name == "hourglass":
        return HourglassNet(cfg)
    return Backbone(cfg)
