"""Video in: a real H.264 file written with PyAV, predicted frame by frame (drawn video of the same size and frame
rate, one JSON line per frame, tracking with ByteTrack and a MOT-challenge file), frame folders, and damaged files
with a clear message."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason='video needs PyAV: pip install "anchorfree[video]"')
pytest.importorskip("trackers", reason='tracking needs the trackers package: pip install "anchorfree[video]"')
pytest.importorskip("fastapi", reason="the tiny run of the server tests needs the serve extra")

from PIL import Image  # noqa: E402
from test_serve import write_tiny_run  # noqa: E402

from anchorfree import Model  # noqa: E402
from anchorfree.cli import main  # noqa: E402
from anchorfree.inference.video import open_frames  # noqa: E402

FPS, FRAMES, W, H = 10, 20, 160, 120


def moving_squares(t: int) -> np.ndarray:
    frame = np.full((H, W, 3), 40, np.uint8)
    x = 10 + 4 * t
    frame[30:60, x:x + 30] = (230, 60, 60)
    frame[70:100, W - 40 - 3 * t:W - 10 - 3 * t] = (60, 200, 90)
    return frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for t in range(FRAMES):
            for packet in stream.encode(av.VideoFrame.from_ndarray(moving_squares(t), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("video_run") / "run")


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_a_video_file_is_predicted_tracked_and_drawn_frame_by_frame(clip, run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(clip), "--out", str(out), "--track", "--score-thresh", "0.05",
                 "--fast", "off"]) == 0
    printed = capsys.readouterr().out
    assert f"{clip}: {FRAMES} frames" in printed and "frames/s" in printed
    lines = [json.loads(x) for x in (out / "clip.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(FRAMES))
    assert [x["time_s"] for x in lines] == pytest.approx([t / FPS for t in range(FRAMES)], abs=1e-3)
    dets = [d for x in lines for d in x["detections"]]
    assert dets and all(d["track_id"] >= 0 and 0 <= d["score"] <= 1 for d in dets)
    assert all(-1 <= d["box"][0] <= d["box"][2] <= W + 1 and -1 <= d["box"][1] <= d["box"][3] <= H + 1 for d in dets)
    frames = decoded(out / "clip.mp4")  # drawn: as many frames, same size and frame rate
    assert len(frames) == FRAMES and frames[0].shape == (H, W, 3)
    with av.open(str(out / "clip.mp4")) as container:
        assert float(container.streams.video[0].average_rate) == FPS
    mot = [row.split(",") for row in (out / "clip.mot.txt").read_text().splitlines()]
    assert len(mot) == len(dets) and all(len(r) == 10 and 1 <= int(r[0]) <= FRAMES for r in mot)
    by_frame = {}
    for r in mot:
        by_frame.setdefault(int(r[0]), set()).add(int(r[1]))
    assert all(len(ids) == len(lines[f - 1]["detections"]) for f, ids in by_frame.items())  # one id per object


def test_stride_max_frames_and_frame_folders(clip, run_dir, tmp_path):
    model = Model(run_dir, device="cpu", fast=False)
    assert main(["predict", str(run_dir), str(clip), "--out", str(tmp_path / "s"), "--vid-stride", "3",
                 "--max-frames", "4", "--no-draw", "--fast", "off"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "s" / "clip.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 3, 6, 9] and not (tmp_path / "s" / "clip.mp4").exists()
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for t in range(5):
        Image.fromarray(moving_squares(t)).save(frames_dir / f"{t:04d}.png")
    stream, info = open_frames(frames_dir)
    got = list(stream)
    assert info.kind == "frames" and (info.width, info.height, info.frames) == (W, H, 5)
    assert [f.index for f in got] == list(range(5)) and np.array_equal(got[2].image, moving_squares(2))
    want = model(moving_squares(2), score_thresh=0.05)
    assert main(["predict", str(run_dir), str(frames_dir), "--frames", "--out", str(tmp_path / "f"),
                 "--score-thresh", "0.05", "--fast", "off"]) == 0
    line = json.loads((tmp_path / "f" / "frames.jsonl").read_text().splitlines()[2])
    assert len(line["detections"]) == len(want)  # each frame predicted as the image on its own


def test_damaged_and_missing_videos_get_a_clear_message(clip, run_dir, tmp_path, capsys):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:300])  # the header and hardly any data
    assert main(["predict", str(run_dir), str(cut), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and ("damaged" in err or "cannot be opened" in err) and "Traceback" not in err
    assert main(["predict", str(run_dir), str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_python_api_streams_frames_with_track_ids(clip, run_dir):
    model = Model(run_dir, device="cpu", fast=False)
    seen = list(model.track(clip, score_thresh=0.05, max_frames=12))
    assert [f.index for f, _ in seen] == list(range(12)) and seen[0][0].image.shape == (H, W, 3)
    assert all(len(p.track_ids) == len(p) for _, p in seen) and any(len(p) for _, p in seen)
    plain = next(iter(model.stream(clip, score_thresh=0.05)))[1]
    assert plain.track_ids is None and len(plain) == len(model(seen[0][0].image, score_thresh=0.05))


def test_the_synthetic_video_has_true_ground_truth_and_bytetrack_scores_well_by_motmetrics(tmp_path):
    """``data synth --video``: the ground-truth boxes are where the shapes are drawn (the decoded frames differ from
    the background there); ByteTrack (our wrapper) on those boxes, jittered as a detector's, scores MOTA >= 0.9 and
    IDF1 >= 0.8 by motmetrics, while the same boxes with ids shuffled every frame score IDF1 < 0.5."""
    mm = pytest.importorskip("motmetrics", reason="the tracking metrics of this test come from motmetrics")
    from anchorfree.data.synth_video import read_mot
    from anchorfree.inference.video import make_tracker, track

    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--video", "--frames", "40", "--seed", "1"]) == 0
    gt = read_mot(out / "gt.txt")
    frames = decoded(out / "video.mp4")
    assert len(frames) == 40 and set(gt) <= set(range(1, 41))
    first = frames[0].astype(int)
    for _, (x, y, w, h) in gt[1]:  # an object's pixels differ from their surroundings
        inside = first[int(y) + 2:int(y + h) - 2, int(x) + 2:int(x + w) - 2]
        assert inside.size and np.abs(inside - np.median(first, axis=(0, 1))).mean() > 20

    def score(hypotheses: dict[int, list[tuple[int, list[float]]]]) -> dict[str, float]:
        acc = mm.MOTAccumulator(auto_id=False)
        for f in sorted(gt):
            g, h = gt[f], hypotheses.get(f, [])
            dist = iou_distances(np.array([b for _, b in g], float).reshape(-1, 4),
                                 np.array([b for _, b in h], float).reshape(-1, 4))
            acc.update([i for i, _ in g], [i for i, _ in h], dist, frameid=f)
        summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1"], name="x")
        return {k: float(summary[k].iloc[0]) for k in ("mota", "idf1")}

    rng = np.random.default_rng(0)
    tracker = make_tracker(10)
    tracked, shuffled = {}, {}
    for f in sorted(gt):
        boxes = np.array([[x, y, x + w, y + h] for _, (x, y, w, h) in gt[f]], float) + rng.normal(0, 1, (len(gt[f]), 4))
        b, s, c, ids = track(tracker, boxes, np.full(len(boxes), 0.9), np.zeros(len(boxes), int))
        tracked[f] = [(int(i), [x1, y1, x2 - x1, y2 - y1]) for i, (x1, y1, x2, y2) in zip(ids, b)]
        shuffled[f] = [(int(i), box) for i, (_, box) in zip(rng.permutation(len(gt[f])) + 1, gt[f])]
    good, bad = score(tracked), score(shuffled)
    assert good["mota"] >= 0.9 and good["idf1"] >= 0.8, good
    assert bad["idf1"] < 0.5, bad


def iou_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - IoU`` of ``[x, y, w, h]`` boxes, NaN (no match) below IoU 0.5: motmetrics' ``iou_matrix(max_iou=0.5)``,
    written out because motmetrics 1.4 calls ``np.asfarray``, which NumPy 2 removed."""
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    distance = 1 - inter / np.maximum(union, 1e-9)
    return np.where(distance > 0.5, np.nan, distance)
