"""What an exported file says about itself: the metadata a runtime needs besides the graph.

ONNX files keep it in ``metadata_props`` (one key per field below, values are strings, structured
ones JSON); TorchScript and ``torch.export`` files in an extra file ``anchorfree.json`` with the same keys;
OpenVINO IR in its ``rt_info`` under ``anchorfree/props`` (the same keys as one JSON object).

=====================  ==================================================================================
key                    value
=====================  ==================================================================================
``anchorfree_export``  format version of this metadata (``1``)
``model_name``         the config's ``model.name`` (a preset name for runs trained from a preset)
``head``               head type: fcos, retinanet, atss, gfl, gflv2, centernet, cornernet
``class_names``        JSON list, index = label
``label_to_cat_id``    JSON object label → COCO category id (the dataset's ids; identity when unknown)
``input``              JSON: ``canvas`` [H, W] of a static export (``null``: dynamic), ``batch`` (``null``:
                       dynamic), ``min_size``, ``max_size``, ``size_divisor``, ``mean``, ``std`` (applied in
                       the graph), ``resize`` (the rule, in words)
``suppression``        what the graph does after thresholding: classwise, agnostic, soft_gaussian,
                       soft_linear (PyTorch formats only) or none
``raw_candidates``     ``true``: outputs hold every candidate above the threshold (no NMS; ``M = K``)
``pytorch_nms``        the suppression PyTorch uses with these settings (differs from ``suppression`` only
                       where ONNX has no operator for it: CornerNet's Soft-NMS, see ``notes``)
``inference``          JSON: the inference settings baked in (``score_thresh`` and ``nms_thresh`` are the
                       defaults of the graph inputs of the same name)
``precision``          fp32, fp16 or int8 (fp16: the network; int8: its convolutions, see ``quantization``;
                       candidates, NMS and outputs are fp32)
``quantization``       JSON (int8 only): ``method``, ``calibration`` (images and their source), ``kept_float``
                       (the layers left in float, and why)
``notes``              what the export does differently from PyTorch, in words (may be empty)
=====================  ==================================================================================
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ExportError

FORMAT_VERSION = 1
KEY = "anchorfree_export"
RESIZE_RULE = ("keep-ratio resize (scale = min(min_size / short side, max_size / long side), sizes rounded down), "
               "bilinear without antialias as torchvision; the image at the top-left of a zero canvas: the fixed "
               "canvas of a static export (an image whose resized size does not fit is shrunk to fit), else the "
               "batch's largest size rounded up to size_divisor")
MMDET_RESIZE_RULE = ("keep-ratio resize as mmdetection's test pipeline (scale = min(min_size / short side, max_size / "
                     "long side), sizes rounded to the nearest), OpenCV's bilinear (INTER_LINEAR); the image at the "
                     "top-left of a zero canvas, as for the torchvision rule")
_JSON_FIELDS = ("class_names", "label_to_cat_id", "input", "inference", "quantization")


@dataclass
class ExportInfo:
    model_name: str
    head: str
    class_names: list[str]
    label_to_cat_id: dict[int, int]
    input: dict[str, Any]
    suppression: str
    raw_candidates: bool
    pytorch_nms: str
    inference: dict[str, Any]
    precision: str = "fp32"
    quantization: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def canvas(self) -> tuple[int, int] | None:
        canvas = self.input.get("canvas")
        return None if canvas is None else (int(canvas[0]), int(canvas[1]))

    @property
    def batch(self) -> int | None:
        batch = self.input.get("batch")
        return None if batch is None else int(batch)

    def to_props(self) -> dict[str, str]:
        """The string key/value pairs stored in the file."""
        data = asdict(self)
        props = {KEY: str(data.pop("format_version"))}
        data.pop("extra")
        data["label_to_cat_id"] = {str(k): int(v) for k, v in self.label_to_cat_id.items()}
        for key, value in data.items():
            if key in _JSON_FIELDS:
                props[key] = json.dumps(value)
            elif isinstance(value, bool):
                props[key] = "true" if value else "false"
            else:
                props[key] = str(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> "ExportInfo":
        """Read the metadata of ``source``, refusing files without it or of another version."""
        if KEY not in props:
            raise ExportError(f"{source} has no anchorfree metadata (key '{KEY}'): it was not written by "
                              "anchorfree.export.export_model; export the run again with it")
        if props[KEY] != str(FORMAT_VERSION):
            raise ExportError(f"{source} has anchorfree metadata version {props[KEY]}, this version reads "
                              f"{FORMAT_VERSION}; export the run again with this version of anchorfree")
        names = ("model_name", "head", "class_names", "label_to_cat_id", "input", "suppression", "raw_candidates",
                 "pytorch_nms", "inference")
        missing = [name for name in names if name not in props]
        if missing:
            raise ExportError(f"{source}: the anchorfree metadata lacks {', '.join(missing)}; the file is damaged, "
                              "export it again")
        try:
            values = {name: json.loads(props[name]) if name in _JSON_FIELDS else props[name] for name in names}
        except json.JSONDecodeError as e:
            raise ExportError(f"{source}: damaged anchorfree metadata ({e}); export it again") from None
        values["label_to_cat_id"] = {int(k): int(v) for k, v in values["label_to_cat_id"].items()}
        values["raw_candidates"] = values["raw_candidates"] == "true"
        known = set(names) | {KEY, "precision", "notes", "quantization"}
        try:
            quantization = json.loads(props.get("quantization") or "{}")
        except json.JSONDecodeError as e:
            raise ExportError(f"{source}: damaged anchorfree metadata ({e}); export it again") from None
        return cls(**values, precision=props.get("precision", "fp32"), quantization=quantization,
                   notes=props.get("notes", ""),
                   extra={k: v for k, v in props.items() if k not in known})
