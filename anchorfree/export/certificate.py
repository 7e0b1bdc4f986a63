"""The certificate of an export: its accuracy on the validation split next to the PyTorch model's, its speed and
size, and whether its AP drop is within budget.

* Accuracy: every validation image as stored (:meth:`CocoDetection.load_sample`, as ``anchorfree eval``
  reads it), through the exported file's own predictor (resize, padding, graph, rescaling; the export's
  inference settings) → COCO results → the same COCO evaluation as ``eval``
  (:func:`anchorfree.inference.evaluate.score_results`). The PyTorch row is ``eval``'s own run of the
  checkpoint. ΔAP is the export's AP minus PyTorch's, in AP points (``0.01`` AP = 1 point).
* Speed: images/s of the predictor's whole path (preprocessing, graph, post-processing; images already
  decoded) on the first :data:`TIMED_IMAGES` validation images, the best of :data:`REPEATS` passes after a
  warm-up, with the runtime's threads (one per core unless set): at batch 1, and at the best of the batch
  sizes the file can run (a static export runs its own batch; a dynamic one 1, 2, 4 and 8).
  PyTorch: ``anchorfree.Model``'s path (BatchNorm folded, channels_last, fp32).
* Budget: ``max_ap_drop`` AP points (default :data:`DEFAULT_MAX_AP_DROP`: 1.0 for int8, 0.3 for fp16,
  0.1 for fp32); an export whose AP falls further fails its certificate.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from ..errors import DatasetError
from ..files import atomic_write_text, export_files
from ..runtime import cpu_flags, cpu_name

DEFAULT_MAX_AP_DROP = {"int8": 1.0, "fp16": 0.3, "fp32": 0.1}
TIMED_IMAGES = 32
REPEATS = 3
DYNAMIC_BATCHES = (1, 2, 4, 8)


@dataclass
class Row:
    """One line of the table: a model in one format and precision."""

    format: str  # pytorch, onnx, openvino, pt2, torchscript
    precision: str  # fp32, fp16, int8
    AP: float
    AP50: float
    APs: float
    images_per_s: float  # batch 1
    best_batch: int
    best_images_per_s: float
    file: str | None = None
    file_size: int | None = None
    delta_ap: float | None = None  # AP points vs PyTorch
    passed: bool | None = None  # within max_ap_drop
    note: str = ""


@dataclass
class Certificate:
    data: str
    images: int  # validation images evaluated
    cpu: str
    threads: str
    rows: list[Row] = field(default_factory=list)
    max_ap_drop: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(row.passed is not False for row in self.rows)

    def table(self) -> str:
        """The rows as a text table (markdown), with the data, the CPU and the budget above it."""
        lines = [f"certificate on {self.data} ({self.images} validation images), CPU {self.cpu}, {self.threads}",
                 "| format | precision | AP | AP50 | APs | ΔAP vs PyTorch | images/s batch 1 | best batch: "
                 "images/s | size MB | within budget |", "|---|---|---|---|---|---|---|---|---|---|"]
        def points(value: float) -> str:  # COCOeval's -1: no ground truth of that kind (e.g. no small objects)
            return "-" if value < 0 else f"{100 * value:.2f}"

        for r in self.rows:
            delta = "-" if r.delta_ap is None else f"{r.delta_ap:+.2f}"
            size = "-" if r.file_size is None else f"{r.file_size / 1e6:.1f}"
            verdict = "-" if r.passed is None else (
                f"yes (≤ {self.max_ap_drop[r.precision]:g})" if r.passed else
                f"NO (drop > {self.max_ap_drop[r.precision]:g})")
            lines.append(f"| {r.format} | {r.precision} | {points(r.AP)} | {points(r.AP50)} | {points(r.APs)} | "
                         f"{delta} | {r.images_per_s:.1f} | {r.best_batch}: {r.best_images_per_s:.1f} | {size} | "
                         f"{verdict} |")
        notes = [f"{r.format} {r.precision}: {r.note}" for r in self.rows if r.note]
        return "\n".join(lines + notes)

    def to_json(self) -> str:
        return json.dumps(dict(asdict(self), passed=self.passed), indent=2)

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json() + "\n")


def certificate_path(export: str | Path) -> Path:
    """Where an export's certificate is written: ``best_int8.onnx`` → ``best_int8.onnx.certificate.json``."""
    export = Path(export)
    return export.with_name(f"{export.name}.certificate.json")


