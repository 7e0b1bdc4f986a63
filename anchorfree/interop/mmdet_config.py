"""The settings an mmdetection checkpoint was trained and tested with, read from the config it carries.

mmengine (mmdetection 3.x) saves the whole config as text in ``meta['cfg']``, mmcv's runner (2.x) in
``meta['config']``; files re-saved with only their weights carry none. The text is Python: it is parsed
here without running it (literals and ``dict(...)`` calls only). From it come what the weights alone do not
tell — e.g. FCOS's ``fcos_r50-caffe_fpn_gn-head_1x_coco`` and its ``…-center-normbbox-centeronreg-giou``
variant have the same tensors but decode boxes differently (``exp`` vs ``relu · stride``), take center-ness
from another tower and normalise pixels with other means — as ``key=value`` overrides of the ``*_mmdet``
preset. Settings anchorfree cannot reproduce (deformable convolutions, other backbone types) are refused
by name.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError

# heads for which mmdetection ships configs that differ in more than the backbone: head → the presets of each
# variant (first: the one assumed when a checkpoint carries no config) and the mmdetection config it matches
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "fcos": [("fcos_r50_fpn_mmdet", "fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco"),
             ("fcos_r50_fpn_plain_mmdet", "fcos_r50-caffe_fpn_gn-head_1x_coco")],
    "atss": [("atss_r50_fpn_mmdet", "atss_r50_fpn_1x_coco")],
    "gfl": [("gfl_r50_fpn_mmdet", "gfl_r50_fpn_1x_coco")],
    "retinanet": [("retinanet_r50_fpn_mmdet", "retinanet_r50_fpn_1x_coco")],
    "centernet": [("centernet_r18_mmdet", "centernet_r18_8xb16-crop512-140e_coco")],
    "cornernet": [("cornernet_hg104_mmdet", "cornernet_hourglass104_8xb6-210e-mstest_coco")],
}
_BACKBONES = {"ResNet": "resnet", "HourglassNet": "hourglass"}


@dataclass
class ConfigSettings:
    """Overrides read from a checkpoint's config and a line saying where they came from."""

    overrides: list[str] = field(default_factory=list)
    note: str = ""


def config_text(meta: dict[str, Any]) -> str | None:
    """The config text of an mmdetection checkpoint's ``meta`` (``cfg``: 3.x, ``config``: 2.x), or ``None``."""
    for key in ("cfg", "config"):
        text = meta.get(key)
        if isinstance(text, str) and "model" in text:
            return text
    return None


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression, where ``dict(a=1)`` is a dict; anything else raises ValueError."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, ast.Constant):
        return node.value
    raise ValueError(ast.dump(node)[:60])


