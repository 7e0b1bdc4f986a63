"""Backbone bodies from torchvision returning the feature maps C2..C5 (strides 4..32).

Each body is a torchvision classifier built with ``weights=None`` whose modules keep torchvision's
names (``conv1``, ``layer1``.. for ResNet; ``features.N`` for MobileNetV3 and EfficientNet; ``stage2``..
for ShuffleNetV2; ``stem``, ``trunk_output.blockN`` for RegNet), so that an ImageNet state dict saved
from torchvision loads as it is. The classifier and the layers after the last stride-32 stage (e.g.
ShuffleNet's ``conv5``, MobileNet's last 1x1 conv) are removed and their weights are skipped.

A :class:`BodySpec` per name says which modules run in order and whose output is level ``i``
(stride ``2**i``). ResNet-10..101 use the FPN presets; ShuffleNetV2 (Ma et al. 2018),
MobileNetV3 (Howard et al. 2019), RegNet (Radosavovic et al. 2020) and EfficientNet-B0 (Tan & Le
2019) are the light bodies of the ``*_nano`` / ``*_small`` presets.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torchvision.models
from torch import nn, Tensor
from torchvision.models import resnet
from torchvision.ops import FrozenBatchNorm2d

from ...config import BackboneConfig
from ...errors import CheckpointError, ConfigError
from ...config_checks import check_choice


def norm_layer(kind: str, groups: int = 32) -> type[nn.Module] | partial:
    """Normalisation factory: ``frozen_bn`` (fixed affine statistics), ``bn`` or ``gn``."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d
    if kind == "bn":
        return nn.BatchNorm2d
    if kind == "gn":
        return partial(nn.GroupNorm, groups)
    raise ConfigError(f"backbone.norm must be frozen_bn, bn or gn, got '{kind}'")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` inside ``module`` by a ``FrozenBatchNorm2d`` with its eps and values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


@dataclass(frozen=True)
class BodySpec:
    """How to read C2..C5 off a torchvision classifier."""

    build: Callable[[str], nn.Module]  # backbone.norm -> the torchvision model with weights=None
    run: tuple[str, ...]  # module paths applied in order
    taps: dict[int, str]  # level -> module path whose output is that level (stride 2**level)
    channels: dict[int, int]  # level -> channels of that output
    unused: tuple[str, ...]  # module paths removed from the body; their weights are skipped on load


def _resnet(block: type[nn.Module], layers: list[int]) -> BodySpec:
    widths = [c * block.expansion for c in (64, 128, 256, 512)]
    return BodySpec(
        build=lambda norm: resnet.ResNet(block, layers, norm_layer=norm_layer(norm)),
        run=("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
        taps={2: "layer1", 3: "layer2", 4: "layer3", 5: "layer4"},
        channels=dict(zip((2, 3, 4, 5), widths)),
        unused=("avgpool", "fc"),
    )


def _light(name: str, run: tuple[str, ...], taps: dict[int, str], channels: list[int],
           unused: tuple[str, ...]) -> BodySpec:
    """A torchvision classifier built with its own BatchNorm2d (eps as torchvision sets it), turned into
    ``FrozenBatchNorm2d`` for ``frozen_bn``; GroupNorm is not offered for these bodies. Trained BatchNorm
    uses momentum 0.1 (PyTorch's default): MobileNetV3 and EfficientNet ship 0.01, tuned for long ImageNet
    schedules, which leaves the running statistics near their initial values after a short detection run."""
    def build(norm: str) -> nn.Module:
        if norm not in ("bn", "frozen_bn"):
            raise ConfigError(f"backbone.norm must be bn or frozen_bn for {name}, got '{norm}'")
        body = torchvision.models.get_model(name, weights=None)
        if norm == "frozen_bn":
            return freeze_batchnorm(body)
        for module in body.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
        return body

    return BodySpec(build, run, taps, dict(zip((2, 3, 4, 5), channels)), unused)


def _indexed(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in range(count))


_SHUFFLENET_RUN = ("conv1", "maxpool", "stage2", "stage3", "stage4")
_SHUFFLENET_TAPS = {2: "maxpool", 3: "stage2", 4: "stage3", 5: "stage4"}
_REGNET_RUN = ("stem", "trunk_output.block1", "trunk_output.block2", "trunk_output.block3", "trunk_output.block4")
_REGNET_TAPS = {level: f"trunk_output.block{level - 1}" for level in (2, 3, 4, 5)}

BODIES: dict[str, BodySpec] = {
    # resnet10: torchvision's ResNet with one BasicBlock per stage, a light body for CPU presets
    "resnet10": _resnet(resnet.BasicBlock, [1, 1, 1, 1]),
    "resnet18": _resnet(resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": _resnet(resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": _resnet(resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": _resnet(resnet.Bottleneck, [3, 4, 23, 3]),
    # ShuffleNetV2: C5 is stage4 (as nanodet), conv5 (1x1 to 1024) is dropped
    "shufflenet_v2_x0_5": _light("shufflenet_v2_x0_5", _SHUFFLENET_RUN, _SHUFFLENET_TAPS, [24, 48, 96, 192],
                                 ("conv5", "fc")),
    "shufflenet_v2_x1_0": _light("shufflenet_v2_x1_0", _SHUFFLENET_RUN, _SHUFFLENET_TAPS, [24, 116, 232, 464],
                                 ("conv5", "fc")),
    # MobileNetV3: each level is the last inverted-residual block before the next stride-2 block;
    # the final 1x1 conv (features.16 / features.12) is dropped
    "mobilenet_v3_large": _light("mobilenet_v3_large", _indexed("features", 16),
                                 {2: "features.3", 3: "features.6", 4: "features.12", 5: "features.15"},
                                 [24, 40, 112, 160], ("features.16", "avgpool", "classifier")),
    "mobilenet_v3_small": _light("mobilenet_v3_small", _indexed("features", 12),
                                 {2: "features.1", 3: "features.3", 4: "features.8", 5: "features.11"},
                                 [16, 24, 48, 96], ("features.12", "avgpool", "classifier")),
    "regnet_x_400mf": _light("regnet_x_400mf", _REGNET_RUN, _REGNET_TAPS, [32, 64, 160, 400], ("avgpool", "fc")),
    "regnet_y_400mf": _light("regnet_y_400mf", _REGNET_RUN, _REGNET_TAPS, [48, 104, 208, 440], ("avgpool", "fc")),
    # EfficientNet-B0: stages 2, 3, 5 and 7 end at strides 4..32; the 1x1 conv to 1280 (features.8) is dropped
    "efficientnet_b0": _light("efficientnet_b0", _indexed("features", 8),
                              {2: "features.2", 3: "features.3", 4: "features.5", 5: "features.7"},
                              [24, 40, 112, 320], ("features.8", "avgpool", "classifier")),
}


def caffe_style(body: nn.Module) -> nn.Module:
    """Move the stride of every strided ResNet bottleneck from its 3x3 conv to its first 1x1 conv: the
    "caffe" ResNets of Detectron and of mmdetection's ``style='caffe'`` (the FCOS reference checkpoints)."""
    blocks = [m for m in body.modules() if isinstance(m, resnet.Bottleneck)]
    if not blocks:
        raise ConfigError("backbone.style=caffe applies to the bottleneck ResNets (resnet50, resnet101) only")
    for block in blocks:
        if block.conv2.stride != (1, 1):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    return body


def set_norm_eps(body: nn.Module, eps: float) -> None:
    """Set the eps of every BatchNorm (trained or frozen) of ``body``."""
    for module in body.modules():
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            module.eps = eps


OFFLINE_ENV = "ANCHORFREE_OFFLINE"  # =1: never download; weights must already be in torch.hub's cache


def imagenet_weights_file(name: str, choice: str) -> Path:
    """The local file of torchvision's ImageNet weights ``choice`` for body ``name``.

    ``choice`` is ``imagenet`` (torchvision's ``DEFAULT``) or a weights name of the body (``IMAGENET1K_V1``).
    The file is looked up in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``, as torchvision's weights API
    does) and downloaded there once when missing, unless offline (no network, or ``ANCHORFREE_OFFLINE=1``):
    then a message names the file, its URL and the folder to put it in."""
    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError:
        enum = None
    if enum is None or not list(enum):
        raise ConfigError(f"backbone.weights={choice}: torchvision publishes no ImageNet weights for {name}; "
                          "train it from scratch (backbone.weights=null) or pass a local state-dict path")
    key = "DEFAULT" if choice.lower() == "imagenet" else choice
    try:
        weights = enum[key]
    except KeyError:
        raise ConfigError(f"backbone.weights={choice}: {name} has the weights {', '.join(m.name for m in enum)} "
                          "(or imagenet for the default)") from None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = folder / Path(weights.url).name
    if file.is_file():
        return file
    where = (f"{file.name} ({weights.url}) is not in torch.hub's cache; download it there ({folder}, set by "
             "$TORCH_HOME) or pass a local state-dict path as backbone.weights")
    if os.environ.get(OFFLINE_ENV, "0") not in ("", "0"):
        raise CheckpointError(f"backbone.weights={choice}: offline ({OFFLINE_ENV}=1) and {where}")
    try:
        torch.hub.download_url_to_file(weights.url, str(file), progress=True)
    except Exception as e:  # noqa: BLE001 - no network, proxy, disk: the same advice
        raise CheckpointError(f"backbone.weights={choice}: cannot download ({type(e).__name__}: {e}); {where}") from None
    return file


def load_imagenet(body: nn.Module, path: str | Path, skipped: tuple[str, ...] = ()) -> None:
    """Load a torchvision ImageNet state dict from a local file into ``body``; keys under the module
    paths ``skipped`` (the classifier, removed layers) are dropped, every other key must match."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"backbone.weights: file {path} does not exist; pass an existing state-dict file, or "
                              "backbone.weights=imagenet for torchvision's ImageNet weights of the body")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(f"backbone.weights: cannot read {path}: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"backbone.weights: {path} holds a {type(state).__name__}, not a state dict")
    state = state.get("state_dict", state)
    prefixes = tuple(f"{p}." for p in skipped)
    state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    try:
        missing, unexpected = body.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"backbone.weights: {path} does not fit {type(body).__name__}: {e}") from None
    if missing or unexpected:
        raise CheckpointError(f"backbone.weights: {path} does not match {type(body).__name__} "
                              f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)")


class Backbone(nn.Module):
    """A torchvision body; ``forward`` returns the maps of ``out_levels`` (level ``i`` has stride ``2**i``)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if cfg.name not in BODIES:
            raise ConfigError(f"unknown backbone '{cfg.name}'; choose one of {', '.join(BODIES)}, csp, hourglass")
        if not cfg.out_levels or not set(cfg.out_levels) <= {2, 3, 4, 5}:
            raise ConfigError(f"backbone.out_levels must be one or more of 2..5, got {cfg.out_levels}")
        if not 0 <= cfg.frozen_stages <= 4:
            raise ConfigError(f"backbone.frozen_stages must be within 0..4, got {cfg.frozen_stages}")
        spec = BODIES[cfg.name]
        body = spec.build(cfg.norm)
        check_choice("model.backbone.style", cfg.style)
        if cfg.style == "caffe":
            caffe_style(body)
        if cfg.norm_eps is not None:
            if not cfg.norm_eps > 0:
                raise ConfigError(f"backbone.norm_eps must be > 0 (or null to keep the body's own), got {cfg.norm_eps}")
            set_norm_eps(body, cfg.norm_eps)
        for path in spec.unused:
            parent, _, name = path.rpartition(".")
            delattr(body.get_submodule(parent), name)
        for name, child in body.named_children():  # register under torchvision's names
            self.add_module(name, child)
        self.taps = {spec.taps[level]: level for level in cfg.out_levels}
        self.run = spec.run[: max(spec.run.index(path) for path in self.taps) + 1]  # up to the last level used
        self.out_levels = sorted(cfg.out_levels)
        self.out_channels = [spec.channels[level] for level in self.out_levels]
        self.out_strides = [2 ** level for level in self.out_levels]
        if cfg.weights:
            local = Path(cfg.weights).suffix or "/" in cfg.weights or Path(cfg.weights).exists()
            path = cfg.weights if local else imagenet_weights_file(cfg.name, cfg.weights)
            load_imagenet(self, path, spec.unused)
        self.freeze(spec, cfg.frozen_stages)
        used = {path.split(".")[0] for path in self.run}
        for name in [n for n, _ in self.named_children() if n not in used]:  # stages after the last level used
            delattr(self, name)

    def freeze(self, spec: BodySpec, stages: int) -> None:
        """Stop gradients up to the end of stage ``stages`` (output stride ``2**(stages + 1)``); stage 1
        includes the stem, so ``1`` freezes ResNet's stem and ``layer1`` as the references do."""
        if stages == 0:
            return
        last = spec.run.index(spec.taps[stages + 1])
        for path in spec.run[: last + 1]:
            for p in self.get_submodule(path).parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for path in self.run:
            x = self.get_submodule(path)(x)
            if path in self.taps:
                outs.append(x)
        return outs

