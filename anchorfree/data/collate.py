"""Batch collation: pad images to a common, stride-aligned size."""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from anchorfree.structures import Batch

__all__ = ["collate", "make_collate"]


def collate(samples: Sequence[tuple[Tensor, dict[str, Any]]], size_divisor: int = 128) -> Batch:
    """Stack ``(image, target)`` samples from :class:`~anchorfree.data.CocoDetection` into a :class:`Batch`.

    Images are zero padded at the bottom/right to the largest ``H``/``W`` of the batch, each
    rounded up to a multiple of ``size_divisor``.
    """
    if not samples:
        raise ValueError("collate() needs at least one sample")
    if size_divisor < 1:
        raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
    sizes = torch.tensor([tuple(image.shape[-2:]) for image, _ in samples], dtype=torch.int64)
    height, width = (-(-sizes.max(dim=0).values // size_divisor) * size_divisor).tolist()
    first = samples[0][0]
    images = first.new_zeros((len(samples), first.shape[0], height, width))
    for canvas, (image, _) in zip(images, samples):
        canvas[:, : image.shape[-2], : image.shape[-1]].copy_(image)
    targets = [t for _, t in samples]
    return Batch(
        images=images,
        image_sizes=sizes,
        targets=[{"boxes": t["boxes"], "labels": t["labels"]} for t in targets],
        orig_sizes=torch.stack([t["orig_size"] for t in targets]),
        scales=torch.stack([t["scale"] for t in targets]),
        image_ids=[int(t.get("image_id", -1)) for t in targets],
    )


def make_collate(size_divisor: int = 128) -> Callable[[Sequence[tuple[Tensor, dict[str, Any]]]], Batch]:
    """A picklable ``collate_fn`` for :class:`torch.utils.data.DataLoader` (works with workers)."""
    return functools.partial(collate, size_divisor=size_divisor)
