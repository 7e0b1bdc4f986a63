"""The runtimes that run exported files, one class each, all with ``run(images, sizes, score_thresh,
nms_thresh) → [boxes, scores, labels, num_detections]`` and the file's metadata as ``props``:

* :class:`OnnxRuntimeBackend` — ``.onnx`` (fp32, fp16, int8 QDQ): onnxruntime, CPU or CUDA provider;
* :class:`OpenVINOBackend` — ``.xml`` + ``.bin`` (OpenVINO IR: fp32, fp16 weights, int8): OpenVINO's CPU
  plugin, float parts in fp32 (``INFERENCE_PRECISION_HINT=f32``: the same numbers on every CPU, also where
  the plugin would pick bf16 by itself);
* :class:`TorchBackend` — ``.pt2`` (``torch.export``) and ``.torchscript``.

Threads: ``threads`` (else the environment variable ``ANCHORFREE_RUNTIME_THREADS``, else the runtime's
default: one per core) sets onnxruntime's intra-op threads and OpenVINO's ``INFERENCE_NUM_THREADS``.
Importing this module needs only numpy; each runtime is imported when a file of its kind is opened.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ExportError, MissingRuntimeError
from .metadata import ExportInfo

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
THREADS_ENV = "ANCHORFREE_RUNTIME_THREADS"
OPENVINO_RT_KEY = ["anchorfree", "props"]  # where an OpenVINO IR keeps the metadata (rt_info, one JSON string)


def runtime_threads(threads: int | None) -> int | None:
    """``threads``, else ``$ANCHORFREE_RUNTIME_THREADS``, else ``None`` (the runtime's default)."""
    value = threads if threads is not None else os.environ.get(THREADS_ENV) or None
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"runtime threads must be an integer >= 1, got {value!r} "
                          f"({'threads=' if threads is not None else THREADS_ENV + '='}{value})")
    return count


def _check_signature(source: str, inputs: dict[str, tuple[str, list]], outputs: list[str],
                     info: ExportInfo) -> None:
    """``inputs``: name → (element type in words, shape with ``None`` for dynamic dimensions)."""
    if "images" not in inputs or "image_sizes" not in inputs or tuple(outputs) != OUTPUT_NAMES:
        raise ExportError(f"{source}: inputs {sorted(inputs)} / outputs {outputs} are not those of an anchorfree "
                          f"export (images, image_sizes → {', '.join(OUTPUT_NAMES)}); export it again")
    kind, shape = inputs["images"]
    if "uint8" not in kind and "u8" not in kind or len(shape) != 4 or shape[1] != 3:
        raise ExportError(f"{source}: input 'images' is {kind} {shape}, expected uint8 [B, 3, H, W]")
    if info.canvas is not None and tuple(shape[2:]) != info.canvas or (
            info.batch is not None and shape[0] != info.batch):
        raise ExportError(f"{source}: input 'images' has shape {shape} but the metadata says batch {info.batch} on "
                          f"a {info.canvas} canvas; the file was changed after export — export it again")


class OnnxRuntimeBackend:
    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingRuntimeError("onnxruntime is not installed; install it with pip install 'anchorfree[export]' "
                              "(or onnxruntime / onnxruntime-gpu)") from None
        available = ort.get_available_providers()
        if device == "auto":
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise ConfigError(f"device '{device}' was requested but this onnxruntime has no CUDA provider "
                                  f"(it has {', '.join(available)}); install onnxruntime-gpu or use device=cpu")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            raise ConfigError(f"device '{device}' is not one of auto, cpu, cuda, cuda:N")
        options = ort.SessionOptions()
        # warnings only: the thresholds are graph inputs with defaults (initializers), which it notes each time
        options.log_severity_level = 3
        count = runtime_threads(threads)
        if count is not None:
            options.intra_op_num_threads = count
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for unreadable files
            raise ExportError(f"onnxruntime cannot load {path} ({type(e).__name__}: {str(e).strip()[:300]}); the file "
                              "is corrupt or not an ONNX model — export it again") from None
        self.props = dict(self.session.get_modelmeta().custom_metadata_map)
        # inputs with a default (the thresholds) are "overridable initializers" to onnxruntime
        self.inputs = {i.name: i for i in [*self.session.get_inputs(), *self.session.get_overridable_initializers()]}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def validate(self, info: ExportInfo, source: str) -> None:
        inputs = {name: (i.type, [d if isinstance(d, int) else None for d in i.shape]) for name, i in self.inputs.items()}
        _check_signature(source, inputs, self.outputs, info)

    def run(self, images: np.ndarray, sizes: np.ndarray, score_thresh: float, nms_thresh: float) -> list[np.ndarray]:
        feed = {"images": images, "image_sizes": sizes}
        for name, value in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh)):
            if name in self.inputs:
                feed[name] = np.array(value, dtype=np.float32)
        return self.session.run(list(OUTPUT_NAMES), feed)


