"""Box coding and aligned (element-wise) box overlaps. Boxes are ``xyxy`` float pixels."""
from __future__ import annotations

import torch
from torch import Tensor


def distance2bbox(points: Tensor, distances: Tensor) -> Tensor:
    """Decode ``(l, t, r, b)`` distances from points ``[..., 2]`` into ``xyxy`` boxes (FCOS Eq. 1)."""
    # one subtraction and one addition of (x, y) pairs: the same values as four scalar ones, and a graph
    # OpenVINO's int8 transformations handle (its per-coordinate Gather → Sub → Unsqueeze chain they do not)
    return torch.cat((points[..., :2] - distances[..., :2], points[..., :2] + distances[..., 2:]), dim=-1)


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


def encode_deltas(anchors: Tensor, boxes: Tensor, means: Tensor | None = None, stds: Tensor | None = None) -> Tensor:
    """``(dx, dy, dw, dh)`` of ``boxes`` w.r.t. ``anchors`` (R-CNN parameterisation, Girshick 2015),
    normalised as ``(delta - means) / stds``."""
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
    bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    bx, by = boxes[..., 0] + 0.5 * bw, boxes[..., 1] + 0.5 * bh
    deltas = torch.stack(((bx - ax) / aw, (by - ay) / ah, torch.log(bw / aw), torch.log(bh / ah)), dim=-1)
    if means is not None:
        deltas = deltas - means
    if stds is not None:
        deltas = deltas / stds
    return deltas


def decode_deltas(anchors: Tensor, deltas: Tensor, means: Tensor | None = None, stds: Tensor | None = None,
                  clip: float = 4.135166556742356, clip_below: bool = False) -> Tensor:
    """Inverse of :func:`encode_deltas`; ``dw, dh`` are clamped at ``clip`` (default log(1000/16)), and with
    ``clip_below`` also at ``-clip`` (mmdetection's ``DeltaXYWHBBoxCoder``)."""
    if stds is not None:
        deltas = deltas * stds
    if means is not None:
        deltas = deltas + means
    aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
    dx, dy = deltas[..., 0], deltas[..., 1]
    low = -clip if clip_below else None
    dw, dh = deltas[..., 2].clamp(min=low, max=clip), deltas[..., 3].clamp(min=low, max=clip)
    cx, cy = dx * aw + ax, dy * ah + ay
    w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)
