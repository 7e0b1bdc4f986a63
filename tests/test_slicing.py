"""Sliced inference: the tiles and the merges against the ``sahi`` package itself (the reference people bolt on
to other detectors), and a sliced prediction that finds small objects a whole-image resize loses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorfree.errors import ConfigError
from anchorfree.inference.slicing import SliceOptions, merge_greedy_nmm, merge_nms, predict_sliced, slice_windows

sahi = pytest.importorskip("sahi", reason="the sahi package is not installed (pip install sahi): the reference of "
                                          "these tests")
from sahi.postprocess.combine import GreedyNMMPostprocess, batched_nms, nms  # noqa: E402
from sahi.prediction import ObjectPrediction  # noqa: E402
from sahi.slicing import get_slice_bboxes  # noqa: E402


@pytest.mark.parametrize("height,width,size,overlap", [(1000, 700, 512, 0.2), (300, 200, 512, 0.2),
                                                       (4000, 3000, 640, 0.25), (641, 640, 640, 0.0),
                                                       (1000, 1000, 100, 0.5), (777, 1333, 256, 0.1)])
def test_tiles_are_sahis(height, width, size, overlap):
    ref = get_slice_bboxes(height, width, size, size, overlap_height_ratio=overlap, overlap_width_ratio=overlap)
    assert slice_windows(height, width, size, overlap) == [tuple(w) for w in ref]


def random_predictions(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 120
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 60 + 4], 1).round()  # ties in overlap, as tiles
    scores = (torch.rand(n, generator=g) * 100).round() / 100  # ties in score
    return boxes, scores, torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("metric", ["ios", "iou"])
@pytest.mark.parametrize("agnostic", [True, False])
def test_merges_are_sahis(seed, metric, agnostic):
    boxes, scores, labels = random_predictions(80, seed)
    table = np.concatenate([boxes.numpy(), scores.numpy()[:, None], labels.numpy()[:, None]], 1).astype(np.float64)
    ref = (nms if agnostic else batched_nms)(table, match_metric=metric.upper(), match_threshold=0.5)
    assert sorted(merge_nms(boxes, scores, labels, 0.5, metric, agnostic).tolist()) == sorted(ref)
    preds = [ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(int(c)), score=float(s))
             for b, s, c in zip(boxes, scores, labels)]
    merged = GreedyNMMPostprocess(match_threshold=0.5, match_metric=metric.upper(), class_agnostic=agnostic)(preds)
    expected = sorted((tuple(round(v, 3) for v in p.bbox.to_xyxy()), round(p.score.value, 4), p.category.id)
                      for p in merged)
    got = merge_greedy_nmm(boxes, scores, labels, 0.5, metric, agnostic)
    assert sorted((tuple(round(float(v), 3) for v in b), round(float(s), 4), int(c)) for b, s, c in zip(*got)) == expected
    assert len(expected) < len(preds)  # something was merged


def test_detections_are_shifted_to_image_pixels_and_merged_across_tiles():
    """A fake detector that finds every bright square of a tile (in tile pixels; a square cut by the tile border
    scores lower): the sliced prediction returns each square once, in image pixels, with both merges (IoS)."""
    image = torch.zeros(3, 300, 500, dtype=torch.uint8)
    squares = [(20, 30, 40, 50), (180, 100, 200, 120), (300, 200, 330, 230), (460, 260, 490, 290)]
    for x0, y0, x1, y1 in squares:
        image[:, y0:y1, x0:x1] = 255

    def detect(crops):
        out = []
        for crop in crops:
            mask = crop[0] > 0
            boxes = []
            rows, cols = mask.any(1), mask.any(0)
            ys, xs = torch.nonzero(rows).flatten(), torch.nonzero(cols).flatten()
            # connected runs of bright columns / rows give the squares of this crop
            for xr in _runs(xs):
                for yr in _runs(ys):
                    if mask[yr[0]:yr[1] + 1, xr[0]:xr[1] + 1].all():
                        boxes.append([xr[0], yr[0], xr[1] + 1, yr[1] + 1])
            b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            out.append((b, 0.5 + area / 10_000, torch.zeros(len(b), dtype=torch.long)))  # a cut square scores lower
        return out

    for merge in ("nms", "greedy_nmm"):
        boxes, scores, labels = predict_sliced(detect, image, SliceOptions(size=192, overlap=0.2, merge=merge))
        assert sorted(tuple(int(v) for v in b) for b in boxes) == sorted(squares), merge
        assert sorted(scores.tolist()) == pytest.approx([0.54, 0.54, 0.59, 0.59]) and labels.tolist() == [0] * 4


def _runs(values: torch.Tensor) -> list[tuple[int, int]]:
    runs, start = [], None
    values = values.tolist()
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            runs.append((start, v))
            start = None
    return runs


@pytest.mark.parametrize("kwargs,match", [({"size": 8}, "slice size must be a whole number of pixels >= 16"),
                                          ({"size": 256, "overlap": 1.0}, r"slice overlap must be a fraction in \[0, 1\)"),
                                          ({"size": 256, "overlap": -0.1}, "slice overlap"),
                                          ({"size": 256, "merge": "wbf"}, "slice merge must be one of greedy_nmm, nms")])
def test_bad_slice_options_are_refused_by_name(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SliceOptions(**kwargs)


def test_a_slice_larger_than_the_image_says_it_predicts_the_image_whole():
    image = torch.zeros(3, 100, 150, dtype=torch.uint8)
    calls = []

    def detect(crops):
        calls.append([tuple(c.shape) for c in crops])
        return [(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)) for _ in crops]

    with pytest.warns(UserWarning, match=r"slice size 256 px is not smaller than the image \(150x100 px\)"):
        predict_sliced(detect, image, SliceOptions(size=256))
    assert calls == [[(3, 100, 150)]]


def test_a_model_predicts_each_tile_at_its_own_size_and_the_cli_writes_image_pixels(tmp_path, capsys):
    """``Model(..., slice_size=S)``: every tile is predicted as the model predicts that crop on its own (resized to
    the model's input), shifted to image pixels, then merged; ``predict --slice`` writes those boxes, all inside
    the image (exports slice the same way: test_export_int8); a missing export file is named."""
    pytest.importorskip("fastapi", reason="the tiny run of the server tests needs the serve extra")
    import json

    from PIL import Image
    from test_serve import write_tiny_run

    from anchorfree import Model
    from anchorfree.cli import main
    from anchorfree.inference.slicing import merge_detections

    run = write_tiny_run(tmp_path / "run")
    model = Model(run, device="cpu", fast=False)
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (3, 150, 230), dtype=torch.uint8, generator=g)
    sliced = model(image, slice_size=96, overlap=0.25, merge="nms", score_thresh=0.05)
    tiles = slice_windows(150, 230, 96, 0.25)
    per_tile = model([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in tiles], score_thresh=0.05)
    boxes = torch.cat([torch.as_tensor(p.boxes) + torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
                       for p, (x0, y0, _, _) in zip(per_tile, tiles)])
    scores = torch.cat([torch.as_tensor(p.scores) for p in per_tile])
    labels = torch.cat([torch.as_tensor(p.labels) for p in per_tile])
    want = merge_detections(boxes, scores, labels, SliceOptions(96, 0.25, merge="nms"))
    assert len(want[0]) > 0 and len(sliced) == len(want[0])
    torch.testing.assert_close(torch.as_tensor(sliced.boxes), want[0])
    path = tmp_path / "big.png"
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    assert main(["predict", str(run), str(path), "--out", str(tmp_path / "pred"), "--slice", "96",
                 "--score-thresh", "0.05", "--fast", "off"]) == 0
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert results and all(0 <= x and 0 <= y and x + w <= 230.01 and y + h <= 150.01 for x, y, w, h in
                           (r["bbox"] for r in results))
    assert main(["predict", str(tmp_path / "model.onnx"), str(path), "--out", str(tmp_path / "p2"), "--slice", "96"]) == 2
    assert "model.onnx does not exist" in capsys.readouterr().err


def test_the_server_slices_on_request_and_refuses_slice_options_without_a_slice(tmp_path):
    """``POST /predict?slice=96&overlap=0.25&merge=nms`` answers what ``Model(..., slice_size=96, ...)`` gives for
    the same image; ``overlap`` without ``slice`` is a 422 naming what to add."""
    pytest.importorskip("fastapi", reason="serving needs the serve extra")
    httpx = pytest.importorskip("httpx", reason="the serving tests need httpx")
    from test_serve import ServerThread, picture, png, write_tiny_run

    from anchorfree import Model
    from anchorfree.serve import create_app

    model = Model(write_tiny_run(tmp_path / "run"), device="cpu", fast=False)
    image = picture(230, 150)
    want = model(image, slice_size=96, overlap=0.25, merge="nms", score_thresh=0.05)
    app = create_app(model, max_image_pixels=1_000_000, max_body_bytes=2**20, batch_window_ms=1)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post("/predict?slice=96&overlap=0.25&merge=nms&score_thresh=0.05",
                             content=png(image), headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
        got = answer.json()["detections"]
        assert len(got) == len(want) > 0
        np.testing.assert_allclose([d["box"] for d in got], np.asarray(want.boxes), atol=0.011)
        refused = client.post("/predict?overlap=0.3", content=png(image), headers={"Content-Type": "image/png"})
        assert refused.status_code == 422 and "add slice=S" in refused.json()["error"]
