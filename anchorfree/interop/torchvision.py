"""Convert torchvision detection state dicts (``fcos_resnet50_fpn``, ``retinanet_resnet50_fpn``
and ``retinanet_resnet50_fpn_v2``) into anchorfree models.

torchvision's conventions are expressed by the ``*_torchvision`` presets (prior offset 0, rounded
anchor sizes, ``sqrt(cls*ctr)`` scores, ...); this module only renames keys, with one table of
renaming rules per model on top of the rules shared by the backbone and the FPN.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import ModelConfig, apply_overrides
from ..errors import CheckpointError
from ..models.detector import Detector
from ..presets import (fcos_r50_fpn_torchvision, get_preset, retinanet_r50_fpn_torchvision,
                       retinanet_r50_fpn_v2_torchvision)
from .coco_classes import coco91_names
from .rename import Rule, rename_keys
from .run import Conversion, check_class_count

_BACKBONE_FPN_RULES: list[Rule] = [
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"neck.inner_blocks.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"neck.layer_blocks.\1."),
    (r"^backbone\.fpn\.extra_blocks\.p6\.", "neck.extra_blocks.0."),
    (r"^backbone\.fpn\.extra_blocks\.p7\.", "neck.extra_blocks.1."),
]

_FCOS_RULES: list[Rule] = _BACKBONE_FPN_RULES + [
    (r"^head\.classification_head\.conv\.", "head.cls_tower."),
    (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
    (r"^head\.regression_head\.conv\.", "head.reg_tower."),
    (r"^head\.regression_head\.bbox_reg\.", "head.bbox_pred."),
    (r"^head\.regression_head\.bbox_ctrness\.", "head.centerness."),
]


def _retinanet_rules(layers_per_block: int) -> list[Rule]:
    """torchvision's RetinaNet towers are 4 ``Conv2dNormActivation`` blocks (keys ``conv.{block}.{layer}``:
    conv, [GroupNorm]); ours are flat ``[conv, (norm,) relu] * 4``, so layer ``l`` of block ``b``
    is index ``b * layers_per_block + l`` (2 without norm, 3 with GroupNorm). Checkpoints written
    before torchvision 0.13 have flat ``conv.{index}`` keys (conv, relu, ...), which equal ours."""
    def tower(ours: str) -> Callable[[re.Match], str]:
        return lambda m: f"head.{ours}.{int(m[1]) * layers_per_block + int(m[2])}."

    return _BACKBONE_FPN_RULES + [
        (r"^head\.classification_head\.conv\.(\d+)\.(\d+)\.", tower("cls_tower")),
        (r"^head\.classification_head\.conv\.(\d+)\.", r"head.cls_tower.\1."),
        (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
        (r"^head\.regression_head\.conv\.(\d+)\.(\d+)\.", tower("reg_tower")),
        (r"^head\.regression_head\.conv\.(\d+)\.", r"head.reg_tower.\1."),
        (r"^head\.regression_head\.bbox_reg\.", "head.bbox_pred."),
    ]


def convert_torchvision_fcos(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision FCOS keys to anchorfree's; unknown keys raise :class:`CheckpointError`."""
    return rename_keys(state_dict, _FCOS_RULES, "torchvision FCOS")


def _retinanet_uses_norm(state_dict: dict[str, torch.Tensor]) -> bool:
    """v2 towers have GroupNorm: a ``conv.{block}.1.weight`` key next to the conv's ``conv.{block}.0.weight``."""
    return any(re.match(r"^head\.(classification|regression)_head\.conv\.\d+\.1\.weight$", k) for k in state_dict)


