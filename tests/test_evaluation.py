"""Tests for anchorfree.evaluation: backend parity with pycocotools and edge cases."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from anchorfree.errors import ConfigError, DatasetError
from anchorfree.evaluation import COCO_METRIC_NAMES, coco_evaluate, format_metrics_table, save_metrics

CATEGORY_IDS = [1, 4, 9]
CLASS_NAMES = {1: "person", 4: "traffic light", 9: "boat"}
IMAGE_W, IMAGE_H = 640, 480


def make_gt(seed: int = 0) -> dict:
    """20 images, non-contiguous category ids, small/medium/large boxes, crowd boxes, empty images."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": IMAGE_W, "height": IMAGE_H, "file_name": f"{i}.jpg"} for i in range(1, 21)]
    annotations = []
    for image in images:
        if image["id"] % 5 == 0:  # images 5, 10, 15, 20 have no annotations
            continue
        for _ in range(rng.integers(1, 7)):
            side = rng.choice([rng.uniform(8, 28), rng.uniform(36, 90), rng.uniform(100, 300)])
            w, h = side * rng.uniform(0.7, 1.3, size=2)
            x, y = rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image["id"],
                "category_id": int(rng.choice(CATEGORY_IDS)),
                "bbox": [float(x), float(y), float(w), float(h)],
                "area": float(w * h),
                "iscrowd": 0,
            })
    for ann in annotations[3::17]:
        ann["iscrowd"] = 1
    assert sum(a["iscrowd"] for a in annotations) >= 2
    categories = [{"id": c, "name": CLASS_NAMES[c]} for c in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}


def make_detections(gt: dict, seed: int = 0) -> list[dict]:
    """Jittered copies of most GT boxes plus random false positives (lower scores on average)."""
    rng = np.random.default_rng(seed)
    detections = []
    for ann in gt["annotations"]:
        if rng.random() < 0.85:
            x, y, w, h = ann["bbox"]
            dx, dy, dw, dh = rng.normal(0, 0.08, size=4) * np.array([w, h, w, h])
            bbox = [x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)]
            detections.append(_det(ann["image_id"], ann["category_id"], bbox, rng.uniform(0.3, 1.0)))
    for image in gt["images"]:
        for _ in range(rng.integers(0, 15)):
            w, h = rng.uniform(5, 250, size=2)
            bbox = [rng.uniform(0, IMAGE_W - w), rng.uniform(0, IMAGE_H - h), w, h]
            detections.append(_det(image["id"], int(rng.choice(CATEGORY_IDS)), bbox, rng.uniform(0.0, 0.7)))
    return detections


def _det(image_id: int, category_id: int, bbox, score: float) -> dict:
    bbox = [float(v) for v in bbox]
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": float(score)}


