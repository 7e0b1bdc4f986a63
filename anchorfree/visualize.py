"""Draw detections on images (torchvision's ``draw_bounding_boxes``)."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from .structures import Detections

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]


def draw_detections(image: Tensor, det: Detections, class_names: list[str] | None = None) -> Tensor:
    """``uint8 [3, H, W]`` image with boxes, class names and scores drawn."""
    if len(det) == 0:
        return image
    names = [(class_names[int(label)] if class_names else str(int(label))) for label in det.labels]
    captions = [f"{name} {float(score):.2f}" for name, score in zip(names, det.scores)]
    colors = [_PALETTE[int(label) % len(_PALETTE)] for label in det.labels]
    width = max(1, round(max(image.shape[-2:]) / 300))
    return draw_bounding_boxes(image, det.boxes.float().cpu(), captions, colors=colors, width=width)


def save_image(image: Tensor, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(path, quality=92)