def parse_config(text: str) -> dict[str, Any]:
    """The top-level assignments of a config text whose values are literals (others are left out)."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise CheckpointError(f"the config stored in the checkpoint's meta is not valid Python ({e.msg}, line "
                              f"{e.lineno})") from None
    out: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                out[stmt.targets[0].id] = _literal(stmt.value)
            except (ValueError, TypeError):
                continue
    return out


def _list(values: list[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def _refuse_unsupported(model: dict[str, Any], head_type: str) -> None:
    backbone, head = model.get("backbone") or {}, model.get("bbox_head") or {}
    neck = model.get("neck") or {}
    where = ("backbone.dcn" if backbone.get("dcn") else "bbox_head.dcn_on_last_conv" if head.get("dcn_on_last_conv")
             else "neck.use_dcn" if isinstance(neck, dict) and neck.get("use_dcn") else None)
    if where:
        ours, theirs = VARIANTS[head_type][0]
        raise CheckpointError(f"the checkpoint's config uses deformable convolutions ({where}), which anchorfree "
                              f"does not support (it has no compiled ops); mmdetection's {theirs} (the same "
                              f"{head_type} without them) converts with --model {ours}")
    kind = backbone.get("type")
    if kind is not None and kind not in _BACKBONES:
        raise CheckpointError(f"the checkpoint's backbone is mmdetection's {kind}; anchorfree converts "
                              f"{' and '.join(_BACKBONES)} backbones")


def _input_overrides(cfg: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """Pixel normalisation (3.x ``data_preprocessor``, 2.x ``img_norm_cfg``) and the test resize scale."""
    out: list[str] = []
    pre = model.get("data_preprocessor") or cfg.get("img_norm_cfg") or {}
    if "mean" in pre and "std" in pre:
        rgb = pre.get("bgr_to_rgb", pre.get("to_rgb", False))
        out += [f"model.input.channel_order={'rgb' if rgb else 'bgr'}",
                f"model.input.mean={_list([m / 255 for m in pre['mean']])}",
                f"model.input.std={_list([s / 255 for s in pre['std']])}"]
    scale = _test_scale(cfg.get("test_pipeline") or ((cfg.get("data") or {}).get("test") or {}).get("pipeline"))
    if scale is not None:
        out += [f"model.input.max_size={max(scale)}", f"model.input.min_size={min(scale)}"]
    return out


def _test_scale(pipeline: Any) -> tuple[int, int] | None:
    """``(long, short)`` of a keep-ratio ``Resize`` in a test pipeline (2.x: inside ``MultiScaleFlipAug``)."""
    for step in pipeline or []:
        if not isinstance(step, dict):
            continue
        if step.get("type") == "MultiScaleFlipAug":
            scale = step.get("img_scale") or step.get("scale")
            if isinstance(scale, list) and len(scale) == 2 and all(isinstance(s, int) for s in scale):
                return scale[0], scale[1]
            return _test_scale(step.get("transforms"))
        if step.get("type") == "Resize" and step.get("keep_ratio"):
            scale = step.get("scale") or step.get("img_scale")
            if isinstance(scale, list) and len(scale) == 2 and all(isinstance(s, int) for s in scale):
                return scale[0], scale[1]
    return None


def _head_overrides(head_type: str, head: dict[str, Any], test: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if head_type == "fcos":  # mmdetection's FCOSHead defaults: every trick off
        norm_on_bbox = bool(head.get("norm_on_bbox", False))
        center = bool(head.get("center_sampling", False))
        out += [f"model.head.norm_on_bbox={str(norm_on_bbox).lower()}",
                f"model.head.bbox_activation={'relu' if norm_on_bbox else 'exp'}",
                f"model.head.centerness_on_reg={str(bool(head.get('centerness_on_reg', False))).lower()}",
                f"model.head.center_sampling_radius={float(head.get('center_sample_radius', 1.5)) if center else 0.0}",
                f"model.head.iou_loss={'giou' if (head.get('loss_bbox') or {}).get('type') == 'GIoULoss' else 'iou'}"]
    nms = test.get("nms") or test.get("nms_cfg") or {}
    if "iou_threshold" in nms:
        out.append(f"model.head.nms_thresh={nms['iou_threshold']}")
    if head_type in ("fcos", "atss", "gfl", "retinanet"):
        if "nms_pre" in test:
            out.append(f"model.head.topk={int(test['nms_pre'])}")
        if "score_thr" in test:  # the keypoint heads of mmdetection do not read it
            out.append(f"model.head.score_thresh={test['score_thr']}")
    if head_type == "cornernet":
        if nms.get("type") == "soft_nms":
            out.append(f"model.head.nms=soft_{nms.get('method', 'gaussian')}")
        if "distance_threshold" in test:
            out.append(f"model.head.embedding_threshold={test['distance_threshold']}")
        if "corner_topk" in test:
            out.append(f"model.head.topk={int(test['corner_topk'])}")
    if head_type == "centernet" and "topk" in test:
        out.append(f"model.head.topk={int(test['topk'])}")
    if "local_maximum_kernel" in test:
        out.append(f"model.head.peak_kernel={int(test['local_maximum_kernel'])}")
    if "max_per_img" in test:
        out.append(f"model.head.max_detections={int(test['max_per_img'])}")
    return out


def settings_from_meta(meta: dict[str, Any], head_type: str) -> ConfigSettings:
    """Overrides for the ``*_mmdet`` preset from the checkpoint's stored config; with no config, a note that
    names the variant assumed and the presets of the others."""
    text = config_text(meta)
    variants = VARIANTS.get(head_type, [])
    if text is None:
        note = "the checkpoint carries no config"
        if len(variants) > 1:
            others = "; ".join(f"for {theirs} use --model {ours}" for ours, theirs in variants[1:])
            note += f": assumed mmdetection's {variants[0][1]} (preset {variants[0][0]}); {others}"
        else:
            note += ": assumed the settings of the preset"
        return ConfigSettings([], note)
    cfg = parse_config(text)
    model = cfg.get("model")
    if not isinstance(model, dict):
        return ConfigSettings([], "the checkpoint's config has no literal model section: assumed the settings "
                                  "of the preset")
    _refuse_unsupported(model, head_type)
    backbone = model.get("backbone") or {}
    overrides: list[str] = []
    if backbone.get("type") == "ResNet":
        overrides.append(f"model.backbone.name=resnet{int(backbone.get('depth', 50))}")
        overrides.append(f"model.backbone.style={backbone.get('style', 'pytorch')}")
    overrides += _input_overrides(cfg, model)
    test = model.get("test_cfg") or cfg.get("test_cfg") or {}
    overrides += _head_overrides(head_type, model.get("bbox_head") or {}, test)
    return ConfigSettings(overrides, "settings read from the checkpoint's config: " + " ".join(overrides))


__all__ = ["VARIANTS", "ConfigSettings", "config_text", "parse_config", "settings_from_meta"]
