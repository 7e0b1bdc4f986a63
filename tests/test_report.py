"""HTML reports: the matching behind the confusion matrix and the gallery order, the PR curve data,
the dataset statistics, and the pages themselves opened in headless Chromium."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from anchorfree.config import save_config
from anchorfree.data import CocoDetection, generate_synthetic_dataset, load_data_spec
from anchorfree.compare import CompareResult
from anchorfree.inference.evaluate import score_results
from anchorfree.evaluation import coco_evaluate, coco_evaluate_detailed
from anchorfree.report import (
    ImageBoxes,
    ImageErrors,
    match_dataset,
    pr_curves,
    split_statistics,
    worst_first,
    write_compare_report,
    write_dataset_report,
    write_run_report,
)

from conftest import micro_config, missing_browser
from test_evaluation import make_detections, make_gt

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


# ---- matching: confusion matrix and worst-first order ---------------------------------------------


def _boxes(boxes, labels, scores=None, crowd=None) -> ImageBoxes:
    return ImageBoxes(np.array(boxes, dtype=float).reshape(-1, 4), np.array(labels), scores, crowd)


@pytest.fixture(scope="module")
def hand_made():
    """Two classes (0 = A, 1 = B), four images; the expected counts are worked out in the comments."""
    ground_truth = {
        1: _boxes([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),
        2: _boxes([[0, 0, 10, 10], [40, 40, 80, 80]], [0, 1], crowd=[False, True]),
        3: _boxes([[0, 0, 10, 10]], [1]),
        4: _boxes([[0, 0, 10, 10], [0, 0, 10, 11]], [0, 1]),
    }
    detections = {
        # A on A: A/A. A on B: B/A. B on nothing: background/B. A again on the taken A: background/A.
        # B at 0.1 is below the score threshold and left out.
        1: _boxes([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]],
                  [0, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.1]),
        # B inside the crowd region: ignored. The A box is missed: A/missed.
        2: _boxes([[45, 45, 60, 60]], [1], [0.9]),
        # A overlaps B with IoU 0.4 only: background/A. B at IoU 0.82: B/B.
        3: _boxes([[0, 0, 10, 4], [1, 0, 11, 10]], [0, 1], [0.95, 0.5]),
        # B overlaps A (IoU 1.0) and B (IoU 0.91): its own class wins, B/B; A is missed: A/missed.
        4: _boxes([[0, 0, 10, 10]], [1], [0.9]),
    }
    return match_dataset(ground_truth, detections, num_classes=2, iou_thresh=0.5, score_thresh=0.3)


def test_confusion_matrix_hand_made(hand_made):
    #                 pred A  pred B  missed
    expected = [[1, 0, 2],  # GT A
                [1, 2, 0],  # GT B
                [2, 1, 0]]  # background
    assert hand_made.confusion.tolist() == expected


def test_image_errors_hand_made(hand_made):
    errors = {e.image_id: (e.correct, e.wrong_class, e.missed, e.false) for e in hand_made.images}
    assert errors == {1: (1, 1, 0, 2), 2: (0, 0, 1, 0), 3: (1, 0, 0, 1), 4: (1, 0, 1, 0)}
    assert hand_made.matches[2].det_status() == ["ignored"]
    assert hand_made.matches[4].gt_status() == ["missed", "found"]


def test_worst_first_order(hand_made):
    # image 1 has 3 errors; 2, 3 and 4 have one each: missed before false, then the given order
    assert [e.image_id for e in worst_first(hand_made.images)] == [1, 2, 4, 3]
    made = [ImageErrors(10, 3, 3, 3, 0, 0, 0), ImageErrors(11, 4, 2, 0, 1, 3, 1), ImageErrors(12, 1, 4, 0, 0, 1, 4),
            ImageErrors(13, 2, 2, 0, 0, 2, 0)]
    assert [e.total for e in made] == [0, 5, 5, 2]
    assert [e.image_id for e in worst_first(made)] == [11, 12, 13, 10]
    assert [e.image_id for e in worst_first(made, limit=2)] == [11, 12]


# ---- precision–recall curves --------------------------------------------------------------------------


def _pycocotools_precision(gt: dict, detections: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    return np.asarray(evaluator.eval["precision"])


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_pr_curves_equal_pycocotools_precision(backend):
    gt = make_gt(seed=1)
    detections = make_detections(gt, seed=1)
    reference = _pycocotools_precision(gt, detections)  # [T, R, K, A, M]
    result, arrays = coco_evaluate_detailed(gt, detections, backend=backend)
    assert result == coco_evaluate(gt, detections, backend=backend)
    np.testing.assert_allclose(arrays.precision, reference, atol=1e-12)
    curves = pr_curves(arrays)
    assert [c.category_id for c in curves] == [1, 4, 9]
    for k, (curve, row) in enumerate(zip(curves, result["per_class"])):
        np.testing.assert_allclose(curve.precision_50, reference[0, :, k, 0, 2], atol=1e-12)
        np.testing.assert_allclose(curve.precision_mean, reference[:, :, k, 0, 2].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(curve.recall, np.linspace(0, 1, 101), atol=1e-12)
        assert curve.ap == pytest.approx(row["AP"], abs=1e-12)
        assert curve.ap50 == pytest.approx(row["AP50"], abs=1e-12)


# ---- a small dataset and run folder --------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """6 training and 4 validation images of 64 px."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("report_synth"), num_train=6, num_val=4,
                                      image_size=(64, 64), seed=2)