def _validation_images(dataset: Any, progress: bool) -> list[tuple[np.ndarray, int]]:
    items = []
    for index in tqdm(range(len(dataset)), desc="read validation images", unit="img", disable=not progress,
                      leave=False):
        image, _, _, info = dataset.load_sample(index)
        items.append((image.permute(1, 2, 0).numpy(), int(info["id"])))
    return items


def _throughput(call: Callable[[list[np.ndarray]], Any], images: list[np.ndarray], batch: int) -> float:
    """Images/s of ``call`` on ``images`` in batches of ``batch``: the best of :data:`REPEATS` passes after one
    warm-up batch."""
    call(images[:batch])
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            call(images[i:i + batch])
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def _speed(call: Callable[[list[np.ndarray]], Any], images: list[np.ndarray],
           batches: tuple[int, ...]) -> tuple[float, int, float]:
    """``(images/s at batch 1, best batch, its images/s)``."""
    timed = images[:TIMED_IMAGES]
    rates = {b: _throughput(call, timed, b) for b in batches}
    best = max(rates, key=rates.get)
    return rates.get(1, rates[best]), best, rates[best]


def evaluate_export(model: Any, dataset: Any, progress: bool = True, images: list[tuple[np.ndarray, int]] | None = None,
                    slicing: Any = None, **options: Any) -> tuple[dict[str, Any], list[dict]]:
    """COCO metrics and results of an :class:`~anchorfree.export.predictor.ExportedModel` on ``dataset``
    (each image as stored; the export's inference settings, with ``options`` for this run); ``slicing``: a
    :class:`~anchorfree.inference.slicing.SliceOptions` to detect each image in tiles, as ``eval --slice`` does
    with a checkpoint."""
    from ..evaluation import coco_result
    from ..inference.evaluate import score_results

    if len(model.class_names) != dataset.num_classes:
        raise DatasetError(f"{dataset.source} has {dataset.num_classes} categories but {model.path} predicts "
                           f"{len(model.class_names)}; evaluate it on the dataset it was trained for")
    opts = model.inference_options(**options)  # refuses what the graph cannot do, before the loop
    items = images if images is not None else _validation_images(dataset, progress)
    step = 1 if slicing is not None else model.info.batch or 8
    results: list[dict] = []
    for start in tqdm(range(0, len(items), step), desc=f"evaluate {model.path.name}", unit="batch",
                      disable=not progress, leave=False):
        chunk = items[start:start + step]
        preds = ([model.predict_sliced(image, opts, slicing) for image, _ in chunk] if slicing is not None
                 else model.predict_batch([image for image, _ in chunk], opts))
        for (_, image_id), pred in zip(chunk, preds):
            for box, score, label in zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist()):
                results.append(coco_result(image_id, dataset.label_to_cat_id[int(label)], box, float(score)))
    return score_results(dataset, results), results


