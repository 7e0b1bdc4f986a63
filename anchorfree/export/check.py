"""The check every export gets right after it is written: the exported file, run by the runtime users get
(:class:`~anchorfree.export.predictor.ExportedModel`: onnxruntime for ONNX), against PyTorch's
:meth:`Detector.predict` on the same images.

* Images: a few deterministic drawings (:func:`check_images`: rectangles and ellipses on a noisy
  gradient, landscape, portrait and wide, larger and smaller than the input size, so that the
  resize and the padding are exercised; a dynamic export runs a batch of two, then one image of
  another padded size).
* Inputs: the predictor's own preprocessing; PyTorch gets the same padded batch (for a static export
  the export's canvas; for a dynamic one the batch padded to ``size_divisor`` — exactly what
  :class:`anchorfree.Model` feeds). The NumPy resize is compared with torchvision's on every image.
* Detections are compared per image in original pixels (the predictor's full path, rescaling
  included): every PyTorch detection must have an exported one of the same label with each box
  coordinate within ``box_rtol · max(|x|, box_floor)`` and the score within ``score_atol``, and the
  other way round. Raw-candidate exports are compared twice: the candidates (PyTorch with
  ``nms='none'``) and the detections after the predictor's NMS.
* Tolerances (:data:`FP32`, :data:`FP16`): fp32 boxes within 1e-3 relative (at least 1e-3 px), scores
  within 1e-4; fp16 boxes within 1e-2 relative (at least 0.5 px), scores within 1e-2. A detection
  without a counterpart is accepted only where rounding can decide whether it exists — its score is
  within ``score_atol`` of ``score_thresh``, or of the lowest score of a full list of ``max_detections`` —
  and is counted as *borderline*.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import build_transforms
from ..models.detector import Detector
from ..structures import Batch
from .predictor import ExportedModel
from .preprocess import resize_for_model


@dataclass(frozen=True)
class Tolerance:
    box_rtol: float
    box_floor: float  # px: coordinates below this are compared as if they were this large
    score_atol: float

    def describe(self) -> str:
        return (f"boxes within {self.box_rtol:g} relative (at least {self.box_rtol * self.box_floor:g} px), "
                f"scores within {self.score_atol:g}")


FP32 = Tolerance(box_rtol=1e-3, box_floor=1.0, score_atol=1e-4)
FP16 = Tolerance(box_rtol=1e-2, box_floor=50.0, score_atol=1e-2)

Dets = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [N, 4], scores [N], labels [N]


@dataclass
class CheckResult:
    """The outcome of :func:`check_export`; ``passed`` is ``None`` when the check could not run."""

    passed: bool | None
    runtime: str
    images: int = 0
    detections: int = 0  # PyTorch's, over all images and comparisons
    matched: int = 0
    borderline: int = 0
    max_box_error: float = 0.0  # px, original image pixels
    max_score_error: float = 0.0
    tolerance: Tolerance = FP32
    preprocessing: str = ""
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.passed is None:
            return f"check not run: {'; '.join(self.problems)}"
        head = "check passed" if self.passed else "CHECK FAILED"
        text = (f"{head} ({self.runtime} vs PyTorch, {self.images} images): {self.matched}/{self.detections} "
                f"detections matched")
        if self.borderline:
            text += f", {self.borderline} borderline (score at the threshold or the cut-off)"
        if not self.detections:
            text += (" — no detections above score_thresh on the check images, so no boxes were compared (an "
                     "untrained model?); export_model(..., options={'score_thresh': ...}) checks at another threshold")
        text += (f"; max box error {self.max_box_error:.2g} px, max score error {self.max_score_error:.2g} "
                 f"({self.tolerance.describe()}); preprocessing {self.preprocessing}")
        if self.problems:
            text += "\n  " + "\n  ".join(self.problems[:8])
            if len(self.problems) > 8:
                text += f"\n  … and {len(self.problems) - 8} more"
        return text


def check_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` deterministic ``uint8 [H, W, 3]`` drawings of shapes around ``size`` pixels, cycling through
    landscape 4:3 (larger than ``size``: downscaled), portrait 4:5 and wide 2:1 (smaller: upscaled) images —
    batched by two, the third image pads to another size than the first two."""
    rng = np.random.default_rng(seed)
    shapes = [(1.3 * 0.75, 1.3), (1.1, 1.1 * 0.8), (0.45, 0.9)]
    images = []
    for i in range(count):
        fh, fw = shapes[i % len(shapes)]
        height, width = max(8, round(size * fh)), max(8, round(size * fw))
        yy, xx = np.mgrid[0:height, 0:width]
        base = rng.uniform(0, 255, size=3)
        image = base + 60 * np.stack([xx / width, yy / height, (xx + yy) / (width + height)], axis=-1)
        image += rng.normal(0, 8, size=image.shape)
        for _ in range(int(rng.integers(3, 7))):
            colour = rng.uniform(0, 255, size=3)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            hh, hw = rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * width
            if rng.random() < 0.5:
                mask = (np.abs(yy - cy) < hh) & (np.abs(xx - cx) < hw)
            else:
                mask = ((yy - cy) / hh) ** 2 + ((xx - cx) / hw) ** 2 < 1
            image[mask] = colour
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def _borderline(score: float, scores: np.ndarray, tol: Tolerance, score_thresh: float, cap: int | None) -> bool:
    """Whether rounding can decide if a detection of ``score`` is in a list of ``scores``."""
    near_threshold = score - score_thresh <= tol.score_atol
    near_cutoff = cap is not None and len(scores) >= cap and score - scores.min() <= tol.score_atol
    return bool(near_threshold or near_cutoff)