def pycocotools_stats(gt: dict, detections: list[dict]) -> np.ndarray:
    """Reference numbers from pycocotools, called directly."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


@pytest.fixture(scope="module")
def gt() -> dict:
    return make_gt()


@pytest.fixture(scope="module")
def detections(gt) -> list[dict]:
    return make_detections(gt)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_matches_pycocotools(gt, detections, backend):
    expected = pycocotools_stats(gt, detections)
    result = coco_evaluate(gt, detections, backend=backend)
    assert list(result["metrics"]) == COCO_METRIC_NAMES
    got = np.array([result["metrics"][name] for name in COCO_METRIC_NAMES])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert 0.1 < result["metrics"]["AP"] < 0.95  # a non-trivial case
    assert all(v >= 0 for v in got)  # every area range has GT


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_faster_matches_pycocotools_other_seeds(seed):
    gt = make_gt(seed)
    detections = make_detections(gt, seed)
    got = coco_evaluate(gt, detections, backend="faster")["metrics"]
    expected = pycocotools_stats(gt, detections)
    np.testing.assert_allclose([got[n] for n in COCO_METRIC_NAMES], expected, rtol=0, atol=1e-12)


def test_backends_agree_per_class(gt, detections):
    faster = coco_evaluate(gt, detections, backend="faster")["per_class"]
    pyc = coco_evaluate(gt, detections, backend="pycocotools")["per_class"]
    for a, b in zip(faster, pyc, strict=True):
        assert a["category_id"] == b["category_id"]
        for key in ("AP", "AP50", "AP75"):
            assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_per_class_mean_equals_overall_ap(gt, detections):
    result = coco_evaluate(gt, detections)
    assert [row["category_id"] for row in result["per_class"]] == CATEGORY_IDS
    assert [row["class"] for row in result["per_class"]] == [CLASS_NAMES[c] for c in CATEGORY_IDS]
    aps = [row["AP"] for row in result["per_class"] if row["AP"] is not None]
    assert len(aps) == 3
    assert np.mean(aps) == pytest.approx(result["metrics"]["AP"], abs=1e-12)


def test_class_without_gt_is_none(gt, detections):
    gt = copy.deepcopy(gt)
    gt["categories"].append({"id": 12, "name": "unseen"})
    result = coco_evaluate(gt, detections + [_det(1, 12, [0, 0, 10, 10], 0.9)])
    row = result["per_class"][-1]
    assert (row["class"], row["AP"], row["AP50"], row["AP75"]) == ("unseen", None, None, None)
    aps = [r["AP"] for r in result["per_class"] if r["AP"] is not None]
    assert np.mean(aps) == pytest.approx(result["metrics"]["AP"], abs=1e-12)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_perfect_detections(gt, backend):
    non_crowd = [a for a in gt["annotations"] if not a["iscrowd"]]
    perfect = [_det(a["image_id"], a["category_id"], a["bbox"], 1.0) for a in non_crowd]
    result = coco_evaluate(gt, perfect, backend=backend)
    assert result["metrics"]["AP"] == pytest.approx(1.0, abs=1e-12)
    assert result["metrics"]["AR100"] == pytest.approx(1.0, abs=1e-12)
    for row in result["per_class"]:
        assert row["AP"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_empty_detections(gt, backend):
    result = coco_evaluate(gt, [], backend=backend)
    assert result["metrics"] == {name: 0.0 for name in COCO_METRIC_NAMES}
    assert all(row["AP"] == 0.0 for row in result["per_class"])


def test_unknown_image_id(gt, detections):
    bad = detections + [_det(9999, 1, [0, 0, 10, 10], 0.5)]
    with pytest.raises(DatasetError, match="9999"):
        coco_evaluate(gt, bad)


def test_unknown_category_id(gt, detections):
    bad = detections + [_det(1, 77, [0, 0, 10, 10], 0.5)]
    with pytest.raises(DatasetError, match="category.*77"):
        coco_evaluate(gt, bad)


def test_malformed_detection(gt):
    with pytest.raises(DatasetError, match="score"):
        coco_evaluate(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])


def test_unknown_backend(gt, detections):
    with pytest.raises(ConfigError, match="backend"):
        coco_evaluate(gt, detections, backend="nope")


def test_gt_path_and_inputs_untouched(tmp_path, gt, detections):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt))
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(detections)
    from_dict = coco_evaluate(gt, detections)
    assert coco_evaluate(path, detections) == from_dict
    assert coco_evaluate(str(path), detections, backend="pycocotools")["metrics"] == pytest.approx(
        from_dict["metrics"], abs=1e-12
    )
    assert gt == gt_before and detections == dets_before
    with pytest.raises(DatasetError, match="not found"):
        coco_evaluate(tmp_path / "missing.json", detections)


def test_quiet_unless_verbose(gt, detections, capsys):
    coco_evaluate(gt, detections, backend="pycocotools")
    coco_evaluate(gt, detections, backend="faster")
    assert capsys.readouterr().out == ""
    coco_evaluate(gt, detections, backend="faster", verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_class_names_override(gt, detections):
    result = coco_evaluate(gt, detections, class_names=["a", "b", "c"])
    assert [row["class"] for row in result["per_class"]] == ["a", "b", "c"]
    with pytest.raises(DatasetError, match="class_names"):
        coco_evaluate(gt, detections, class_names=["a"])


def test_format_metrics_table(gt, detections):
    result = coco_evaluate(gt, detections)
    table = format_metrics_table(result)
    for name in [*COCO_METRIC_NAMES, *CLASS_NAMES.values()]:
        assert name in table
    per_class_lines = [line for line in table.splitlines() if line.startswith(tuple(CLASS_NAMES.values()))]
    assert len(per_class_lines) == 3 and len({len(line) for line in per_class_lines}) == 1  # aligned
    no_gt_row = {"class": "x", "category_id": 2, "AP": None, "AP50": None, "AP75": None}
    assert "n/a" in format_metrics_table({"metrics": result["metrics"], "per_class": [no_gt_row]})


def test_save_metrics(tmp_path, gt, detections):
    result = coco_evaluate(gt, detections)
    path = tmp_path / "out" / "metrics.json"
    save_metrics(result, path)
    save_metrics(result, path)  # overwrite
    assert json.loads(path.read_text()) == result
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_gt_without_optional_iscrowd_and_area(backend):
    """``iscrowd`` and ``area`` are optional in COCO files: missing, they count as 0 and ``w * h``. One
    of two GT boxes found (the 40x40 box, area 1600: medium) gives AP 51/101 (recall 0.5 of 101 points);
    the 10x10 box (small) is missed, so APs = 0 and APm = 1."""
    gt = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40]},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [70, 70, 10, 10]}],
          "categories": [{"id": 1, "name": "a"}]}
    original = copy.deepcopy(gt)
    metrics = coco_evaluate(gt, [_det(1, 1, [10, 10, 40, 40], 0.9)], backend=backend)["metrics"]
    assert metrics["AP"] == pytest.approx(51 / 101, abs=1e-12)
    assert (metrics["APs"], metrics["APm"]) == (0.0, pytest.approx(1.0, abs=1e-12))
    assert gt == original