def export_row(path: str | Path, dataset: Any, reference: Row | None, max_ap_drop: float | None,
               images: list[tuple[np.ndarray, int]], threads: int | None = None, progress: bool = True) -> Row:
    """The row of the exported file ``path``: accuracy against ``reference`` (the PyTorch row), speed, size."""
    from .predictor import ExportedModel

    model = ExportedModel(path, device="cpu", threads=threads)
    metrics = evaluate_export(model, dataset, progress, images)[0]["metrics"]
    opts = model.inference_options()
    batches = DYNAMIC_BATCHES if model.info.batch is None else (model.info.batch,)
    rate1, best, rate = _speed(lambda chunk: model.predict_batch(chunk, opts), [im for im, _ in images], batches)
    row = Row(format=model.format, precision=model.info.precision, AP=metrics["AP"], AP50=metrics["AP50"],
              APs=metrics["APs"], images_per_s=rate1, best_batch=best, best_images_per_s=rate, file=str(path),
              file_size=sum(f.stat().st_size for f in export_files(path)))
    if model.info.batch is not None and model.info.batch != 1:
        row.note = f"static batch {model.info.batch}: its images/s at batch 1 are those of that batch"
    if reference is not None:
        row.delta_ap = 100 * (row.AP - reference.AP)
        budget = DEFAULT_MAX_AP_DROP[row.precision] if max_ap_drop is None else max_ap_drop
        row.passed = -row.delta_ap <= budget + 1e-9
    return row


def pytorch_row(detector: Any, dataset: Any, images: list[tuple[np.ndarray, int]], progress: bool = True) -> Row:
    """``eval``'s metrics of the PyTorch ``detector`` on ``dataset`` and the speed of :class:`anchorfree.Model`'s
    path (folded, fp32) on the same images."""
    import torch

    from ..inference.evaluate import predict_dataset, score_results
    from ..models.fuse import inference_detector
    from .check import pytorch_detections

    model = inference_detector(detector.cpu().eval(), False)
    with torch.inference_mode():
        metrics = score_results(dataset, predict_dataset(model, dataset, workers=0, progress=progress))["metrics"]
        inp = {"min_size": model.cfg.input.min_size, "max_size": model.cfg.input.max_size,
               "size_divisor": model.cfg.input.size_divisor, "resize_mode": model.cfg.input.resize}
        rate1, best, rate = _speed(lambda chunk: pytorch_detections(model, chunk, inp),
                                   [im for im, _ in images], DYNAMIC_BATCHES)
    return Row(format="pytorch", precision="fp32", AP=metrics["AP"], AP50=metrics["AP50"], APs=metrics["APs"],
               images_per_s=rate1, best_batch=best, best_images_per_s=rate)


def certify(detector: Any, exports: list[str | Path], data: Any, max_ap_drop: float | None = None,
            threads: int | None = None, progress: bool = True,
            log: Callable[[str], None] | None = None) -> Certificate:
    """The certificate of ``exports`` (files of ``detector``, the PyTorch model) on ``data``'s validation split
    (a dataset folder, YAML or :class:`~anchorfree.data.DataSpec`): the PyTorch row, then one row per file."""
    import torch

    from ..data import load_data_spec
    from ..inference.evaluate import make_eval_dataset
    from .backends import runtime_threads

    say = log or (lambda message: None)
    spec = data if hasattr(data, "val_ann") else load_data_spec(data)
    dataset = make_eval_dataset(detector, spec.val_ann, spec.val_images, spec.class_names)
    if dataset.num_classes != detector.cfg.num_classes:
        raise DatasetError(f"{dataset.source} has {dataset.num_classes} categories but the model was trained for "
                           f"{detector.cfg.num_classes}; certify it on the dataset it was trained for")
    images = _validation_images(dataset, progress)
    count = runtime_threads(threads)
    cert = Certificate(data=str(getattr(spec, "source", data)), images=len(images),
                       cpu=f"{cpu_name()} ({cpu_flags()})",
                       threads=f"runtime threads: {count or 'one per core'}, torch threads: {torch.get_num_threads()}",
                       max_ap_drop=dict(DEFAULT_MAX_AP_DROP, **({} if max_ap_drop is None else
                                                                {k: max_ap_drop for k in DEFAULT_MAX_AP_DROP})))
    say(f"evaluating the PyTorch model on {len(images)} validation images…")
    reference = pytorch_row(detector, dataset, images, progress)
    cert.rows.append(reference)
    for path in exports:
        say(f"evaluating {Path(path).name}…")
        cert.rows.append(export_row(path, dataset, reference, max_ap_drop, images, threads, progress))
    return cert
