"""What the PyTorch path does to an image before the network, in NumPy (no PyTorch needed; where it is
installed, its resize kernel is used).

* :func:`to_rgb_array`: any supported image input → ``uint8 [H, W, 3]`` RGB, with the rules of
  :func:`anchorfree.api.to_uint8_chw` (files by :func:`anchorfree.images.read_image`, EXIF orientation applied);
* :func:`keep_ratio_size`: torchvision's detection resize rule (:func:`anchorfree.data.keep_ratio_size`), or
  mmdetection's (sizes rounded, OpenCV's bilinear) for models with ``input.resize=mmdet``;
* :func:`resize_bilinear`: the resize of :class:`anchorfree.data.ResizeKeepRatio` — by PyTorch where it is
  installed, else :func:`resize_bilinear_numpy`, which reproduces torchvision's
  ``resize(antialias=False)`` on a ``uint8`` image, which on CPUs with AVX2 (and on ARM) runs PyTorch's
  native ``uint8`` kernel (``UpSampleKernel.cpp``, derived from Pillow's resampling): separable, the
  width first, then the height, each pass with triangle-filter weights normalised per output pixel,
  stored as int16 with a precision of as many bits as the largest weight allows, a rounded integer
  sum, shifted back and clamped to 0..255 (the intermediate image is ``uint8``). The result is bit for
  bit that of PyTorch there; on x86 CPUs without AVX2 torchvision resizes in float32 and rounds, which
  can differ by 1 in a few pixels;
* :func:`pad_batch`: images in the top-left corner of a zero canvas — a fixed ``canvas`` (static
  exports) or the batch's largest size rounded up to ``size_divisor`` (:func:`anchorfree.data.collate`);
* :func:`letterbox`: both steps for a batch — the one definition of a network input that exported models
  and the PyTorch reference of their check share.

A static export's network sees its whole canvas: the zero padding below and right of a smaller image is
convolved (and enters normalisation statistics such as GroupNorm's) as it is in PyTorch on that canvas, not
as in :class:`anchorfree.Model`, which pads only to ``size_divisor``. Its detections are therefore PyTorch's
on the canvas, and ``Model``'s exactly for images whose padded size is the canvas.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import AnchorfreeError
from ..images import keep_ratio_size, orient_image, read_image, resize_opencv


def to_rgb_array(image: Any, orient: bool = True) -> np.ndarray:
    """A path, PIL image, ``HxW``/``HxWxC`` array (uint8, or float 0..1) or ``CxHxW`` tensor → ``uint8 [H, W, 3]``.

    Files are read by :func:`anchorfree.images.read_image`; files and PIL images are turned as their EXIF
    orientation says unless ``orient=False`` (arrays and tensors carry no orientation)."""
    if isinstance(image, (str, Path)):
        return read_image(image, orient=orient)
    if isinstance(image, Image.Image):
        image = orient_image(image) if orient else image
        return np.array(image if image.mode == "RGB" else image.convert("RGB"))
    if hasattr(image, "detach") and hasattr(image, "permute"):  # a torch tensor, without importing torch
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise AnchorfreeError(f"tensor images must be CxHxW with C = 1 or 3, got shape {tuple(image.shape)}")
        array = image.detach().cpu().permute(1, 2, 0).numpy()
        if array.dtype != np.uint8:  # float tensors are 0..1
            array = np.round(np.clip(array.astype(np.float32), 0, 1) * 255).astype(np.uint8)
        return np.ascontiguousarray(np.broadcast_to(array, (*array.shape[:2], 3)))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise AnchorfreeError(f"numpy images must be HxW or HxWx{{1,3,4}}, got shape {image.shape}")
        image = image[..., :3] if image.shape[2] != 1 else np.repeat(image, 3, axis=2)
        if image.dtype != np.uint8:
            image = np.clip(image * (255 if image.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(image)
    raise AnchorfreeError(f"unsupported image type {type(image).__name__}; pass a path, PIL image, numpy array "
                          "or tensor")


def resize_mode(inp: dict[str, Any]) -> str:
    """The resize of an export's input rule (``torchvision`` for exports written before the field existed)."""
    return str(inp.get("resize_mode", "torchvision"))


@functools.lru_cache(maxsize=256)
def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output pixel the first input pixel ``[out]``, two int16-scaled weights ``[out, 2]`` and their
    precision in bits (PyTorch's ``_compute_index_ranges_int16_weights`` for bilinear, no antialias)."""
    scale = in_size / out_size
    center = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    first = np.maximum((center - 1.0 + 0.5).astype(np.int64), 0)  # C++ casts truncate toward zero
    count = np.clip(np.minimum((center + 1.0 + 0.5).astype(np.int64), in_size) - first, 0, 2)
    taps = np.arange(2)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(taps + first[:, None] - center[:, None] + 0.5))
    weights = np.where(taps < count[:, None], weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)
    largest = weights.max()
    precision = 0
    while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weights * (1 << precision)
    fixed = np.where(scaled < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int32)
    return first, fixed, precision


