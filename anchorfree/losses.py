"""Losses shared by the dense heads. Sums are divided by a normaliser the caller chooses."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from .boxes import aligned_iou

__all__ = ["sigmoid_focal_loss", "box_iou_loss", "reduce_mean"]


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
