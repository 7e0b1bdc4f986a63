"""Detection transforms built on ``torchvision.transforms.v2``.

A transform built by :func:`build_transforms` is called as
``transform(image, boxes, labels) -> (image, boxes, labels, scale)`` with a ``uint8 [3, H, W]``
image, ``float [N, 4]`` xyxy boxes and ``long [N]`` labels; ``scale`` is ``float32 [2]``
``(sy, sx)`` from input to output pixels.

Training: photometric jitter (HSV gains, colour jitter), horizontal flip, keep-ratio resize. Evaluation: resize only.
Degenerate boxes (side < :data:`MIN_BOX_SIZE` output pixels) are removed with their labels.
Mosaic and random-affine augmentation live in :mod:`anchorfree.data.mosaic`; ``scale`` keeps
meaning "original to network-input pixels" for the un-augmented (evaluation) path.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..images import keep_ratio_size
from ..images import resize_opencv

__all__ = [
    "MIN_BOX_SIZE",
    "ResizeKeepRatio",
    "DetectionTransform",
    "RandomColorJitter",
    "RandomHSV",
    "build_transforms",
    "keep_ratio_size",
    "resize_image",
    "RESIZE_MODES",
    "photometric_and_flip",
]

MIN_BOX_SIZE = 1.0  # pixels; boxes with a narrower side are dropped


RESIZE_MODES = ("torchvision", "mmdet")


def resize_image(image: Tensor, size: tuple[int, int], mode: str = "torchvision") -> Tensor:
    """``uint8 [3, H, W]`` → ``[3, h, w]``, bilinear without antialias: torchvision's kernel, or with
    ``mode="mmdet"`` OpenCV's ``INTER_LINEAR`` as mmcv's ``imresize`` calls it (its fixed-point arithmetic rounds
    differently, by up to one grey level), so that converted mmdetection models see mmdetection's pixels."""
    if mode != "mmdet":
        return F.resize(image, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=False)
    out = resize_opencv(image.permute(1, 2, 0).numpy(), size)
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()


class ResizeKeepRatio(v2.Transform):
    """Resize keeping the aspect ratio, bilinear without antialias: torchvision's detection rule, or
    mmdetection's (``mode="mmdet"``: sizes rounded, OpenCV's bilinear; :func:`keep_ratio_size`, :func:`resize_image`).

    ``min_size`` may be a sequence: one value is drawn per call (multi-scale training) with
    ``torch``'s random generator, so it is seeded like every other v2 transform.
    """

    def __init__(self, min_size: int | Sequence[int], max_size: int, mode: str = "torchvision") -> None:
        super().__init__()
        self.min_sizes = (int(min_size),) if isinstance(min_size, int) else tuple(int(s) for s in min_size)
        if not self.min_sizes or min(self.min_sizes) < 1 or max_size < 1:
            raise ValueError(f"min_size and max_size must be positive, got {min_size!r}, {max_size!r}")
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        self.max_size, self.mode = int(max_size), mode

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        index = int(torch.randint(len(self.min_sizes), ())) if len(self.min_sizes) > 1 else 0
        return {"size": keep_ratio_size(height, width, self.min_sizes[index], self.max_size, self.mode)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if self.mode == "mmdet" and isinstance(inpt, tv_tensors.Image):
            return tv_tensors.wrap(resize_image(inpt.as_subclass(Tensor), params["size"], "mmdet"), like=inpt)
        return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=False)

    # Names of the two hooks above in torchvision < 0.21.
    _get_params = make_params
    _transform = transform


class RandomHSV(v2.Transform):
    """Random hue, saturation and value gains (YOLOv5/YOLOv8's ``hsv_h/s/v`` augmentation) as one 3x3
    colour matrix on RGB: value ``v ~ U(1 - hsv_v, 1 + hsv_v)`` scales every channel; saturation
    ``s ~ U(1 - hsv_s, 1 + hsv_s)`` blends with the luma gray (ITU-R 601 weights); hue is rotated about
    the gray axis by ``U(-hsv_h, hsv_h)`` of a full turn. One matrix product per pixel instead of an
    RGB→HSV→RGB round trip, ~20x cheaper than ``v2.ColorJitter`` with hue on CPU tensors. Images only:
    boxes are unchanged."""

    _transformed_types = (tv_tensors.Image,)
    LUMA = (0.299, 0.587, 0.114)

    def __init__(self, hue: float = 0.015, saturation: float = 0.7, value: float = 0.4) -> None:
        super().__init__()
        if not (0 <= hue <= 0.5 and 0 <= saturation <= 1 and 0 <= value <= 1):
            raise ValueError(f"hsv gains must be hue in [0, 0.5], saturation and value in [0, 1], got "
                             f"{hue}, {saturation}, {value}")
        self.hue, self.saturation, self.value = float(hue), float(saturation), float(value)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, s, v = (torch.rand(3) * 2 - 1).tolist()
        return {"matrix": self.matrix(h * self.hue * 2 * math.pi, 1 + s * self.saturation, 1 + v * self.value)}

    @classmethod
    def matrix(cls, angle: float, saturation: float, value: float) -> Tensor:
        """The colour matrix ``value * S(saturation) @ R(angle)`` (``R``: rotation about (1, 1, 1))."""
        c, s, k = math.cos(angle), math.sin(angle), 1 / math.sqrt(3)
        axis = torch.full((3,), k)
        cross = torch.tensor([[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]])
        rotation = c * torch.eye(3) + s * cross + (1 - c) * torch.outer(axis, axis)
        gray = torch.tensor(cls.LUMA).expand(3, 3)
        return value * (saturation * torch.eye(3) + (1 - saturation) * gray) @ rotation

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        image = inpt.as_subclass(Tensor)
        out = torch.mm(params["matrix"], image.reshape(3, -1).float()).clamp_(0, 255).round_()
        return tv_tensors.wrap(out.to(image.dtype).view(image.shape), like=inpt)

    _get_params = make_params
    _transform = transform


