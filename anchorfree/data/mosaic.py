"""Mosaic and random-affine training augmentation (Bochkovskiy et al. 2020, YOLOv4; as YOLOv5/YOLOv8).

A mosaic sample of output size ``S`` (square, ``S = model.input.min_size``) is made in five steps,
all with ``torchvision.transforms.v2`` on ``tv_tensors`` so that boxes follow the pixels:

1. the sample and 3 images drawn uniformly from the dataset are each resized, keeping their
   ratio, so that their long side is ``S`` (:class:`~anchorfree.data.transforms.ResizeKeepRatio`);
2. they are placed top-left, top-right, bottom-left and bottom-right of a center ``(cx, cy)``
   drawn uniformly in ``[S/2, 3S/2]`` on a ``2S x 2S`` canvas filled with gray 114, each touching
   the center; the part of an image outside the canvas is cut off (``v2.functional.crop``), which
   clips its boxes to its tile;
3. a random affine about the canvas center (``v2.RandomAffine``: zoom ``scale``, shift up to
   ``translate`` of ``S``, rotation, shear) and the central ``S x S`` crop (``v2.CenterCrop``) map
   the canvas to the output; with zoom 1 and no shift the output is the canvas window
   ``[S/2, 3S/2] x [S/2, 3S/2]``;
4. the color jitter and horizontal flip of the plain pipeline;
5. box filtering: a box keeping less than ``min_area_ratio`` of its area inside the output (the
   area of the transformed, not yet clipped box; YOLOv5's ``box_candidates`` test) is dropped with
   its label, then ``v2.SanitizeBoundingBoxes`` drops boxes with a side under
   :data:`~anchorfree.data.transforms.MIN_BOX_SIZE` pixels.

Without rotation and shear (``degrees = shear = 0``, the default) steps 1–3 are done in one: the
affine is a zoom ``z`` and a shift ``t``, under which canvas point ``p`` lands at output point
``z p + S/2 - z S + t``, so each tile's image is resized once, by its tile scale times ``z``, and
pasted at its place in the ``S x S`` output, its boxes mapped alike and clipped to the tile's part
inside the canvas and the output (:meth:`MosaicDetection.compose`; ~5x cheaper, no resampling of a
canvas). With rotation or shear, the canvas path above runs.

Output size rule: a mosaic is always ``min_size x min_size``. When ``min_size != max_size`` the
plain pipeline (and evaluation) resizes the short side to ``min_size``, so the tiles, whose long
side is ``min_size``, show objects smaller than evaluation does by the images' aspect ratio
(before the random zoom); ``multiscale_min_sizes`` only applies to the samples that are not
mosaics. The collate pads mixed sizes as usual.

Samples that are not mosaics go through the dataset's own (plain) transforms and then, with
``affine=True``, through the same random affine on their own canvas (the output keeps its size)
and the same box filtering.

Targets keep :class:`~anchorfree.data.CocoDetection`'s keys. A mosaic is a new image: its
``image_id`` is that of the sample it was drawn for, ``orig_size`` is ``(S, S)`` and ``scale`` is
``(1, 1)`` (its boxes are in its own pixels). An affine-only sample keeps the plain pipeline's
``orig_size`` and resize ``scale``; the affine is not part of them. Both fields only matter for
mapping detections back at evaluation, where these augmentations never run.

Every random draw (mosaic or not, the 3 other images, the center, the affine, jitter, flip) uses
torch's generator, so the trainer's per-epoch seeding of the main process and of the DataLoader
workers makes an epoch, and therefore ``--resume``, reproducible.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchvision
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_area
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from anchorfree.data.coco import CocoDetection
from anchorfree.data.transforms import DetectionTransform, ResizeKeepRatio, keep_ratio_size, photometric_and_flip

__all__ = ["DropCroppedBoxes", "MosaicDetection", "mosaic_enabled", "random_affine"]

FILL = 114  # gray of the canvas and of the pixels an affine brings in (YOLOv5)


def mosaic_enabled(epoch: int, epochs: int, close_mosaic: int) -> bool:
    """Whether mosaic/affine apply in 0-based ``epoch`` of ``epochs``: all but the last ``close_mosaic``."""
    return epoch < epochs - close_mosaic


class DropCroppedBoxes(v2.Transform):
    """Clip boxes to the image and drop those keeping less than ``min_area_ratio`` of their area.

    The boxes must reach it unclipped (``v2.SetClampingMode(None)`` before the geometric steps).
    A dropped box is collapsed to zero size, so that the ``v2.SanitizeBoundingBoxes`` that ends
    every :class:`~anchorfree.data.transforms.DetectionTransform` removes it with its label.
    The output boxes clamp again (``clamping_mode="soft"``, the v2 default).
    """

    _transformed_types = (tv_tensors.BoundingBoxes,)

    def __init__(self, min_area_ratio: float) -> None:
        super().__init__()
        self.min_area_ratio = float(min_area_ratio)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        boxes = inpt.as_subclass(Tensor)
        clipped = F.clamp_bounding_boxes(boxes, format=inpt.format, canvas_size=inpt.canvas_size,
                                         clamping_mode="soft")
        lost = box_area(clipped) < self.min_area_ratio * box_area(boxes)
        clipped[lost, 2:] = clipped[lost, :2]
        return tv_tensors.wrap(clipped, like=inpt, clamping_mode="soft")


def random_affine(
    scale: Sequence[float] = (0.5, 1.5),
    translate: float = 0.1,
    degrees: float = 0.0,
    shear: float = 0.0,
    min_area_ratio: float = 0.1,
    crop: int | None = None,
) -> list[v2.Transform]:
    """v2 steps of a random affine about the image center, then optionally a central ``crop``.

    ``translate`` is the largest shift as a fraction of the input image (``v2.RandomAffine``);
    ``shear`` applies along both axes. Boxes are transformed unclipped and filtered by
    :class:`DropCroppedBoxes` after the crop. Needs torchvision >= 0.23 (boxes' ``clamping_mode``).
    """
    if not hasattr(v2, "SetClampingMode"):
        raise RuntimeError(f"mosaic and random-affine augmentation need torchvision >= 0.23 (unclipped boxes "
                           f"through v2 transforms), found {torchvision.__version__}; upgrade torchvision")
    steps: list[v2.Transform] = [
        v2.SetClampingMode(None),
        v2.RandomAffine(degrees=degrees, translate=(translate, translate) if translate > 0 else None,
                        scale=tuple(scale), shear=(-shear, shear, -shear, shear) if shear > 0 else None,
                        interpolation=v2.InterpolationMode.BILINEAR, fill=FILL),
    ]
    if crop is not None:
        steps.append(v2.CenterCrop(crop))
    steps.append(DropCroppedBoxes(min_area_ratio))
    return steps


def _clip(boxes: Tensor, rect: Sequence[float]) -> Tensor:
    """``boxes`` (xyxy) clipped to ``rect = (x1, y1, x2, y2)``."""
    lo, hi = torch.tensor(rect[:2] * 2, dtype=boxes.dtype), torch.tensor(rect[2:] * 2, dtype=boxes.dtype)
    return torch.minimum(torch.maximum(boxes, lo), hi)


def _chance(prob: float) -> bool:
    """A Bernoulli draw from torch's generator; ``prob`` 0 or 1 draws nothing."""
    return prob >= 1 or (prob > 0 and float(torch.rand(())) < prob)


class MosaicDetection(Dataset):
    """Training samples of ``dataset`` with mosaic (probability ``mosaic_prob``) and random affine.

    See the module docstring for the recipe. With :attr:`enabled` false (the trainer's
    ``close_mosaic`` epochs), or with ``mosaic_prob=0`` and ``affine=False``, items are exactly
    ``dataset[index]``. Picklable for DataLoader workers.

    Args:
        dataset: the training set; its ``transforms`` are the plain pipeline.
        size: mosaic output side ``S``.
        mosaic_prob: probability that a sample is a mosaic.
        affine: random affine on the samples that are not mosaics (mosaics always get one).
        scale: range of the random zoom.
        translate: largest shift, as a fraction of the output size.
        degrees: largest rotation.
        shear: largest shear (degrees), along each axis.
        min_area_ratio: boxes keeping less of their area inside the output are dropped.
        hflip_prob: horizontal flip probability of mosaics.
        color_jitter: color jitter strength of mosaics (as in :func:`~anchorfree.data.build_transforms`).
        hsv: HSV gains of mosaics (:class:`~anchorfree.data.transforms.RandomHSV`).
    """

    def __init__(
        self,
        dataset: CocoDetection,
        size: int,
        mosaic_prob: float = 1.0,
        affine: bool = False,
        scale: Sequence[float] = (0.5, 1.5),
        translate: float = 0.1,
        degrees: float = 0.0,
        shear: float = 0.0,
        min_area_ratio: float = 0.1,
        hflip_prob: float = 0.5,
        color_jitter: float = 0.0,
        hsv: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> None:
        if not 0 <= mosaic_prob <= 1:
            raise ValueError(f"mosaic_prob must be in [0, 1], got {mosaic_prob}")
        self.dataset, self.size, self.mosaic_prob = dataset, int(size), float(mosaic_prob)
        self.enabled = True
        self.resize = ResizeKeepRatio(self.size, self.size)
        geometry = {"scale": scale, "degrees": degrees, "shear": shear, "min_area_ratio": min_area_ratio}
        # the canvas is 2S wide, so a shift of `translate` * S is `translate / 2` of it
        self.mosaic_transform = DetectionTransform([*random_affine(translate=translate / 2, crop=self.size, **geometry),
                                                    *photometric_and_flip(hflip_prob, color_jitter, hsv)])
        self.affine_transform = DetectionTransform(random_affine(translate=translate, **geometry)) if affine else None
        # without rotation or shear the affine is a zoom and a shift: each tile is resized once, straight
        # to its place in the output (no 2S canvas, no resampling of it); the same geometry, ~10x cheaper
        self.direct = degrees == 0 and shear == 0
        self.scale, self.translate, self.min_area_ratio = tuple(float(v) for v in scale), float(translate), min_area_ratio
        self.finish_transform = DetectionTransform(photometric_and_flip(hflip_prob, color_jitter, hsv))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        if self.enabled and _chance(self.mosaic_prob):
            others = torch.randint(len(self.dataset), (3,)).tolist()
            cx, cy = torch.randint(self.size // 2, self.size + self.size // 2 + 1, (2,)).tolist()
            return self.load_mosaic([index, *others], (cx, cy))
        image, target = self.dataset[index]
        if self.enabled and self.affine_transform is not None:
            image, target["boxes"], target["labels"], _ = self.affine_transform(image, target["boxes"],
                                                                                target["labels"])
        return image, target

    def load_mosaic(self, indices: Sequence[int], center: tuple[int, int]) -> tuple[Tensor, dict[str, Any]]:
        """The mosaic of 4 images (top-left, top-right, bottom-left, bottom-right) around canvas
        point ``center = (cx, cy)``, through the random affine, jitter, flip and box filtering."""
        if len(indices) != 4:
            raise ValueError(f"a mosaic needs 4 images, got {len(indices)}")
        if self.direct:
            zoom = float(torch.empty(()).uniform_(*self.scale))
            shift = ((torch.rand(2) * 2 - 1) * self.translate * self.size).tolist()
            image, boxes, labels = self.compose(indices, center, zoom, shift)
            image, out_boxes, out_labels, _ = self.finish_transform(image, boxes, labels)
            return image, self._mosaic_target(indices, out_boxes, out_labels)
        s, (cx, cy) = self.size, center
        canvas = torch.full((3, 2 * s, 2 * s), FILL, dtype=torch.uint8)
        boxes, labels = [], []
        for tile, index in enumerate(indices):
            image, tile_boxes, tile_labels, _ = self.dataset.load_sample(index)
            image, tile_boxes = self.resize(
                tv_tensors.Image(image),
                tv_tensors.BoundingBoxes(tile_boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])))
            h, w = image.shape[-2:]
            x0 = cx - w if tile % 2 == 0 else cx  # the image's top-left corner on the canvas
            y0 = cy - h if tile < 2 else cy
            x1, y1, x2, y2 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * s), min(y0 + h, 2 * s)
            crop = (y1 - y0, x1 - x0, y2 - y1, x2 - x1)  # top, left, height, width of the visible part
            canvas[:, y1:y2, x1:x2] = F.crop(image, *crop)
            boxes.append(F.crop(tile_boxes, *crop).as_subclass(Tensor) + torch.tensor([x1, y1, x1, y1]))
            labels.append(tile_labels)
        image, out_boxes, out_labels, _ = self.mosaic_transform(canvas, torch.cat(boxes), torch.cat(labels))
        return image, self._mosaic_target(indices, out_boxes, out_labels)

    def _mosaic_target(self, indices: Sequence[int], boxes: Tensor, labels: Tensor) -> dict[str, Any]:
        s = self.size
        return {"boxes": boxes, "labels": labels, "image_id": self.dataset.get_image_info(indices[0])["id"],
                "orig_size": torch.tensor([s, s], dtype=torch.int64), "scale": torch.ones(2, dtype=torch.float32)}

    def compose(self, indices: Sequence[int], center: tuple[int, int], zoom: float,
                shift: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
        """The mosaic's ``S x S`` output under zoom ``zoom`` and shift ``shift`` (output pixels), built
        directly: a canvas point ``p`` lands at ``zoom * p + S/2 - zoom * S + shift`` (the affine about the
        canvas center followed by the central crop), so tile ``i`` is its image resized by
        ``zoom * S / long side`` and pasted at its corner's image. Boxes are mapped the same way, clipped
        to the tile's visible part, and dropped when they keep less than ``min_area_ratio`` of the area
        they had inside the canvas (or nothing). Returns ``(image, boxes, labels)`` before jitter and flip."""
        s, (cx, cy) = self.size, center
        offset = (s / 2 - zoom * s + shift[0], s / 2 - zoom * s + shift[1])  # canvas -> output
        out = torch.full((3, s, s), FILL, dtype=torch.uint8)
        all_boxes, all_labels = [], []
        for tile, index in enumerate(indices):
            image, boxes, labels, _ = self.dataset.load_sample(index)
            h, w = image.shape[-2:]
            th, tw = keep_ratio_size(h, w, s, s)  # the tile on the canvas, as ResizeKeepRatio makes it
            x0 = cx - tw if tile % 2 == 0 else cx
            y0 = cy - th if tile < 2 else cy
            nw, nh = max(1, round(zoom * tw)), max(1, round(zoom * th))
            ox, oy = round(zoom * x0 + offset[0]), round(zoom * y0 + offset[1])
            # the part of the tile inside the canvas, in output pixels; then inside the output too
            seen = (max(ox, round(zoom * max(x0, 0) + offset[0])), max(oy, round(zoom * max(y0, 0) + offset[1])),
                    min(ox + nw, round(zoom * min(x0 + tw, 2 * s) + offset[0])),
                    min(oy + nh, round(zoom * min(y0 + th, 2 * s) + offset[1])))
            x1, y1, x2, y2 = max(seen[0], 0), max(seen[1], 0), min(seen[2], s), min(seen[3], s)
            if x2 > x1 and y2 > y1:
                resized = F.resize(image, [nh, nw], interpolation=v2.InterpolationMode.BILINEAR, antialias=False)
                out[:, y1:y2, x1:x2] = resized[:, y1 - oy:y2 - oy, x1 - ox:x2 - ox]
            if len(boxes) == 0:
                continue
            mapped = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h]) + torch.tensor([ox, oy, ox, oy])
            inside_canvas = _clip(mapped, seen)
            kept = _clip(mapped, (x1, y1, x2, y2)) if x2 > x1 and y2 > y1 else torch.zeros_like(mapped)
            area = box_area(kept)
            keep = (area > 0) & (area >= self.min_area_ratio * box_area(inside_canvas))
            all_boxes.append(kept[keep])
            all_labels.append(labels[keep])
        if not all_boxes:
            return out, torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)
        return out, torch.cat(all_boxes), torch.cat(all_labels)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.dataset!r}, size={self.size}, mosaic_prob={self.mosaic_prob}, "
                f"affine={self.affine_transform is not None}, enabled={self.enabled})")
