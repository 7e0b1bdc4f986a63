"""ResNet bodies from torchvision returning C2..C5 feature maps.

Module names equal torchvision's ``resnet*`` (``conv1``, ``bn1``, ``layer1``..``layer4``), so an
ImageNet state dict saved from torchvision loads as it is (its ``fc`` weights are ignored).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn, Tensor
from torchvision.models import resnet
from torchvision.ops import FrozenBatchNorm2d

from ..config import BackboneConfig
from ..errors import CheckpointError, ConfigError

_RESNETS = {
    # resnet10: torchvision's ResNet with one BasicBlock per stage, a light body for CPU presets
    "resnet10": (resnet.BasicBlock, [1, 1, 1, 1]),
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (resnet.Bottleneck, [3, 4, 23, 3]),
}


def norm_layer(kind: str, groups: int = 32) -> type[nn.Module] | partial:
    """Normalisation factory: ``frozen_bn`` (fixed affine statistics), ``bn`` or ``gn``."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d
    if kind == "bn":
        return nn.BatchNorm2d
    if kind == "gn":
        return partial(nn.GroupNorm, groups)
    raise ConfigError(f"backbone.norm must be frozen_bn, bn or gn, got '{kind}'")


class ResNetBackbone(nn.Module):
    """ResNet body; ``forward`` returns the maps of ``out_levels`` (level ``i`` has stride ``2**i``)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if cfg.name not in _RESNETS:
            raise ConfigError(f"unknown backbone '{cfg.name}'; choose one of {', '.join(_RESNETS)}")
        if not set(cfg.out_levels) <= {2, 3, 4, 5}:
            raise ConfigError(f"backbone.out_levels must be within 2..5, got {cfg.out_levels}")
        block, layers = _RESNETS[cfg.name]
        body = resnet.ResNet(block, layers, norm_layer=norm_layer(cfg.norm))
        self.conv1, self.bn1, self.relu, self.maxpool = body.conv1, body.bn1, body.relu, body.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = body.layer1, body.layer2, body.layer3, body.layer4
        self.out_levels = list(cfg.out_levels)
        expansion = block.expansion
        widths = {2: 64 * expansion, 3: 128 * expansion, 4: 256 * expansion, 5: 512 * expansion}
        self.out_channels = [widths[level] for level in self.out_levels]
        if cfg.weights:
            self.load_imagenet(cfg.weights)
        self.freeze(cfg.frozen_stages)

    def load_imagenet(self, path: str | Path) -> None:
        """Load a torchvision ImageNet state dict from a local file (the classifier is dropped)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"backbone.weights: file {path} does not exist (weights are never downloaded; "
                                  "save e.g. torchvision.models.resnet50(weights=...).state_dict() there)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
            raise CheckpointError(f"backbone.weights: cannot read {path}: {e}") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"backbone.weights: {path} does not match {type(self).__name__} "
                                  f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)")

    def freeze(self, stages: int) -> None:
        """Stop gradients for the stem (stage 1 includes it) and the first ``stages`` residual stages."""
        modules = [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3, self.layer4]
        for module in modules[: max(stages, 0) + (1 if stages > 0 else 0)]:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for level, layer in zip((2, 3, 4, 5), (self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            if level in self.out_levels:
                outs.append(x)
        return outs


def build_backbone(cfg: BackboneConfig) -> ResNetBackbone:
    return ResNetBackbone(cfg)
