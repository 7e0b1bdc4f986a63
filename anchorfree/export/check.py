"""The check every export gets right after it is written: the exported file, run by the runtime users get
(:class:`~anchorfree.export.predictor.ExportedModel`: onnxruntime for ONNX), against PyTorch's
:meth:`Detector.predict` on the same images.

* Images: a few deterministic drawings (:func:`check_images`: rectangles and ellipses on a noisy
  gradient, landscape 5:3 and portrait 3:5 larger than the input size, wide 2:1 smaller, so that the
  resize and the padding of non-square images are exercised; a dynamic export runs a batch of two, then
  one image of another padded size).
* Inputs: :func:`~anchorfree.export.preprocess.letterbox` for both sides (:func:`pytorch_detections`):
  PyTorch gets the batch the export runs (for a static export on the export's canvas; for a dynamic one
  padded to ``size_divisor`` — exactly what :class:`anchorfree.Model` feeds). The NumPy resize is
  compared with torchvision's on every image.
* A static export is also measured against :class:`anchorfree.Model`, which pads each image only to
  ``size_divisor``: on an image whose padded size is not the canvas, the network sees more zero padding
  below or right of it, which changes its features near those edges (GroupNorm statistics: everywhere).
  Those detections are counted, not required to match (:attr:`CheckResult.model_matched`); images whose
  padded size is the canvas get ``Model``'s input exactly.
* Detections are compared per image in original pixels (the predictor's full path, rescaling
  included): every PyTorch detection must have an exported one of the same label with each box
  coordinate within ``box_rtol · max(|x|, floor)`` and the score within ``score_atol``, and the
  other way round. Raw-candidate exports are compared twice: the candidates (PyTorch with
  ``nms='none'``) and the detections after the predictor's NMS.
* Tolerances (:data:`FP32`, :data:`FP16`, :data:`INT8`): fp32 boxes within 1e-3 relative (at least 1e-3 px),
  scores within 1e-4; fp16 boxes within 1e-2 relative (at least 1 % of the image's long side: an fp16 network
  moves a box by a fraction of its size, and boxes are of the image's scale), scores within 1e-2; int8 boxes
  within 5 % (at least 2.5 % of the long side), scores within 0.05, and 80 % of the detections suffice (an
  int8 export's accuracy is judged by its certificate, :mod:`anchorfree.export.certificate`). A detection
  without a counterpart is accepted only where rounding can decide whether it exists — its score is
  within ``score_atol`` of ``score_thresh``, or of the lowest score of a full list of ``max_detections``,
  or an NMS decision rounding can flip explains it (a higher-scoring detection of the other list overlaps
  it by ``nms_thresh ± iou_atol``, 1e-4, fp16 2e-2; or one of a near-equal score overlaps it by more than
  ``nms_thresh``; or either through such a detection: one suppression decided otherwise changes the
  next) — and is counted as *borderline*.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import build_transforms
from ..models.detector import Detector
from ..structures import Batch, Detections
from .predictor import ExportedModel
from .metadata import ExportInfo
from .preprocess import keep_ratio_size, letterbox, resize_for_model, resize_mode


@dataclass(frozen=True)
class Tolerance:
    box_rtol: float
    box_floor: float  # px: coordinates below this are compared as if they were this large
    box_floor_image: float  # the same as a fraction of the image's long side (whichever floor is larger)
    score_atol: float
    iou_atol: float  # an NMS decision between boxes overlapping by nms_thresh ± this is rounding's
    min_matched: float = 1.0  # int8: the share of detections that must match (the rest: counted, not required)

    def describe(self) -> str:
        floor = (f"{self.box_rtol * self.box_floor:g} px" if not self.box_floor_image else
                 f"{self.box_rtol * self.box_floor_image:g} of the image's long side")
        share = f"; at least {self.min_matched:.0%} of the detections" if self.min_matched < 1 else ""
        return (f"boxes within {self.box_rtol:g} relative (at least {floor}), scores within {self.score_atol:g}, "
                f"NMS IoU within {self.iou_atol:g}{share}")

    def holds(self, result: "CheckResult") -> bool:
        """Whether ``result`` passes: no problem at all, or (``min_matched < 1``) at most ``1 - min_matched`` of
        PyTorch's detections without a counterpart (neither matched nor borderline)."""
        if self.min_matched >= 1.0 or not result.problems:
            return not result.problems
        unmatched = result.detections - result.matched - result.borderline
        return unmatched <= (1.0 - self.min_matched) * result.detections + 1e-9


