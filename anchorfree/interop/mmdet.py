"""Convert mmdetection 3.x checkpoints of FCOS, ATSS, GFL, RetinaNet, CenterNet and CornerNet into anchorfree
models with the same outputs.

mmdetection's conventions are config fields set by the ``*_mmdet`` presets (normalisation on 0..255 pixels,
caffe-style ResNet and BGR input for FCOS, per-image loss normaliser, priors over the padding left out,
candidates chosen on the class score before the center-ness factor, boxes without area dropped, ...);
this module only renames keys:

* backbone keys are torchvision's / our Hourglass's already (``backbone.layer1.0.conv1.weight``);
* FPN: ``neck.lateral_convs.i.conv`` → ``neck.inner_blocks.i``, ``neck.fpn_convs.i.conv`` →
  ``neck.layer_blocks.i`` for the backbone levels and ``neck.extra_blocks.j`` for P6, P7;
* dense heads: ``bbox_head.{cls,reg}_convs.i.{conv,gn}`` → the flat towers ``head.{cls,reg}_tower.k``
  (``[conv, norm, act] * n``) and the output convs by name (``conv_cls``/``atss_cls``/``gfl_cls``/``retina_cls``
  → ``head.cls_logits``...); tower convs that mmdetection builds without a bias (before GroupNorm) get a
  zero one, which computes the same function;
* CenterNet and CornerNet keep mmdetection's module names: ``bbox_head.`` → ``head.``.

The golden files of ``scripts/mmdet_detector_golden.py`` prove the result: the same losses (1e-5) and the
same detections as mmdetection 3.3.0 for whole detectors.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..config import apply_overrides
from ..errors import CheckpointError
from ..models.detector import Detector
from ..presets import get_preset
from .coco_classes import coco80_categories
from .rename import Rule, rename_keys
from .mmdet_config import VARIANTS, settings_from_meta
from .run import Conversion, check_class_count

# a key only that head's mmdetection checkpoints hold → head type (its preset: VARIANTS[head][0])
HEAD_SIGNATURES: dict[str, str] = {
    "bbox_head.conv_centerness.weight": "fcos",
    "bbox_head.atss_cls.weight": "atss",
    "bbox_head.gfl_cls.weight": "gfl",
    "bbox_head.retina_cls.weight": "retinanet",
    "bbox_head.heatmap_head.2.weight": "centernet",
    "bbox_head.tl_heat.0.1.conv.weight": "cornernet",
}
# the output convs of the dense heads: mmdetection name → ours
_OUTPUT_CONVS = {
    "fcos": {"conv_cls": "cls_logits", "conv_reg": "bbox_pred", "conv_centerness": "centerness"},
    "atss": {"atss_cls": "cls_logits", "atss_reg": "bbox_pred", "atss_centerness": "centerness"},
    "gfl": {"gfl_cls": "cls_logits", "gfl_reg": "bbox_pred"},
    "retinanet": {"retina_cls": "cls_logits", "retina_reg": "bbox_pred"},
}
_FIXED_BUFFERS = ("bbox_head.integral.project",)  # GFL's bin values 0..reg_max: ours are computed
_SKIPPED_PREFIXES = ("data_preprocessor.",)



def detect_head(state: dict[str, torch.Tensor]) -> tuple[str, str]:
    """``(head type, preset)`` of an mmdetection state dict, from the keys only one head type has."""
    for key, head in HEAD_SIGNATURES.items():
        if key in state:
            return head, VARIANTS[head][0][0]
    heads = ", ".join(sorted(HEAD_SIGNATURES.values()))
    sample = ", ".join(list(state)[:5])
    raise CheckpointError(f"not an mmdetection checkpoint of a detector anchorfree converts ({heads}): none of "
                          f"the keys {', '.join(HEAD_SIGNATURES)} is present (the first keys are: {sample})")


def refuse_deformable(state: dict[str, torch.Tensor], head: str, source: str) -> None:
    """Deformable convolutions (mmcv's ``DCN``/``ModulatedDeformConv2dPack``, recognised by their ``conv_offset``
    tensors) are compiled ops that anchorfree does not have: refuse, naming the variant that converts."""
    offsets = [k for k in state if ".conv_offset." in k]
    if offsets:
        ours, theirs = VARIANTS[head][0]
        raise CheckpointError(f"{source} uses deformable convolutions ({offsets[0]}, {len(offsets)} such tensors), "
                              f"which anchorfree does not support (it has no compiled ops); mmdetection's {theirs} "
                              f"(the same {head} without deformable convolutions) converts with --model {ours}")


def _dense_rules(head: str, state: dict[str, torch.Tensor]) -> list[Rule]:
    backbone_levels = len({m[1] for k in state if (m := re.match(r"^neck\.lateral_convs\.(\d+)\.", k))})
    tower_norm = any(re.match(r"^bbox_head\.cls_convs\.0\.gn\.", k) for k in state)
    step = 3 if tower_norm else 2  # ours: [conv, gn, relu] or [conv, relu] per tower layer

    def fpn_conv(m: re.Match) -> str:
        i = int(m[1])
        return f"neck.layer_blocks.{i}." if i < backbone_levels else f"neck.extra_blocks.{i - backbone_levels}."

    def tower(kind: str, offset: int) -> Callable[[re.Match], str]:
        return lambda m: f"head.{m[1]}_tower.{int(m[2]) * step + offset}."

    rules: list[Rule] = [
        (r"^backbone\.", "backbone."),
        (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"neck.inner_blocks.\1."),
        (r"^neck\.fpn_convs\.(\d+)\.conv\.", fpn_conv),
        (r"^bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.", tower("conv", 0)),
        (r"^bbox_head\.(cls|reg)_convs\.(\d+)\.gn\.", tower("gn", 1)),
        (r"^bbox_head\.scales\.(\d+)\.scale$", r"head.scales.\1.scale"),
    ]
    rules += [(rf"^bbox_head\.{theirs}\.", f"head.{ours}.") for theirs, ours in _OUTPUT_CONVS[head].items()]
    return rules


_KEYPOINT_RULES: list[Rule] = [(r"^backbone\.", "backbone."), (r"^neck\.", "neck."), (r"^bbox_head\.", "head.")]


def convert_mmdet_state_dict(state: dict[str, torch.Tensor], head: str | None = None) -> dict[str, torch.Tensor]:
    """Rename the keys of an mmdetection state dict to anchorfree's (see the module docstring); a key no rule
    matches raises :class:`CheckpointError` naming it."""
    head = head or detect_head(state)[0]
    rules = _KEYPOINT_RULES if head in ("centernet", "cornernet") else _dense_rules(head, state)
    kept = {k: v for k, v in state.items() if k not in _FIXED_BUFFERS and not k.startswith(_SKIPPED_PREFIXES)}
    return rename_keys(kept, rules, head, "key '{key}' of the mmdetection {what} checkpoint has no counterpart in "
                                          "anchorfree's {what} (the checkpoint is of another architecture)")


def num_classes_of(state: dict[str, torch.Tensor], head: str) -> int:
    """Class count of a converted state dict, read off the classification output (RetinaNet: ``A * C`` outputs
    for the ``A`` anchors its box conv has ``4 A`` outputs for)."""
    if head == "centernet":
        return int(state["head.heatmap_head.2.weight"].shape[0])
    if head == "cornernet":
        return int(state["head.tl_heat.0.1.conv.weight"].shape[0])
    anchors = state["head.bbox_pred.weight"].shape[0] // 4 if head == "retinanet" else 1
    return int(state["head.cls_logits.weight"].shape[0]) // anchors


def adapt_to_model(state: dict[str, torch.Tensor], model: Detector) -> dict[str, torch.Tensor]:
    """Zero biases for the tower convs the checkpoint has none for (mmdetection drops the bias before a norm);
    BatchNorm step counters dropped where the model's norm is frozen (``FrozenBatchNorm2d`` has none)."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    for key, value in own.items():
        weight = key[:-4] + "weight"
        if re.match(r"^head\.(cls|reg)_tower\.\d+\.bias$", key) and key not in state \
                and weight in state and state[weight].dim() == 4:
            state[key] = torch.zeros_like(value)
    return state


