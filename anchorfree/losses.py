"""Losses shared by the dense heads. Sums are divided by a normaliser the caller chooses."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from .boxes import aligned_iou

__all__ = ["sigmoid_focal_loss", "box_iou_loss", "reduce_mean", "quality_focal_loss",
           "distribution_focal_loss"]


def box_iou_loss(pred: Tensor, target: Tensor, kind: str = "giou") -> Tensor:
    """Element-wise box loss: ``giou`` = 1 - GIoU (Rezatofighi et al. 2019) or ``iou`` = -log IoU (UnitBox)."""
    if kind == "giou":
        return generalized_box_iou_loss(pred, target, reduction="none")
    if kind == "iou":
        return -aligned_iou(pred, target).clamp(min=1e-6).log()
    raise ValueError(f"unknown IoU loss '{kind}' (use giou or iou)")


def reduce_mean(value: Tensor) -> Tensor:
    """Average a scalar over distributed processes (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value.div_(dist.get_world_size()))
    return value


def num_positives(mask: Tensor) -> Tensor:
    """Number of positives averaged across processes, at least 1 (the loss normaliser)."""
    return reduce_mean(mask.sum().to(torch.float32)).clamp(min=1.0)


def positives_normalizer(pos: Tensor, mode: str = "batch") -> Tensor:
    """The divisor of a loss summed over ``pos [B, N]``'s batch: ``batch`` — :func:`num_positives`;
    ``image_sum`` — the sum over images of ``max(positives in the image, 1)``, averaged across processes
    (mmdetection's ``avg_factor`` with its ``PseudoSampler``, in RetinaNet, ATSS and GFL)."""
    if mode == "image_sum":
        return reduce_mean(pos.sum(dim=1).clamp(min=1).sum().to(torch.float32))
    if mode == "batch":
        return num_positives(pos)
    raise ValueError(f"unknown loss normaliser '{mode}' (use batch or image_sum)")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"unknown reduction '{reduction}' (use none, sum or mean)")


def quality_focal_loss(pred: Tensor, target_score: Tensor, beta: float = 2.0, use_sigmoid: bool = True,
                       reduction: str = "none") -> Tensor:
    """Quality Focal Loss (GFL, Li et al. 2020, Eq. 5): ``-|y - σ|^β ((1 - y) log(1 - σ) + y log σ)``.

    Args:
        pred: ``[N, C]`` logits (``use_sigmoid=True``, GFL) or probabilities σ already in [0, 1]
            (``use_sigmoid=False``, GFLv2 whose score is ``σ(cls) * quality``).
        target_score: ``[N, C]`` soft targets y in [0, 1] (dense form): the IoU of the predicted box
            with its box at the positive's class, 0 at every other class and for negatives. This is
            exactly mmdetection's ``(label, score)`` form spread over the classes (a positive whose
            IoU is 0 is trained like a negative in both).
        beta: the modulating exponent β (2 in the paper).

    Returns:
        Element-wise loss ``[N, C]`` (``reduction="none"``) or its sum / mean. Logits go through
        ``binary_cross_entropy_with_logits``; probabilities through a BCE written out (the same as
        ``F.binary_cross_entropy``, which refuses CUDA autocast) with σ and 1 - σ clamped at the
        smallest normal float before the log (finite values and gradients at 0 and 1).
    """
    target_score = target_score.to(pred.dtype)
    if use_sigmoid:
        prob = pred.sigmoid()
        bce = F.binary_cross_entropy_with_logits(pred, target_score, reduction="none")
    else:
        prob = pred
        tiny = torch.finfo(pred.dtype).tiny
        log_p, log_1mp = pred.clamp(min=tiny).log(), (1 - pred).clamp(min=tiny).log()
        bce = -(target_score * log_p + (1 - target_score) * log_1mp)
    loss = bce * (target_score - prob).abs().pow(beta)
    return _reduce(loss, reduction)


def distribution_focal_loss(logits: Tensor, target: Tensor, reduction: str = "none") -> Tensor:
    """Distribution Focal Loss (GFL, Li et al. 2020, Eq. 6) for one side of a box.

    ``DFL(S, y) = -((y_{i+1} - y) log S_i + (y - y_i) log S_{i+1})`` with ``y_i = floor(y)``,
    ``y_{i+1} = y_i + 1`` and ``S = softmax(logits)``: cross entropy towards the two bins around
    the continuous target, weighted by the linear interpolation weights.

    Args:
        logits: ``[N, reg_max + 1]`` unnormalised scores of bins ``0..reg_max``.
        target: ``[N]`` continuous targets in ``[0, reg_max]`` (in bins; GFL clamps them below
            ``reg_max``). An integer target puts all weight on its own (left) bin; at ``reg_max``
            exactly the right bin would be out of range but has weight 0, so it is clamped.

    Returns:
        ``[N]`` (``reduction="none"``) or the sum / mean.
    """
    target = target.to(logits.dtype)
    left = target.floor().long()
    weight_left = (left + 1).to(target.dtype) - target
    weight_right = target - left.to(target.dtype)
    right = (left + 1).clamp(max=logits.shape[-1] - 1)
    loss = (F.cross_entropy(logits, left, reduction="none") * weight_left
            + F.cross_entropy(logits, right, reduction="none") * weight_right)
    return _reduce(loss, reduction)
