"""The served model: :func:`load` one from a path, and :func:`describe_model` it (name, classes, input
rule, format and device, read from the model object).

Works for :class:`anchorfree.Model` (PyTorch) and for the exported-model predictors of
:func:`anchorfree.load_model` (``.onnx``, ``.xml``, ``.pt2``, ``.torchscript``); a wrapper that forwards unknown
attributes to one of them is described as the model it wraps.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from ..export.metadata import MMDET_RESIZE_RULE

PYTORCH_RESIZE_RULE = ("keep-ratio resize (scale = min(min_size / short side, max_size / long side), sizes "
                       "rounded down), bilinear as torchvision; the image at the top-left of a zero canvas padded "
                       "to a multiple of size_divisor; boxes are returned in the pixels of the image sent")


def load(path: str | Path, device: str = "auto", fast: bool | None = None) -> Any:
    """A run folder, ``.pt`` checkpoint or exported file (``.onnx``, ``.xml``, ``.pt2``, ``.torchscript``) as a model
    called like :class:`anchorfree.Model`."""
    from ..api import load_model

    return load_model(path, device=device, fast=fast)


def _export_info(model: Any) -> Any:
    """The export metadata of an exported-model predictor, ``None`` for a PyTorch model."""
    info = getattr(model, "info", None)
    return info if info is not None and hasattr(info, "model_name") else None


def _export_device(model: Any) -> str:
    backend = getattr(model, "backend", None)
    session = getattr(backend, "session", None)
    if session is not None:  # onnxruntime: the first provider runs the graph
        return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    return str(getattr(backend, "device", "cpu"))


def describe_model(model: Any) -> dict[str, Any]:
    """A JSON-ready description: ``name`` (the preset or config name), ``head``, ``format`` (pytorch, onnx,
    pt2, torchscript), ``device``, ``num_classes``, ``class_names``, ``input`` (``min_size``, ``max_size``,
    ``size_divisor``, ``canvas``, ``resize_mode``, ``rule``) and the default ``inference`` options."""
    info = _export_info(model)
    if info is not None:
        inp = info.input
        inference = {**info.inference, "nms": getattr(model, "default_nms", info.suppression)}
        return {"name": info.model_name, "head": info.head, "format": str(getattr(model, "format", "onnx")),
                "device": _export_device(model), "precision": info.precision,
                "num_classes": len(info.class_names), "class_names": [str(n) for n in info.class_names],
                "input": {"min_size": int(inp["min_size"]), "max_size": int(inp["max_size"]),
                          "size_divisor": int(inp["size_divisor"]), "canvas": inp.get("canvas"),
                          "batch": inp.get("batch"), "resize_mode": inp.get("resize_mode", "torchvision"),
                          "rule": inp.get("resize") or PYTORCH_RESIZE_RULE},
                "inference": inference}
    cfg = model.config.model
    head = cfg.head
    fields = getattr(type(head), "INFERENCE_FIELDS", ("score_thresh", "nms", "nms_thresh", "max_detections"))
    return {"name": cfg.name, "head": head.type, "format": "pytorch", "device": str(model.device),
            "precision": "bf16/amp" if getattr(model, "fast", False) else "fp32",
            "num_classes": len(model.class_names), "class_names": [str(n) for n in model.class_names],
            "input": {"min_size": int(cfg.input.min_size), "max_size": int(cfg.input.max_size),
                      "size_divisor": int(cfg.input.size_divisor), "canvas": None, "batch": None,
                      "resize_mode": cfg.input.resize,
                      "rule": MMDET_RESIZE_RULE if cfg.input.resize == "mmdet" else PYTORCH_RESIZE_RULE},
            "inference": {name: getattr(head, name) for name in fields if hasattr(head, name)}}


def input_key(description: dict[str, Any]) -> Callable[[Any], Hashable]:
    """A function of an ``H x W x 3`` image giving the size of the canvas the model runs it on (the
    resized size rounded up to ``size_divisor``, or the fixed canvas of a static export): images with
    the same key can share a batch without changing each other's detections."""
    from ..export.preprocess import keep_ratio_size, resize_mode

    inp = description["input"]
    if inp.get("canvas") is not None:
        canvas = tuple(inp["canvas"])
        return lambda image: canvas
    lo, hi, divisor = inp["min_size"], inp["max_size"], max(1, inp["size_divisor"])
    mode = resize_mode(inp)

    def key(image: Any) -> Hashable:
        h, w = keep_ratio_size(int(image.shape[0]), int(image.shape[1]), lo, hi, mode)
        return -(-h // divisor) * divisor, -(-w // divisor) * divisor

    return key
