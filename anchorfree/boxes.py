"""Box coding and aligned (element-wise) box overlaps. Boxes are ``xyxy`` float pixels."""
from __future__ import annotations

import torch
from torch import Tensor


def distance2bbox(points: Tensor, distances: Tensor) -> Tensor:
    """Decode ``(l, t, r, b)`` distances from points ``[..., 2]`` into ``xyxy`` boxes (FCOS Eq. 1)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack(
        (x - distances[..., 0], y - distances[..., 1], x + distances[..., 2], y + distances[..., 3]), dim=-1
    )


def bbox2distance(points: Tensor, boxes: Tensor) -> Tensor:
    """Encode ``xyxy`` boxes as ``(l, t, r, b)`` distances from points (inverse of :func:`distance2bbox`)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack((x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y), dim=-1)


def centerness_target(ltrb: Tensor) -> Tensor:
    """FCOS center-ness (Eq. 3): ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))``."""
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (tb.min(dim=-1).values / tb.max(dim=-1).values)
    return ratio.sqrt()


def aligned_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of box ``a[i]`` with box ``b[i]`` (not pairwise)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
    return inter / (area_a + area_b - inter + eps)


def clip_boxes(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip ``boxes [B, N, 4]`` to each image's valid ``(h, w)`` in ``image_sizes [B, 2]``."""
    hw = image_sizes.to(boxes.dtype)
    upper = torch.stack((hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]), dim=-1)[:, None, :]
    return torch.minimum(boxes.clamp(min=0), upper)
