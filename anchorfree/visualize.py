"""Draw detections and ground-truth boxes on images (torchvision's ``draw_bounding_boxes``)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from .structures import Detections

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]


def class_color(label: int) -> str:
    """The colour of class ``label`` in drawings (a 16-colour palette, repeated)."""
    return _PALETTE[int(label) % len(_PALETTE)]


def line_width(image: Tensor) -> int:
    """Box outline width for ``image``: 1 px per 300 px of its longer side (at least 1)."""
    return max(1, round(max(image.shape[-2:]) / 300))


def draw_boxes(image: Tensor, boxes: Tensor, captions: Sequence[str] | None = None,
               colors: Sequence[str] | None = None, width: int | None = None) -> Tensor:
    """``uint8 [3, H, W]`` image with ``boxes`` (``[N, 4]`` xyxy pixels) drawn, each with its caption and
    colour (default: no captions, the first palette colour); ``width`` defaults to :func:`line_width`.
    Captions are white on a label filled with the box colour, legible on any background: the one style of
    every drawing (predict, TensorBoard, the reports; the web page draws the same)."""
    if len(boxes) == 0:
        return image
    colors = list(colors) if colors is not None else [_PALETTE[0]] * len(boxes)
    width = line_width(image) if width is None else width
    boxes = boxes.float().cpu().reshape(-1, 4)
    # a box whose corners come out swapped (a regression head's negative size) is drawn as the rectangle it spans
    boxes = torch.cat((torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])), dim=1)
    if captions is None:
        return draw_bounding_boxes(image, boxes, colors=colors, width=width)
    return draw_bounding_boxes(image, boxes, list(captions), colors=colors, width=width, fill_labels=True,
                               label_colors="white", label_background_colors=colors)


def draw_detections(image: Tensor, det: Detections, class_names: list[str] | None = None) -> Tensor:
    """``uint8 [3, H, W]`` image with boxes drawn in class colours, captioned with class names and scores."""
    if len(det) == 0:
        return image
    names = [(class_names[int(label)] if class_names else str(int(label))) for label in det.labels]
    captions = [f"{name} {float(score):.2f}" for name, score in zip(names, det.scores)]
    colors = [class_color(label) for label in det.labels]
    return draw_boxes(image, det.boxes, captions, colors)


def draw_ground_truth(image: Tensor, boxes: Tensor, labels: Tensor, class_names: Sequence[str] | None = None,
                      width: int | None = None) -> Tensor:
    """``uint8 [3, H, W]`` image with ground-truth ``boxes`` (xyxy) in class colours, captioned with their class
    names on filled labels."""
    names = [(class_names[int(label)] if class_names else str(int(label))) for label in labels]
    return draw_boxes(image, boxes, names, [class_color(label) for label in labels], width)


def draw_tracks(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, track_ids: np.ndarray,
                class_names: Sequence[str] | None = None,
                trails: dict[int, list[tuple[float, float]]] | None = None, trail: int = 20) -> np.ndarray:
    """``uint8 [H, W, 3]`` video frame with its detections (captioned with the class, the track id ``#k`` when
    tracked, and the score) and each track's last ``trail`` centres as a short line, in the track's colour."""
    frame = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    tracked = [int(t) >= 0 for t in track_ids]
    names = [(class_names[int(c)] if class_names else str(int(c))) for c in labels]
    captions = [f"{n} #{int(t)} {float(s):.2f}" if k else f"{n} {float(s):.2f}"
                for n, t, s, k in zip(names, track_ids, scores, tracked)]
    colors = [class_color(int(t)) if k else class_color(int(c)) for c, t, k in zip(labels, track_ids, tracked)]
    frame = draw_boxes(frame, torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4), captions, colors)
    out = Image.fromarray(frame.permute(1, 2, 0).numpy())
    if trails:
        pen = ImageDraw.Draw(out)
        for t in track_ids:
            points = trails.get(int(t), [])[-trail:]
            if len(points) > 1:
                pen.line([(float(x), float(y)) for x, y in points], fill=class_color(int(t)),
                         width=line_width(frame))
    return np.asarray(out)


def save_image(image: Tensor, path: str | Path) -> None:
    """Write a ``uint8 [3, H, W]`` image (JPEG quality 92 for ``.jpg``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(path, quality=92)


__all__ = ["class_color", "draw_boxes", "draw_detections", "draw_ground_truth", "draw_tracks", "line_width",
           "save_image"]