def convert_torchvision_retinanet(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision RetinaNet (v1 or v2, detected from the keys) keys to anchorfree's.

    torchvision's v2 tower convs have no bias (they precede GroupNorm) while ours do: they get a
    zero bias, which computes the same function.
    """
    with_norm = _retinanet_uses_norm(state_dict)
    out = rename_keys(state_dict, _retinanet_rules(3 if with_norm else 2), "torchvision RetinaNet")
    if with_norm:
        for key, value in list(out.items()):
            m = re.match(r"^(head\.(?:cls|reg)_tower\.\d+\.)weight$", key)
            if m and value.dim() == 4:
                out.setdefault(m[1] + "bias", value.new_zeros(value.shape[0]))
    return out


def _load(source: str | Path | dict, convert: Callable[[dict], dict], cfg: ModelConfig,
          num_classes: Callable[[dict], int], what: str) -> Detector:
    """Read ``source`` (a state dict or a path to one), convert it and load it into ``Detector(cfg)``."""
    if not isinstance(source, dict):
        try:
            source = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{source} does not exist") from None
    state = convert(source)
    cfg.num_classes = num_classes(state)
    model = Detector(cfg)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes differ: another architecture or preset
        first = [line.strip() for line in str(e).splitlines() if "size mismatch" in line][:2]
        raise CheckpointError(f"{what} weights do not fit the preset {cfg.name}: {' | '.join(first) or e}") from None
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"{what} weights do not fit the config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return model


def load_torchvision_fcos(source: str | Path | dict, cfg: ModelConfig | None = None) -> Detector:
    """Build an FCOS from a torchvision ``fcos_resnet50_fpn`` state dict (or a path to one).

    ``cfg`` defaults to the ``fcos_r50_fpn_torchvision`` preset with the class count read from
    the weights; backbone norm layers must match how the torchvision model was built
    (``frozen_bn`` for the COCO weights, ``bn`` for ``weights_backbone=None``).
    """
    if cfg is None:
        cfg = fcos_r50_fpn_torchvision().model
        cfg.backbone.frozen_stages = 0
    return _load(source, convert_torchvision_fcos, cfg,
                 lambda state: int(state["head.cls_logits.weight"].shape[0]), "torchvision FCOS")


def load_torchvision_retinanet(source: str | Path | dict, cfg: ModelConfig | None = None,
                               version: str = "v1") -> Detector:
    """Build a RetinaNet from a torchvision ``retinanet_resnet50_fpn`` (``version='v1'``) or
    ``retinanet_resnet50_fpn_v2`` (``'v2'``) state dict, or a path to one.

    ``cfg`` defaults to the ``retinanet_r50_fpn_torchvision`` / ``retinanet_r50_fpn_v2_torchvision``
    preset; the class count is read from the weights (``cls_logits`` has ``A * C`` outputs, the
    box conv ``A * 4``). Backbone norm layers must match how the torchvision model was built
    (``frozen_bn`` for the v1 COCO weights, ``bn`` for ``weights_backbone=None`` and for v2).
    """
    presets = {"v1": retinanet_r50_fpn_torchvision, "v2": retinanet_r50_fpn_v2_torchvision}
    if version not in presets:
        raise CheckpointError(f"version must be v1 or v2, got '{version}'")
    if cfg is None:
        cfg = presets[version]().model
        cfg.backbone.frozen_stages = 0

    def num_classes(state: dict[str, torch.Tensor]) -> int:
        num_anchors = state["head.bbox_pred.weight"].shape[0] // 4
        return int(state["head.cls_logits.weight"].shape[0]) // num_anchors

    return _load(source, convert_torchvision_retinanet, cfg, num_classes, "torchvision RetinaNet")


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - damaged or foreign files all need the same advice
        raise CheckpointError(f"cannot read {path} ({type(e).__name__}); the file is damaged or not a torchvision "
                              "state dict (save it with torch.save(model.state_dict(), path))") from None
    if isinstance(state, dict) and "state_dict" in state:
        raise CheckpointError(f"{path} holds a 'state_dict' entry, as mmdetection's checkpoints do; use "
                              "`anchorfree convert mmdet` for it")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors; save it with torch.save(model.state_dict(), path)")
    return state


def convert_torchvision(checkpoint: str | Path, preset: str | None = None, overrides: Sequence[str] = ()) -> Conversion:
    """A torchvision ``fcos_resnet50_fpn`` / ``retinanet_resnet50_fpn(_v2)`` state dict file as an anchorfree model.

    The model is detected from the keys (center-ness → FCOS; GroupNorm in the towers → RetinaNet v2);
    ``preset`` defaults to its ``*_torchvision`` preset, with ``overrides`` applied (e.g. ``backbone.norm=bn``
    for a model built with ``weights_backbone=None``). With 91 classes (COCO) label ``i`` is COCO category ``i``.
    """
    state = _read_state(checkpoint)
    if "head.regression_head.bbox_ctrness.weight" in state:
        head, default, load = "fcos", "fcos_r50_fpn_torchvision", lambda s, c: load_torchvision_fcos(s, c)
    elif "head.classification_head.cls_logits.weight" in state:
        version = "v2" if _retinanet_uses_norm(state) else "v1"
        head = "retinanet"
        default = "retinanet_r50_fpn_v2_torchvision" if version == "v2" else "retinanet_r50_fpn_torchvision"
        load = lambda s, c: load_torchvision_retinanet(s, c, version=version)  # noqa: E731
    else:
        raise CheckpointError(f"{checkpoint} is not a torchvision FCOS or RetinaNet state dict (no "
                              "head.classification_head.cls_logits.weight key); first keys: "
                              f"{', '.join(list(state)[:5])}")
    preset = preset or default
    cfg = apply_overrides(get_preset(preset), list(overrides))
    if cfg.model.head.type != head:
        raise CheckpointError(f"{checkpoint} is a torchvision {head} but the preset {preset} has a "
                              f"{cfg.model.head.type} head; use --model {default}")
    cfg.model.backbone.frozen_stages = 0
    model = load(state, cfg.model)
    n = cfg.model.num_classes
    check_class_count(overrides, n, str(checkpoint))
    names = coco91_names() if n == 91 else [f"class_{i}" for i in range(n)]
    cfg.model.class_names = list(names)
    ids = {i: i for i in range(n)} if n == 91 else {i: i + 1 for i in range(n)}
    notes = ["labels are COCO category ids (91 classes)" if n == 91 else "class names: none in the state dict"]
    return Conversion(model.eval(), cfg, str(checkpoint), "torchvision", head, list(names), ids, notes)
