"""Convert torchvision's ``fcos_resnet50_fpn`` state dict into an anchorfree FCOS.

torchvision's conventions are expressed by the ``fcos_r50_fpn_torchvision`` preset (prior offset 0,
no per-level scale, ``sqrt(cls*ctr)`` scores, ...); this module only renames keys.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import CheckpointError
from ..models.detector import Detector
from ..presets import fcos_r50_fpn_torchvision

_FCOS_RULES = [
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"neck.inner_blocks.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"neck.layer_blocks.\1."),
    (r"^backbone\.fpn\.extra_blocks\.p6\.", "neck.extra_blocks.0."),
    (r"^backbone\.fpn\.extra_blocks\.p7\.", "neck.extra_blocks.1."),
    (r"^head\.classification_head\.conv\.", "head.cls_tower."),
    (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
    (r"^head\.regression_head\.conv\.", "head.reg_tower."),
    (r"^head\.regression_head\.bbox_reg\.", "head.bbox_pred."),
    (r"^head\.regression_head\.bbox_ctrness\.", "head.centerness."),
]


def convert_torchvision_fcos(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision FCOS keys to anchorfree's; unknown keys raise :class:`CheckpointError`."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _FCOS_RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise CheckpointError(f"unexpected key '{key}' in the torchvision FCOS state dict")
    return out


def load_torchvision_fcos(source: str | Path | dict, cfg: ModelConfig | None = None) -> Detector:
    """Build an FCOS from a torchvision ``fcos_resnet50_fpn`` state dict (or a path to one).

    ``cfg`` defaults to the ``fcos_r50_fpn_torchvision`` preset with the class count read from
    the weights; backbone norm layers must match how the torchvision model was built
    (``frozen_bn`` for the COCO weights, ``bn`` for ``weights_backbone=None``).
    """
    if not isinstance(source, dict):
        try:
            source = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{source} does not exist") from None
    state = convert_torchvision_fcos(source)
    if cfg is None:
        cfg = fcos_r50_fpn_torchvision().model
        cfg.backbone.frozen_stages = 0
    cfg.num_classes = int(state["head.cls_logits.weight"].shape[0])
    model = Detector(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"torchvision FCOS weights do not fit the config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model
