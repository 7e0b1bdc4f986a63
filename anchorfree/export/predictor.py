"""Run an exported detector with the calling convention of :class:`anchorfree.Model`.

    >>> from anchorfree.export.predictor import ExportedModel
    >>> model = ExportedModel("runs/demo/best.onnx")      # onnxruntime; no PyTorch needed
    >>> result = model("photo.jpg", score_thresh=0.3)      # a Prediction in the photo's pixels
    >>> result.boxes, result.scores, result.labels, result.names

For ``.onnx`` files this module imports only numpy, PIL and onnxruntime; for OpenVINO's ``.xml`` (+ ``.bin``)
numpy, PIL and openvino. It also runs the TorchScript (``.torchscript``) and ``torch.export`` (``.pt2``) files
of :func:`anchorfree.export.export_model` (those need PyTorch and anchorfree's ``anchorfree::suppress``
operator, registered on first use). The runtimes: :mod:`anchorfree.export.backends`.

Each call: images → ``uint8 [H, W, 3]`` (:func:`~anchorfree.export.preprocess.to_rgb_array`) → the PyTorch
path's resize and padding (:func:`~anchorfree.export.preprocess.letterbox`): a batch on the export's canvas
(static) or padded to ``size_divisor`` (dynamic) → the graph → rows ``< num_detections`` → for exports of
raw candidates the suppression chosen per call (:func:`hard_nms`) and the best ``max_detections`` →
boxes divided by the resize scale (as :meth:`Detector.predict` with ``rescale``).

Per-call options: ``score_thresh`` and ``nms_thresh`` are graph inputs (any value); ``max_detections``
up to the export's; ``nms`` only as exported (any hard mode or none for raw candidates). The other
inference settings (``topk``, ``peak_kernel``…) are fixed in the graph: passing another value is an error.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ExportError
from ..files import export_format
from .backends import OUTPUT_NAMES, open_backend
from .metadata import ExportInfo
from .prediction import Prediction
from .preprocess import letterbox, resize_mode, to_rgb_array

RUNTIME_OPTIONS = ("score_thresh", "nms_thresh", "max_detections", "nms")


def hard_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_thresh: float,
             classwise: bool = True) -> np.ndarray:
    """Greedy NMS of ``boxes [N, 4]`` (within each label when ``classwise``), the decisions of
    :func:`anchorfree.models.postprocess.batched_nms_all`: float64, labels moved apart by an offset, a box
    is removed when its IoU with a kept higher-scoring box is ``> iou_thresh``. Kept indices by score."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes.astype(np.float64)
    if classwise:
        boxes = boxes + (labels.astype(np.float64) * (boxes.max() - boxes.min() + 1))[:, None]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size:
            first, rest = order[0], order[1:]
            keep.append(first)
            lt = np.maximum(boxes[first, :2], boxes[rest, :2])
            rb = np.minimum(boxes[first, 2:], boxes[rest, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            iou = inter / (areas[first] + areas[rest] - inter)
            order = rest[~(iou > iou_thresh)]  # 0/0 (empty boxes) is NaN: kept, as torchvision
    return np.array(keep, dtype=np.int64)


class ExportedModel:
    """An exported detector ready for inference, called as :class:`anchorfree.Model`.

    Args:
        path: a file written by :func:`anchorfree.export.export_model` (``.onnx``, ``.xml``, ``.pt2``,
            ``.torchscript``).
        device: ``auto`` (ONNX: CUDA when onnxruntime has it; OpenVINO, ``.pt2`` / ``.torchscript``: the CPU),
            ``cpu``, ``cuda``, ``cuda:N``.
        threads: the runtime's CPU threads (onnxruntime, OpenVINO; default ``$ANCHORFREE_RUNTIME_THREADS``, else
            one per core).
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        self.format = export_format(self.path)
        if self.format is None:
            raise ExportError(f"{self.path} is not an exported model (expected .onnx, .xml, .pt2 or .torchscript)")
        if not self.path.is_file():
            raise ExportError(f"exported model {self.path} does not exist")
        self.backend = open_backend(self.path, self.format, device, threads)
        self.info = ExportInfo.from_props(self.backend.props, str(self.path))
        self.backend.validate(self.info, str(self.path))
        self.class_names = list(self.info.class_names)
        self.label_to_cat_id = dict(self.info.label_to_cat_id)
        self.shrink_warned = False
        # raw candidates are suppressed here: by default as PyTorch does (hard class-wise NMS for Soft-NMS heads)
        hard = ("classwise", "agnostic", "none")
        self.default_nms = self.info.suppression if not self.info.raw_candidates else (
            self.info.pytorch_nms if self.info.pytorch_nms in hard else "classwise")

    # ---- options -------------------------------------------------------------------------
    def inference_options(self, **overrides: Any) -> dict[str, Any]:
        """The export's inference settings with per-call ``overrides`` (``None`` values are ignored);
        refuses what the graph cannot do, naming the option and what to do instead."""
        info, source = self.info, self.path.name
        opts = dict(info.inference)
        opts["nms"] = self.default_nms
        cap = opts["max_detections"]
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in opts and name not in RUNTIME_OPTIONS:
                raise ConfigError(f"the {info.head} head has no inference option '{name}'; the options of {source}: "
                                  f"{', '.join(sorted(set(opts) | set(RUNTIME_OPTIONS)))}")
            if name == "nms" and value != info.suppression and not (
                    info.raw_candidates and value in ("classwise", "agnostic", "none")):
                allowed = "classwise, agnostic or none" if info.raw_candidates else info.suppression
                raise ConfigError(f"{source} was exported with nms={info.suppression}; nms={value!r} needs another "
                                  f"export (this one allows {allowed}; export_model(..., nms=False) keeps raw "
                                  "candidates for any hard NMS)")
            if name == "max_detections" and not info.raw_candidates and int(value) > cap:
                raise ConfigError(f"{source} returns at most {cap} detections per image; max_detections={value} "
                                  "needs an export with a larger max_detections")
            if name not in RUNTIME_OPTIONS and value != opts[name]:
                raise ConfigError(f"{name}={opts[name]!r} is fixed in {source}; for {name}={value!r} export the "
                                  f"model again with options={{'{name}': {value!r}}}")
            opts[name] = value
        if not 0 <= float(opts["nms_thresh"]) <= 1:
            raise ConfigError(f"nms_thresh must be an IoU in [0, 1], got {opts['nms_thresh']}")
        if int(opts["max_detections"]) < 1:
            raise ConfigError(f"max_detections must be >= 1, got {opts['max_detections']}")
        return opts

    # ---- inference -----------------------------------------------------------------------
    def __call__(self, images: Any, score_thresh: float | None = None, batch_size: int = 8,
                 slice_size: int | None = None, overlap: float = 0.2, full_image: bool = False,
                 merge: str = "nms", **options: Any) -> Prediction | list[Prediction]:
        """Detect objects; one :class:`Prediction` per image (a list when given a list). ``options`` as
        :meth:`anchorfree.Model.__call__` (see the module docstring for what an export allows); ``slice_size``
        … ``merge``: sliced inference as :meth:`anchorfree.Model.__call__` (needs PyTorch for the merge)."""
        opts = self.inference_options(score_thresh=score_thresh, **options)
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        step = self.info.batch or batch_size
        results: list[Prediction] = []
        if slice_size is not None:
            results = [self.predict_sliced(item, opts, (slice_size, overlap, full_image, merge), step)
                       for item in items]
            return results[0] if single else results
        for start in range(0, len(items), step):
            results += self.predict_batch(items[start:start + step], opts)
        return results[0] if single else results

    def predict_sliced(self, item: Any, opts: dict[str, Any], slicing: Any, step: int | None = None) -> Prediction:
        """One image in tiles (:func:`anchorfree.inference.slicing.predict_sliced`), each run by this export;
        ``slicing``: a :class:`~anchorfree.inference.slicing.SliceOptions` or its fields as a tuple, ``opts``
        resolved by :meth:`inference_options`."""
        try:
            import torch

            from ..inference.slicing import SliceOptions, predict_sliced
        except ImportError:
            raise ConfigError("sliced inference merges tiles with PyTorch's ops: install torch, or predict without "
                              "slice_size") from None

        def detect(crops: list) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            arrays = [np.ascontiguousarray(crop.permute(1, 2, 0).numpy()) for crop in crops]
            return [(p.boxes, p.scores, p.labels) for p in self.predict_batch(arrays, opts)]

        image = torch.from_numpy(np.ascontiguousarray(to_rgb_array(item).transpose(2, 0, 1)))
        options = slicing if isinstance(slicing, SliceOptions) else SliceOptions(*slicing)
        boxes, scores, labels = predict_sliced(detect, image, options, step or self.info.batch or 8)
        return Prediction(boxes.numpy(), scores.numpy(), labels.numpy(), self.class_names, self.label_to_cat_id)

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``uint8 [H, W, 3]`` images → the graph's ``images`` and ``image_sizes`` (:func:`letterbox`; the
        export's batch size is filled with empty images)."""
        inp = self.info.input
        batch, sizes, shrunk = letterbox(images, int(inp["min_size"]), int(inp["max_size"]), self.info.canvas,
                                         int(inp["size_divisor"]), self.info.batch, resize_mode(inp))
        if shrunk and not self.shrink_warned:
            warnings.warn(f"an image of this size does not fit the {self.info.canvas} canvas of {self.path.name} "
                          "after the resize of the PyTorch path; it is shrunk to fit, so its detections differ "
                          "from PyTorch's (export with a larger input_size, or dynamic=True)", stacklevel=3)
            self.shrink_warned = True
        return batch, sizes

    def detect(self, batch: np.ndarray, sizes: np.ndarray, opts: dict[str, Any],
               count: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The graph's detections of the first ``count`` images of a batch, in input pixels: per image
        ``(boxes [N, 4], scores [N], labels [N])``; raw candidates are suppressed here as ``opts`` say."""
        boxes, scores, labels, num = self.backend.run(batch, sizes, float(opts["score_thresh"]),
                                                      float(opts["nms_thresh"]))
        out = []
        for i in range(len(batch) if count is None else count):
            n = int(num[i])
            b, s, lab = boxes[i, :n], scores[i, :n], labels[i, :n]
            if self.info.raw_candidates and opts["nms"] in ("classwise", "agnostic"):
                keep = hard_nms(b, s, lab, float(opts["nms_thresh"]), classwise=opts["nms"] == "classwise")
                b, s, lab = b[keep], s[keep], lab[keep]
            cap = int(opts["max_detections"])
            out.append((b[:cap], s[:cap], lab[:cap]))
        return out

    def predict_batch(self, items: list[Any], opts: dict[str, Any]) -> list[Prediction]:
        """One batch of images (at most the export's batch size) with resolved ``opts`` (:meth:`inference_options`)."""
        arrays = [to_rgb_array(item) for item in items]
        batch, sizes = self.preprocess(arrays)
        results = []
        for (boxes, scores, labels), size, image in zip(self.detect(batch, sizes, opts, len(arrays)), sizes, arrays):
            ry, rx = np.array(image.shape[:2], dtype=np.float32) / size.astype(np.float32)
            boxes = boxes * np.array([rx, ry, rx, ry], dtype=np.float32)
            results.append(Prediction(boxes, scores, labels, self.class_names, self.label_to_cat_id))
        return results

    def __repr__(self) -> str:
        canvas = "dynamic" if self.info.canvas is None else f"{self.info.canvas[0]}x{self.info.canvas[1]}"
        return f"ExportedModel({self.path}, {self.format}, {self.info.model_name}, {canvas}, nms={self.info.suppression})"