def check_fits(state: dict[str, torch.Tensor], model: Detector, source: str, preset: str, suggested: str,
               hint: str | None) -> None:
    """Raise :class:`CheckpointError` naming the first keys that do not fit ``model`` and the preset that would."""
    own = model.state_dict()
    shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if not (shape or missing or unexpected):
        return
    parts = []
    if shape:
        parts.append("different shapes (checkpoint vs model): " + "; ".join(shape[:3]))
    if missing:
        parts.append("missing from the checkpoint: " + ", ".join(missing[:3]))
    if unexpected:
        parts.append("not in the model: " + ", ".join(unexpected[:3]))
    advice = f"use --model {suggested}" if suggested != preset else f"use --model {suggested} with overrides"
    if hint:
        advice += f" (its backbone is a ResNet: {hint})"
    raise CheckpointError(f"{source} does not fit the preset {preset}: {' | '.join(parts)}; {advice}")


def backbone_hint(state: dict[str, torch.Tensor]) -> str | None:
    """``backbone.name=resnetN`` for the ResNet depth the checkpoint's backbone has (``None`` if not a ResNet)."""
    blocks = {int(m[1]) for k in state if (m := re.match(r"^backbone\.layer3\.(\d+)\.", k))}
    bottleneck = any(k.startswith("backbone.layer1.0.conv3.") for k in state)
    depth = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101}.get((len(blocks), bottleneck))
    return None if depth is None else f"backbone.name=resnet{depth}"


