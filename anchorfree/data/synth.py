"""A seeded synthetic shapes dataset in COCO format, for tests, demos and smoke training.

Layout written by :func:`generate_synthetic_dataset`::

    OUT/data.yaml                 # dataset spec (relative paths), see anchorfree.data.spec
    OUT/train/images/000000.jpg   # ...
    OUT/train/annotations.json
    OUT/val/images/000000.jpg     # ...
    OUT/val/annotations.json

Every object is a solid shape in a random colour chosen to contrast with the local background;
boxes are the full shape's bounds (later objects may partly occlude earlier ones). About 3% of
the images are negatives (listed in ``images`` with no annotations).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from PIL import Image, ImageDraw

__all__ = ["SYNTH_CLASSES", "SYNTH_CATEGORY_IDS", "generate_synthetic_dataset"]

SYNTH_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# Deliberately non-contiguous so that the category id -> label mapping is exercised.
SYNTH_CATEGORY_IDS: tuple[int, ...] = (1, 2, 3, 5, 7)

NEGATIVE_FRACTION = 0.03
MIN_OBJECT_SIZE = 6  # pixels, shortest side of the smallest objects
MAX_OBJECT_FRACTION = 0.9  # of the image's short side
MAX_OCCLUSION = 0.5  # a new object may cover at most this fraction of an earlier box
JPEG_QUALITY = 92

_SPLIT_STREAMS = {"train": 0, "val": 1}  # independent random streams per split


Render = Callable[[np.random.Generator, int, int, int], tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]]


@dataclass(frozen=True)
class SynthStyle:
    """What a generator draws: ``render(rng, h, w, num_objects)`` returns ``uint8 [h, w, 3]`` pixels and
    ``[(label, (x, y, w, h)), ...]``; the classes, their COCO ids and supercategories name the labels."""

    classes: tuple[str, ...]
    category_ids: tuple[int, ...]
    supercategories: tuple[str, ...]
    description: str
    render: Render


def generate_synthetic_dataset(
    out: str | Path,
    num_train: int = 600,
    num_val: int = 100,
    image_size: tuple[int, int] = (256, 320),
    seed: int = 0,
    max_objects: int = 8,
) -> Path:
    """Write a reproducible synthetic COCO dataset to ``out`` and return ``out``.

    Args:
        out: output folder (created; existing files with the same names are overwritten).
        num_train / num_val: number of images per split.
        image_size: ``(lo, hi)`` range of both the height and the width, drawn independently.
        seed: the same seed gives byte-identical JSON and JPEG files.
        max_objects: upper bound of objects per (non-negative) image.
    """
    style = SynthStyle(SYNTH_CLASSES, SYNTH_CATEGORY_IDS, ("shape",) * len(SYNTH_CLASSES),
                       "anchorfree synthetic shapes", _render_image)
    return write_synthetic_dataset(out, num_train, num_val, image_size, seed, max_objects, style)


def write_synthetic_dataset(out: str | Path, num_train: int, num_val: int, image_size: tuple[int, int], seed: int,
                            max_objects: int, style: SynthStyle) -> Path:
    """The layout of the module docstring for the images ``style`` renders (both generators write through it)."""
    lo, hi = int(image_size[0]), int(image_size[1])
    if not 2 * MIN_OBJECT_SIZE <= lo <= hi:
        raise ValueError(f"image_size must be (lo, hi) with {2 * MIN_OBJECT_SIZE} <= lo <= hi, got {image_size}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    out = Path(out)
    for split, count in (("train", num_train), ("val", num_val)):
        _write_split(out / split, count, (lo, hi), seed, _SPLIT_STREAMS[split], max_objects, style)
    spec = {
        "train": {"annotations": "train/annotations.json", "images": "train/images"},
        "val": {"annotations": "val/annotations.json", "images": "val/images"},
        "names": list(style.classes),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def _write_split(folder: Path, count: int, size_range: tuple[int, int], seed: int, stream: int,
                 max_objects: int, style: SynthStyle) -> None:
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    split_rng = np.random.default_rng([seed, stream])
    num_negatives = max(1, round(NEGATIVE_FRACTION * count)) if count >= 2 else 0
    negatives = set(split_rng.choice(count, size=num_negatives, replace=False).tolist())

    images, annotations = [], []
    for index in range(count):
        rng = np.random.default_rng([seed, stream, index])
        h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        num_objects = 0 if index in negatives else int(rng.integers(1, max_objects + 1))
        pixels, objects = style.render(rng, h, w, num_objects)
        file_name = f"{index:06d}.jpg"
        Image.fromarray(pixels).save(image_dir / file_name, quality=JPEG_QUALITY)
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for label, (x, y, bw, bh) in objects:
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": style.category_ids[label],
                "bbox": [float(x), float(y), float(bw), float(bh)],
                "area": float(bw * bh),
                "iscrowd": 0,
            })
    categories = [{"id": cid, "name": name, "supercategory": sup}
                  for cid, name, sup in zip(style.category_ids, style.classes, style.supercategories)]
    coco = {
        "info": {"description": style.description, "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    (folder / "annotations.json").write_text(json.dumps(coco, indent=1))


# --------------------------------------------------------------------------- rendering


def _render_image(rng: np.random.Generator, h: int, w: int,
                  num_objects: int) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """Return ``uint8 [h, w, 3]`` pixels and ``[(label, (x, y, w, h)), ...]`` of the drawn objects."""
    background = _background(rng, h, w)
    canvas = Image.fromarray(background)
    draw = ImageDraw.Draw(canvas)
    boxes = _place_boxes(rng, h, w, num_objects)
    objects = []
    for x, y, bw, bh in boxes:
        label = int(rng.integers(len(SYNTH_CLASSES)))
        color = _contrasting_color(rng, background[y:y + bh, x:x + bw].reshape(-1, 3).mean(0))
        _draw_shape(draw, SYNTH_CLASSES[label], x, y, bw, bh, color)
        objects.append((label, (x, y, bw, bh)))
    return np.asarray(canvas), objects


def _place_boxes(rng: np.random.Generator, h: int, w: int, n: int) -> list[tuple[int, int, int, int]]:
    """Sample ``n`` boxes ``(x, y, w, h)`` with log-uniform sizes, largest first, limited occlusion."""
    largest = MAX_OBJECT_FRACTION * min(h, w)
    sizes = np.exp(rng.uniform(math.log(MIN_OBJECT_SIZE), math.log(largest), size=n))
    boxes: list[tuple[int, int, int, int]] = []
    for size in sorted(sizes, reverse=True):
        aspect = math.exp(rng.uniform(-0.35, 0.35))
        bw = int(np.clip(round(size * aspect), MIN_OBJECT_SIZE, w))
        bh = int(np.clip(round(size / aspect), MIN_OBJECT_SIZE, h))
        for _ in range(10):  # a few tries to avoid hiding earlier objects
            x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            if all(_covered_fraction(b, (x, y, bw, bh)) <= MAX_OCCLUSION for b in boxes):
                boxes.append((x, y, bw, bh))
                break
    return boxes


def _covered_fraction(old: tuple[int, int, int, int], new: tuple[int, int, int, int]) -> float:
    ix = min(old[0] + old[2], new[0] + new[2]) - max(old[0], new[0])
    iy = min(old[1] + old[3], new[1] + new[3]) - max(old[1], new[1])
    return max(ix, 0) * max(iy, 0) / (old[2] * old[3])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A muted textured background: gradient, smooth noise, stripes or checkerboard."""
    base = rng.uniform(60, 196, size=3).astype(np.float32)
    amplitude = float(rng.uniform(15, 45))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(4))
    if kind == 0:  # linear gradient along a random direction
        angle = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(h, w)
        pattern = t[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    elif kind == 1:  # smooth colour noise: coarse noise upsampled bilinearly
        cell = int(rng.integers(4, 24))
        coarse = rng.uniform(-1, 1, size=(h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        pattern = _upsample(coarse, h, w)
    elif kind == 2:  # stripes along a random direction
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40)
        t = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
        pattern = np.sin(t)[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    else:  # checkerboard
        cell = int(rng.integers(6, 40))
        parity = ((yy // cell + xx // cell) % 2) * 2 - 1
        pattern = parity[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    noise = rng.standard_normal(size=(h, w, 1), dtype=np.float32) * 4.0
    return np.clip(base + amplitude * pattern + noise, 0, 255).astype(np.uint8)


def _upsample(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a float ``[h', w', 3]`` array to ``[h, w, 3]``."""
    channels = [np.asarray(Image.fromarray(coarse[..., c]).resize((w, h), Image.Resampling.BILINEAR))
                for c in range(coarse.shape[-1])]
    return np.stack(channels, axis=-1)


def _contrasting_color(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A random saturated colour far (in RGB) from the ``background`` mean colour."""
    for _ in range(20):
        color = rng.integers(0, 256, size=3)
        if np.linalg.norm(color - background) > 140:
            return tuple(int(c) for c in color)
    return tuple(int(c) for c in np.where(background > 127, 0, 255))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, w: int, h: int,
                color: tuple[int, int, int]) -> None:
    """Fill ``shape`` so that it touches all four sides of the pixel box ``(x, y, w, h)``."""
    x1, y1 = x + w - 1, y + h - 1  # PIL coordinates are inclusive
    if shape == "circle":
        draw.ellipse((x, y, x1, y1), fill=color)
    elif shape == "square":
        draw.rectangle((x, y, x1, y1), fill=color)
    else:
        unit = _UNIT_POLYGONS[shape]
        draw.polygon([(x + u * (w - 1), y + v * (h - 1)) for u, v in unit], fill=color)


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    verts = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / points
        verts.append((r * math.cos(a), r * math.sin(a)))
    return _normalise(verts)


def _normalise(verts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Scale polygon vertices to span exactly ``[0, 1] x [0, 1]``."""
    us, vs = [u for u, _ in verts], [v for _, v in verts]
    return [((u - min(us)) / (max(us) - min(us)), (v - min(vs)) / (max(vs) - min(vs))) for u, v in verts]


_T = 1 / 3  # arm thickness of the cross
_UNIT_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": [(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)],
    "star": _star(),
    "cross": [(_T, 0), (1 - _T, 0), (1 - _T, _T), (1, _T), (1, 1 - _T), (1 - _T, 1 - _T),
              (1 - _T, 1), (_T, 1), (_T, 1 - _T), (0, 1 - _T), (0, _T), (_T, _T)],
}
