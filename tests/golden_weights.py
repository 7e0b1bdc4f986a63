"""Deterministic random weights for a state dict described only by its key names and shapes.

The golden files of whole mmdetection detectors (``scripts/mmdet_detector_golden.py``) store the keys and
shapes of the mmdetection state dict, not its tensors (ResNet-50 and Hourglass-104 weights would be
hundreds of megabytes); the script and the tests both call :func:`synthetic_state_dict`, which derives
every tensor from its key alone, so they see the same weights.

Distributions, chosen so that an untrained detector gives varied, unsaturated outputs:
conv / linear weights N(0, 1 / fan_in); norm weights U(0.5, 1.5), biases N(0, 0.1); BatchNorm
running_mean N(0, 0.1), running_var U(0.5, 1.5); per-level scales U(0.8, 1.2); and, per regular
expression in ``bias_means``, a bias drawn around a given mean (the classification / heatmap outputs,
so that scores spread around the detection threshold).
"""
from __future__ import annotations

import re
import zlib

import torch


def _generator(key: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(key.encode()) * 1000 + seed)


def synthetic_tensor(key: str, shape: list[int], dtype: str = "float32", seed: int = 0,
                     bias_means: dict[str, float | list[float]] | None = None,
                     weight_gain: float = 1.0) -> torch.Tensor:
    """The tensor of ``key`` (see the module docstring); integer tensors (``num_batches_tracked``) are 0.
    A ``bias_means`` entry is one mean or a list of means repeated along the bias (e.g. one per bin of
    GFL's distributions)."""
    if not dtype.startswith("float"):
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    g = _generator(key, seed)
    name = key.rsplit(".", 1)[-1]
    for pattern, mean in (bias_means or {}).items():
        if name == "bias" and re.search(pattern, key):
            means = torch.tensor(mean, dtype=torch.float32).reshape(-1)
            return means.repeat(shape[0] // len(means)) + 0.3 * torch.randn(shape, generator=g)
    if name == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if name == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) == 0:  # a Scale's scalar
        return 0.8 + 0.4 * torch.rand(shape, generator=g)
    if name == "weight" and len(shape) >= 2:
        fan_in = int(torch.tensor(shape[1:]).prod())
        return weight_gain * torch.randn(shape, generator=g) / fan_in ** 0.5
    if name == "weight":
        return 0.5 + torch.rand(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def synthetic_state_dict(keys: list[tuple[str, list[int], str]], seed: int = 0,
                         bias_means: dict[str, float | list[float]] | None = None,
                         weight_gain: float = 1.0) -> dict[str, torch.Tensor]:
    """``{key: tensor}`` for ``(key, shape, dtype name)`` triples, see :func:`synthetic_tensor`."""
    return {key: synthetic_tensor(key, list(shape), dtype, seed, bias_means, weight_gain) for key, shape, dtype in keys}


def synthetic_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[torch.Tensor]:
    """``uint8 [3, H, W]`` RGB images with structure at several scales (blurred noise plus flat rectangles),
    so that the features of a random network vary across the image."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for h, w in sizes:
        coarse = torch.rand(1, 3, max(h // 16, 1), max(w // 16, 1), generator=g)
        img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0] * 160
        img += 40 * torch.rand(3, h, w, generator=g)
        for _ in range(4):
            y0, x0 = int(torch.randint(0, h - 8, (1,), generator=g)), int(torch.randint(0, w - 8, (1,), generator=g))
            y1 = y0 + int(torch.randint(8, max(h - y0, 9), (1,), generator=g))
            x1 = x0 + int(torch.randint(8, max(w - x0, 9), (1,), generator=g))
            img[:, y0:y1, x0:x1] = 255 * torch.rand(3, 1, 1, generator=g)
        images.append(img.clamp(0, 255).round().to(torch.uint8))
    return images