@pytest.fixture(scope="module")
def val_set(synth) -> CocoDetection:
    spec = load_data_spec(synth)
    return CocoDetection(spec.val_ann, spec.val_images, class_names=spec.class_names)


def _detections(gt: dict, seed: int = 0) -> list[dict]:
    """Jittered GT boxes (some with the wrong class, some left out) and one false box per image."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    results = []
    for ann in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = ann["bbox"]
        cat = ann["category_id"] if rng.random() < 0.8 else int(rng.choice(cat_ids))
        results.append({"image_id": ann["image_id"], "category_id": cat, "score": float(rng.uniform(0.4, 1.0)),
                        "bbox": [x + rng.normal(0, 1), y + rng.normal(0, 1), w, h]})
    for image in gt["images"]:
        results.append({"image_id": image["id"], "category_id": cat_ids[0], "bbox": [1.0, 1.0, 12.0, 12.0],
                        "score": 0.45})
    return results


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, synth, val_set) -> tuple[Path, list[dict], dict]:
    """A run folder as the trainer leaves it (config.yaml, metrics.jsonl, metrics.json), the validation
    detections and their COCO evaluation."""
    run = tmp_path_factory.mktemp("report_run")
    cfg = micro_config()
    cfg.model.class_names = list(val_set.class_names)
    cfg.model.num_classes = len(val_set.class_names)
    save_config(cfg, run / "config.yaml")
    results = _detections(json.loads(Path(val_set.coco_gt).read_text()))
    metrics = score_results(val_set, results)
    rows = []
    for it in range(1, 13):
        cls, box = 1.2 / it**0.5, 0.9 / it**0.3
        rows.append({"type": "train", "epoch": 1 + (it > 6), "iteration": it, "lr": 0.01 * min(1, it / 4),
                     "loss": cls + box, "loss_cls": cls, "loss_bbox": box})
        if it % 6 == 0:
            rows.append({"type": "val", "epoch": it // 6, "iteration": it,
                         **{k: v * it / 12 for k, v in metrics["metrics"].items()}})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "train.log").write_text("")
    return run, results, metrics


@pytest.fixture(scope="module")
def run_page(run_folder, val_set) -> Path:
    run, results, metrics = run_folder
    return write_run_report(run, dataset=val_set, results=results, metrics=metrics, gallery=3, data="data/synth")


def test_run_report_contents(run_folder, run_page, val_set):
    assert run_page == run_folder[0] / "report.html"
    html = run_page.read_text()
    assert "<title>Run report: " in html
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count('class="gallery-item"') == 3
    assert "anchorfree eval" in html and "anchorfree predict" in html
    for name in val_set.class_names:
        assert f"<td>{name}</td>" in html
    assert "No training curves" not in html


def test_eval_only_report(tmp_path, synth, val_set):
    """A folder from `anchorfree eval --save-results` (no metrics.jsonl): detections read from results.json."""
    results = _detections(json.loads(Path(val_set.coco_gt).read_text()), seed=1)
    (tmp_path / "metrics.json").write_text(json.dumps(score_results(val_set, results)))
    (tmp_path / "results.json").write_text(json.dumps(results))
    html = write_run_report(tmp_path, dataset=synth, gallery=2).read_text()
    assert "this folder has no metrics.jsonl" in html
    assert html.count('class="gallery-item"') == 2 and "confusion matrix" in html

    empty = tmp_path / "empty"
    empty.mkdir()
    html = write_run_report(empty).read_text()
    assert "No metrics" in html and "No detections to analyse" in html and "has no config.yaml" in html


def test_dataset_report_class_counts(tmp_path, synth):
    gt = json.loads((synth / "val" / "annotations.json").read_text())
    gt["annotations"][0]["iscrowd"] = 1
    crowd_cat = gt["annotations"][0]["category_id"]
    (tmp_path / "crowd.json").write_text(json.dumps(gt))
    expected = Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd"))

    stats = split_statistics(gt)
    assert stats.class_boxes == expected
    assert stats.crowd == Counter({crowd_cat: 1})
    assert len(stats.widths) == sum(expected.values())

    ds = CocoDetection(tmp_path / "crowd.json", synth / "val" / "images")
    html = write_dataset_report(ds, tmp_path, show=2).read_text()
    for cat_id, name in zip(ds.cat_ids, ds.class_names):
        row = (f'<td>{name}</td><td class="num">{cat_id}</td><td class="num">{expected[cat_id]}</td>')
        assert row in html
    assert html.count("with its boxes") == 2


# ---- the pages in headless Chromium -----------------------------------------------------------------------


def _chromium() -> str:
    configured = os.environ.get("ANCHORFREE_CHROMIUM")
    for candidate in ((configured,) if configured else CHROMIUM_CANDIDATES):
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path:
            return path
    missing_browser("Chromium was not found (looked for " + ", ".join((configured,) if configured else CHROMIUM_CANDIDATES)
                    + "): install it (Debian/Ubuntu: apt-get install chromium) or set ANCHORFREE_CHROMIUM to its path")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_browser("playwright is not installed: pip install playwright (or pip install -e '.[test]'); it "
                        "drives the system Chromium, no browser download is needed")
    executable = _chromium()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(run_folder, run_page, synth, tmp_path_factory) -> dict[str, Path]:
    run, _, metrics = run_folder
    out = tmp_path_factory.mktemp("report_pages")
    rows = [CompareResult("fcos_tiny", str(run), 1_200_000, 2, 0.5, 40.0, 120.0,
                          {k: metrics["metrics"][k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}),
            CompareResult("gfl_tiny", str(out / "gfl"), 800_000, 3, 0.5, 55.0, 150.0,
                          {"AP": 0.2, "AP50": 0.4, "AP75": 0.18, "APs": 0.1, "APm": 0.3, "APl": -1.0})]
    return {"report": run_page, "compare_report": write_compare_report(out, rows),
            "dataset_report": write_dataset_report(synth, out, show=3)}


@pytest.mark.parametrize("name, title", [("report", "Run report: "), ("compare_report", "Model comparison: "),
                                         ("dataset_report", "Dataset report: ")])
def test_page_in_chromium(browser, pages, name, title, tmp_path):
    path = pages[name]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def no_network(route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            fetched.append(url)
            route.abort()

    page.route("**/*", no_network)
    page.goto(path.resolve().as_uri(), wait_until="load")
    assert page.title().startswith(title)
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert images, "the page shows no image"
    broken = [alt for alt, complete, width in images if not complete or width == 0]
    assert not broken, f"images that did not load: {broken}"
    assert not errors, f"console errors: {errors}"
    assert not fetched, f"the page fetched from the network: {fetched}"
    if name == "compare_report":  # the model with a run report links to it
        href = page.evaluate("document.querySelector('td a').getAttribute('href')")
        assert (path.parent / href).resolve() == pages["report"].resolve()
    artefacts = Path(os.environ.get("ANCHORFREE_TEST_ARTIFACTS") or tmp_path)
    artefacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artefacts / f"{name}.png"), full_page=True)
    assert (artefacts / f"{name}.png").stat().st_size > 0
    page.close()
