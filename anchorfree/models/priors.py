"""Prior locations per FPN level: points (FCOS) and, built on them, anchors (RetinaNet, ATSS)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Priors:
    """Priors of all levels concatenated in the order the head's outputs are flattened.

    ``points [N, 2]`` prior centers in input pixels, ``strides [N]`` the stride of each prior's
    level, ``level_index [N]`` its level, ``num_per_level`` the count on each level.
    """

    points: Tensor
    strides: Tensor
    level_index: Tensor
    num_per_level: list[int]


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
