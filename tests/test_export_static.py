"""Static exports on non-square images: the export against PyTorch on the same letterbox
(:func:`anchorfree.export.preprocess.letterbox`), against :class:`anchorfree.Model` (which pads an image only
to ``size_divisor``), and the check's own non-square images.

The models are the small FCOS of ``test_export`` (GroupNorm head: the padding of a static canvas changes
every feature, so a comparison on a different letterbox cannot pass by chance).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_export import CLASSES, SIZE, small_config, small_detector

from anchorfree import Model
from anchorfree.inference.checkpoint import atomic_save, make_checkpoint
from anchorfree.export import export_model
from anchorfree.export.check import FP32, CheckResult, check_images, match_detections, pytorch_detections
from anchorfree.export.predictor import ExportedModel
from anchorfree.export.preprocess import letterbox


def non_square_images() -> list[np.ndarray]:
    """A 96x160 and a 160x96 drawing (crops of the check's 5:3 and 3:5 images)."""
    landscape, portrait = check_images(2, 160, seed=21)
    return [np.ascontiguousarray(landscape[:96, :160]), np.ascontiguousarray(portrait[:160, :96])]


def assert_matches(refs, preds, model: ExportedModel) -> int:
    """Every detection of ``refs`` (PyTorch) has one in ``preds`` (``model``'s) and the other way round, boxes
    within 1e-3 relative, scores within 1e-4 (the check's fp32 tolerance); returns the detections compared."""
    opts = model.inference_options()
    result = CheckResult(passed=True, runtime="test")
    for i, (ref, pred) in enumerate(zip(refs, preds, strict=True)):
        boxes, scores, labels = (np.asarray(ref.boxes, dtype=np.float32), np.asarray(ref.scores, dtype=np.float32),
                                 np.asarray(ref.labels))
        got = (np.asarray(pred.boxes), np.asarray(pred.scores), np.asarray(pred.labels))
        match_detections((boxes, scores, labels), got, FP32, float(opts["score_thresh"]), int(opts["max_detections"]),
                         f"image {i}", result, opts["nms"], float(opts["nms_thresh"]))
    assert not result.problems, result.problems
    assert result.detections > 0 and result.matched + result.borderline == result.detections
    return result.detections


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("static") / "run"
    atomic_save(make_checkpoint(small_config("fcos"), small_detector("fcos").state_dict()), folder / "best.pt")
    return folder


@pytest.fixture(scope="module")
def square(run: Path):
    """The default static ONNX export: batch 1 on a 96x96 canvas."""
    return export_model(run, out=run / "square.onnx", check_images=3)


def test_check_images_are_non_square():
    shapes = [image.shape[:2] for image in check_images(3, 192)]
    assert shapes[0][1] / shapes[0][0] >= 5 / 3 - 0.01 and shapes[1][0] / shapes[1][1] >= 5 / 3 - 0.01
    assert abs(shapes[2][1] / shapes[2][0] - 2) < 0.02


def test_static_export_matches_pytorch_on_the_same_letterbox(square):
    report = square
    check = report.check
    assert check.passed and check.canvas == (SIZE, SIZE), report.summary()
    assert all(h != w for h, w in check.image_shapes) and "125x75" in report.summary()
    model = ExportedModel(report.path, device="cpu")
    detector = small_detector("fcos")
    images = non_square_images()
    refs = [pytorch_detections(detector, [image], model.info.input, model.info.canvas)[0] for image in images]
    assert assert_matches(refs, model(images), model) > 10
    # anchorfree.Model pads these only to 64x96 / 96x64: another network input, measured by the check
    assert letterbox(images[:1], SIZE, SIZE, None, 32)[0].shape[-2:] == (64, 96)
    assert check.model_images == 3 and check.model_detections > 0 and 0 <= check.model_matched < check.model_detections
    assert "anchorfree.Model" in report.summary() and f"/{check.model_detections} of Model's" in report.summary()


def test_static_export_on_the_padded_size_of_its_images_gives_models_detections(run):
    """A canvas of the images' padded size (96x160 → 57x96 → 64x96): the export reproduces Model."""
    report = export_model(run, "torchscript", run / "landscape.torchscript", input_size=(64, 96), check_images=3)
    check = report.check
    assert check.passed, report.summary()
    assert check.model_images == 1  # the portrait image is shrunk to fit 64x96; the others fill it when padded
    exported = ExportedModel(report.path, device="cpu")
    landscape = non_square_images()[:1] * 2
    torch_model = Model(run, device="cpu", fast=False)
    assert assert_matches(torch_model(landscape), exported(landscape), exported) > 10
    assert exported.class_names == CLASSES


def test_an_export_resizes_as_the_model_it_came_from_with_mmdetections_rule(tmp_path):
    """``input.resize=mmdet`` (converted mmdetection models): the export's metadata carries the rule and its
    predictor resizes as PyTorch does — an 80x100 image becomes 77x96 (rounded), not 76x96 (floored)."""
    cfg = small_config("fcos")
    cfg.model.input.resize = "mmdet"
    run = tmp_path / "run"
    atomic_save(make_checkpoint(cfg, small_detector("fcos").state_dict()), run / "best.pt")
    report = export_model(run, "torchscript", run / "mmdet.torchscript", check_images=3)  # 96x96: 77x96 padded
    assert report.check.passed and "OpenCV's" in report.check.preprocessing, report.summary()
    exported = ExportedModel(report.path, device="cpu")
    assert exported.info.input["resize_mode"] == "mmdet"
    image = np.ascontiguousarray(check_images(1, 160, seed=5)[0][:80, :100])
    assert image.shape == (80, 100, 3)
    assert letterbox([image], SIZE, SIZE, None, 1, mode="mmdet")[1].tolist() == [[77, 96]]
    torch_model = Model(run, device="cpu", fast=False)
    assert assert_matches(torch_model([image, image]), exported([image, image]), exported) > 10
