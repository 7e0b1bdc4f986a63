"""Pieces shared by the YOLO and Pascal VOC readers and by the dataset writers.

Every reader turns one split into an in-memory COCO dict (:func:`build_coco`): ``images`` with
``file_name`` relative to an image folder, ``annotations`` with ``[x, y, w, h]`` pixel boxes,
``area`` and ``iscrowd``, and ``categories`` numbered ``1..K`` in class order.
:class:`~anchorfree.data.CocoDetection` and :func:`~anchorfree.evaluation.coco_evaluate` take
such a dict wherever they take a JSON path, so training, evaluation and ``data check`` work the
same on every format. The writers go the other way through :func:`split_boxes`.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anchorfree.data.coco import read_categories
from anchorfree.data.report import ProblemLog
from anchorfree.data.transforms import MIN_BOX_SIZE
from anchorfree.errors import DatasetError

__all__ = ["IMAGE_SUFFIXES", "SplitBoxes", "build_coco", "image_sizes", "place_file", "split_boxes", "unique_names"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Image file suffixes looked for in image folders (compared case-insensitively)."""


def image_sizes(paths: Sequence[Path], what: str, problems: ProblemLog | None = None) -> np.ndarray:
    """``int64 [N, 2]`` ``(width, height)`` of image files, read from their headers (no decoding).

    ``what`` says where the images were listed, for the error message of a missing or
    unreadable file. The default log raises on the first such file; a collecting ``problems`` log
    records every one and gets ``(-1, -1)`` for it.
    """
    log = problems if problems is not None else ProblemLog()

    def size(path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as im:
                return im.size
        except FileNotFoundError:
            log.error(f"Image file {path} (listed by {what}) does not exist. Add the image or "
                      "remove it from the dataset.", path, None, "missing image")
        except Exception as e:  # PIL raises many types for files that are not images
            log.error(f"Image file {path} (listed by {what}) is not a readable image ({e}). Replace "
                      "the file or remove it from the dataset.", path, None, "unreadable image")
        return -1, -1

    return np.asarray([size(p) for p in paths], dtype=np.int64).reshape(-1, 2)


def build_coco(
    file_names: Sequence[str],
    sizes: np.ndarray,
    box_image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    crowd: np.ndarray,
    class_names: Sequence[str],
    source: str,
) -> dict[str, Any]:
    """A COCO dict from arrays: image ``i`` gets id ``i + 1``, class ``k`` category id ``k + 1``.

    Args:
        file_names: image paths relative to the split's image folder.
        sizes: ``[N, 2]`` ``(width, height)`` of each image.
        box_image: ``[M]`` index (into ``file_names``) of each box's image.
        boxes: ``[M, 4]`` ``x1, y1, x2, y2`` in pixels (not clipped: the dataset clips and counts).
        labels: ``[M]`` class index of each box.
        crowd: ``[M]`` boxes to ignore (COCO ``iscrowd=1``: neither trained on nor counted).
        class_names: the category names, in class order.
        source: where the annotations came from, kept in ``info["source"]`` for messages.
    """
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    images = [{"id": i + 1, "file_name": name, "width": w, "height": h}
              for i, (name, (w, h)) in enumerate(zip(file_names, sizes.tolist()))]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(np.asarray(box_image), kind="stable")
    xy, wh = boxes[order, :2], boxes[order, 2:] - boxes[order, :2]
    area = np.clip(wh, 0, None).prod(axis=1)
    columns = zip(np.asarray(box_image)[order].tolist(), np.asarray(labels)[order].tolist(), xy.tolist(),
                  wh.tolist(), area.tolist(), np.asarray(crowd, dtype=bool)[order].tolist())
    annotations = [{"id": k + 1, "image_id": image + 1, "category_id": label + 1, "bbox": [*p, *s], "area": a,
                    "iscrowd": int(c)} for k, (image, label, p, s, a, c) in enumerate(columns)]
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    return {"info": {"source": source}, "images": images, "annotations": annotations, "categories": categories}


@dataclass
class SplitBoxes:
    """The boxes of one COCO split as arrays, clipped to their images, for writing another format.

    Box ``j`` of image ``i`` is row ``offsets[i] + j``; ``labels`` index the categories sorted by id.
    """

    images: list[dict[str, Any]]
    boxes: np.ndarray  # float64 [M, 4] x1, y1, x2, y2
    labels: np.ndarray  # int64 [M]
    crowd: np.ndarray  # bool [M]
    offsets: np.ndarray  # int64 [N + 1]
    clipped: int  # boxes that reached outside their image
    dropped: int  # boxes left narrower than MIN_BOX_SIZE after clipping (not in the arrays)

    def of_image(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.boxes[start:end], self.labels[start:end], self.crowd[start:end]


def split_boxes(data: dict[str, Any], source: str) -> SplitBoxes:
    """Group the annotations of a validated COCO dict by image, clipped to the image.

    Boxes narrower or lower than :data:`~anchorfree.data.MIN_BOX_SIZE` after clipping are left out
    (counted in ``dropped``), as :class:`~anchorfree.data.CocoDetection` does for training.
    """
    cat_ids, _ = read_categories(data, source)
    label_of = {cat_id: label for label, cat_id in enumerate(cat_ids)}
    index_of = {img["id"]: i for i, img in enumerate(data["images"])}
    anns = data["annotations"]
    image_index = np.asarray([index_of[a["image_id"]] for a in anns], dtype=np.int64)
    labels = np.asarray([label_of[a["category_id"]] for a in anns], dtype=np.int64)
    crowd = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    wh = np.asarray([(img["width"], img["height"]) for img in data["images"]], dtype=np.float64).reshape(-1, 2)
    limits = np.concatenate([wh, wh], axis=1)[image_index]
    clipped = np.clip(xyxy, 0.0, limits)
    valid = ((clipped[:, 2:] - clipped[:, :2]) >= MIN_BOX_SIZE).all(axis=1)
    order = np.argsort(image_index[valid], kind="stable")
    counts = np.bincount(image_index[valid], minlength=len(data["images"]))
    return SplitBoxes(
        images=list(data["images"]),
        boxes=clipped[valid][order],
        labels=labels[valid][order],
        crowd=crowd[valid][order],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        clipped=int(((clipped != xyxy).any(axis=1) & valid).sum()),
        dropped=int((~valid).sum()),
    )


def place_file(src: Path, dst: Path, link: bool) -> bool:
    """Hard-link ``src`` to ``dst`` (when ``link`` and the file system allows it) or copy it.

    Returns whether a link was made. A hard link shares the file's data: no extra disk space,
    and editing either path in place changes both.
    """
    if not src.is_file():
        raise DatasetError(f"Image file {src} does not exist; add it or remove the image from the dataset.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass  # another file system, or links not supported: copy
    shutil.copy2(src, dst)
    return False


def unique_names(names: Sequence[str], has_suffix: bool = True) -> list[str]:
    """``names`` with ``_2``, ``_3``... appended (before the suffix when ``has_suffix``) where their stems
    repeat, compared case-insensitively: ``a.jpg, a.png`` -> ``a.jpg, a_2.png``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        stem, suffix = os.path.splitext(name) if has_suffix else (name, "")
        key = stem.lower()
        count = seen.get(key, 0) + 1
        seen[key] = count
        while count > 1 and f"{stem}_{count}".lower() in seen:
            count += 1
        out.append(name if count == 1 else f"{stem}_{count}{suffix}")
        if count > 1:
            seen[f"{stem}_{count}".lower()] = 1
    return out
