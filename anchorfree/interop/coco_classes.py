"""COCO's category names and ids, from torchvision's published weight metadata (no download)."""
from __future__ import annotations

import functools

from torchvision.models.detection import FCOS_ResNet50_FPN_Weights


@functools.cache
def coco91_names() -> list[str]:
    """torchvision's 91 labels: label ``i`` is COCO category id ``i`` (``__background__`` and ``N/A`` fill the gaps)."""
    return list(FCOS_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


@functools.cache
def coco80_categories() -> tuple[list[int], list[str]]:
    """The 80 COCO categories in id order: their ids (1..90 with gaps) and names (mmdetection's label order)."""
    pairs = [(i, n) for i, n in enumerate(coco91_names()) if n not in ("__background__", "N/A")]
    return [i for i, _ in pairs], [n for _, n in pairs]
