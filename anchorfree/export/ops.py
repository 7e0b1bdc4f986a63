"""The one operator the export graph adds to PyTorch, and the ONNX translations the exporter needs.

``anchorfree::suppress(boxes [B, K, 4], scores [B, K], labels [B, K], score_thresh [], nms_thresh [], mode,
num_classes, max_per_class, soft_sigma, soft_min_score) → kept [B, K]``: the score of every candidate
that survives suppression (its decayed score for Soft-NMS) and ``-inf`` for the others. Its output has
the shape of its input, so the graph around it keeps static shapes, and a top-k over ``kept`` gives
each image's best detections in the padded layout of :mod:`anchorfree.export.graph`.

* In PyTorch (TorchScript and ``torch.export`` files, and the reference) it runs the library's own
  suppression: :func:`~anchorfree.models.postprocess.batched_nms_all` (hard NMS in float64 with groups
  moved apart) or :func:`~anchorfree.models.postprocess.soft_nms`.
* In ONNX (:func:`suppress_onnx`) hard NMS is the ``NonMaxSuppression`` operator with one score row per
  class (``scores [B, C, K]`` where a candidate's score sits in its own class's row and ``-inf``
  elsewhere): class-wise suppression by the operator's class dimension, no coordinate offsets, so no
  float32 rounding of shifted boxes; ``agnostic`` uses a single row. Soft-NMS has no ONNX operator.

``aten::cummax`` (CornerNet's corner pooling) has no translation in onnxscript's torch library;
:func:`cummax_onnx` gives one: a Hillis–Steele scan, ``ceil(log2 n)`` steps of "max with the copy
shifted by 1, 2, 4, … along the axis", with the index of the running maximum (the later index on ties,
as ``torch.cummax``). :func:`remainder_onnx` handles ``%`` by a symbolic size (dynamic exports).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.postprocess import batched_nms_all, soft_nms

HARD_MODES = ("classwise", "agnostic")
SOFT_MODES = ("soft_gaussian", "soft_linear")
# dynamic-size axes of a cumulative max are scanned in this many steps (axes up to 2**16 long)
DYNAMIC_SCAN_STEPS = 16


@torch.library.custom_op("anchorfree::suppress", mutates_args=())
def suppress(boxes: Tensor, scores: Tensor, labels: Tensor, score_thresh: Tensor, nms_thresh: Tensor, mode: str,
             num_classes: int, max_per_class: int, soft_sigma: float, soft_min_score: float) -> Tensor:
    """``kept [B, K]``: candidates with ``score > score_thresh`` suppressed within their image (and class,
    unless ``mode='agnostic'``); survivors keep their (decayed) score, the others get ``-inf``."""
    out = torch.full_like(scores, float("-inf"))
    image, slot = (scores > score_thresh).nonzero(as_tuple=True)
    if image.numel() == 0:
        return out
    cand_boxes, cand_scores, cand_labels = boxes[image, slot], scores[image, slot], labels[image, slot]
    groups = image if mode == "agnostic" else image * num_classes + cand_labels
    if mode in HARD_MODES:
        keep = batched_nms_all(cand_boxes, cand_scores, groups, float(nms_thresh))
        kept_scores = cand_scores[keep]
    elif mode in SOFT_MODES:
        keep, kept_scores = soft_nms(cand_boxes, cand_scores, groups, mode[5:], float(nms_thresh), soft_sigma,
                                     soft_min_score, max_per_group=max_per_class)
        above = kept_scores > score_thresh  # the threshold also holds for the decayed scores
        keep, kept_scores = keep[above], kept_scores[above]
    else:
        raise ValueError(f"unknown suppression mode '{mode}'")
    out[image[keep], slot[keep]] = kept_scores.to(out.dtype)
    return out


@suppress.register_fake
def _(boxes: Tensor, scores: Tensor, labels: Tensor, score_thresh: Tensor, nms_thresh: Tensor, mode: str,
      num_classes: int, max_per_class: int, soft_sigma: float, soft_min_score: float) -> Tensor:
    return torch.empty_like(scores)


def suppress_onnx(boxes, scores, labels, score_thresh, nms_thresh, mode: str, num_classes: int, max_per_class: int,
                  soft_sigma: float, soft_min_score: float):
    """``anchorfree::suppress`` as ONNX operators (hard modes only): ``NonMaxSuppression`` on
    ``[B, C, K]`` class rows → ``selected [S, 3]`` (image, class, candidate) → the selected scores
    scattered into a ``-inf`` map of the shape of ``scores``."""
    from onnxscript import opset18 as op

    if mode not in HARD_MODES:
        raise ValueError(f"suppression '{mode}' has no ONNX operator")
    neg_inf = op.Constant(value_float=float("-inf"))
    rows = op.Unsqueeze(scores, op.Constant(value_ints=[1]))  # [B, 1, K]
    if mode == "classwise":
        classes = op.Constant(value_ints=list(range(num_classes)))
        classes = op.Reshape(classes, op.Constant(value_ints=[1, num_classes, 1]))
        member = op.Equal(op.Unsqueeze(labels, op.Constant(value_ints=[1])), classes)  # [B, C, K]
        rows = op.Where(member, rows, neg_inf)
    selected = op.NonMaxSuppression(boxes, rows, op.Constant(value_ints=[max_per_class]),
                                    op.Reshape(nms_thresh, op.Constant(value_ints=[1])),
                                    op.Reshape(score_thresh, op.Constant(value_ints=[1])))
    where = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)  # [S, 2]: (image, candidate)
    kept = op.GatherND(scores, where)
    return op.ScatterND(op.Expand(neg_inf, op.Shape(scores)), where, kept)


def cummax_onnx(x, dim: int):
    """``torch.cummax(x, dim)`` → ``(values, indices)`` by a log-step scan (see the module docstring)."""
    from onnxscript import opset18 as op

    rank = len(x.shape)
    axis = dim % rank
    size = x.shape[axis]
    steps = math.ceil(math.log2(size)) if isinstance(size, int) and size > 1 else (0 if size == 1 else
                                                                                 DYNAMIC_SCAN_STEPS)
    length = op.Gather(op.Shape(x), op.Constant(value_ints=[axis]), axis=0)  # [1]
    position = op.Range(op.Constant(value_int=0), op.Squeeze(length), op.Constant(value_int=1))
    shape = [1] * rank
    shape[axis] = -1
    index = op.Expand(op.Reshape(position, op.Constant(value_ints=shape)), op.Shape(x))
    values = x
    for step in range(steps):
        shift = 2 ** step
        pads = [0] * (2 * rank)
        pads[axis] = shift
        fill = op.CastLike(op.Constant(value_float=float("-inf")), x)
        axes, start = op.Constant(value_ints=[axis]), op.Constant(value_ints=[0])
        prev_values = op.Slice(op.Pad(values, op.Constant(value_ints=pads), fill), start, length, axes)
        prev_index = op.Slice(op.Pad(index, op.Constant(value_ints=pads), op.Constant(value_int=0)), start, length,
                              axes)
        earlier = op.Greater(prev_values, values)  # ties keep the later index, as torch.cummax
        values = op.Where(earlier, prev_values, values)
        index = op.Where(earlier, prev_index, index)
    return values, index


def remainder_onnx(x, other):
    """``aten::remainder.Scalar`` (Python's ``%``: the sign of the divisor) where the divisor may be a
    symbolic size, as ``location % width`` of the keypoint heads' peaks in a dynamic export (onnxscript's
    translation needs a constant): ``Mod(fmod=0)`` for integers, ``x - floor(x / y) · y`` for floats."""
    from onnxscript import opset18 as op

    divisor = op.CastLike(other if not isinstance(other, (int, float)) else op.Constant(value_float=float(other)), x)
    if x.dtype is not None and x.dtype.is_floating_point():
        return op.Sub(x, op.Mul(op.Floor(op.Div(x, divisor)), divisor))
    return op.Mod(x, divisor, fmod=0)


def onnx_translations() -> dict:
    """The ``custom_translation_table`` of :func:`torch.onnx.export` for the export graph."""
    return {torch.ops.anchorfree.suppress.default: suppress_onnx, torch.ops.aten.cummax.default: cummax_onnx,
            torch.ops.aten.remainder.Scalar: remainder_onnx}