class RandomColorJitter(v2.Transform):
    """``v2.ColorJitter(s, s, s, s / 4)``'s ranges as one affine colour map per image: brightness
    ``b ~ U(1 - s, 1 + s)`` scales, contrast ``c ~ U(1 - s, 1 + s)`` blends with the image's mean luma,
    saturation blends with each pixel's luma and hue rotates about the gray axis by up to ``s / 4`` of
    a turn (as :class:`RandomHSV`), in that order and clamped once at the end:
    ``out = c b R S x + (1 - c) b mean_luma(x)`` (``R S`` keeps gray). ~10x cheaper on CPU tensors than
    ``v2.ColorJitter``, whose hue step converts every pixel to HSV and back."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, strength: float) -> None:
        super().__init__()
        if strength < 0:
            raise ValueError(f"color jitter strength must be >= 0, got {strength}")
        self.strength = float(strength)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        s = self.strength
        b, c, sat, h = (1 + (torch.rand(4) * 2 - 1) * torch.tensor([s, s, s, min(s / 4, 0.5)])).tolist()
        return {"brightness": max(b, 0.0), "contrast": max(c, 0.0),
                "matrix": RandomHSV.matrix((h - 1) * 2 * math.pi, max(sat, 0.0), 1.0)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        image = inpt.as_subclass(Tensor)
        pixels = image.reshape(3, -1).float()
        b, c = params["brightness"], params["contrast"]
        mean = float(torch.tensor(RandomHSV.LUMA) @ pixels.mean(1))
        out = torch.mm(params["matrix"] * (c * b), pixels).add_((1 - c) * b * mean).clamp_(0, 255).round_()
        return tv_tensors.wrap(out.to(image.dtype).view(image.shape), like=inpt)

    _get_params = make_params
    _transform = transform


class DetectionTransform:
    """Applies a v2 pipeline to ``(image, boxes, labels)`` and reports the resize scale.

    Picklable, so it can be used inside DataLoader workers.
    """

    def __init__(self, transforms: Sequence[v2.Transform]) -> None:
        self.pipeline = v2.Compose([*transforms, v2.SanitizeBoundingBoxes(min_size=MIN_BOX_SIZE)])

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        in_h, in_w = image.shape[-2:]
        sample = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(in_h, in_w)),
            "labels": labels,
        }
        out = self.pipeline(sample)
        image = out["image"].as_subclass(Tensor)
        out_h, out_w = image.shape[-2:]
        scale = torch.tensor([out_h / in_h, out_w / in_w], dtype=torch.float32)
        return image, out["boxes"].as_subclass(Tensor).float(), out["labels"], scale

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


def build_transforms(
    train: bool,
    min_size: int | tuple[int, ...],
    max_size: int,
    hflip_prob: float = 0.5,
    color_jitter: float = 0.0,
    hsv: Sequence[float] = (0.0, 0.0, 0.0),
    resize: str = "torchvision",
) -> DetectionTransform:
    """Build the training or evaluation transform.

    Args:
        train: enable the random augmentations below; evaluation only resizes.
        min_size: target short side; a tuple draws one per image (multi-scale training).
        max_size: cap on the long side.
        hflip_prob: probability of a horizontal flip (training only).
        color_jitter: strength ``s`` of brightness/contrast/saturation ``s`` and hue ``s / 4``;
            ``0`` disables it (training only).
        hsv: ``(hue, saturation, value)`` gains of :class:`RandomHSV`; all ``0`` disables it (training only).
        resize: ``torchvision`` or ``mmdet`` rounding and interpolation (:class:`ResizeKeepRatio`).
    """
    steps = photometric_and_flip(hflip_prob, color_jitter, hsv) if train else []
    steps.append(ResizeKeepRatio(min_size if train else _eval_size(min_size), max_size, resize))
    return DetectionTransform(steps)


def photometric_and_flip(hflip_prob: float = 0.5, color_jitter: float = 0.0,
                         hsv: Sequence[float] = (0.0, 0.0, 0.0)) -> list[v2.Transform]:
    """The training jitter and flip steps of :func:`build_transforms` (also used after a mosaic)."""
    steps: list[v2.Transform] = []
    if any(g > 0 for g in hsv):
        steps.append(RandomHSV(*hsv))
    if color_jitter > 0:
        steps.append(RandomColorJitter(color_jitter))
    if hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip_prob))
    return steps


def _eval_size(min_size: int | Sequence[int]) -> int:
    """Evaluation uses a single scale: the largest of the training sizes."""
    return min_size if isinstance(min_size, int) else max(min_size)
