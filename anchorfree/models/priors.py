"""Prior locations per FPN level: points (FCOS) and, built on them, anchors (RetinaNet, ATSS)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import DenseHeadConfig
from ..errors import ConfigError


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


def grid_spacing(shapes: list[tuple[int, int]], strides: list[int], mode: str = "nominal") -> list[tuple[int, int]]:
    """Per level the ``(y, x)`` distance between neighbouring priors.

    ``nominal``: the level's stride. ``padded_input``: padded input size // map size per axis, as
    torchvision's ``AnchorGenerator`` does; the padded input size is the first map's size times its
    stride (the batch is padded to a multiple of it). Both agree when the input is a multiple of the
    largest stride.
    """
    if mode == "nominal":
        return [(s, s) for s in strides]
    if mode != "padded_input":
        raise ConfigError(f"head.prior_stride must be nominal or padded_input, got '{mode}'")
    height, width = shapes[0][0] * strides[0], shapes[0][1] * strides[0]
    return [(height // h, width // w) for h, w in shapes]


def grid_priors(shapes: list[tuple[int, int]], strides: list[int], offset: float,
                device: torch.device, dtype: torch.dtype = torch.float32, spacing: str = "nominal") -> Priors:
    """Centers ``((j + offset) * sx, (i + offset) * sy)`` of every cell, row-major like a flattened map,
    with ``(sy, sx)`` from :func:`grid_spacing` (the level's stride unless ``spacing='padded_input'``).
    ``strides`` stays the nominal stride of each prior's level (it scales regression targets)."""
    points, point_strides, levels, counts = [], [], [], []
    for level, ((h, w), s, (sy, sx)) in enumerate(zip(shapes, strides, grid_spacing(shapes, strides, spacing))):
        ys = (torch.arange(h, device=device, dtype=dtype) + offset) * sy
        xs = (torch.arange(w, device=device, dtype=dtype) + offset) * sx
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


def level_anchor_shapes(cfg: DenseHeadConfig) -> list[Tensor]:
    """Per level the ``[A, 4]`` anchors centred at 0, ordered ratio-major then scale.

    Sizes are ``octave_base_scale * stride * 2**(i / scales_per_octave)`` (RetinaNet paper,
    mmdetection; ATSS/GFL: one ``8 * stride`` square) or the explicit ``anchor_sizes[level]``
    (torchvision); ``round_anchors`` rounds half-sizes as torchvision does.
    """
    if cfg.anchor_sizes:
        if len(cfg.anchor_sizes) != len(cfg.strides):
            raise ConfigError("head.anchor_sizes needs one list of sizes per stride in head.strides")
        shapes = [anchor_shapes(1.0, list(sizes), cfg.anchor_ratios, cfg.round_anchors) for sizes in cfg.anchor_sizes]
    else:
        scales = [cfg.octave_base_scale * 2 ** (i / cfg.scales_per_octave) for i in range(cfg.scales_per_octave)]
        shapes = [anchor_shapes(float(s), scales, cfg.anchor_ratios, cfg.round_anchors) for s in cfg.strides]
    if len({len(s) for s in shapes}) != 1 or len(shapes[0]) == 0:
        raise ConfigError("every level needs the same, non-zero number of anchors (head.anchor_sizes)")
    return shapes


def anchor_priors(points: Priors, shapes_per_level: list[Tensor]) -> Priors:
    """Grid points → one prior per anchor (ordered location, then anchor) with ``anchors [N, 4]``;
    every anchor is centred on its point, so ``points`` are the anchor centers."""
    priors = repeat_priors(points, len(shapes_per_level[0]))
    priors.anchors = anchors_from_priors(points, shapes_per_level)
    return priors
