"""Video: tracking accuracy on a synthetic video with ground truth, and frames/s of video prediction with decoding,
drawing and encoding included, side by side with ultralytics' ``track``.

    anchorfree data synth runs/video --video --frames 200 --seed 3           # video.mp4 + gt.txt (MOT)
    python benchmarks/bench_video.py --run RUN --video runs/video --out runs/bench_video [--peer yolo26n]

A detector for it trained on frames of other videos of the same generator (other seeds, other objects):

    python benchmarks/bench_video.py --make-frames runs/video_frames     # COCO dataset of decoded frames
    anchorfree train gfl_shufflenetv2_pan_nano --data runs/video_frames --out runs/video_nano train.minutes=10

* accuracy: ``anchorfree predict RUN video.mp4 --track`` (ByteTrack from the ``trackers`` package) against
  ``gt.txt``: MOTA and IDF1 by motmetrics (IoU >= 0.5), HOTA by the ``trackers`` package's evaluator;
* speed: frames/s of the whole command path (decode, predict, track, draw, encode) at 1 thread, and the same for
  ultralytics ``YOLO(...).track(source, tracker="bytetrack.yaml", save=True)`` at the same input size, in its own
  process, the two run one after the other on an otherwise idle machine. The peer's weights are its untrained
  ``.yaml`` model (no download): its speed, not its accuracy, is compared.
* ``--format onnx``: both sides run their ONNX export (``anchorfree export RUN`` and ultralytics' own
  ``export(format="onnx")``, each at its default: a static square canvas of the input size) in ONNX Runtime, the
  deployment path; exporting is not timed. ONNX Runtime takes every core unless told otherwise and ultralytics
  does not tell it, so ``--cpu N`` pins both processes to core N (``taskset``): one core each, in turn.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_flags  # noqa: E402

PEER = r"""
import sys, time
from pathlib import Path
from ultralytics import YOLO
model = YOLO(sys.argv[1] + ".yaml")
if sys.argv[5] == "export":  # the untimed step before an onnx run
    Path(model.export(format="onnx", imgsz=int(sys.argv[3]))).rename(sys.argv[1] + ".onnx")
    sys.exit(0)
if sys.argv[5] == "onnx":
    model = YOLO(sys.argv[1] + ".onnx", task="detect")
start, frames = time.perf_counter(), 0
for _ in model.track(source=sys.argv[2], tracker="bytetrack.yaml", imgsz=int(sys.argv[3]), stream=True, save=True,
                     project=sys.argv[4], name="track", exist_ok=True, verbose=False, device="cpu"):
    frames += 1
print(frames, time.perf_counter() - start)
"""


def iou_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - IoU`` of ``[x, y, w, h]`` boxes, NaN below IoU 0.5 (motmetrics' ``iou_matrix(max_iou=0.5)``)."""
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    distance = 1 - inter / np.maximum(a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter, 1e-9)
    return np.where(distance > 0.5, np.nan, distance)


def clear_and_identity(gt_file: Path, hyp_file: Path) -> dict[str, float]:
    import motmetrics as mm

    from anchorfree.data.synth_video import read_mot

    gt, hyp = read_mot(gt_file), read_mot(hyp_file)
    acc = mm.MOTAccumulator(auto_id=False)
    for f in sorted(set(gt) | set(hyp)):
        g, h = gt.get(f, []), hyp.get(f, [])
        acc.update([i for i, _ in g], [i for i, _ in h],
                   iou_distances(np.array([b for _, b in g], float).reshape(-1, 4),
                                 np.array([b for _, b in h], float).reshape(-1, 4)), frameid=f)
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="run")
    return {k: float(summary[k].iloc[0]) for k in ("mota", "idf1", "num_switches")}


def hota(gt_file: Path, hyp_file: Path) -> float | None:
    try:
        from trackers.eval import compute_hota_metrics
    except ImportError:
        return None
    try:
        import inspect

        from anchorfree.data.synth_video import read_mot

        gt, hyp = read_mot(gt_file), read_mot(hyp_file)
        params = inspect.signature(compute_hota_metrics).parameters
        if "gt_ids" not in params:
            return None
        frames = sorted(set(gt) | set(hyp))
        gt_ids = [np.array([i for i, _ in gt.get(f, [])]) for f in frames]
        hyp_ids = [np.array([i for i, _ in hyp.get(f, [])]) for f in frames]
        sims = [1 - np.nan_to_num(iou_distances(np.array([b for _, b in gt.get(f, [])], float).reshape(-1, 4),
                                                np.array([b for _, b in hyp.get(f, [])], float).reshape(-1, 4)),
                                  nan=1.0) for f in frames]
        out = compute_hota_metrics(gt_ids=gt_ids, tracker_ids=hyp_ids, similarity_scores=sims)
        return float(np.mean(out["HOTA"])) if isinstance(out, dict) else None
    except Exception:  # noqa: BLE001 - an evaluator API that differs: report MOTA/IDF1 only
        return None


