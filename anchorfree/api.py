"""The Python API: load a trained detector and call it on images.

    >>> from anchorfree import Model, load_model
    >>> model = Model("runs/demo/best.pt")
    >>> result = model("photo.jpg")          # or a PIL image, an HWC uint8 array, a CHW tensor
    >>> result.boxes, result.scores, result.labels, result.names
    >>> onnx_model = load_model("runs/demo/best.onnx")   # an export: same calls, onnxruntime, no PyTorch needed

This module imports without PyTorch (then only :func:`load_model` on an exported ``.onnx`` file works).
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from .errors import AnchorfreeError, ConfigError
from .export.prediction import Prediction
from .export.preprocess import to_rgb_array

try:
    import torch
    from torch import Tensor

    from .data import build_transforms, collate
    from .inference.checkpoint import load_detector
    from .inference.slicing import SliceOptions, predict_sliced
    from .models.fuse import inference_detector
    from .runtime import autocast, mixed_precision_available, select_device
except ImportError as e:  # exported models run without PyTorch; Model needs it
    if e.name not in ("torch", "torchvision"):
        raise
    torch = None

if TYPE_CHECKING:
    from .config import HeadConfig
    from .export.predictor import ExportedModel

ImageLike = Union[str, Path, Image.Image, np.ndarray, "Tensor"]

__all__ = ["ImageLike", "Model", "Prediction", "load_model", "to_uint8_chw"]


def _require_torch(what: str) -> None:
    if torch is None:
        raise AnchorfreeError(f"{what} needs PyTorch, which is not installed; install it, or run an exported model "
                              "without it: anchorfree.load_model('model.onnx')")


def load_model(path: str | Path, device: str = "auto", fast: bool | None = None,
               threads: int | None = None) -> "Model | ExportedModel":
    """A model ready for inference, whatever was saved: a run folder or ``.pt`` checkpoint gives a
    :class:`Model` (PyTorch); an exported ``.onnx`` (onnxruntime; no PyTorch needed), OpenVINO ``.xml``,
    ``.pt2`` or ``.torchscript`` file gives an :class:`~anchorfree.export.predictor.ExportedModel`. Both are
    called the same way and return :class:`Prediction` objects.

    ``fast`` (bf16/AMP, channels_last) applies to PyTorch checkpoints only; an export runs as it was
    exported (``export_model(..., half=True)`` for fp16, ``int8=True`` for int8). ``threads``: the CPU threads
    of an export's runtime (default ``$ANCHORFREE_RUNTIME_THREADS``, else one per core); a PyTorch model uses
    torch's (``torch.set_num_threads``)."""
    from .export.predictor import ExportedModel, export_format

    if export_format(path) is not None:
        if fast:
            raise ConfigError(f"fast=True applies to PyTorch checkpoints; {Path(path).name} is an export and runs in "
                              "the precision it was exported with (export_model(..., half=True) for fp16)")
        return ExportedModel(path, device=device, threads=threads)
    return Model(path, device=device, fast=fast)


