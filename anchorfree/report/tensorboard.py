"""Optional TensorBoard logging (``train.tensorboard=true``; the ``tensorboard`` extra): the logged scalars of
``metrics.jsonl`` and, at each validation, a few validation images with their detections."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..structures import Detections
from ..visualize import draw_detections


class TensorBoardLogger:
    """Writes ``RUN/tensorboard/`` event files; open them with ``tensorboard --logdir RUN/tensorboard``."""

    def __init__(self, run: str | Path, images: int = 4) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError('train.tensorboard=true needs the tensorboard package: pip install '
                              '"anchorfree[tensorboard]" (or set train.tensorboard=false)') from None
        self.writer = SummaryWriter(str(Path(run) / "tensorboard"))
        self.images = images

    def scalars(self, row: dict[str, Any]) -> None:
        """Every number of a ``metrics.jsonl`` row, as ``<type>/<key>`` at the row's iteration."""
        step = int(row.get("iteration", 0))
        for key, value in row.items():
            if key not in ("type", "iteration", "epoch") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"{row.get('type', 'train')}/{key}", value, step)

    def predictions(self, dataset: Any, results: list[dict], step: int, score_thresh: float = 0.3) -> None:
        """The first validation images with their detections above ``score_thresh`` (COCO results, original pixels)."""
        by_image: dict[int, list[dict]] = {}
        for r in results:
            if r["score"] >= score_thresh:
                by_image.setdefault(r["image_id"], []).append(r)
        cat_to_label = {c: label for label, c in dataset.label_to_cat_id.items()}
        for index in range(min(self.images, len(dataset))):
            image, _, _, info = dataset.load_sample(index)
            found = by_image.get(info["id"], [])
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in found)]).reshape(-1, 4)
            det = Detections(boxes, torch.tensor([r["score"] for r in found]),
                             torch.tensor([cat_to_label[r["category_id"]] for r in found], dtype=torch.long))
            self.writer.add_image(f"val/{info['file_name']}", draw_detections(image, det, dataset.class_names), step)

    def close(self) -> None:
        self.writer.close()