def _resample(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass of :func:`resize_bilinear_numpy` along ``axis``: two gathered taps, an int32 weighted sum,
    rounded, shifted and clamped (in place, no temporaries beyond the two taps)."""
    in_size = image.shape[axis]
    first, weights, precision = _axis_weights(in_size, out_size)
    shape = [1] * image.ndim
    shape[axis] = out_size
    total = np.take(image, first, axis=axis).astype(np.int32)
    total *= weights[:, 0].reshape(shape)
    second = np.take(image, np.minimum(first + 1, in_size - 1), axis=axis).astype(np.int32)
    second *= weights[:, 1].reshape(shape)
    total += second
    total += 1 << (precision - 1)
    total >>= precision
    np.clip(total, 0, 255, out=total)
    return total.astype(np.uint8)


def resize_bilinear_numpy(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W, C]`` → ``uint8 [h, w, C]`` exactly as torchvision's uint8 bilinear resize without
    antialias (see the module docstring), in NumPy: the width is resampled first, then the height."""
    height, width = size
    if (height, width) == image.shape[:2]:
        return image
    if width != image.shape[1]:
        image = _resample(image, width, axis=1)
    if height != image.shape[0]:
        image = _resample(image, height, axis=0)
    return image


@functools.lru_cache(maxsize=1)
def _torch_interpolate() -> Any:
    """PyTorch's ``interpolate`` where torch is installed (its AVX2 uint8 kernel: 3-5x faster than the NumPy
    one on 320 px images, BENCHMARKS.md), else ``None``."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch
    from torch.nn.functional import interpolate

    return torch, interpolate


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W, C]`` → ``uint8 [h, w, C]``, torchvision's uint8 bilinear resize without antialias: by
    PyTorch itself where it is installed, else by :func:`resize_bilinear_numpy` (the same pixels)."""
    if tuple(size) == image.shape[:2]:
        return image
    found = _torch_interpolate()
    if found is None:
        return resize_bilinear_numpy(image, size)
    torch, interpolate = found
    tensor = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None]  # read-only: copied
    out = interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def resize_for_model(image: np.ndarray, min_size: int, max_size: int,
                     canvas: tuple[int, int] | None = None, mode: str = "torchvision") -> tuple[np.ndarray, bool]:
    """The network-input image of ``image`` (``uint8 [H, W, 3]``): the keep-ratio resize of the PyTorch
    path (``mode``: the model's ``input.resize``); when ``canvas`` is given and that size does not fit in it,
    the keep-ratio size that fills the canvas instead (the second value is then ``True``: the input differs
    from the PyTorch path's)."""
    height, width = keep_ratio_size(image.shape[0], image.shape[1], min_size, max_size, mode)
    shrunk = False
    if canvas is not None and (height > canvas[0] or width > canvas[1]):
        scale = min(canvas[0] / image.shape[0], canvas[1] / image.shape[1])
        height = min(canvas[0], max(1, math.floor(image.shape[0] * scale)))
        width = min(canvas[1], max(1, math.floor(image.shape[1] * scale)))
        shrunk = True
    if mode == "mmdet":
        return resize_opencv(image, (height, width)), shrunk
    return resize_bilinear(image, (height, width)), shrunk


def pad_batch(images: list[np.ndarray], canvas: tuple[int, int] | None = None,
              size_divisor: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 [H, W, 3]`` images → ``images uint8 [B, 3, H', W']`` (top-left, zero padded) and
    ``image_sizes int64 [B, 2]``; ``H', W'`` is ``canvas`` or the largest size rounded up to ``size_divisor``."""
    sizes = np.array([image.shape[:2] for image in images], dtype=np.int64)
    if canvas is None:
        height, width = (-(-sizes.max(axis=0) // size_divisor) * size_divisor).tolist()
    else:
        height, width = canvas
    batch = np.zeros((len(images), 3, height, width), dtype=np.uint8)
    for slot, image in zip(batch, images):
        slot[:, : image.shape[0], : image.shape[1]] = image.transpose(2, 0, 1)
    return batch, sizes


def letterbox(images: list[np.ndarray], min_size: int, max_size: int, canvas: tuple[int, int] | None = None,
              size_divisor: int = 1, batch: int | None = None,
              mode: str = "torchvision") -> tuple[np.ndarray, np.ndarray, bool]:
    """The network input of ``uint8 [H, W, 3]`` images: each resized (:func:`resize_for_model`), then
    :func:`pad_batch` — on ``canvas`` (a static export) or, with ``canvas=None``, to the batch's largest size
    rounded up to ``size_divisor`` (:class:`anchorfree.Model`, dynamic exports). ``batch`` fills the batch up
    with empty ``1x1`` images. Returns ``images``, ``image_sizes`` and whether an image was shrunk to fit
    ``canvas`` (its input then differs from the PyTorch path's)."""
    resized, shrunk = [], False
    for image in images:
        image, small = resize_for_model(image, min_size, max_size, canvas, mode)
        resized.append(image)
        shrunk |= small
    if batch is not None:
        resized += [np.zeros((1, 1, 3), dtype=np.uint8)] * (batch - len(resized))
    padded, sizes = pad_batch(resized, canvas, size_divisor)
    return padded, sizes, shrunk
