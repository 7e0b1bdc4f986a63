"""Plain containers passed between the data pipeline, the models and the engine.

Conventions: boxes are ``xyxy`` float pixels of the network input; labels are contiguous
``0..C-1``; an image with no boxes is a normal sample (``boxes`` of shape ``[0, 4]``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Batch:
    """A padded batch of images with per-image bookkeeping.

    Attributes:
        images: ``uint8 [B, 3, H, W]``, zero padded at the bottom/right so that ``H`` and ``W``
            are multiples of the model's largest stride.
        image_sizes: ``long [B, 2]`` valid ``(h, w)`` of every image inside the padding.
        targets: per image ``{"boxes": float [N, 4] xyxy, "labels": long [N]}`` in input pixels.
        orig_sizes: ``long [B, 2]`` ``(h, w)`` of the images as stored on disk.
        scales: ``float [B, 2]`` ``(sy, sx)`` factors from original to input pixels.
        image_ids: dataset image ids (COCO ``image.id``), ``-1`` when unknown.
    """

    images: Tensor
    image_sizes: Tensor
    targets: list[dict[str, Tensor]] = field(default_factory=list)
    orig_sizes: Tensor | None = None
    scales: Tensor | None = None
    image_ids: list[int] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """Return the batch with every tensor moved to ``device``."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(
            images=move(self.images),
            image_sizes=move(self.image_sizes),
            targets=[{k: move(v) for k, v in t.items()} for t in self.targets],
            orig_sizes=None if self.orig_sizes is None else move(self.orig_sizes),
            scales=None if self.scales is None else move(self.scales),
            image_ids=list(self.image_ids),
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Detections:
    """Detections of one image: ``boxes [N, 4]`` xyxy, ``scores [N]``, ``labels [N]``."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