FP32 = Tolerance(box_rtol=1e-3, box_floor=1.0, box_floor_image=0.0, score_atol=1e-4, iou_atol=1e-4)
FP16 = Tolerance(box_rtol=1e-2, box_floor=1.0, box_floor_image=1.0, score_atol=1e-2, iou_atol=2e-2)
# int8 moves scores by a few hundredths and boxes by a few per cent of their size: the check asks most
# detections to stay within that; the accuracy an int8 export keeps is its certificate's (AP on real data)
INT8 = Tolerance(box_rtol=5e-2, box_floor=1.0, box_floor_image=0.5, score_atol=5e-2, iou_atol=5e-2, min_matched=0.8)

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
    image_shapes: list[tuple[int, int]] = field(default_factory=list)  # (h, w) of the check images
    canvas: tuple[int, int] | None = None  # a static export's
    # a static export against anchorfree.Model on the images Model pads to another size than the canvas
    model_images: int = 0
    model_detections: int = 0
    model_matched: int = 0

    def summary(self) -> str:
        if self.passed is None:
            return f"check not run: {'; '.join(self.problems)}"
        head = "check passed" if self.passed else "CHECK FAILED"
        shapes = ", ".join(f"{h}x{w}" for h, w in self.image_shapes)
        text = (f"{head} ({self.runtime} vs PyTorch, {self.images} images{f' ({shapes})' if shapes else ''}): "
                f"{self.matched}/{self.detections} detections matched")
        if self.borderline:
            text += (f", {self.borderline} borderline (score at the threshold or the cut-off, or an NMS decision at "
                     "the IoU threshold)")
        if not self.detections:
            text += (" — no detections above score_thresh on the check images, so no boxes were compared (an "
                     "untrained model?); export_model(..., options={'score_thresh': ...}) checks at another threshold")
        text += (f"; max box error {self.max_box_error:.2g} px, max score error {self.max_score_error:.2g} "
                 f"({self.tolerance.describe()}); preprocessing {self.preprocessing}")
        if self.canvas is not None:
            text += "\n  " + self.model_summary()
        if self.problems:
            text += "\n  " + "\n  ".join(self.problems[:8])
            if len(self.problems) > 8:
                text += f"\n  … and {len(self.problems) - 8} more"
        return text

    def model_summary(self) -> str:
        """A static export against :class:`anchorfree.Model` (see the module docstring), in words."""
        canvas = "x".join(str(d) for d in self.canvas or ())
        text = "vs anchorfree.Model (it pads an image only to size_divisor): "
        if not self.model_images:
            return text + f"every check image fills the {canvas} canvas when padded, so its detections are Model's"
        return text + (f"{self.model_matched}/{self.model_detections} of Model's detections match on the "
                       f"{self.model_images} of {self.images} images whose padded size is not the {canvas} canvas "
                       "(the canvas's extra padding changes the network's features; for Model's detections export "
                       "with input_size = the padded size of the images served, or dynamic=True)")


