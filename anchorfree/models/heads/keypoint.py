"""Pieces shared by the keypoint heads (CenterNet, CornerNet): Gaussian heatmap targets, the
penalty-reduced focal loss, and peak picking on heatmaps.

* **Gaussian radius** (CornerNet, Law & Deng 2018, Sec. 3.2): the largest radius ``r`` such that a
  pair of corners each moved by up to ``r`` still gives a box with IoU ≥ ``min_overlap`` with the
  object. Three cases (both corners inside, both outside, one of each) give three quadratics; the
  radius is the smallest of their roots. The original code (CornerNet, reused by CenterNet) solves
  them with ``(b + sqrt(b² - 4ac)) / 2`` — the larger root, without dividing by ``a`` — which gives
  larger radii than the formula states; mmdetection solves them as written
  (``(b - sqrt(b² - 4ac)) / 2a``) and compensates with ``min_overlap=0.3``. Both are
  :func:`gaussian_radius` variants (``original`` / ``corrected``).
* **Gaussian targets**: per object a 2-D Gaussian with ``σ = (2r + 1) / 6`` centred on an integer
  map location, truncated to the ``(2r + 1)²`` window, values below ``eps · max`` dropped; objects of
  one class overlap by element-wise max (CenterNet Sec. 3). Drawn for all objects at once.
* **Penalty-reduced focal loss** (CornerNet Eq. 1, CenterNet Eq. 1, α = 2, β = 4):
  ``-(1 - p)^α log p`` where the target is 1, ``-(1 - y)^β p^α log(1 - p)`` elsewhere.
* **Peaks**: a location is a peak when it equals the 3×3 max-pool of its map (CenterNet's "NMS");
  the top-K over all classes and locations are kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, Tensor

from ...errors import ConfigError
from ..layers import FloatConv2d

RADIUS_VARIANTS = ("corrected", "original")


def flat_objects(targets: list[dict[str, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """All objects of a batch: ``boxes [N, 4]``, ``labels [N]`` and ``image_index [N]`` (image order, then
    the order of each image's boxes — the order in which the references draw them)."""
    boxes = torch.cat([t["boxes"].to(device, torch.float32).reshape(-1, 4) for t in targets])
    labels = torch.cat([t["labels"].to(device, torch.long).reshape(-1) for t in targets])
    image_index = torch.cat([torch.full((len(t["labels"]),), i, dtype=torch.long, device=device)
                             for i, t in enumerate(targets)])
    return boxes, labels, image_index


def normalizer(count: Tensor, factor: float = 1.0) -> Tensor:
    """``max(1, count) · factor + eps``: the references' average factor (mmdetection adds float32 eps)."""
    return count.float().clamp(min=1) * factor + torch.finfo(torch.float32).eps


def branch(in_channels: int, channels: int, out_channels: int) -> nn.Sequential:
    """A prediction branch: 3×3 conv (bias) → ReLU → 1×1 conv (CenterNet, CornerNet). Each conv sits in a
    ``.conv`` attribute, as mmcv's ``ConvModule``, so that mmdetection checkpoints map key by key; the
    output conv computes in float32 under autocast (:class:`FloatConv2d`)."""
    return nn.Sequential(ConvAct(in_channels, channels, 3, act=True), ConvAct(channels, out_channels, 1, act=False))


class ConvAct(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, act: bool) -> None:
        super().__init__()
        conv = nn.Conv2d if act else FloatConv2d  # the branch's output conv computes in float32
        self.conv = conv(in_channels, out_channels, kernel, padding=kernel // 2)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


def gaussian_radius(heights: Tensor, widths: Tensor, min_overlap: float, variant: str = "corrected") -> Tensor:
    """Per object the Gaussian radius (float, before truncation to int) for boxes of ``heights`` × ``widths``
    (map pixels): the minimum over CornerNet's three cases. See the module docstring for the variants."""
    if variant not in RADIUS_VARIANTS:
        raise ConfigError(f"head.gaussian_radius must be one of {', '.join(RADIUS_VARIANTS)}, got '{variant}'")
    h, w, iou = heights, widths, min_overlap
    b1, c1 = h + w, w * h * (1 - iou) / (1 + iou)
    sq1 = (b1 ** 2 - 4 * c1).sqrt()
    b2, c2 = 2 * (h + w), (1 - iou) * w * h
    sq2 = (b2 ** 2 - 16 * c2).sqrt()
    a3, b3, c3 = 4 * iou, -2 * iou * (h + w), (iou - 1) * w * h
    sq3 = (b3 ** 2 - 4 * a3 * c3).sqrt()
    if variant == "corrected":
        r1, r2, r3 = (b1 - sq1) / 2, (b2 - sq2) / 8, (b3 + sq3) / (2 * a3)
    else:
        r1, r2, r3 = (b1 + sq1) / 2, (b2 + sq2) / 2, (b3 + sq3) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def integer_radius(radius: Tensor) -> Tensor:
    """``max(0, int(r))`` as the references truncate it."""
    return radius.clamp(min=0).floor().long()


def draw_gaussians(shape: tuple[int, int, int, int], image_index: Tensor, labels: Tensor, centers: Tensor,
                   radii: Tensor, device: torch.device | None = None) -> Tensor:
    """Heatmaps ``[B, C, H, W]`` with one truncated Gaussian per object, overlapping ones merged by max.

    Args:
        shape: ``(B, C, H, W)`` of the heatmaps.
        image_index, labels: ``[N]`` image and class of every object.
        centers: ``[N, 2]`` integer ``(x, y)`` map locations (inside the map).
        radii: ``[N]`` integer radii; the Gaussian has ``σ = (2r + 1) / 6`` and is cut to the
            ``(2r + 1)²`` window, values below ``eps · 1`` set to 0 (mmdetection's ``gaussian2D``).
    """
    num_images, num_classes, height, width = shape
    device = device or centers.device
    heat = torch.zeros(num_images * num_classes * height * width, device=device)
    if centers.numel() == 0:
        return heat.view(shape)
    rmax = int(radii.max())
    span = torch.arange(-rmax, rmax + 1, device=device, dtype=torch.float32)
    dy, dx = span[None, :, None], span[None, None, :]  # [1, K, 1], [1, 1, K]
    sigma = (2 * radii.double() + 1) / 6
    denom = (2 * sigma * sigma).float()[:, None, None]
    gauss = (-(dx * dx + dy * dy) / denom).exp()  # [N, K, K]
    gauss = torch.where(gauss < torch.finfo(torch.float32).eps, torch.zeros_like(gauss), gauss)
    r = radii[:, None, None]
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    xs = centers[:, 0, None, None] + dx.long()
    ys = centers[:, 1, None, None] + dy.long()
    inside &= (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    plane = (image_index * num_classes + labels)[:, None, None]
    flat = ((plane * height + ys) * width + xs)[inside]
    heat.scatter_reduce_(0, flat, gauss[inside], reduce="amax")
    return heat.view(shape)


def last_writer(flat_index: Tensor, size: int) -> Tensor:
    """Mask ``[N]`` of the entries that win when ``N`` values are written in order to ``flat_index``
    (the last write to a location wins, as the references' per-object loops do)."""
    order = torch.arange(flat_index.numel(), device=flat_index.device)
    winner = torch.full((size,), -1, dtype=torch.long, device=flat_index.device)
    winner.scatter_reduce_(0, flat_index, order, reduce="amax")
    return winner[flat_index] == order


def penalty_reduced_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0,
                               eps: float = 1e-12) -> Tensor:
    """Sum over all locations of CornerNet Eq. 1 (un-normalised). ``p = σ(logits)``; positives are the
    locations where ``target == 1``; ``eps`` inside the logs as mmdetection's ``GaussianFocalLoss``."""
    pred = logits.float().sigmoid()
    pos = target.eq(1)
    pos_loss = -(pred + eps).log() * (1 - pred).pow(alpha) * pos
    neg_loss = -(1 - pred + eps).log() * pred.pow(alpha) * (1 - target).pow(beta)
    return (pos_loss + neg_loss).sum()


def max_filter(x: Tensor, kernel: int = 3) -> Tensor:
    """``kernel × kernel`` max-pool with stride 1 (same size), written as a separable max over shifted
    views: the values of ``F.max_pool2d(x, kernel, 1, kernel // 2)``, but a few times faster on a CPU for
    an NCHW map of many classes (and independent of the memory layout)."""
    r = kernel // 2
    padded = F.pad(x, (r, r, r, r), value=float("-inf"))
    w, h = x.shape[-1], x.shape[-2]
    rows = padded[..., :, 0:w]
    for i in range(1, kernel):
        rows = torch.maximum(rows, padded[..., :, i:i + w])
    out = rows[..., 0:h, :]
    for i in range(1, kernel):
        out = torch.maximum(out, rows[..., i:i + h, :])
    return out


def local_maxima(heat: Tensor, kernel: int = 3) -> Tensor:
    """``heat`` where it equals its ``kernel × kernel`` max-pool, 0 elsewhere (CenterNet's peak extraction)."""
    if kernel % 2 != 1 or kernel < 1:
        raise ConfigError(f"head.peak_kernel must be an odd number >= 1, got {kernel}")
    return torch.where(max_filter(heat, kernel) == heat, heat, torch.zeros_like(heat))


def top_peaks(heat: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Top ``k`` over classes and locations of ``heat [B, C, H, W]``: scores, flat location index
    ``y * W + x``, class, ``ys`` and ``xs`` (floats), each ``[B, k]``.

    Two stages (the top ``k`` of each class, then the top ``k`` of those) select the same entries as one
    top-k over all ``C·H·W`` values, about twice as fast for 80 classes."""
    batch, num_classes, height, width = heat.shape
    k = min(k, heat[0].numel())
    per_class, where = heat.reshape(batch, num_classes, -1).topk(min(k, height * width), dim=2)
    scores, index = per_class.reshape(batch, -1).topk(k, dim=1)
    classes = torch.div(index, per_class.shape[2], rounding_mode="floor")
    location = where.reshape(batch, -1).gather(1, index)
    ys = torch.div(location, width, rounding_mode="floor").float()
    xs = (location % width).float()
    return scores, location, classes, ys, xs


def gather_locations(maps: Tensor, location: Tensor) -> Tensor:
    """Values of ``maps [B, K, H, W]`` at flat locations ``[B, N]`` → ``[B, N, K]``."""
    flat = maps.flatten(2)  # [B, K, H*W]
    return flat.gather(2, location[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def check_overlap(min_overlap: float) -> None:
    if not 0 < min_overlap < 1:
        raise ConfigError(f"head.gaussian_min_overlap must be in (0, 1), got {min_overlap}")


__all__ = ["flat_objects", "normalizer", "branch", "ConvAct", "gaussian_radius", "integer_radius", "draw_gaussians", "last_writer", "penalty_reduced_focal_loss",
           "max_filter", "local_maxima", "top_peaks", "gather_locations", "check_overlap"]