def read_mmdet_checkpoint(path: str | Path, trusted: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of an mmdetection checkpoint file (``{'state_dict', 'meta'}`` or a bare state dict).

    Read with ``weights_only=True``; checkpoints that pickle other objects (mmengine's training state) need
    ``trusted=True``, which runs the file's pickle code — only for files you trust."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused is None:  # not a refused class: a damaged file
            raise CheckpointError(f"cannot read {path}: the file is damaged or not a PyTorch checkpoint") from None
        raise CheckpointError(f"{path} pickles objects other than tensors ({refused[1]}, e.g. mmengine's training "
                              "state). If you trust the file, pass --trusted (Python: trusted=True), or re-save its "
                              "'state_dict' and 'meta' entries alone") from None
    except Exception as e:  # noqa: BLE001 - truncated or foreign files all need the same advice
        raise CheckpointError(f"cannot read {path} ({type(e).__name__}: {e}); the file is damaged or not a "
                              "PyTorch checkpoint") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not an mmdetection checkpoint")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no state dict of tensors (keys: {', '.join(list(ckpt)[:5])})")
    return state, ckpt.get("meta") or {}


def class_names_of(meta: dict[str, Any], num_classes: int) -> tuple[list[str], dict[int, int], str]:
    """Names and label → COCO category ids: the checkpoint's ``meta.dataset_meta.classes`` when present, COCO's
    80 when the checkpoint has 80 classes, else ``class_0..``; ids are COCO's when the names are COCO's."""
    names = list((meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES") or [])
    coco_ids, coco_names = coco80_categories()
    origin = "the checkpoint's meta"
    if not names:
        names, origin = (list(coco_names), "COCO (80 classes)") if num_classes == 80 else (
            [f"class_{i}" for i in range(num_classes)], "none in the checkpoint")
    if len(names) != num_classes:
        raise CheckpointError(f"the checkpoint's meta names {len(names)} classes but its classifier has "
                              f"{num_classes} outputs")
    ids = dict(enumerate(coco_ids)) if names == coco_names else {i: i + 1 for i in range(num_classes)}
    return [str(n) for n in names], ids, origin


def convert_mmdet(checkpoint: str | Path, preset: str | None = None, overrides: Sequence[str] = (),
                  trusted: bool = False) -> Conversion:
    """An mmdetection 3.x checkpoint as an anchorfree :class:`~anchorfree.models.detector.Detector`.

    ``preset`` defaults to the ``*_mmdet`` preset of the checkpoint's head (``fcos_r50_fpn_mmdet``,
    ``atss_r50_fpn_mmdet``, ...). The settings of the config stored in the checkpoint's meta (variant, pixel
    normalisation, test resize and thresholds; :mod:`.mmdet_config`) are applied to it, then ``overrides``
    (``key=value`` strings); without a stored config the preset's variant is assumed and the notes say so.
    The class count is read off the weights; a checkpoint that does not fit raises :class:`CheckpointError`
    naming the first keys that differ and the preset that would fit.
    """
    state, meta = read_mmdet_checkpoint(checkpoint, trusted)
    head, suggested = detect_head(state)
    refuse_deformable(state, head, str(checkpoint))
    settings = settings_from_meta(meta, head)
    hint = backbone_hint(state)
    user_overrides = list(overrides)
    if preset is None:
        preset = suggested
        if not settings.overrides and hint and hint != f"backbone.name={get_preset(preset).model.backbone.name}":
            settings.overrides.append(hint)  # e.g. an R101 checkpoint of the R50 reference config
    cfg = apply_overrides(get_preset(preset), [*settings.overrides, *user_overrides])
    if cfg.model.head.type != head:
        raise CheckpointError(f"{checkpoint} is an mmdetection {head} checkpoint but the preset {preset} has a "
                              f"{cfg.model.head.type} head; use --model {suggested}")
    converted = convert_mmdet_state_dict(state, head)
    cfg.model.num_classes = num_classes_of(converted, head)
    check_class_count(user_overrides, cfg.model.num_classes, str(checkpoint))
    names, ids, origin = class_names_of(meta, cfg.model.num_classes)
    cfg.model.class_names = names
    cfg.model.backbone.weights = None
    cfg.model.backbone.frozen_stages = 0 if cfg.model.backbone.name == "hourglass" else cfg.model.backbone.frozen_stages
    model = Detector(cfg.model)
    converted = adapt_to_model(converted, model)
    check_fits(converted, model, str(checkpoint), preset, suggested, hint)
    model.load_state_dict(converted, strict=False)
    notes = [settings.note, f"class names: {origin}"]
    return Conversion(model.eval(), cfg, str(checkpoint), "mmdetection", head, names, ids, notes)