def match_detections(ref: Dets, got: Dets, tol: Tolerance, score_thresh: float, cap: int | None,
                     where: str, result: CheckResult) -> None:
    """Match the detections of one image (PyTorch's ``ref``, the export's ``got``) into ``result``."""
    ref_boxes, ref_scores, ref_labels = ref
    got_boxes, got_scores, got_labels = got
    used = np.zeros(len(got_boxes), dtype=bool)
    result.detections += len(ref_boxes)
    missing = []
    for i in np.argsort(-ref_scores, kind="stable"):
        options = np.flatnonzero(~used & (got_labels == ref_labels[i]))
        if options.size:
            error = np.abs(got_boxes[options] - ref_boxes[i])
            fits = (error <= tol.box_rtol * np.maximum(np.abs(ref_boxes[i]), tol.box_floor)).all(axis=1)
            fits &= np.abs(got_scores[options] - ref_scores[i]) <= tol.score_atol
            if fits.any():
                j = options[fits][np.argmin(np.abs(got_boxes[options[fits]] - ref_boxes[i]).max(axis=1))]
                used[j] = True
                result.matched += 1
                result.max_box_error = max(result.max_box_error, float(np.abs(got_boxes[j] - ref_boxes[i]).max()))
                result.max_score_error = max(result.max_score_error, float(abs(got_scores[j] - ref_scores[i])))
                continue
        missing.append(i)
    for i in missing:
        if _borderline(float(ref_scores[i]), ref_scores, tol, score_thresh, cap):
            result.borderline += 1
        else:
            result.problems.append(f"{where}: PyTorch's detection label {int(ref_labels[i])} score "
                                   f"{ref_scores[i]:.4f} box {np.round(ref_boxes[i], 2).tolist()} is missing")
    for j in np.flatnonzero(~used):
        if not _borderline(float(got_scores[j]), got_scores, tol, score_thresh, cap):
            result.problems.append(f"{where}: exported detection label {int(got_labels[j])} score "
                                   f"{got_scores[j]:.4f} box {np.round(got_boxes[j], 2).tolist()} is not PyTorch's")


def _as_numpy(det: Any) -> Dets:
    return det.boxes.float().numpy(), det.scores.float().numpy(), det.labels.numpy()


def check_export(model: ExportedModel, detector: Detector, tol: Tolerance, num_images: int = 3,
                 seed: int = 0) -> CheckResult:
    """Run ``model`` (an exported file) and ``detector`` (its PyTorch source, eval mode, CPU) on
    :func:`check_images` and compare (see the module docstring)."""
    info = model.info
    inp = info.input
    runtime = {"onnx": "onnxruntime", "pt2": "torch.export", "torchscript": "TorchScript"}[model.format]
    result = CheckResult(passed=True, runtime=runtime, tolerance=tol)
    images = check_images(num_images, int(inp["min_size"]), seed)
    transform = build_transforms(False, int(inp["min_size"]), int(inp["max_size"]))
    differs = 0
    for image in images:
        reference = transform(torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.zeros(0, 4),
                              torch.zeros(0, dtype=torch.long))[0].permute(1, 2, 0).numpy()
        ours, _ = resize_for_model(image, int(inp["min_size"]), int(inp["max_size"]))
        differs += int(reference.shape != ours.shape or not np.array_equal(reference, ours))
    result.preprocessing = (f"identical to torchvision's on all {len(images)} images" if not differs else
                            f"differs from torchvision's on {differs} of {len(images)} images (a CPU without AVX2?)")

    opts = model.inference_options()
    head_fields = set(type(detector.head.cfg).INFERENCE_FIELDS)
    torch_opts = {k: v for k, v in opts.items() if k in head_fields}
    step = info.batch or 2  # a dynamic export runs batches of two sizes: 2 images, then the rest
    detector = detector.eval()
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        batch_images, sizes = model.preprocess(chunk)
        orig = torch.tensor([image.shape[:2] for image in chunk])
        count = len(chunk)
        batch = Batch(torch.from_numpy(batch_images)[:count], torch.from_numpy(sizes)[:count], orig_sizes=orig)
        if info.raw_candidates:
            got = model.detect(batch_images, sizes, dict(opts, nms="none", max_detections=10 ** 9), count)
            refs = detector.predict(batch, rescale=False, **dict(torch_opts, nms="none", max_detections=10 ** 9))
            for i, (ref, out) in enumerate(zip(refs, got)):
                match_detections(_as_numpy(ref), out, tol, float(opts["score_thresh"]), None,
                                 f"image {start + i} (candidates)", result)
        got = [(p.boxes, p.scores, p.labels) for p in model._predict_batch(chunk, opts)]
        refs = detector.predict(batch, rescale=True, **torch_opts)
        for i, (ref, out) in enumerate(zip(refs, got)):
            match_detections(_as_numpy(ref), out, tol, float(opts["score_thresh"]), int(opts["max_detections"]),
                             f"image {start + i}", result)
    result.images = len(images)
    result.passed = not result.problems
    return result
