""":func:`export_model`: a trained detector → a deployable file, checked against PyTorch right away."""
from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import NMS_MODES, ModelConfig
from ..inference.checkpoint import load_detector
from ..errors import ConfigError, DatasetError, ExportError, MissingRuntimeError
from ..files import SUFFIX_FORMATS, export_files
from ..models.detector import Detector
from .certificate import Certificate, certificate_path, certify
from .check import FP16, FP32, INT8, CheckResult, Tolerance, check_export
from .graph import DetectionGraph
from .metadata import MMDET_RESIZE_RULE, RESIZE_RULE, ExportInfo
from .ops import HARD_MODES, SOFT_MODES
from .predictor import ExportedModel
from .writers import MIN_OPSET, example_inputs, write_onnx, write_openvino, write_pt2, write_torchscript

FORMATS = {"onnx": ".onnx", "openvino": ".xml", "pt2": ".pt2", "torchscript": ".torchscript"}
DEFAULT_CALIBRATION = 128  # int8 calibration images
OUTPUTS_DOC = ("inputs: images uint8 [B, 3, H, W] RGB (top-left, zero padded), image_sizes int64 [B, 2] valid (h, w), "
               "optional score_thresh / nms_thresh float32 scalars; outputs: boxes float32 [B, M, 4] xyxy in images "
               "pixels, scores float32 [B, M], labels int64 [B, M], num_detections int64 [B]; rows sorted by score, "
               "row j of image b is a detection iff j < num_detections[b] (later rows: boxes 0, score 0, label -1)")


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and how its check went; :meth:`summary` is the text to print."""

    path: Path
    format: str
    model_name: str
    head: str
    input_shape: list[int | str]
    dynamic: bool
    precision: str
    suppression: str
    raw_candidates: bool
    opset: int | None
    file_size: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    check: CheckResult | None = None
    certificate: Certificate | None = None
    quantization: dict | None = None

    @property
    def half(self) -> bool:
        return self.precision == "fp16"

    @property
    def passed(self) -> bool | None:
        """The check's verdict: ``True``/``False``, ``None`` when it did not run."""
        return None if self.check is None else self.check.passed

    def summary(self) -> str:
        shape = "x".join(str(d) for d in self.input_shape)
        post = "raw candidates (no NMS)" if self.raw_candidates else f"NMS {self.suppression}"
        lines = [f"wrote {self.path} ({self.file_size / 1e6:.1f} MB, {self.seconds:.1f} s): {self.format}"
                 f"{f' opset {self.opset}' if self.opset else ''}, {self.model_name} ({self.head}), input {shape} "
                 f"uint8, {self.precision}, {post}"]
        if self.quantization:
            kept = self.quantization["kept_float"]["layers"]
            lines.append(f"int8: {self.quantization['method']}; calibrated on {self.quantization['source']}; "
                         f"{len(kept)} output convolutions and the post-processing kept in float")
        lines += [f"note: {note}" for note in self.notes]
        lines.append("check skipped (check=False)" if self.check is None else self.check.summary())
        if self.certificate is not None:
            lines.append(self.certificate.table())
        return "\n".join(lines)


def _round_up(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor) * divisor)


def _canvas(cfg: ModelConfig, input_size: int | tuple[int, int] | None) -> tuple[int, int]:
    """The static canvas: ``input_size``, or a square of ``max_size`` rounded up to ``size_divisor``, which
    holds every image the resize rule produces (landscape or portrait)."""
    divisor = cfg.input.size_divisor
    if input_size is None:
        side = _round_up(cfg.input.max_size, divisor)
        return side, side
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if height < 1 or width < 1 or height % divisor or width % divisor:
        raise ConfigError(f"input_size {height}x{width} must be positive multiples of model.input.size_divisor="
                          f"{divisor} (e.g. {_round_up(max(height, 1), divisor)}x{_round_up(max(width, 1), divisor)})")
    return int(height), int(width)