class OpenVINOBackend:
    """An OpenVINO IR (``model.xml`` with its weights ``model.bin``) on OpenVINO's CPU plugin; one inference
    request per calling thread (a request is not thread-safe, the compiled model is)."""

    def __init__(self, path: Path, device: str, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MissingRuntimeError(f"{path.name} is an OpenVINO model but openvino is not installed; install it with pip "
                              "install 'anchorfree[openvino]'") from None
        if device not in ("auto", "cpu"):
            raise ConfigError(f"OpenVINO models run on the CPU here; device '{device}' is not available to them "
                              "(use device=cpu, or an ONNX export for CUDA)")
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ExportError(f"{path}: its weights file {weights.name} is missing; an OpenVINO model is the .xml and "
                              "the .bin of the same name side by side — copy both, or export it again")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - truncated or foreign files all need the same advice
            raise ExportError(f"OpenVINO cannot read {path} ({type(e).__name__}: {str(e).strip()[:300]}); the file is "
                              "corrupt or not an OpenVINO model — export it again") from None
        self.props = {}
        if model.has_rt_info(OPENVINO_RT_KEY):
            try:
                self.props = json.loads(model.get_rt_info(OPENVINO_RT_KEY).astype(str))
            except (json.JSONDecodeError, RuntimeError):
                raise ExportError(f"{path}: damaged anchorfree metadata in its rt_info; export it again") from None
        self.inputs = {p.get_any_name(): (str(p.get_element_type()), [d.get_length() if d.is_static else None
                                                                        for d in p.get_partial_shape()])
                       for p in model.inputs}
        self.outputs = [p.get_any_name() for p in model.outputs]
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        count = runtime_threads(threads)
        if count is not None:
            config["INFERENCE_NUM_THREADS"] = count
        self.model = model
        self.compiled = None
        self.compile = lambda: core.compile_model(model, "CPU", config)
        self.local = threading.local()

    def validate(self, info: ExportInfo, source: str) -> None:
        _check_signature(source, self.inputs, self.outputs, info)
        try:
            self.compiled = self.compile()
        except Exception as e:  # noqa: BLE001 - the plugin reports unsupported graphs with RuntimeErrors
            raise ExportError(f"OpenVINO cannot compile {source} for the CPU ({type(e).__name__}: "
                              f"{str(e).strip()[-300:]}); export it again with this version of openvino") from None

    def run(self, images: np.ndarray, sizes: np.ndarray, score_thresh: float, nms_thresh: float) -> list[np.ndarray]:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        feed = {"images": images, "image_sizes": sizes}
        for name, value in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh)):
            if name in self.inputs:  # a graph without NMS (CenterNet) may have dropped the unused one
                feed[name] = np.array(value, dtype=np.float32)
        out = request.infer(feed)
        by_name = {key.get_any_name(): value for key, value in out.items()}
        boxes, scores, labels, num = (np.asarray(by_name[name]) for name in OUTPUT_NAMES)
        return [boxes.astype(np.float32, copy=False), scores.astype(np.float32, copy=False),
                labels.astype(np.int64, copy=False), num.astype(np.int64, copy=False)]


class TorchBackend:
    """``torch.export`` (``.pt2``) and TorchScript (``.torchscript``) files."""

    def __init__(self, path: Path, device: str, fmt: str) -> None:
        import torch

        from . import ops  # noqa: F401 - registers anchorfree::suppress, which the graphs call

        self.torch = torch
        # the graph was traced on the CPU (its constants live there): "auto" runs it there
        self.device = torch.device("cpu" if device == "auto" else device)
        extra = {"anchorfree.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
                if fmt == "pt2":
                    self.module = torch.export.load(str(path), extra_files=extra).module().to(self.device)
                else:
                    self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra)
        except Exception as e:  # noqa: BLE001 - truncated or foreign files all need the same advice
            raise ExportError(f"cannot load {path} as a {fmt} file ({type(e).__name__}: {str(e).strip()[:300]}); "
                              "the file is corrupt or of another kind — export it again") from None
        try:
            self.props = json.loads(extra["anchorfree.json"] or "{}")
        except json.JSONDecodeError:
            self.props = {}

    def validate(self, info: ExportInfo, source: str) -> None:
        """Nothing beyond the metadata to check: the graph's signature is fixed by the file format."""

    def run(self, images: np.ndarray, sizes: np.ndarray, score_thresh: float, nms_thresh: float) -> list[np.ndarray]:
        torch = self.torch
        args = (torch.from_numpy(images).to(self.device), torch.from_numpy(sizes).to(self.device),
                torch.tensor(score_thresh, dtype=torch.float32, device=self.device),
                torch.tensor(nms_thresh, dtype=torch.float32, device=self.device))
        with torch.no_grad():
            return [t.cpu().numpy() for t in self.module(*args)]


def open_backend(path: Path, fmt: str, device: str, threads: int | None = None):
    """The backend of an exported file of format ``fmt`` (:data:`anchorfree.files.SUFFIX_FORMATS`)."""
    if fmt == "onnx":
        return OnnxRuntimeBackend(path, device, threads)
    if fmt == "openvino":
        return OpenVINOBackend(path, device, threads)
    return TorchBackend(path, device, fmt)
