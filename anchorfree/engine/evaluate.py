"""Run a detector over a dataset and score it with COCO metrics."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import CocoDetection, build_transforms, make_collate
from ..evaluation import coco_evaluate
from ..models.detector import Detector
from ..runtime import autocast
from ..structures import Detections


def detections_to_coco(dets: list[Detections], image_ids: list[int], label_to_cat_id: dict[int, int]) -> list[dict]:
    """COCO results entries (``bbox`` as ``[x, y, w, h]`` in original image pixels)."""
    results = []
    for det, image_id in zip(dets, image_ids):
        boxes = det.boxes.float().cpu()
        xywh = torch.cat((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), dim=1).tolist()
        for box, score, label in zip(xywh, det.scores.float().cpu().tolist(), det.labels.cpu().tolist()):
            results.append({"image_id": int(image_id), "category_id": int(label_to_cat_id[label]),
                            "bbox": [round(v, 3) for v in box], "score": round(float(score), 5)})
    return results


def make_eval_dataset(model: Detector, ann_file, image_dir, class_names=None) -> CocoDetection:
    inp = model.cfg.input
    return CocoDetection(ann_file, image_dir, build_transforms(False, inp.min_size, inp.max_size),
                         class_names=class_names, train=False)


@torch.no_grad()
def predict_dataset(model: Detector, dataset: CocoDetection, batch_size: int = 8, workers: int = 2,
                    fast: bool = False, progress: bool = True, **options: Any) -> list[dict]:
    """COCO-format results for every image of ``dataset``; ``options`` are inference options of the head
    (``nms="soft_gaussian"``, ``score_thresh``…)."""
    model.head.inference_options(**options)  # refuse a wrong option before the loop
    model.eval()
    device = model.device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=make_collate(model.cfg.input.size_divisor))
    results: list[dict] = []
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
        batch = batch.to(device, non_blocking=True)
        with autocast(device, enabled=fast):
            dets = model.predict(batch, **options)
        results += detections_to_coco(dets, batch.image_ids, dataset.label_to_cat_id)
    return results


def evaluate_dataset(model: Detector, dataset: CocoDetection, batch_size: int = 8, workers: int = 2,
                     fast: bool = False, progress: bool = True, backend: str = "faster",
                     **options: Any) -> dict[str, Any]:
    """COCO metrics (the 12 numbers + per-class AP) of ``model`` on ``dataset``; ``options`` as
    :func:`predict_dataset`."""
    results = predict_dataset(model, dataset, batch_size, workers, fast, progress, **options)
    metrics = coco_evaluate(dataset.coco_json_path, results, backend=backend, class_names=dataset.class_names)
    metrics["num_detections"] = len(results)
    return metrics