def to_uint8_chw(image: ImageLike, orient: bool = True) -> Tensor:
    """Any supported image input → ``uint8 [3, H, W]`` RGB. Files and PIL images are read as
    :func:`~anchorfree.export.preprocess.to_rgb_array` reads them for exported models: turned as their EXIF
    orientation says (as photo viewers show them) unless ``orient=False`` (the stored pixels, the grid that
    dataset annotations refer to)."""
    _require_torch("to_uint8_chw")
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise AnchorfreeError(f"tensor images must be CxHxW with C = 1 or 3, got shape {tuple(image.shape)}")
        if image.dtype != torch.uint8:
            image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)  # float tensors are 0..1
        return image.expand(3, -1, -1).contiguous()
    array = to_rgb_array(image, orient=orient)  # its message for unsupported types
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class Model:
    """A trained detector ready for inference.

    Args:
        checkpoint: a ``.pt`` file or a run folder (``best.pt`` is used). An exported file (``.onnx``, ``.pt2``,
            ``.torchscript``) gives what :func:`load_model` gives for it: an
            :class:`~anchorfree.export.predictor.ExportedModel`, called the same way.
        device: ``auto``, ``cpu``, ``cuda``...
        fast: bf16 autocast on CPUs with native bf16 (AMP on CUDA) and channels_last; ``None``
            enables it where the hardware supports it.
    """

    def __new__(cls, checkpoint: str | Path | None = None, *args: Any, **kwargs: Any) -> "Model | ExportedModel":
        from .export.predictor import export_format

        if cls is Model and checkpoint is not None and export_format(checkpoint) is not None:
            return load_model(checkpoint, *args, **kwargs)  # an export: its predictor (not a Model, so no __init__)
        return super().__new__(cls)

    def __init__(self, checkpoint: str | Path, device: str = "auto", fast: bool | None = None) -> None:
        _require_torch(f"Model({checkpoint})")
        detector, self.config, ckpt = load_detector(checkpoint)
        self.device = select_device(device)
        self.fast = mixed_precision_available(self.device) if fast is None else fast
        self.detector = inference_detector(detector.to(self.device), self.fast)
        self.class_names = list(self.config.model.class_names or range(self.config.model.num_classes))
        self.label_to_cat_id = {int(k): int(v) for k, v in (ckpt.get("label_to_cat_id") or {}).items()}
        inp = self.config.model.input
        self.transform = build_transforms(False, inp.min_size, inp.max_size, resize=inp.resize)

    def __call__(self, images: ImageLike | list[ImageLike], score_thresh: float | None = None,
                 batch_size: int = 8, slice_size: int | None = None, overlap: float = 0.2, full_image: bool = False,
                 merge: str = "nms", **options: Any) -> Prediction | list[Prediction]:
        """Detect objects; one :class:`Prediction` per image (a list when given a list).

        ``score_thresh`` and the other keyword ``options`` (``nms="agnostic"``, ``nms_thresh``,
        ``max_detections``, ``flip_test`` for CenterNet…) apply to this call only; the model itself is not
        changed, so one :class:`Model` can serve concurrent calls with different options.

        ``slice_size=S`` detects small objects in large images: tiles of S px sharing ``overlap`` of their side,
        each run at the model's input size (``batch_size`` tiles at a time), merged across tiles by ``merge``
        (``nms`` or ``greedy_nmm``, on intersection over the smaller box, as SAHI), plus the whole image with
        ``full_image`` (:mod:`anchorfree.inference.slicing`)."""
        # parsed once, here: a wrong option fails before any image is read
        opts = self.detector.head.inference_options(score_thresh=score_thresh, **options)
        slicing = None if slice_size is None else SliceOptions(slice_size, overlap, full_image, merge)
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results: list[Prediction] = []
        with torch.no_grad():
            if slicing is not None:
                results = [self._predict_sliced(item, opts, slicing, batch_size) for item in items]
            else:
                for start in range(0, len(items), batch_size):
                    results += self._predict_batch(items[start:start + batch_size], opts)
        return results[0] if single else results

    def stream(self, source: str | Path, vid_stride: int = 1, max_frames: int | None = None, track: bool = False,
               **options: Any) -> Iterator[tuple[Any, Prediction]]:
        """``(frame, prediction)`` for every frame of a video file, a folder or glob of frames, a stream URL or a
        webcam index, one at a time (constant memory); ``frame.index``, ``frame.time_s``, ``frame.image`` (RGB
        ``[H, W, 3]``). With ``track=True`` objects are tracked across frames (ByteTrack) and each prediction has
        ``track_ids``. ``options`` as for a call (``score_thresh``, ``slice_size``…)."""
        from .inference.video import stream_predictions

        return stream_predictions(self, source, vid_stride, max_frames, track, options)

    def track(self, source: str | Path, **kwargs: Any) -> Iterator[tuple[Any, Prediction]]:
        """:meth:`stream` with tracking."""
        return self.stream(source, track=True, **kwargs)

    def _predict_sliced(self, image: ImageLike, opts: "HeadConfig", slicing: "SliceOptions",
                        batch_size: int) -> Prediction:
        def detect(crops: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
            return [(p.boxes, p.scores, p.labels) for p in self._predict_batch(crops, opts)]

        boxes, scores, labels = predict_sliced(detect, to_uint8_chw(image), slicing, batch_size)
        return Prediction(boxes.float(), scores.float(), labels, self.class_names, self.label_to_cat_id)

    def _predict_batch(self, items: list[ImageLike], opts: "HeadConfig") -> list[Prediction]:
        samples = []
        for image in items:
            image = to_uint8_chw(image)
            empty = torch.zeros(0, 4)
            resized, _, _, scale = self.transform(image, empty, torch.zeros(0, dtype=torch.long))
            samples.append((resized, {"boxes": empty, "labels": torch.zeros(0, dtype=torch.long), "image_id": -1,
                                      "orig_size": torch.tensor(image.shape[-2:]), "scale": scale}))
        batch = collate(samples, self.config.model.input.size_divisor).to(self.device)
        with autocast(self.device, enabled=self.fast):
            dets = self.detector.predict(batch, opts=opts)
        out = []
        for det in dets:
            det = det.to("cpu")
            out.append(Prediction(det.boxes.float(), det.scores.float(), det.labels, self.class_names,
                                  self.label_to_cat_id))
        return out