def _suppression(nms: bool | str, configured: str, fmt: str, head: str) -> tuple[str, bool, list[str]]:
    """``(mode in the graph, raw candidates, notes)`` for the ``nms`` argument."""
    if nms is False:
        notes = ["raw candidates: no NMS in the graph; the runtime suppresses them (the anchorfree predictor does "
                 f"hard NMS, by default {configured if configured in HARD_MODES + ('none',) else 'classwise'})"]
        if configured in SOFT_MODES:
            notes.append(f"PyTorch's {configured} is Soft-NMS: with hard NMS the detections differ from PyTorch's")
        return "none", True, notes
    mode = configured if nms is True else nms
    if mode not in NMS_MODES:
        raise ConfigError(f"nms must be True, False or one of {', '.join(NMS_MODES)}, got {nms!r}")
    if mode in SOFT_MODES and fmt == "onnx":
        if nms is not True:
            raise ExportError(f"nms='{mode}' is Soft-NMS, which has no ONNX operator; export with nms='classwise' "
                              "(hard NMS), nms=False (raw candidates) or format='pt2' (Soft-NMS in PyTorch)")
        return "classwise", False, [
            f"the {head} head's {mode} NMS (Soft-NMS) has no ONNX operator: this export uses hard class-wise NMS "
            "(IoU > nms_thresh) instead, so its detections differ from PyTorch's default; the check compares "
            "with PyTorch run with nms='classwise'. For Soft-NMS use format='pt2', or nms=False and your own NMS"]
    return mode, False, []


def _run_check(out: Path, detector: Detector, precision: str, num_images: int) -> CheckResult:
    """:func:`check_export` on the CPU; an fp16 graph that onnxruntime's CPU provider cannot run is reported as
    not checked (with onnxruntime's reason), not as a failure."""
    tolerance: Tolerance = {"fp32": FP32, "fp16": FP16, "int8": INT8}[precision]
    try:
        model = ExportedModel(out, device="cpu")
        return check_export(model, detector, tolerance, num_images=num_images)
    except (ExportError, RuntimeError) as e:  # onnxruntime's errors are RuntimeErrors
        if precision != "fp16":
            raise
        return CheckResult(passed=None, runtime="onnxruntime", tolerance=FP16, problems=[
            f"onnxruntime's CPU provider cannot run this fp16 graph ({str(e).strip()[:300]}); run it with the CUDA "
            "provider (onnxruntime-gpu)"])


def _check_arguments(format: str, dynamic: bool, half: bool, opset: int | None, batch: int, int8: bool,
                     data: object, calib: int, max_ap_drop: float | None) -> None:
    """Refuse the combinations no format can write, before anything is loaded."""
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}, got '{format}'")
    if int8 and format not in ("onnx", "openvino"):
        raise ExportError(f"int8 exports are written as onnx or openvino, not {format}")
    if int8 and half:
        raise ConfigError("choose one precision: int8=True or half=True")
    if int8 and data is None:
        raise ConfigError("an int8 export is calibrated on training images and certified on validation images: pass "
                          "data=<dataset folder or YAML> (CLI: --data DATA)")
    if int8 and (not isinstance(calib, int) or calib < 1):
        raise ConfigError(f"calib must be a number of calibration images >= 1, got {calib!r}")
    if max_ap_drop is not None and (not isinstance(max_ap_drop, (int, float)) or not math.isfinite(max_ap_drop)
                                    or max_ap_drop < 0):
        raise ConfigError(f"max_ap_drop must be a number of AP points >= 0 (e.g. 1.0), got {max_ap_drop!r}")
    if max_ap_drop is not None and data is None:
        raise ConfigError("max_ap_drop applies to the certificate, which needs data=<dataset> (CLI: --data DATA)")
    if format == "torchscript" and dynamic:
        raise ExportError("TorchScript traces record one input size (the number of candidates per level is a "
                          "constant of the trace); use format='onnx' or 'pt2' for dynamic=True")
    if half and format not in ("onnx", "openvino"):
        raise ExportError(f"half=True writes fp16 ONNX or OpenVINO only; {format} files run in fp32 (mixed precision "
                          "in PyTorch: Model(..., fast=True))")
    if opset is not None and (format not in ("onnx", "openvino") or opset < MIN_OPSET):
        raise ConfigError(f"opset applies to ONNX (and OpenVINO, converted from it) and must be >= {MIN_OPSET} (the "
                          f"dynamo exporter), got {opset}")
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")


