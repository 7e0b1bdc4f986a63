"""Decoding a dataset image as training reads it, and the message for an image whose size differs from its entry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from anchorfree.errors import DatasetError
from anchorfree.images import ImageReadError, read_image


def load_image(path: str | Path, image_id: int | str = "?") -> Tensor:
    """A dataset image as ``uint8 [3, H, W]`` RGB, its pixels as stored (the EXIF orientation tag is not applied:
    annotations refer to the stored grid), decoded by :func:`anchorfree.images.read_image`."""
    try:
        array = read_image(path, orient=False)
    except ImageReadError as e:
        hint = f"(image id {image_id}). Fix the file or remove the image entry from the annotation file."
        what = f"{e.problem} {hint}" + (f" ({e.reason})" if e.reason else "")
        raise DatasetError(f"Image file {Path(path)} {what}") from None
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def size_mismatch_message(path: str | Path, image_id: Any, real_hw: tuple[int, int], declared_hw: tuple[int, int],
                          source: str) -> str:
    """The error for an image file whose size differs from the width/height its annotations declare.

    Training stops on it (:meth:`CocoDetection.load_sample`) and the image pass of
    :func:`~anchorfree.data.check_images` reports it with this same message: the boxes are in the
    declared pixels, so neither the file's size nor the declared one can be trusted silently.
    """
    (h, w), (dh, dw) = real_hw, declared_hw
    hint = "Fix the entry's width/height (the boxes must refer to the stored image)."
    if (h, w) == (dw, dh):
        hint = ("The sides are swapped (an image saved rotated, e.g. with its EXIF orientation applied?): fix the "
                "entry's width/height and its boxes, or store the image unrotated.")
    return (f"Image file {path} (image id {image_id}) is {h}x{w} (h x w) but {source} declares height={dh}, "
            f"width={dw}. {hint}")
