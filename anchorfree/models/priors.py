"""Prior locations per FPN level: points (FCOS) and, built on them, anchors (RetinaNet, ATSS)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Priors:
    """Priors of all levels concatenated in the order the head's outputs are flattened.

    ``points [N, 2]`` prior centers in input pixels, ``strides [N]`` the stride of each prior's
    level, ``level_index [N]`` its level, ``num_per_level`` the count on each level, and for
    anchor-based heads ``anchors [N, 4]`` (``xyxy``, one row per anchor).
    """

    points: Tensor
    strides: Tensor
    level_index: Tensor
    num_per_level: list[int]
    anchors: Tensor | None = None


def grid_priors(shapes: list[tuple[int, int]], strides: list[int], offset: float,
                device: torch.device, dtype: torch.dtype = torch.float32) -> Priors:
    """Centers ``((j + offset) * s, (i + offset) * s)`` of every cell, row-major like a flattened map."""
    points, point_strides, levels, counts = [], [], [], []
    for level, ((h, w), s) in enumerate(zip(shapes, strides)):
        ys = (torch.arange(h, device=device, dtype=dtype) + offset) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + offset) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=-1))
        point_strides.append(torch.full((h * w,), float(s), device=device, dtype=dtype))
        levels.append(torch.full((h * w,), level, device=device, dtype=torch.long))
        counts.append(h * w)
    return Priors(torch.cat(points), torch.cat(point_strides), torch.cat(levels), counts)


def anchor_shapes(base_size: float, scales: list[float], ratios: list[float], round_half: bool = False) -> Tensor:
    """``[A, 4]`` anchors centred at 0: for every ratio ``r = h / w`` (outer) and scale ``s``
    (inner), width ``base * s / sqrt(r)`` and height ``base * s * sqrt(r)``.

    ``round_half`` rounds the half-sizes as torchvision's ``AnchorGenerator`` does.
    """
    scales_t = torch.tensor(scales, dtype=torch.float32)
    ratios_t = torch.tensor(ratios, dtype=torch.float32)
    h_ratios = ratios_t.sqrt()
    w_ratios = 1 / h_ratios
    ws = (base_size * w_ratios[:, None] * scales_t[None, :]).reshape(-1)
    hs = (base_size * h_ratios[:, None] * scales_t[None, :]).reshape(-1)
    shapes = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
    return shapes.round() if round_half else shapes


def anchors_from_priors(priors: Priors, shapes_per_level: list[Tensor]) -> Tensor:
    """Place each level's ``[A, 4]`` anchor shapes on that level's points → ``[N * A, 4]``,
    ordered (location, anchor) like a head output flattened from ``[B, A*K, H, W]``."""
    out = []
    for points, shapes in zip(priors.points.split(priors.num_per_level), shapes_per_level):
        centers = points.repeat(1, 2)[:, None, :]  # [N, 1, 4]
        out.append((centers + shapes.to(points)[None]).reshape(-1, 4))
    return torch.cat(out)


def repeat_priors(priors: Priors, num_anchors: int) -> Priors:
    """Priors with every location repeated ``num_anchors`` times (one entry per anchor)."""
    if num_anchors == 1:
        return priors
    rep = lambda t: t.repeat_interleave(num_anchors, dim=0)  # noqa: E731
    return Priors(rep(priors.points), rep(priors.strides), rep(priors.level_index),
                  [n * num_anchors for n in priors.num_per_level])