def _require_runtime(format: str, int8: bool) -> None:
    """Import the packages the export needs now, so that a missing one fails before the long part."""
    import importlib

    needs = {"onnx": ["onnxruntime"] if int8 else [], "openvino": ["openvino"] + (["onnxruntime"] if int8 else [])}
    for name in needs.get(format, []):
        try:
            importlib.import_module(name)
        except ImportError:
            extra = "openvino" if format == "openvino" else "export"
            raise MissingRuntimeError(f"format='{format}'{' with int8' if int8 else ''} needs the {name} package, "
                                      f"which is not installed: pip install 'anchorfree[{extra}]'") from None


def _load(source: str | Path | Detector) -> tuple[Detector, ModelConfig, dict]:
    """The detector (a CPU, eval-mode copy for a :class:`Detector`: the caller's keeps its device and mode),
    its model config and its checkpoint (``{}`` for a :class:`Detector`)."""
    if isinstance(source, Detector):
        return copy.deepcopy(source).cpu().eval(), source.cfg, {}
    detector, config, ckpt = load_detector(source)
    return detector.cpu().eval(), config.model, ckpt


def output_path(out: str | Path | None, ckpt: dict, format: str, precision: str) -> Path:
    if out is None:
        if not ckpt:
            raise ConfigError("export_model(detector, ...) needs out=<file>; a run folder or checkpoint has a default")
        checkpoint = Path(ckpt["path"])
        tag = "" if precision == "fp32" else f"_{precision}"
        out = checkpoint.with_name(f"{checkpoint.stem}{tag}{FORMATS[format]}")
    out = Path(out)
    if SUFFIX_FORMATS.get(out.suffix.lower()) != format:
        raise ConfigError(f"{out}: a {format} export must be named *{FORMATS[format]} (the runtime picks the format "
                          "by the suffix)")
    return out


def _export_info(cfg: ModelConfig, ckpt: dict, opts, suppression: str, raw: bool, dynamic: bool, batch: int,
                 canvas: tuple[int, int], half: bool, notes: list[str]) -> ExportInfo:
    """The metadata written into the file (:mod:`anchorfree.export.metadata`)."""
    inp = cfg.input
    return ExportInfo(
        model_name=cfg.name, head=cfg.head.type,
        class_names=list(cfg.class_names or range(cfg.num_classes)),
        label_to_cat_id={int(k): int(v) for k, v in (ckpt.get("label_to_cat_id") or {}).items()},
        input={"canvas": None if dynamic else list(canvas), "batch": None if dynamic else batch,
               "min_size": inp.min_size, "max_size": inp.max_size, "size_divisor": inp.size_divisor,
               "mean": list(inp.mean), "std": list(inp.std), "resize_mode": inp.resize,
               "resize": MMDET_RESIZE_RULE if inp.resize == "mmdet" else RESIZE_RULE},
        suppression=suppression, raw_candidates=raw, pytorch_nms=opts.nms,
        inference={k: getattr(opts, k) for k in type(opts).INFERENCE_FIELDS},
        precision="fp16" if half else "fp32", notes=" ".join(notes))


