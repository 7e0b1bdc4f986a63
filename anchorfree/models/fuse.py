"""Inference-only rewrites of a trained detector that keep its outputs: BatchNorm folding and bf16 conv weights.

* Folding: in eval mode a BatchNorm (or torchvision's ``FrozenBatchNorm2d``) after a conv is an affine
  map per channel, ``y = (conv(x) - mean) / sqrt(var + eps) * w + b``, so it can be merged into the
  conv's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_weights``) and replaced by
  ``nn.Identity``: one memory pass less per conv. GroupNorm depends on the input and stays.
* bf16 weights: under bf16 autocast every conv casts its fp32 weight to bf16 on each call; storing the
  weights in bf16 once skips those casts. Only for the fast (autocast) mode.
"""
from __future__ import annotations

import copy
import re
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

from ..runtime import autocast_dtype
from .detector import Detector
from .layers import FloatConv2d

M = TypeVar("M", bound=nn.Module)

_BATCH_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
_NUMBERED = re.compile(r"(conv|bn)(\d*)$")


def _fold(conv: nn.Conv2d, bn: nn.Module) -> None:
    """Merge ``bn`` (eval statistics) into ``conv`` in place."""
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                        bn.weight, bn.bias)
    conv.weight, conv.bias = weight, bias


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names of (conv, norm) children where the norm directly follows the conv in the data flow:
    neighbours in an ``nn.Sequential``, or ``convN``/``bnN`` attribute pairs (torchvision's ResNet blocks)."""
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        return [(a, b) for a, b in zip(names, names[1:])
                if isinstance(children[a], nn.Conv2d) and isinstance(children[b], _BATCH_NORMS)]
    pairs = []
    for name, child in children.items():
        match = _NUMBERED.match(name)
        if match and match.group(1) == "conv" and isinstance(child, nn.Conv2d):
            bn_name = f"bn{match.group(2)}"
            if isinstance(children.get(bn_name), _BATCH_NORMS):
                pairs.append((name, bn_name))
    return pairs


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> int:
    """Fold every conv → BatchNorm pair of ``model`` (in eval mode) in place; returns how many were folded."""
    if model.training:
        raise RuntimeError("fold_batch_norms needs a model in eval mode (call model.eval() first)")
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _conv_bn_pairs(module):
            _fold(getattr(module, conv_name), getattr(module, bn_name))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


@torch.no_grad()
def convs_to_bf16(model: nn.Module) -> None:
    """Store conv weights and biases in bf16 (to be run under bf16 autocast only); the output convs that
    compute in float32 (:class:`FloatConv2d`) keep their float32 weights."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not isinstance(module, FloatConv2d):
            module.to(torch.bfloat16)


def inference_copy(model: M, bf16_weights: bool = False) -> M:
    """An eval-mode copy of ``model`` with BatchNorms folded (and bf16 conv weights if asked);
    ``model`` itself is left untouched, so it can still be trained or saved."""
    fused = copy.deepcopy(model).eval()
    fold_batch_norms(fused)
    if bf16_weights:
        convs_to_bf16(fused)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def inference_detector(detector: Detector, fast: bool) -> Detector:
    """The detector as ``predict`` and ``eval`` run it: BatchNorms folded, channels_last, and in ``fast``
    mode (to be run under :func:`anchorfree.runtime.autocast`) conv weights stored in the autocast dtype
    when that is bf16."""
    bf16 = fast and autocast_dtype(detector.device) == torch.bfloat16
    return inference_copy(detector, bf16_weights=bf16).set_channels_last(True)
