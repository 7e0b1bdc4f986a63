"""The detections of one image as the Python API returns them; PyTorch is not needed to hold or read them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..evaluation import coco_result


@dataclass
class Prediction:
    """Detections of one image in its original pixels, with class names and COCO category ids.

    ``boxes [N, 4]`` (``xyxy``), ``scores [N]`` and ``labels [N]`` are torch tensors from
    :class:`anchorfree.Model` and numpy arrays from an exported model; both read the same way
    (``len``, indexing, ``tolist``, :attr:`names`, :meth:`to_coco`).
    """

    boxes: Any
    scores: Any
    labels: Any
    class_names: list[str]
    label_to_cat_id: dict[int, int]
    track_ids: Any = None  # [N] track ids when tracked across video frames (Model.stream(..., track=True))

    @property
    def names(self) -> list[str]:
        return [self.class_names[int(label)] for label in self.labels]

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO results entries (``bbox`` as ``[x, y, w, h]``)."""
        return [coco_result(image_id, self.label_to_cat_id.get(label, label), box, score)
                for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist())]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