def _write(format: str, graph: DetectionGraph, args: tuple, out: Path, props: dict[str, str], divisor: int | None,
           opset: int | None, doc: str, half: bool, calibration: tuple[list, str] | None) -> tuple[int | None, dict | None]:
    """Write the file (ONNX and OpenVINO under temporary names, renamed when complete); ``(opset, quantization
    record)``."""
    if format == "pt2":
        write_pt2(graph, args, out, props, divisor)
        return None, None
    if format == "torchscript":
        write_torchscript(graph, args, out, props)
        return None, None
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / f"{out.stem}.onnx"
        used = write_onnx(graph, args, staged, props, divisor, opset, doc)
        record = None
        if format == "openvino":
            record = write_openvino(staged, out, props, half, None if calibration is None else calibration[0])
        elif calibration is not None:
            from .quantize import quantize_onnx

            record = quantize_onnx(staged, out, calibration[0], props)
        else:
            data = staged.with_name(f"{staged.name}.data")  # external weights of a model over 2 GB
            if data.exists():
                os.replace(data, out.with_name(f"{out.name}.data"))
            os.replace(staged, out)
    if record is not None:
        record["source"] = calibration[1]
    return used, record


def export_model(source: str | Path | Detector, format: str = "onnx", out: str | Path | None = None, *,
                 opset: int | None = None, dynamic: bool = False, nms: bool | str = True, half: bool = False,
                 int8: bool = False, data: str | Path | object | None = None, calib: int = DEFAULT_CALIBRATION,
                 max_ap_drop: float | None = None, certify_on_data: bool = True, batch: int = 1, input_size: int | tuple[int, int] | None = None,
                 options: dict | None = None, check: bool = True, check_images: int = 3,
                 log: Callable[[str], None] | None = None) -> ExportReport:
    """Export a detector, check the file against PyTorch and, with ``data``, certify it (see :mod:`anchorfree.export`).

    Args:
        source: a run folder, a checkpoint (``.pt``) or a :class:`Detector`.
        format: ``onnx``, ``openvino`` (``.xml`` + ``.bin``), ``pt2`` (``torch.export``) or ``torchscript``.
        out: the file to write; default: next to the checkpoint, ``best.onnx`` / ``best.xml`` / ``best.pt2`` /
            ``best.torchscript`` (``_fp16`` or ``_int8`` before the suffix); required for a ``Detector``.
        opset: ONNX opset (>= 18; default: the exporter's).
        dynamic: batch, height and width as dynamic dimensions (onnx, openvino, pt2; height and width multiples of
            ``model.input.size_divisor``); else static shapes: ``batch`` images on a canvas of ``input_size``.
        nms: ``True``: the head's configured suppression (ONNX: hard class-wise for Soft-NMS, with a note);
            a mode name (``classwise``, ``agnostic``, ``none``, Soft-NMS for pt2/torchscript); ``False``: raw
            candidates (no NMS: every candidate above ``score_thresh``, sorted).
        half: fp16 network (ONNX; OpenVINO: fp16 weights); decoding, NMS and outputs stay fp32.
        int8: int8 convolutions (onnx, openvino; :mod:`anchorfree.export.quantize`), calibrated on ``calib``
            training images of ``data``.
        data: a dataset (folder, YAML or :class:`~anchorfree.data.DataSpec`): int8 calibration, and the
            certificate (:mod:`anchorfree.export.certificate`): AP on its validation split next to PyTorch's,
            speed and size, written as ``<file>.certificate.json``.
        calib: calibration images (default 128).
        certify_on_data: ``False``: ``data`` only calibrates an int8 export, no certificate.
        max_ap_drop: the AP points the export may lose against PyTorch (default 1.0 int8, 0.3 fp16, 0.1 fp32);
            an export that loses more is deleted and :class:`~anchorfree.errors.ExportError` raised with the table.
        batch: images per run of a static export.
        input_size: ``(H, W)`` (or one int) of the static canvas, multiples of ``model.input.size_divisor``;
            default a square of ``max_size`` rounded up, which holds every resized image.
        options: inference settings baked in (``score_thresh``, ``nms_thresh``, ``max_detections``, ``topk``…);
            default the config's.
        check: run the file on ``check_images`` images and compare with PyTorch; a mismatch raises
            :class:`~anchorfree.errors.ExportError` (the file stays, for inspection; the error's ``report``
            attribute holds the :class:`ExportReport`).
        log: called with progress messages (nothing is printed).

    Returns:
        an :class:`ExportReport`.
    """
    say = log or (lambda message: None)
    start = time.perf_counter()
    _check_arguments(format, dynamic, half, opset, batch, int8, data, calib, max_ap_drop)
    _require_runtime(format, int8)
    precision = "int8" if int8 else "fp16" if half else "fp32"
    detector, cfg, ckpt = _load(source)
    out = output_path(out, ckpt, format, precision)
    opts = detector.head.inference_options(**(options or {}))
    suppression, raw, notes = _suppression(nms, opts.nms, "onnx" if format == "openvino" else format, cfg.head.type)
    if getattr(opts, "flip_test", False):
        notes.append("flip test in the graph: the network runs on each image and its mirror image")
    canvas = _canvas(cfg, input_size)
    props = _export_info(cfg, ckpt, opts, suppression, raw, dynamic, batch, canvas, half, notes).to_props()
    calibration = None
    if int8:  # read first: a calibration image that cannot be read fails the export before the long part
        from .quantize import calibration_images

        say(f"reading {calib} calibration images…")
        calibration = calibration_images(data, calib)

    graph = DetectionGraph(detector, opts, suppression, raw=raw, half=half and format == "onnx").eval()
    # torch.export fixes a dimension whose example size is 0 or 1: a dynamic export traces a batch of two
    args = example_inputs(graph, max(batch, 2) if dynamic else batch, canvas)
    divisor = cfg.input.size_divisor if dynamic else None
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"exporting {cfg.name} ({cfg.head.type}) to {out} as {format} {precision}…")
    try:
        used_opset, record = _write(format, graph, args, out, props, divisor, opset,
                                    f"anchorfree {cfg.name}: {OUTPUTS_DOC}", half, calibration)
    except (ExportError, ConfigError, DatasetError):
        raise
    except Exception as e:  # exporter failures come in many types; the message is what helps
        raise ExportError(f"exporting {cfg.name} ({cfg.head.type}) to {format} {precision} failed: "
                          f"{type(e).__name__}: {str(e).strip().splitlines()[0][:400]}") from e

    report = ExportReport(path=out, format=format, model_name=cfg.name, head=cfg.head.type,
                          input_shape=["batch", 3, "height", "width"] if dynamic else [batch, 3, *canvas],
                          dynamic=dynamic, precision=precision, suppression=suppression, raw_candidates=raw,
                          opset=used_opset, file_size=sum(f.stat().st_size for f in export_files(out)), seconds=0.0,
                          notes=notes, quantization=record)
    if check:
        say(f"checking {out.name} against PyTorch…")
        report.check = _run_check(out, detector, precision, max(check_images, batch if not dynamic else 3))
    if report.check is not None and report.check.passed is False:
        report.seconds = time.perf_counter() - start
        error = ExportError(f"the export {out} does not match PyTorch: {report.check.summary()}\nThe file is kept "
                            "for inspection; export_model(..., check=False) skips this check")
        error.report = report  # type: ignore[attr-defined]
        raise error
    if data is not None and certify_on_data:
        say(f"certifying {out.name} on the validation split…")
        report.certificate = certify(detector, [out], data, max_ap_drop, log=say)
        report.certificate.write(certificate_path(out))
    report.seconds = time.perf_counter() - start
    if report.certificate is not None and not report.certificate.passed:
        for path in export_files(out):
            path.unlink(missing_ok=True)
        error = ExportError(f"the export {out.name} loses more AP than allowed, so it was deleted:\n"
                            f"{report.certificate.table()}\nThe certificate is kept as {certificate_path(out)}; "
                            "raise max_ap_drop (CLI: --max-ap-drop) to accept it, or try another precision")
        error.report = report  # type: ignore[attr-defined]
        raise error
    say(report.summary())
    return report
