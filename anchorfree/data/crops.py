"""Training on images much larger than the network input (aerial, drone, microscopy): instead of shrinking a whole
4000 px photo to 640 px, where every object under ~10 px vanishes, each training sample is a random ``size x size``
window of the image at its own resolution (then resized as usual, so objects keep about their native size).

Half of the windows are placed to contain a random object's centre (so sparse objects are seen), the others
uniformly; boxes are clipped to the window and dropped when less than ``min_visible`` of their area is inside,
as the tiles of sliced inference see them. :func:`large_image_crop` decides the default from the images' sizes.
"""
from __future__ import annotations

import torch
from torch import Tensor

LARGE_FACTOR = 2.0  # images whose median long side is this many times the input's are cropped by default


def random_window(height: int, width: int, size: int, boxes: Tensor) -> tuple[int, int]:
    """The top-left corner ``(x0, y0)`` of a random ``size`` window inside the image (``torch``'s generator: seeded
    per sample in training)."""
    max_x, max_y = max(0, width - size), max(0, height - size)
    if len(boxes) and torch.rand(()) < 0.5:  # around a random object's centre
        box = boxes[int(torch.randint(len(boxes), ()))]
        cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
        lo_x, hi_x = max(0, int(cx) - size + 1), min(max_x, int(cx))
        lo_y, hi_y = max(0, int(cy) - size + 1), min(max_y, int(cy))
        if lo_x <= hi_x and lo_y <= hi_y:
            return int(torch.randint(lo_x, hi_x + 1, ())), int(torch.randint(lo_y, hi_y + 1, ()))
    return int(torch.randint(max_x + 1, ())), int(torch.randint(max_y + 1, ()))


def crop_sample(image: Tensor, boxes: Tensor, labels: Tensor, x0: int, y0: int, size: int,
                min_visible: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """The window ``[x0, x0 + size) x [y0, y0 + size)`` of ``image`` (``[3, H, W]``; cut to the image), its boxes
    (``xyxy`` in window pixels, clipped) and labels; a box keeping less than ``min_visible`` of its area is
    dropped."""
    height, width = image.shape[-2:]
    x1, y1 = min(width, x0 + size), min(height, y0 + size)
    window = image[:, y0:y1, x0:x1]
    if len(boxes) == 0:
        return window, boxes.reshape(0, 4), labels
    shifted = boxes - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    clipped = torch.stack((shifted[:, 0].clamp(0, x1 - x0), shifted[:, 1].clamp(0, y1 - y0),
                           shifted[:, 2].clamp(0, x1 - x0), shifted[:, 3].clamp(0, y1 - y0)), dim=1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside > 0) & (inside >= min_visible * area)
    return window, clipped[keep], labels[keep]


def large_image_crop(image_sizes: Tensor, max_size: int) -> int:
    """The crop size ``train.augment.crop_size=-1`` (auto) picks: the input's ``max_size`` when the training images'
    median long side is at least :data:`LARGE_FACTOR` times it, else 0 (whole images). ``image_sizes``:
    ``[N, 2]`` (h, w)."""
    if image_sizes.numel() == 0:
        return 0
    long_side = image_sizes.max(dim=1).values.float().median()
    return int(max_size) if float(long_side) >= LARGE_FACTOR * max_size else 0


TINY_AT_INPUT = 8.0  # px: objects below this at the network's input are mostly lost


def object_sizes(image_sizes: Tensor, boxes: Tensor, box_image: Tensor, input_size: int) -> dict[str, float]:
    """What becomes of the objects at a square input of ``input_size`` (a whole image resized so that its long side
    is ``input_size``): the images' median long side, the objects' median size ``sqrt(w h)`` as stored and at the
    input, the share of objects under :data:`TINY_AT_INPUT` px there, and the crop size auto would train with.
    ``image_sizes [N, 2]`` (h, w), ``boxes [M, 4]`` xyxy, ``box_image [M]`` the image of each box."""
    long_side = image_sizes.max(dim=1).values.float()
    side = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()
    at_input = side * (input_size / long_side[box_image]) if len(side) else side
    return {"images_long_side": float(long_side.median()) if len(long_side) else 0.0,
            "objects": float(len(side)),
            "object_px": float(side.median()) if len(side) else 0.0,
            "object_px_at_input": float(at_input.median()) if len(side) else 0.0,
            "tiny_share": float((at_input < TINY_AT_INPUT).float().mean()) if len(side) else 0.0,
            "auto_crop": float(large_image_crop(image_sizes, input_size))}


__all__ = ["LARGE_FACTOR", "TINY_AT_INPUT", "crop_sample", "large_image_crop", "object_sizes", "random_window"]