def make_frames(out: Path, videos: int = 10, frames: int = 150, every: int = 3, seed: int = 100) -> Path:
    """A COCO dataset in the folder layout ``data`` reads (``out/{train,val}/images``, ``annotations.json``) of every ``every``-th
    decoded frame of ``videos`` generated videos (seeds ``seed``…; 3–8 objects each; the last video is the
    validation split), boxes and classes from each video's ``gt.txt``: frames as the tracker's detector sees them
    (H.264 artefacts, motion, occlusion), from videos other than the measured one."""
    import av
    from PIL import Image

    from anchorfree.data.synth import SYNTH_CLASSES
    from anchorfree.data.synth_video import generate_video

    cats = [{"id": k + 1, "name": name} for k, name in enumerate(SYNTH_CLASSES)]
    splits = {"train": {"images": [], "annotations": [], "categories": cats},
              "val": {"images": [], "annotations": [], "categories": cats}}
    for v in range(videos):
        split = "val" if v == videos - 1 else "train"
        folder = generate_video(out / "videos" / f"{seed + v}", frames=frames, objects=3 + v % 6, seed=seed + v)
        rows: dict[int, list[list[float]]] = {}
        for line in (folder / "gt.txt").read_text().split():
            f, _, x, y, w, h, _, cls, _ = (float(c) for c in line.split(","))
            rows.setdefault(int(f), []).append([x, y, w, h, cls])
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        coco = splits[split]
        with av.open(str(folder / "video.mp4")) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index % every:
                    continue
                image = frame.to_ndarray(format="rgb24")
                name = f"v{seed + v}_f{index:04d}.png"
                Image.fromarray(image).save(out / split / "images" / name)
                image_id = len(coco["images"]) + 1
                coco["images"].append({"id": image_id, "file_name": name, "height": image.shape[0],
                                       "width": image.shape[1]})
                for x, y, w, h, cls in rows.get(index + 1, []):
                    coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                                "category_id": int(cls), "bbox": [x, y, w, h], "area": w * h,
                                                "iscrowd": 0})
    for split, coco in splits.items():
        (out / split / "annotations.json").write_text(json.dumps(coco))
    print(f"wrote {out}: {len(splits['train']['images'])} training and {len(splits['val']['images'])} validation "
          f"frames, {len(splits['train']['annotations'])} / {len(splits['val']['annotations'])} boxes")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-frames", metavar="OUT", help="only write the training dataset of decoded frames of "
                        "other generated videos (see the module docstring) to OUT")
    parser.add_argument("--run", help="a trained anchorfree run (on the synthetic shapes)")
    parser.add_argument("--video", help="folder from `anchorfree data synth OUT --video`")
    parser.add_argument("--out", default="runs/bench_video", help="output folder")
    parser.add_argument("--peer", default="yolo26n", help="ultralytics model (its .yaml; '' to skip)")
    parser.add_argument("--peer-python", default=sys.executable, help="the Python that has ultralytics")
    parser.add_argument("--imgsz", type=int, default=320, help="the peer's input size (default 320)")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="anchorfree's detection threshold")
    parser.add_argument("--format", choices=["pytorch", "onnx"], default="pytorch",
                        help="what both sides run: their PyTorch model or their ONNX export in ONNX Runtime")
    parser.add_argument("--cpu", type=int, help="pin both processes to this core (taskset), one after the other")
    args = parser.parse_args(argv)
    if args.make_frames:
        make_frames(Path(args.make_frames))
        return 0
    if not args.run or not args.video:
        parser.error("--run and --video are required (or --make-frames OUT)")
    video, out = Path(args.video).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "YOLO_OFFLINE": "1"}
    print(f"CPU flags: {cpu_flags()}; 1 thread per process", flush=True)
    pin = ["taskset", "-c", str(args.cpu)] if args.cpu is not None else []
    model = args.run
    if args.format == "onnx":
        model = str(out / "anchorfree.onnx")
        subprocess.run([sys.executable, "-m", "anchorfree", "export", args.run, "--out", model], check=True, env=env,
                       capture_output=True)
    start = time.perf_counter()
    done = subprocess.run([*pin, sys.executable, "-m", "anchorfree", "predict", model, str(video / "video.mp4"), "--out",
                           str(out / "anchorfree"), "--track", "--threads", "1", "--score-thresh",
                           str(args.score_thresh)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    frames = sum(1 for _ in (out / "anchorfree" / "video.jsonl").open())
    row = {"detector": f"anchorfree ({args.format})", "frames": frames, "command_s": round(seconds, 2),
           "frames_per_s": round(frames / seconds, 2),
           **clear_and_identity(video / "gt.txt", out / "anchorfree" / "video.mot.txt"),
           "hota": hota(video / "gt.txt", out / "anchorfree" / "video.mot.txt")}
    rows = [row]
    if args.peer:
        peer_args = [args.peer_python, "-c", PEER, args.peer, str(video / "video.mp4"), str(args.imgsz),
                     str(out / "peer")]
        if args.format == "onnx":  # exporting is not timed
            subprocess.run([*peer_args, "export"], env=env, capture_output=True, check=True, cwd=out)
        start = time.perf_counter()
        peer = subprocess.run([*pin, *peer_args, args.format], env=env, capture_output=True, text=True, cwd=out)
        seconds = time.perf_counter() - start
        if peer.returncode != 0:
            print(peer.stderr[-2000:])
        else:
            n, loop_s = peer.stdout.split()[-2:]
            rows.append({"detector": f"ultralytics {args.peer} ({args.format}, untrained .yaml, bytetrack)",
                         "frames": int(n),
                         "command_s": round(seconds, 2), "frames_per_s": round(int(n) / seconds, 2),
                         "loop_frames_per_s": round(int(n) / float(loop_s), 2)})
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| detector | frames | whole command s | frames/s | MOTA | IDF1 | ID switches | HOTA |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['frames']} | {r['command_s']} | {r['frames_per_s']} | {r.get('mota', '-')} | "
              f"{r.get('idf1', '-')} | {r.get('num_switches', '-')} | {r.get('hota', '-')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
