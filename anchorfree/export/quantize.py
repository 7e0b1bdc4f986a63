"""int8 post-training quantization of an exported graph, calibrated on the user's training images.

Static quantization (Jacob et al., 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference"): weights int8 per output channel, activations uint8 per tensor with
ranges observed on calibration images (min/max), as quantize → dequantize pairs around each convolution:

* ONNX (:func:`quantize_onnx`): onnxruntime's static quantizer in QDQ format, after its pre-processing
  (shape inference, BatchNorm folding); onnxruntime fuses each pair into an int8 convolution.
* OpenVINO: the same QDQ graph, converted; OpenVINO's CPU plugin runs each pair as an int8 convolution.
  NNCF's own quantization of the IR was measured first and lost more (photo set, 300 validation images,
  score 0.001: 28.7 → 26.4 AP with its default preset, 26.6 with MIXED; the QDQ graph: 28.7).

What stays in float (stated in the file's ``quantization`` metadata):

* everything that is not a convolution of the network: normalisation, decoding (the DFL softmax and its
  integral), candidate selection and NMS — quantizing them saves no time and moves boxes;
* the network's output convolutions — the last layer of each branch (class scores, box regression or
  distributions, centerness; CenterNet's and CornerNet's heatmap, size and offset outputs), found as the
  convolutions no other convolution follows (:func:`output_convs`). Measured on the 3000-image photo set (``gfl_shufflenetv2_pan_nano``,
  192 px, 300 validation images, AVX2): all convolutions int8 lost 0.8 AP, these kept in float 0.55 AP.
  GFLv2's quality branch (DGQP) is made of linear layers and is not quantized.

Calibration images (:func:`calibration_images`): ``count`` images of the training split spread evenly over
it (the same ones on every run), each through the export's own preprocessing (resize, padding).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, ExportError, MissingRuntimeError

FLOAT_REASON = ("the network's output convolutions (class scores, box regression/distributions, quality), and "
                "everything after them (decoding, candidate selection, NMS): kept in float because quantizing the "
                "output convolutions cost more AP than it saved time (measured: 0.8 vs 0.55 AP lost on the photo set)")


def output_convs(model: "onnx.ModelProto") -> list[str]:  # noqa: F821
    """The convolutions that no other convolution follows (the last layer of each output branch)."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    outputs = []
    for conv in convs:
        stack, seen, followed = list(conv.output), set(), False
        while stack and not followed:
            tensor = stack.pop()
            for node in consumers.get(tensor, []):
                if node.name in seen:
                    continue
                seen.add(node.name)
                followed = node.op_type == "Conv"
                stack += list(node.output)
                if followed:
                    break
        if not followed:
            outputs.append(conv.name)
    return outputs


def calibration_images(data: Any, count: int) -> tuple[list[np.ndarray], str]:
    """``count`` training images of ``data`` (a dataset folder, YAML or :class:`~anchorfree.data.DataSpec`) as
    ``uint8 [H, W, 3]``, spread evenly over the split; and where they came from, in words."""
    from ..data import CocoDetection, load_data_spec

    if count < 1:
        raise ExportError(f"calibration needs at least one image, got calib={count}")
    spec = data if hasattr(data, "train_ann") else load_data_spec(data)
    if spec.train_ann is None:
        raise DatasetError(f"{spec.source} has no training split: int8 calibration takes its images from there "
                           "(add a train split, or pass another dataset with --data)")
    dataset = CocoDetection(spec.train_ann, spec.train_images, None, class_names=spec.class_names, train=False)
    if len(dataset) == 0:
        raise DatasetError(f"the training split of {spec.source} has no images to calibrate int8 on")
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int))
    images = []
    for index in indices:
        try:
            image = dataset.load_sample(int(index))[0]
        except DatasetError as e:
            raise DatasetError(f"int8 calibration: {e}") from None
        images.append(image.permute(1, 2, 0).numpy())
    return images, f"{len(images)} of the {len(dataset)} training images of {spec.source}"


def _feeds(model: Any, images: list[np.ndarray], thresholds: bool) -> Iterator[dict[str, np.ndarray]]:
    """The graph inputs of each calibration image, preprocessed by ``model`` (an
    :class:`~anchorfree.export.predictor.ExportedModel` of the fp32 graph), one image per run."""
    score = np.array(float(model.info.inference["score_thresh"]), dtype=np.float32)
    nms = np.array(float(model.info.inference["nms_thresh"]), dtype=np.float32)
    step = model.info.batch or 1
    for start in range(0, len(images), step):
        batch, sizes = model.preprocess(images[start:start + step])
        feed = {"images": batch, "image_sizes": sizes}
        if thresholds:
            feed.update(score_thresh=score, nms_thresh=nms)
        yield feed


def quantize_onnx(fp32: Path, out: Path, images: list[np.ndarray], props: dict[str, str]) -> dict[str, Any]:
    """Quantize the fp32 ONNX export ``fp32`` into ``out`` (QDQ, see the module docstring), its metadata
    ``props`` with ``precision`` and ``quantization`` set; returns the ``quantization`` record."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise MissingRuntimeError("int8 ONNX export needs onnxruntime (with its quantization tools) and onnx: pip install "
                          "'anchorfree[export]'") from None
    from .predictor import ExportedModel

    onnxruntime.set_default_logger_severity(3)  # the quantizer's own sessions: errors only
    reference = ExportedModel(fp32, device="cpu")
    feeds = list(_feeds(reference, images, thresholds=False))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize.") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
        outputs = output_convs(onnx.load(str(prepared)))
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=outputs, calibrate_method=CalibrationMethod.MinMax)
        record = {"method": "onnxruntime static QDQ: weights int8 per channel, activations uint8 per tensor (min/max)",
                  "calibration": len(feeds), "kept_float": {"layers": outputs, "why": FLOAT_REASON}}
        model = onnx.load(str(quantized))
        props = dict(props, precision="int8", quantization=json.dumps(record))
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        model.producer_name = "anchorfree"
        onnx.save_model(model, str(quantized))
        os.replace(quantized, out)
    return record
