"""Run a detector over a dataset and score it with COCO metrics."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import CocoDetection, build_transforms, make_collate
from ..errors import DatasetError
from ..evaluation import coco_evaluate, coco_result
from ..models.detector import Detector
from ..runtime import autocast
from ..structures import Detections
from .slicing import SliceOptions, predict_sliced


def detections_to_coco(dets: list[Detections], image_ids: list[int], label_to_cat_id: dict[int, int]) -> list[dict]:
    """COCO results entries (``bbox`` as ``[x, y, w, h]`` in original image pixels)."""
    results = []
    for det, image_id in zip(dets, image_ids):
        for box, score, label in zip(det.boxes.float().cpu().tolist(), det.scores.float().cpu().tolist(),
                                     det.labels.cpu().tolist()):
            results.append(coco_result(image_id, label_to_cat_id[label], box, score))
    return results


def make_eval_dataset(model: Detector, ann_file: str | Path | dict, image_dir: str | Path,
                      class_names: Sequence[str] | None = None) -> CocoDetection:
    """The evaluation dataset of ``model``: ``ann_file`` (COCO JSON path or dict) resized as the model expects."""
    inp = model.cfg.input
    return CocoDetection(ann_file, image_dir, build_transforms(False, inp.min_size, inp.max_size, resize=inp.resize),
                         class_names=class_names, train=False)


@torch.no_grad()
def predict_dataset(model: Detector, dataset: CocoDetection, batch_size: int = 8, workers: int = 2,
                    fast: bool = False, progress: bool = True, slicing: SliceOptions | None = None,
                    **options: Any) -> list[dict]:
    """COCO-format results for every image of ``dataset``; ``options`` are inference options of the head
    (``nms="soft_gaussian"``, ``score_thresh``…). With ``slicing`` each image is predicted in tiles at its own
    resolution (:mod:`anchorfree.inference.slicing`), ``batch_size`` tiles at a time."""
    opts = model.head.inference_options(**options)  # parsed once: a wrong option fails before the loop
    model.eval()
    device = model.device
    if slicing is not None:
        return _predict_sliced_dataset(model, dataset, batch_size, fast, progress, slicing, opts)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=make_collate(model.cfg.input.size_divisor))
    results: list[dict] = []
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
        batch = batch.to(device, non_blocking=True)
        with autocast(device, enabled=fast):
            dets = model.predict(batch, opts=opts)
        results += detections_to_coco(dets, batch.image_ids, dataset.label_to_cat_id)
    return results


def _predict_sliced_dataset(model: Detector, dataset: CocoDetection, batch_size: int, fast: bool, progress: bool,
                            slicing: SliceOptions, opts: Any) -> list[dict]:
    """:func:`predict_dataset` in tiles: every image as stored, cut and merged by ``slicing``; each tile resized as
    the model's input (the dataset's own transform)."""
    transform, divisor = dataset.transforms, model.cfg.input.size_divisor

    def detect(crops: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        samples = []
        for crop in crops:
            empty = torch.zeros(0, 4)
            resized, _, _, scale = transform(crop, empty, torch.zeros(0, dtype=torch.long))
            samples.append((resized, {"boxes": empty, "labels": torch.zeros(0, dtype=torch.long), "image_id": -1,
                                      "orig_size": torch.tensor(crop.shape[-2:]), "scale": scale}))
        batch = make_collate(divisor)(samples).to(model.device)
        with autocast(model.device, enabled=fast):
            dets = model.predict(batch, opts=opts)
        return [(d.boxes.float().cpu(), d.scores.float().cpu(), d.labels.cpu()) for d in dets]

    results: list[dict] = []
    for index in tqdm(range(len(dataset)), desc="evaluate (sliced)", unit="img", disable=not progress, leave=False):
        image, _, _, info = dataset.load_sample(index)
        boxes, scores, labels = predict_sliced(detect, image, slicing, batch_size)
        results += detections_to_coco([Detections(boxes, scores, labels)], [info["id"]], dataset.label_to_cat_id)
    return results


def evaluate_dataset(model: Detector, dataset: CocoDetection, batch_size: int = 8, workers: int = 2,
                     fast: bool = False, progress: bool = True, backend: str = "faster",
                     slicing: SliceOptions | None = None, **options: Any) -> dict[str, Any]:
    """COCO metrics (the 12 numbers + per-class AP) of ``model`` on ``dataset``; ``options`` as
    :func:`predict_dataset`."""
    results = predict_dataset(model, dataset, batch_size, workers, fast, progress, slicing, **options)
    return score_results(dataset, results, backend)


def score_results(dataset: CocoDetection, results: list[dict], backend: str = "faster") -> dict[str, Any]:
    """COCO metrics of ``results`` (from :func:`predict_dataset`) against ``dataset``'s ground truth."""
    metrics = coco_evaluate(dataset.coco_gt, results, backend=backend, class_names=dataset.class_names)
    metrics["num_detections"] = len(results)
    return metrics


def add_file_names(dataset: CocoDetection, results: list[dict]) -> list[dict]:
    """``results`` with each entry's image ``file_name`` (as in the dataset) added."""
    names = {info["id"]: info["file_name"] for info in map(dataset.get_image_info, range(len(dataset)))}
    return [dict(r, file_name=names[r["image_id"]]) for r in results]


def match_image_ids(paths: Sequence[Path], images: list[dict], source: str) -> list[int | None]:
    """The id of each image file in a COCO ``images`` list, matched by file name (``None``: not listed).

    An entry matches a path when its ``file_name`` is the end of the path (``val/a.jpg`` matches
    ``data/val/a.jpg``; the longest such ``file_name`` wins); when none does, a ``file_name`` with the same base name matches if it is
    the only one. Several equally good matches raise :class:`DatasetError`.
    """
    by_name: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for img in images:
        parts = PurePosixPath(str(img["file_name"]).replace("\\", "/")).parts
        if parts:
            by_name.setdefault(parts[-1], []).append((parts, int(img["id"])))
    ids: list[int | None] = []
    for path in paths:
        candidates = by_name.get(path.name, [])
        full = Path(path).resolve().parts
        matching = [(len(parts), image_id) for parts, image_id in candidates if full[-len(parts):] == parts]
        longest = max((n for n, _ in matching), default=0)
        exact = [image_id for n, image_id in matching if n == longest]  # data/x/a.jpg: x/a.jpg before a.jpg
        if len(exact) == 1 or (not exact and len(candidates) == 1):
            ids.append(exact[0] if exact else candidates[0][1])
        elif not candidates:
            ids.append(None)
        else:
            raise DatasetError(f"{path} matches {len(exact) or len(candidates)} images of {source} with the name "
                               f"{path.name!r}; pass the images from the folder that the file names are relative to.")
    return ids
