"""Soft-NMS without a candidate above its floor, reports on COCO boxes the loader drops, VOC checks with
missing images."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from anchorfree.cli import main
from anchorfree.config import Config, apply_overrides
from anchorfree.data import CocoDetection, DatasetWarning, check_dataset, generate_synthetic_dataset
from anchorfree.inference.checkpoint import atomic_save, make_checkpoint
from anchorfree.models.detector import Detector
from anchorfree.models.postprocess import soft_nms
from anchorfree.presets import get_preset
from anchorfree.report import ground_truth_of, write_run_report
from anchorfree.structures import Batch

from conftest import micro_config
from test_formats import make_voc

TINY_CORNERNET = ["model.input.min_size=64", "model.input.max_size=64", "backbone.hourglass_depth=2",
                  "backbone.hourglass_channels=[16,16,24]", "backbone.hourglass_blocks=[1,1,1]",
                  "backbone.hourglass_feat_channels=16", "head.feat_channels=16", "head.pool_channels=8"]


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 training and 2 validation images of 64 px, five classes."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("tiny_synth"), num_train=2, num_val=2,
                                      image_size=(64, 64), seed=1, max_objects=2)


# ---- soft-NMS: no candidate reaches soft_nms_min_score ---------------------------------------------


def test_soft_nms_below_min_score_gives_zero_rows():
    keep, scores = soft_nms(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([1e-4]), torch.tensor([0]))
    assert keep.shape == (0,) and scores.shape == (0,) and keep.dtype == torch.long
    # one group below the floor, another above it: only the one above is kept
    keep, scores = soft_nms(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), torch.tensor([1e-4, 0.5]),
                            torch.tensor([0, 1]), "linear")
    assert keep.tolist() == [1] and scores.tolist() == pytest.approx([0.5])


def _silent(detector: Detector) -> Detector:
    """A confident model that sees nothing: every class / corner score is sigmoid(-20)."""
    with torch.no_grad():
        for name, conv in detector.head.named_modules():
            if isinstance(conv, torch.nn.Conv2d) and re.search(r"(cls_logits|_heat\.\d+\.1\.conv)$", name):
                conv.weight.zero_()
                conv.bias.fill_(-20.0)
    return detector


def _checkpoint(cfg: Config, folder: Path) -> Path:
    cfg.model.backbone.weights = None
    cfg.model.num_classes = 5
    detector = _silent(Detector(cfg.model))
    atomic_save(make_checkpoint(cfg, detector.state_dict()), folder / "best.pt")
    return folder


@pytest.mark.parametrize("model", ["cornernet", "fcos"])
def test_soft_nms_eval_on_images_without_detections(model, tiny_synth, tmp_path, capsys):
    """CornerNet's default decoding (score 0, Gaussian soft-NMS) and FCOS with soft NMS at score 0: no candidate
    reaches 1e-3, so every image has zero rows and eval finishes."""
    if model == "cornernet":
        cfg = apply_overrides(get_preset("cornernet_hg_tiny"), TINY_CORNERNET)
        options: list[str] = []
    else:
        cfg = micro_config()
        options = ["--nms", "soft_gaussian", "--score-thresh", "0"]
    run = _checkpoint(cfg, tmp_path / model)
    detector = _silent(Detector(cfg.model)).eval()
    empty = Batch(torch.full((1, 3, 64, 64), 127, dtype=torch.uint8), torch.tensor([[64, 64]]))
    with torch.no_grad():
        dets = detector.predict(empty, nms="soft_gaussian", score_thresh=0.0)
    assert len(dets) == 1 and len(dets[0]) == 0 and dets[0].boxes.shape == (0, 4)
    assert main(["eval", str(run), "--data", str(tiny_synth), "--workers", "0",
                 "--save-results", *options]) == 0
    assert "AP50" in capsys.readouterr().out
    assert json.loads((run / "results.json").read_text()) == []


# ---- VOC: missing image files ----------------------------------------------------------------------


def test_voc_check_with_missing_images_names_each_file_and_keeps_the_classes(tmp_path, capsys):
    """The XML files are read whether or not their image exists: class names and object counts come from them;
    each missing image is one error naming its file, and nothing else is reported."""
    objects = {"a": [("cat", 0, (1, 1, 20, 20))], "b": [("dog", 0, (1, 1, 20, 20)), ("dog", 0, (5, 5, 30, 25))],
               "c": [("bird", 0, (2, 2, 30, 20))]}
    root = make_voc(tmp_path / "voc", {k: ((40, 30), v) for k, v in objects.items()},
                    {"train": ["a", "b"], "val": ["c"]})
    (root / "JPEGImages" / "b.jpg").unlink()
    report = check_dataset(root)
    assert report.class_names == ["bird", "cat", "dog"]
    assert [p.message for p in report.errors] == [
        f"{root / 'ImageSets/Main/train.txt'}, line 2: image id 'b' is listed but {root / 'JPEGImages'} has no "
        "image for it (b.jpg). Add the image or remove the line."]
    assert report.stats["train"]["images"] == 1 and report.stats["train"]["boxes"] == 1
    assert report.stats["val"]["images"] == 1 and report.stats["val"]["boxes"] == 1

    for name in ("a", "c"):
        (root / "JPEGImages" / f"{name}.jpg").unlink()
    assert main(["data", "check", str(root)]) == 2
    captured = capsys.readouterr()
    assert "classes (3): bird, cat, dog" in captured.out
    report = check_dataset(root)
    assert report.class_names == ["bird", "cat", "dog"]
    assert sorted(p.message.split("image id ")[1][:3] for p in report.errors) == ["'a'", "'b'", "'c'"]
    assert all("is listed but" in p.message for p in report.problems)
    assert "no <object>" not in captured.err and "has no images" not in captured.err


# ---- reports draw the ground truth the loader cleaned --------------------------------------------


TINY_FCOS = ["model.input.min_size=64", "model.input.max_size=64", "train.epochs=1", "train.workers=0",
             "train.batch_size=2", "train.warmup_iters=1", "backbone.name=resnet10", "neck.out_channels=32",
             "head.feat_channels=32", "head.num_convs=1", "head.gn_groups=8"]


@pytest.fixture(scope="module")
def negative_box_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`tiny_synth` with one more box of negative width in each split (the loader drops it with a warning)."""
    root = generate_synthetic_dataset(tmp_path_factory.mktemp("negative_box"), num_train=2, num_val=2,
                                      image_size=(64, 64), seed=1, max_objects=2)
    for split in ("train", "val"):
        path = root / split / "annotations.json"
        data = json.loads(path.read_text())
        data["annotations"].append(dict(data["annotations"][0], id=999, bbox=[30, 20, -10, 12]))
        path.write_text(json.dumps(data))
    return root