def check_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` deterministic ``uint8 [H, W, 3]`` drawings of shapes around ``size`` pixels, cycling through
    landscape 5:3 and portrait 3:5 (larger than ``size``: downscaled) and wide 2:1 (smaller: upscaled)
    images — batched by two, the third image pads to another size than the first two."""
    rng = np.random.default_rng(seed)
    shapes = [(1.3 * 0.6, 1.3), (1.3, 1.3 * 0.6), (0.45, 0.9)]
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


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _nms_explained(missing: list[int], own: Dets, extra: list[int], other: Dets, tol: Tolerance, nms: str | None,
                   nms_thresh: float) -> tuple[set[int], set[int]]:
    """The detections of ``own`` absent from ``other`` (``missing``) and of ``other`` absent from ``own``
    (``extra``) that an NMS decision rounding can flip explains. A detection is explained when a detection
    of the other list (same label unless ``agnostic``)

    * scores at least as high (within ``score_atol``) and overlaps it by ``nms_thresh ± iou_atol``: whether
      it is suppressed is rounding's;
    * scores the same (within ``score_atol``) and overlaps it by more than ``nms_thresh - iou_atol``: which
      of the two is kept is rounding's (a near tie);
    * or — the cascade — is itself explained, scores at least as high and overlaps it by more than
      ``nms_thresh - iou_atol``: with that one gone nothing suppresses it, with it kept it is suppressed."""
    if nms not in ("classwise", "agnostic"):
        return set(), set()
    lists = {"own": own, "other": other}
    pending = {("own", i) for i in missing} | {("other", j) for j in extra}
    explained: set[tuple[str, int]] = set()

    def explains(side: str, index: int, candidates: list[int], cascade: bool) -> bool:
        boxes, scores, labels = lists[side]
        o_boxes, o_scores, o_labels = lists["other" if side == "own" else "own"]
        picks = np.array([c for c in candidates if o_scores[c] >= scores[index] - tol.score_atol
                          and (nms == "agnostic" or o_labels[c] == labels[index])], dtype=np.int64)
        if picks.size == 0:
            return False
        iou = _iou(boxes[index], o_boxes[picks])
        overlapping = iou > nms_thresh - tol.iou_atol
        if cascade:
            return bool(overlapping.any())
        tie = np.abs(o_scores[picks] - scores[index]) <= tol.score_atol
        return bool((np.abs(iou - nms_thresh) <= tol.iou_atol).any() or (tie & overlapping).any())

    changed = True
    while changed:
        changed = False
        for side, index in sorted(pending - explained):
            other_side = "other" if side == "own" else "own"
            everyone = list(range(len(lists[other_side][0])))
            chain = [k for s, k in explained if s == other_side]
            if explains(side, index, everyone, cascade=False) or explains(side, index, chain, cascade=True):
                explained.add((side, index))
                changed = True
    return {i for s, i in explained if s == "own"}, {j for s, j in explained if s == "other"}


def match_detections(ref: Dets, got: Dets, tol: Tolerance, score_thresh: float, cap: int | None,
                     where: str, result: CheckResult, nms: str | None = None, nms_thresh: float = 0.5,
                     image_side: float = 0.0) -> None:
    """Match the detections of one image (PyTorch's ``ref``, the export's ``got``) into ``result``; ``nms``
    (the suppression both ran) lets NMS decisions at the IoU threshold count as borderline; ``image_side``
    is the image's long side (for :attr:`Tolerance.box_floor_image`)."""
    floor = max(tol.box_floor, tol.box_floor_image * image_side)
    ref_boxes, ref_scores, ref_labels = ref
    got_boxes, got_scores, got_labels = got
    used = np.zeros(len(got_boxes), dtype=bool)
    result.detections += len(ref_boxes)
    missing = []
    for i in np.argsort(-ref_scores, kind="stable"):
        options = np.flatnonzero(~used & (got_labels == ref_labels[i]))
        if options.size:
            error = np.abs(got_boxes[options] - ref_boxes[i])
            fits = (error <= tol.box_rtol * np.maximum(np.abs(ref_boxes[i]), floor)).all(axis=1)
            fits &= np.abs(got_scores[options] - ref_scores[i]) <= tol.score_atol
            if fits.any():
                j = options[fits][np.argmin(np.abs(got_boxes[options[fits]] - ref_boxes[i]).max(axis=1))]
                used[j] = True
                result.matched += 1
                result.max_box_error = max(result.max_box_error, float(np.abs(got_boxes[j] - ref_boxes[i]).max()))
                result.max_score_error = max(result.max_score_error, float(abs(got_scores[j] - ref_scores[i])))
                continue
        missing.append(int(i))
    extra = [int(j) for j in np.flatnonzero(~used)]
    by_nms_ref, by_nms_got = _nms_explained(missing, ref, extra, got, tol, nms, nms_thresh)
    for i in missing:
        if i in by_nms_ref or _borderline(float(ref_scores[i]), ref_scores, tol, score_thresh, cap):
            result.borderline += 1
        else:
            result.problems.append(f"{where}: PyTorch's detection label {int(ref_labels[i])} score "
                                   f"{ref_scores[i]:.4f} box {np.round(ref_boxes[i], 2).tolist()} is missing")
    for j in extra:
        if j not in by_nms_got and not _borderline(float(got_scores[j]), got_scores, tol, score_thresh, cap):
            result.problems.append(f"{where}: exported detection label {int(got_labels[j])} score "
                                   f"{got_scores[j]:.4f} box {np.round(got_boxes[j], 2).tolist()} is not PyTorch's")


def _as_numpy(det: Any) -> Dets:
    return det.boxes.float().numpy(), det.scores.float().numpy(), det.labels.numpy()


def pytorch_detections(detector: Detector, images: list[np.ndarray], inp: dict[str, Any],
                       canvas: tuple[int, int] | None = None, rescale: bool = True,
                       **options: Any) -> list[Detections]:
    """PyTorch's detections of ``uint8 [H, W, 3]`` images (one batch) on the input of
    :func:`~anchorfree.export.preprocess.letterbox`: on ``canvas`` as a static export runs them, or padded
    to ``size_divisor`` as :class:`anchorfree.Model` does (``canvas=None``). ``inp`` is the export's input
    rule (:attr:`ExportInfo.input`); boxes are in the original images' pixels when ``rescale``."""
    batch_images, sizes, _ = letterbox(images, int(inp["min_size"]), int(inp["max_size"]), canvas,
                                       int(inp["size_divisor"]), mode=resize_mode(inp))
    orig = torch.tensor([image.shape[:2] for image in images])
    batch = Batch(torch.from_numpy(batch_images), torch.from_numpy(sizes), orig_sizes=orig)
    with torch.no_grad():
        return detector.predict(batch, rescale=rescale, **options)


def _compare_resize(images: list[np.ndarray], min_size: int, max_size: int, mode: str = "torchvision") -> str:
    """The NumPy resize of the predictor against the PyTorch path's (torchvision's, or OpenCV's), in words."""
    transform = build_transforms(False, min_size, max_size, resize=mode)
    differs = 0
    for image in images:
        reference = transform(torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.zeros(0, 4),
                              torch.zeros(0, dtype=torch.long))[0].permute(1, 2, 0).numpy()
        ours, _ = resize_for_model(image, min_size, max_size, mode=mode)
        differs += int(reference.shape != ours.shape or not np.array_equal(reference, ours))
    which = "OpenCV's (mmdetection's)" if mode == "mmdet" else "torchvision's"
    if not differs:
        return f"identical to {which} on all {len(images)} images"
    return f"differs from {which} on {differs} of {len(images)} images (a CPU without AVX2?)"


def check_export(model: ExportedModel, detector: Detector, tol: Tolerance, num_images: int = 3,
                 seed: int = 0) -> CheckResult:
    """Run ``model`` (an exported file) and ``detector`` (its PyTorch source, eval mode, CPU) on
    :func:`check_images` and compare (see the module docstring)."""
    info = model.info
    inp = info.input
    runtime = {"onnx": "onnxruntime", "openvino": "OpenVINO", "pt2": "torch.export",
               "torchscript": "TorchScript"}[model.format]
    result = CheckResult(passed=True, runtime=runtime, tolerance=tol, canvas=info.canvas)
    images = check_images(num_images, int(inp["min_size"]), seed)
    result.image_shapes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    result.preprocessing = _compare_resize(images, int(inp["min_size"]), int(inp["max_size"]), resize_mode(inp))

    opts = model.inference_options()
    head_fields = set(type(detector.head.cfg).INFERENCE_FIELDS)
    torch_opts = {k: v for k, v in opts.items() if k in head_fields}
    step = info.batch or 2  # a dynamic export runs batches of two sizes: 2 images, then the rest
    detector = detector.eval()
    with warnings.catch_warnings():  # a check image shrunk to fit a small canvas: both sides get the same input
        warnings.simplefilter("ignore", UserWarning)
        _compare(model, detector, images, step, opts, torch_opts, tol, result)
    result.images = len(images)
    result.passed = tol.holds(result)
    return result


def _compare(model: ExportedModel, detector: Detector, images: list[np.ndarray], step: int, opts: dict[str, Any],
             torch_opts: dict[str, Any], tol: Tolerance, result: CheckResult) -> None:
    """The comparisons of :func:`check_export`, batch by batch, into ``result``."""
    info = model.info
    cap, thresh = int(opts["max_detections"]), float(opts["score_thresh"])
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        if info.raw_candidates:
            batch_images, sizes = model.preprocess(chunk)
            got = model.detect(batch_images, sizes, dict(opts, nms="none", max_detections=10 ** 9), len(chunk))
            refs = pytorch_detections(detector, chunk, info.input, info.canvas, rescale=False,
                                      **dict(torch_opts, nms="none", max_detections=10 ** 9))
            for i, (ref, out) in enumerate(zip(refs, got)):
                match_detections(_as_numpy(ref), out, tol, thresh, None, f"image {start + i} (candidates)", result,
                                 image_side=float(sizes[i].max()))
        got = [(p.boxes, p.scores, p.labels) for p in model.predict_batch(chunk, opts)]
        refs = pytorch_detections(detector, chunk, info.input, info.canvas, **torch_opts)
        for i, (ref, out) in enumerate(zip(refs, got)):
            side = float(max(chunk[i].shape[:2]))
            match_detections(_as_numpy(ref), out, tol, thresh, cap, f"image {start + i}", result, opts["nms"],
                             float(opts["nms_thresh"]), side)
            if info.canvas is not None:
                _against_model(detector, chunk[i], out, info, torch_opts, opts, tol, result)


def _against_model(detector: Detector, image: np.ndarray, got: Dets, info: ExportInfo, torch_opts: dict[str, Any],
                   opts: dict[str, Any], tol: Tolerance, result: CheckResult) -> None:
    """A static export's detections of one image against :class:`anchorfree.Model`'s (the image alone, padded
    to ``size_divisor``), counted in ``result.model_*`` when that padded size is not the canvas (else the
    input is the canvas's, compared already)."""
    inp = info.input
    divisor = int(inp["size_divisor"])
    size = keep_ratio_size(image.shape[0], image.shape[1], int(inp["min_size"]), int(inp["max_size"]),
                           resize_mode(inp))
    if tuple(-(-side // divisor) * divisor for side in size) == tuple(info.canvas):
        return
    ref = pytorch_detections(detector, [image], inp, None, **torch_opts)[0]
    scratch = CheckResult(passed=True, runtime=result.runtime, tolerance=tol)
    match_detections(_as_numpy(ref), got, tol, float(opts["score_thresh"]), int(opts["max_detections"]), "", scratch,
                     opts["nms"], float(opts["nms_thresh"]), float(max(image.shape[:2])))
    result.model_images += 1
    result.model_detections += scratch.detections
    result.model_matched += scratch.matched
