"""Deployable models: export a trained detector to ONNX, OpenVINO, ``torch.export`` or TorchScript (fp32, fp16,
int8), checked against PyTorch and certified on the user's data.

    >>> from anchorfree.export import export_model
    >>> report = export_model("runs/demo", format="onnx")        # runs/demo/best.onnx, checked with onnxruntime
    >>> print(report.summary())
    >>> from anchorfree import load_model
    >>> model = load_model("runs/demo/best.onnx")                # same calls as anchorfree.Model
    >>> model("photo.jpg", score_thresh=0.3).names
    >>> export_model("runs/demo", "openvino", int8=True, data="data/synth").certificate.table()

Modules: :mod:`.graph` (the traced graph), :mod:`.writers` (one writer per format), :mod:`.quantize` (int8:
onnxruntime QDQ, also for OpenVINO; which layers stay float), :mod:`.check` (the file against PyTorch on drawn images),
:mod:`.certificate` (AP on a validation split vs PyTorch, speed, size, the AP budget), :mod:`.backends`
(onnxruntime, OpenVINO, torch runtimes), :mod:`.predictor` (:class:`ExportedModel`), :mod:`.metadata`.

The graph (:mod:`.graph`) takes raw pixels and returns each image's detections:

* inputs ``images`` ``uint8 [B, 3, H, W]`` RGB (each image at the top-left of the canvas, zero padded),
  ``image_sizes`` ``int64 [B, 2]`` (the valid ``(h, w)`` of each), and the optional ``float32`` scalars
  ``score_thresh`` / ``nms_thresh`` (default: the export's settings). Normalisation (``model.input``
  mean/std) is in the graph; so is the zeroing of the padding that :meth:`Detector.normalize` does;
* outputs ``boxes`` ``float32 [B, M, 4]`` (``xyxy``, ``images`` pixels), ``scores`` ``float32 [B, M]``,
  ``labels`` ``int64 [B, M]`` and ``num_detections`` ``int64 [B]``: rows sorted by score; row ``j`` of image
  ``b`` is a detection iff ``j < num_detections[b]``, the rest is padding (boxes 0, score 0, label -1).
  ``M`` is ``max_detections``, or the number of candidates ``K`` for raw-candidate exports (``nms=False``:
  every candidate above ``score_thresh`` — per level the top ``topk`` (prior, class) pairs of a dense head,
  CenterNet's peaks, CornerNet's valid corner pairs — for a runtime that runs its own NMS);
* static shapes by default: ``batch`` images on a canvas of ``input_size``, by default a square of
  ``model.input.max_size`` rounded up to ``size_divisor`` (it holds every image of the resize rule, landscape
  or portrait; the runtime resizes as the PyTorch path does and pastes the result at the top-left). The
  detections are PyTorch's on that canvas; :class:`anchorfree.Model` pads a batch only to ``size_divisor``,
  so near an image's bottom/right edges they can differ slightly. ``dynamic=True``: batch, height and width
  are dynamic (height and width multiples of ``size_divisor``; the runtime pads as
  :func:`anchorfree.data.collate` does, so the detections are exactly :class:`anchorfree.Model`'s).

NMS is in the graph: ONNX ``NonMaxSuppression`` with one score row per class (class-wise as PyTorch's
default, without coordinate offsets) or a single row (``agnostic``), then the best ``max_detections``
by a ``TopK`` (:mod:`.ops`). The file's metadata (:mod:`.metadata`) holds the class names, label → COCO
category id, the input rule, the suppression and the inference settings.

Support (✓ = exported graph equals PyTorch's ``predict``, checked at every export):

=============================  ===========================  ==========================  ================  ===========
model                          ONNX (static / dynamic)      ONNX ``half`` (fp16)        ``pt2``           TorchScript
=============================  ===========================  ==========================  ================  ===========
FCOS, RetinaNet, ATSS,         ✓ NMS or raw candidates      ✓ (onnxruntime CPU runs     ✓ static/dynamic  ✓ static
GFL, GFLv2                                                  it; looser tolerance)
CenterNet                      ✓ (no NMS, as PyTorch; flip  ✓                           ✓ static/dynamic  ✓ static
                               test in the graph)
CornerNet                      hard class-wise NMS instead  hard NMS, as fp32 ONNX      ✓ Soft-NMS        ✓ Soft-NMS,
                               of Soft-NMS (noted in the                                static/dynamic    static
                               report and metadata), or
                               raw candidates
=============================  ===========================  ==========================  ================  ===========

Unsupported combinations raise :class:`~anchorfree.errors.ExportError`: TorchScript with ``dynamic=True``
(a trace records one input size), ``half`` outside ONNX, ``nms='soft_gaussian'``/``'soft_linear'`` for ONNX.
``pt2`` and TorchScript files call the operator ``anchorfree::suppress`` and load with anchorfree installed.

The predictor (:class:`~.predictor.ExportedModel`, :func:`anchorfree.load_model`) needs only numpy, PIL
and onnxruntime for ``.onnx`` files.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "export_model": ("exporter", "export_model"),
    "ExportReport": ("exporter", "ExportReport"),
    "CheckResult": ("check", "CheckResult"),
    "ExportedModel": ("predictor", "ExportedModel"),
    "Certificate": ("certificate", "Certificate"),
    "certify": ("certificate", "certify"),
    "ExportInfo": ("metadata", "ExportInfo"),
    "Prediction": ("prediction", "Prediction"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    """Import on first use: the predictor runs without PyTorch, the exporter needs it."""
    if name not in _LAZY:
        raise AttributeError(f"module 'anchorfree.export' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value