def test_ground_truth_of_a_dataset_is_what_its_loader_keeps(negative_box_synth):
    with pytest.warns(DatasetWarning, match="dropped 1 boxes with zero or negative size"):
        ds = CocoDetection(negative_box_synth / "val" / "annotations.json", negative_box_synth / "val" / "images")
    ground_truth = ground_truth_of(ds)
    raw = json.loads((negative_box_synth / "val" / "annotations.json").read_text())["annotations"]
    assert sum(len(gt) for gt in ground_truth.values()) == len(raw) - 1 == ds.stats["boxes"]
    for index, (image_id, gt) in enumerate(ground_truth.items()):
        assert image_id == ds.get_image_info(index)["id"]
        assert (gt.boxes[:, 2:] > gt.boxes[:, :2]).all() and not gt.crowd.any()
        assert np.array_equal(gt.boxes, ds.load_sample(index)[1].numpy())


def test_a_negative_width_box_fails_no_report(negative_box_synth, tmp_path, capsys):
    """train writes report.html and exits 0, eval exits 0, data check --show draws the images and exits 0."""
    run = tmp_path / "run"
    assert main(["train", "fcos_r18_fpn_tiny", "--data", str(negative_box_synth), "--out", str(run),
                 "--no-progress", *TINY_FCOS]) == 0
    page = (run / "report.html").read_text()
    assert "Worst images" in page and page.count("data:image/") >= 4
    assert "could not be made" not in page
    assert main(["eval", str(run), "--data", str(negative_box_synth), "--workers", "0"]) == 0
    assert "AP50" in capsys.readouterr().out
    assert main(["data", "check", str(negative_box_synth), "--show", "2", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dropped 1 boxes with zero or negative size" in out and "dataset report with 2 drawn images" in out
    page = (tmp_path / "dataset_report.html").read_text()
    assert page.count("1 box of zero or negative size not drawn") == 2  # one image of each split
    assert "[30, 20, -10, 12]" in page  # listed among the boxes to look at


def test_a_report_part_that_fails_is_noted_and_the_rest_written(negative_box_synth, tmp_path, monkeypatch):
    from anchorfree.report import run as run_report

    def broken(*args, **kwargs):
        raise ValueError("cannot draw")

    monkeypatch.setattr(run_report, "gallery_items", broken)
    with pytest.warns(DatasetWarning):
        ds = CocoDetection(negative_box_synth / "val" / "annotations.json", negative_box_synth / "val" / "images")
    results = [{"image_id": ds.get_image_info(0)["id"], "category_id": ds.cat_ids[0], "bbox": [1, 2, 20, 20],
                "score": 0.9}]
    with pytest.warns(UserWarning, match="the confusion matrix and the worst-images gallery could not be made "
                                         r"\(ValueError: cannot draw\); the rest of the report is written"):
        page = write_run_report(tmp_path, dataset=ds, results=results).read_text()
    assert "The confusion matrix and the worst-images gallery could not be made (ValueError: cannot draw)." in page
    assert "Average precision" in page and "Precision–recall" in page
