"""Masks of the photo-like synthetic data: shape outlines (polygons, ellipses, rounded rectangles) drawn
supersampled into alpha masks, mask bounds and crops, erosion and cast shadows. Pure NumPy / PIL geometry."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from anchorfree.data.synth import _UNIT_POLYGONS, _normalise

SUPERSAMPLE = 4  # masks are drawn this much larger, then box-downsampled (anti-aliasing)
SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")  # the photo set's shape classes


def mask_bounds(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns spanned by the pixels of ``alpha`` > 0.5 (``None`` if there are none)."""
    inside = alpha > 0.5
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def crop_to_mask(alpha: np.ndarray) -> np.ndarray | None:
    """``alpha`` cut to the bounds of its pixels > 0.5 (``None`` if there are none)."""
    cut = mask_bounds(alpha)
    return None if cut is None else np.ascontiguousarray(alpha[cut])


def shape_alpha(rng: np.random.Generator, kind: str, size: float) -> np.ndarray | None:
    """The anti-aliased mask (float32 in [0, 1], cut to its alpha > 0.5 bounds) of a shape or clutter kind,
    of nominal ``size`` px, stretched and rotated at random (clutter in any direction, shapes slightly)."""
    aspect = math.exp(rng.uniform(-0.3, 0.3))
    sw, sh = size * aspect, size / aspect
    shape_class = kind in SHAPE_KINDS
    angle = rng.uniform(-0.22, 0.22) if shape_class else rng.uniform(0, 2 * math.pi)
    outer, holes = unit_outlines(rng, kind)
    cos, sin = math.cos(angle), math.sin(angle)

    def transform(poly: np.ndarray) -> np.ndarray:
        p = (poly - 0.5) * (sw, sh)
        return p @ np.array([[cos, sin], [-sin, cos]], dtype=np.float64)

    outer_t = transform(outer)
    holes_t = [transform(hp) for hp in holes]
    lo = outer_t.min(axis=0) - 1
    pw, ph = (int(v) for v in np.ceil(outer_t.max(axis=0) - lo + 1))
    mask = Image.new("L", (pw * SUPERSAMPLE, ph * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon([tuple(v) for v in ((outer_t - lo) * SUPERSAMPLE).tolist()], fill=255)
    for hole in holes_t:
        draw.polygon([tuple(v) for v in ((hole - lo) * SUPERSAMPLE).tolist()], fill=0)
    alpha = np.asarray(mask.resize((pw, ph), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return crop_to_mask(alpha)


def unit_outlines(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outline and holes of ``kind`` in the unit square (the outline spans ``[0, 1]^2``)."""
    if kind in ("circle", "crescent"):
        outer = ellipse(0.5, 0.5, 0.5, 0.5)
        if kind == "circle":
            return outer, []
        r = rng.uniform(0.4, 0.48)  # the bite: an offset circle
        return outer, [ellipse(0.5 + rng.uniform(0.22, 0.35), 0.5, r, r)]
    if kind == "square":
        return np.array([(0, 0), (1, 0), (1, 1), (0, 1)], dtype=np.float64), []
    if kind in _UNIT_POLYGONS:
        return np.array(_UNIT_POLYGONS[kind], dtype=np.float64), []
    if kind == "blob":  # lumpy, concave: far from a circle, a triangle or a star
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        r = np.ones_like(t)
        for k, (a_lo, a_hi) in zip((2, 3, 4, 5), ((0.05, 0.15), (0.12, 0.2), (0.1, 0.18), (0.0, 0.08))):
            r += rng.uniform(a_lo, a_hi) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
        return np.array(_normalise(list(zip(r * np.cos(t), r * np.sin(t)))), dtype=np.float64), []
    if kind == "frame":  # a rounded rectangle with a rounded hole
        corner = rng.uniform(0.15, 0.3)
        inset = rng.uniform(0.18, 0.3)
        return (rounded_rect(0, 0, 1, 1, corner),
                [rounded_rect(inset, inset, 1 - inset, 1 - inset, max(corner - inset, 0.05))])
    raise ValueError(f"unknown kind {kind!r}")


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float, n: int = 10) -> np.ndarray:
    t = np.linspace(0, math.pi / 2, n)
    arcs = []
    for cx, cy, start in ((x1 - r, y1 - r, 0.0), (x0 + r, y1 - r, math.pi / 2), (x0 + r, y0 + r, math.pi),
                          (x1 - r, y0 + r, 1.5 * math.pi)):
        arcs.append(np.stack([cx + r * np.cos(start + t), cy + r * np.sin(start + t)], axis=1))
    return np.concatenate(arcs)


def erode(alpha: np.ndarray, steps: int) -> np.ndarray:
    """Grey-level erosion of ``alpha`` by a 3x3 cross, ``steps`` times (outside the array counts as 0)."""
    for _ in range(steps):
        out = alpha.copy()
        np.minimum(out[1:], alpha[:-1], out=out[1:])
        np.minimum(out[:-1], alpha[1:], out=out[:-1])
        np.minimum(out[:, 1:], alpha[:, :-1], out=out[:, 1:])
        np.minimum(out[:, :-1], alpha[:, 1:], out=out[:, :-1])
        out[0], out[-1], out[:, 0], out[:, -1] = 0, 0, 0, 0
        alpha = out
    return alpha


def cast_shadow(rng: np.random.Generator, canvas: np.ndarray, alpha: np.ndarray, x: int, y: int,
                 light: float) -> None:
    """Darken ``canvas`` (in place) under a blurred copy of ``alpha`` offset away from the light."""
    h, w = alpha.shape
    size = math.sqrt(h * w)
    offset = 0.5 + rng.uniform(0.03, 0.09) * size
    dx, dy = round(-offset * math.cos(light)), round(-offset * math.sin(light))
    radius = 0.6 + rng.uniform(0.02, 0.05) * size
    pad = math.ceil(offset + 2 * radius) + 1
    layer = np.zeros((h + 2 * pad, w + 2 * pad), dtype=np.uint8)
    layer[pad + dy:pad + dy + h, pad + dx:pad + dx + w] = np.rint(alpha * 255).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(layer).filter(ImageFilter.GaussianBlur(radius)))
    ch, cw = canvas.shape[:2]
    y0, x0 = y - pad, x - pad
    sy, sx = max(0, -y0), max(0, -x0)
    ey, ex = min(blurred.shape[0], ch - y0), min(blurred.shape[1], cw - x0)
    shade = blurred[sy:ey, sx:ex].astype(np.float32)
    shade *= np.float32(-rng.uniform(0.25, 0.5) / 255.0)
    shade += np.float32(1)
    canvas[y0 + sy:y0 + ey, x0 + sx:x0 + ex] *= shade[..., None]
