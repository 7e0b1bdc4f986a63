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
from anchorfree.data.transforms import DetectionTransform, ResizeKeepRatio, photometric_and_flip

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
    ) -> None:
        if not 0 <= mosaic_prob <= 1:
            raise ValueError(f"mosaic_prob must be in [0, 1], got {mosaic_prob}")
        self.dataset, self.size, self.mosaic_prob = dataset, int(size), float(mosaic_prob)
        self.enabled = True
        self.resize = ResizeKeepRatio(self.size, self.size)
        geometry = {"scale": scale, "degrees": degrees, "shear": shear, "min_area_ratio": min_area_ratio}
        # the canvas is 2S wide, so a shift of `translate` * S is `translate / 2` of it
        self.mosaic_transform = DetectionTransform([*random_affine(translate=translate / 2, crop=self.size, **geometry),
                                                    *photometric_and_flip(hflip_prob, color_jitter)])
        self.affine_transform = DetectionTransform(random_affine(translate=translate, **geometry)) if affine else None

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
        target = {"boxes": out_boxes, "labels": out_labels, "image_id": self.dataset.get_image_info(indices[0])["id"],
                  "orig_size": torch.tensor([s, s], dtype=torch.int64), "scale": torch.ones(2, dtype=torch.float32)}
        return image, target

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.dataset!r}, size={self.size}, mosaic_prob={self.mosaic_prob}, "
                f"affine={self.affine_transform is not None}, enabled={self.enabled})")
