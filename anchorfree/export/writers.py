"""Writing a :class:`~anchorfree.export.graph.DetectionGraph` in each format.

* ONNX: ``torch.onnx.export(dynamo=True)`` (``torch.export`` → onnxscript's torch library, with the
  translations of :mod:`anchorfree.export.ops`), then with the ``onnx`` API: the export's settings as the
  default values of the ``score_thresh`` / ``nms_thresh`` inputs (initializers of the same name, so a
  runtime may omit them), readable names of the dynamic dimensions (``batch``, ``height``, ``width``,
  ``detections``) and the metadata of :mod:`anchorfree.export.metadata` in ``metadata_props``.
* OpenVINO IR (``.xml`` + ``.bin``): the ONNX graph converted by ``openvino.convert_model`` (the thresholds
  as plain inputs: OpenVINO would fold inputs with defaults into constants), weights fp32 or fp16
  (``compress_to_fp16``), int8 from the int8 ONNX graph (:mod:`anchorfree.export.quantize`); the metadata in
  ``rt_info``.
* ``torch.export`` (``.pt2``): ``torch.export.export`` + ``torch.export.save`` with the metadata as the extra
  file ``anchorfree.json``.
* TorchScript (``.torchscript``): ``torch.jit.trace`` + ``torch.jit.save`` (same extra file). A trace
  records one input size: the number of candidates per level is a constant of it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch.export import Dim

from .graph import INPUT_NAMES, OUTPUT_NAMES, DetectionGraph
from ..errors import MissingRuntimeError
from .ops import onnx_translations

MIN_OPSET = 18


def example_inputs(graph: DetectionGraph, batch: int, canvas: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """The traced example: a zero ``uint8`` canvas batch, its sizes and the two thresholds."""
    opts = graph.opts
    images = torch.zeros(batch, 3, *canvas, dtype=torch.uint8)
    sizes = torch.tensor([list(canvas)] * batch, dtype=torch.int64)
    return (images, sizes, torch.tensor(float(opts.score_thresh)), torch.tensor(float(opts.nms_thresh)))


def dynamic_shapes(size_divisor: int) -> dict[str, dict[int, object] | None]:
    """Dynamic batch of ``images`` and ``image_sizes``; dynamic height and width of ``images``, multiples of
    ``size_divisor`` as the PyTorch path pads them (which also keeps the graph's shape arithmetic linear)."""
    batch = Dim("batch", min=1, max=4096)
    blocks = 16384 // size_divisor
    height, width = Dim("height_blocks", min=1, max=blocks), Dim("width_blocks", min=1, max=blocks)
    return {"images": {0: batch, 2: size_divisor * height, 3: size_divisor * width}, "image_sizes": {0: batch},
            "score_thresh": None, "nms_thresh": None}


def _rename_dims(model: "onnx.ModelProto") -> None:  # noqa: F821
    """Name the symbolic dimensions of the inputs/outputs ``batch``, ``height``, ``width``, ``detections``."""
    graph = model.graph
    rename: dict[str, str] = {}
    images = next(v for v in graph.input if v.name == "images")
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        dim = images.type.tensor_type.shape.dim[axis]
        if dim.dim_param:
            rename[dim.dim_param] = name
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[1].dim_param:
            dims[1].dim_param = "detections"


@contextlib.contextmanager
def _quiet():
    """The exporters' deprecation, tracing and optimizer notices are not for users: hold them back."""
    logger = logging.getLogger("onnxscript")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write_onnx(graph: DetectionGraph, args: tuple, out: Path, props: dict[str, str], dynamic: int | None,
               opset: int | None, doc: str) -> int:
    """``dynamic``: the size divisor of a dynamic export, ``None`` for a static one."""
    """Export ``graph`` to ``out``; returns the opset used."""
    import onnx
    from onnx import numpy_helper

    with _quiet():
        program = torch.onnx.export(graph, args, None, dynamo=True, input_names=INPUT_NAMES,
                                    output_names=OUTPUT_NAMES, opset_version=opset,
                                    dynamic_shapes=None if dynamic is None else dynamic_shapes(dynamic),
                                    custom_translation_table=onnx_translations(), verbose=False)
    model = program.model_proto
    inputs = {v.name for v in model.graph.input}
    for name, value in zip(INPUT_NAMES[2:], args[2:]):
        if name in inputs:  # a default makes the input optional (onnxruntime: an overridable initializer)
            model.graph.initializer.append(numpy_helper.from_array(value.numpy().astype("float32"), name))
    if dynamic is not None:
        _rename_dims(model)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    model.doc_string = doc
    model.producer_name = "anchorfree"
    onnx.checker.check_model(model)
    large = model.ByteSize() > 1_800_000_000  # the 2 GB protobuf limit: weights go to out.data
    onnx.save_model(model, str(out), save_as_external_data=large, location=f"{out.name}.data" if large else None)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset or 0)


def write_openvino(onnx_path: Path, out: Path, props: dict[str, str], half: bool,
                   calibration: list | None = None) -> dict | None:
    """Convert the fp32 ONNX export ``onnx_path`` to OpenVINO IR ``out`` (``.xml``, and ``.bin`` beside it);
    ``calibration`` images make it int8 (:func:`~anchorfree.export.quantize.quantize_onnx`). The two files
    are written under temporary names and renamed, the ``.bin`` first. Returns the quantization record."""
    import os
    import tempfile

    import onnx

    try:
        import openvino as ov
    except ImportError:
        raise MissingRuntimeError("format='openvino' needs the openvino package: pip install 'anchorfree[openvino]'") from None
    from .backends import OPENVINO_RT_KEY

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        record = None
        if calibration is not None:  # the QDQ graph of the int8 ONNX export: OpenVINO runs its pairs as int8
            from .quantize import quantize_onnx

            onnx_path, record = Path(tmp) / "int8.onnx", quantize_onnx(onnx_path, Path(tmp) / "int8.onnx",
                                                                        calibration, props)
            record["method"] += "; OpenVINO runs each quantize/dequantize pair as an int8 convolution"
            props = dict(props, precision="int8", quantization=json.dumps(record))
        graph = onnx.load(str(onnx_path))
        plain = [init for init in graph.graph.initializer if init.name not in INPUT_NAMES[2:]]
        del graph.graph.initializer[:]
        graph.graph.initializer.extend(plain)
        inputs = Path(tmp) / "inputs.onnx"
        onnx.save_model(graph, str(inputs))
        with _quiet():
            model = ov.convert_model(str(inputs))
        if calibration is None and half:
            props = dict(props, precision="fp16")
        model.set_rt_info(json.dumps(props), OPENVINO_RT_KEY)
        staged = Path(tmp) / out.name
        ov.save_model(model, str(staged), compress_to_fp16=half)
        os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staged, out)
    return record


def write_pt2(graph: DetectionGraph, args: tuple, out: Path, props: dict[str, str], dynamic: int | None) -> None:
    with _quiet():
        program = torch.export.export(graph, args, dynamic_shapes=None if dynamic is None else dynamic_shapes(dynamic))
    torch.export.save(program, str(out), extra_files={"anchorfree.json": json.dumps(props)})


def write_torchscript(graph: DetectionGraph, args: tuple, out: Path, props: dict[str, str]) -> None:
    with _quiet():  # tracer notices about sizes turned into constants; torch.jit's deprecation
        traced = torch.jit.trace(graph, args, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={"anchorfree.json": json.dumps(props)})
