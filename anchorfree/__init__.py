"""anchorfree: one-stage object detectors (FCOS, RetinaNet, ATSS, GFL, GFLv2, CenterNet, CornerNet)
in pure PyTorch — train, evaluate, predict and export.

The names below are imported on first use, so that ``anchorfree.load_model("model.onnx")`` and
:mod:`anchorfree.export.predictor` run where PyTorch is not installed.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Batch": "structures", "Config": "config", "Detections": "structures", "Detector": "models.detector",
    "Model": "api", "PRESETS": "presets", "Prediction": "api", "build_detector": "models.detector",
    "get_preset": "presets", "load_config": "config", "load_model": "api", "train": "training",
}
__all__ = ["Batch", "Config", "Detections", "Detector", "Model", "PRESETS", "Prediction", "build_detector",
           "get_preset", "load_config", "load_model", "train"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'anchorfree' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
