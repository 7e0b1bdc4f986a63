"""Deployed detectors on the CPU: anchorfree's exported light model vs ultralytics YOLO26n and YOLOv8n exported
with ultralytics' own ``model.export``, in the same runtimes (ONNX Runtime, OpenVINO), fp32 and int8, on the same
validation images at the same input size.

Per (detector, format, precision, input size) a row: AP, AP50, APs (pycocotools' COCOeval, one call for every
row, on the same annotation file), images/s at batch 1 with 1 runtime thread and with all cores, detections per
image at the speed threshold, file size, and anchorfree's images/s divided by each YOLO's in the same
runtime/precision/size (> 1: anchorfree faster).

* Exports (cached in ``--work``; ``--reexport`` redoes them). anchorfree: ``python -m anchorfree export RUN
  --format onnx|openvino [--int8 --data DATA --calib N --max-ap-drop 100] [--input-size S] --out FILE`` (its
  certificate may not delete a file, AP is measured here; a failing command, e.g. a format this checkout does not
  have, makes its row a skip with the command's last line; ``--af-files onnx-int8=PATH openvino-fp32@320=PATH ...``
  takes files made beforehand). Default models: the seed-1 pair of runs/peers_photos (same seed, same 20-minute
  budget; seed 0's YOLO26n stopped after 1 epoch at AP 0.03). ultralytics, in ``--yolo-python`` (a Python with
  ultralytics, ``YOLO_OFFLINE=1``: nothing is downloaded): ``YOLO(best.pt).export(format=onnx|openvino,
  imgsz=S, batch=1, dynamic=False, simplify=True)``, int8 with ``quantize=8, data=<YOLO data.yaml>, split=train,
  fraction=N``: both sides calibrate on N training images (ultralytics' default split is val, the images
  scored here). YOLOv8n has no trained weights: it is built from ``yolov8n.yaml`` with the dataset's classes
  (random weights, seed 0; its AP is that of an untrained model and the speed threshold leaves ~0 detections).
  ``yolo26n-e2e``: YOLO26n exported with ``nms=False``, its NMS-free one-to-one head (ultralytics' default,
  ``nms=None``, exports the one-to-many head and runs NMS after the graph).
* AP: every validation image (``--limit`` for fewer), decoded once with PIL to RGB ``uint8`` arrays (ultralytics
  gets the same arrays as BGR, its convention for arrays), predicted at score threshold 0.001 on both sides
  (ultralytics' val setting); NMS IoU each side's own (ultralytics 0.7 and max_det 300, as its val; anchorfree
  the export's, 0.6 and 100 for the nano preset); COCO keeps the best 100 per image. YOLO class i is the i-th
  category id in ascending order. AP only at ``--train-imgsz`` (the models' training size): other ``--imgsz``
  rows are speed only (network at that size; anchorfree's export keeps its 192 px resize and pads to the canvas).
* Speed: each side's usual call per image, ``model(rgb, score_thresh=...)`` (anchorfree.load_model) and
  ``YOLO(file).predict(bgr, conf=..., iou=0.7, max_det=300)``: resize/letterbox, the network, decoding, NMS and
  rescaling to the image's pixels are timed; decoding the image file is not. Score threshold ``--speed-conf``
  (0.25, ultralytics' predict default) on both sides. ``--warmup`` calls, then ``--repeats`` passes over the
  first ``--time-images`` images; images/s = images / median pass time. Every (row, threads) runs alone in its
  own process, one after the other; the cores other processes used meanwhile are printed (``bg``; > 0.2 is
  flagged ``*``; ``--wait-idle S`` waits for a quiet machine first).
* Threads (the same count on both sides, 1 and ``os.cpu_count()``): the process gets ``OMP_NUM_THREADS``,
  ``MKL_NUM_THREADS`` and ``ANCHORFREE_RUNTIME_THREADS`` = n and ``torch.set_num_threads(n)``. anchorfree: the
  predictor's onnxruntime session (``intra_op_num_threads``) / OpenVINO compile (``INFERENCE_NUM_THREADS``) read
  ``ANCHORFREE_RUNTIME_THREADS``; the count is read back from the session / compiled model (an onnxruntime
  session that ignored it is rebuilt with it). ultralytics' backends take no thread option: after its predictor is
  set up, its onnxruntime session is rebuilt with ``intra_op_num_threads=n`` and its OpenVINO model recompiled with
  ``INFERENCE_NUM_THREADS=n`` (and ``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_PRECISION_HINT=f32``, as anchorfree's
  backend; ultralytics' own config is LATENCY alone); its torch pre/post-processing at ``torch.set_num_threads(n)``
  (``ultralytics.utils.torch_utils.NUM_THREADS`` too, which its device setup applies) and OpenCV at
  ``cv2.setNumThreads(n)``. Both onnxruntime sides keep its defaults otherwise (spinning threads, sequential).

Commands (from the repository root; the main Python has anchorfree, onnxruntime, openvino, nncf, pycocotools;
``--yolo-python`` has ultralytics, onnx, onnxslim, onnxruntime, openvino, nncf)::

    python benchmarks/bench_exports.py                                # every row at 192 px (~20 min on 2 idle cores)
    python benchmarks/bench_exports.py --imgsz 192 320 --detectors anchorfree yolo26n yolo26n-e2e
    python benchmarks/bench_exports.py --limit 20 --time-images 10 --repeats 2 --calib 20 --work /tmp/smoke  # smoke
    python benchmarks/bench_exports.py --table                        # the table of WORK/results.json again
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from timing import CpuMonitor, cpu_flags, cpu_name, wait_for_idle

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "peers_photos"
AF_RUN = RUNS / "photos3k/seed1/gfl_shufflenetv2_pan_nano-default/gfl_shufflenetv2_pan_nano"
YOLO26_PT = RUNS / "photos3k/seed1/yolo26n/weights/best.pt"
FORMATS, PRECISIONS = ("onnx", "openvino"), ("fp32", "int8")
SAME_ROW = ("format", "precision", "imgsz")
NOTES = {"yolo-onnx-int8": "quantize=8: onnxruntime quantize_static, QDQ, per-tensor weights, every conv int8",
         "yolo-openvino-int8": "quantize=8: NNCF preset MIXED, every conv int8 (decoding, DFL in float)",
         "anchorfree-onnx-int8": "onnxruntime QDQ, per-channel weights, output convs float",
         "anchorfree-openvino-int8": "the int8 ONNX (QDQ) graph converted, output convs float"}


# ---- images --------------------------------------------------------------------------------------
def load_gt(ann: Path, limit: int | None) -> dict:
    """The COCO annotation dict, cut to its first ``limit`` images (and their boxes)."""
    gt = json.loads(Path(ann).read_text())
    if limit:
        gt["images"] = gt["images"][:limit]
        keep = {im["id"] for im in gt["images"]}
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    return gt


def decode(job: dict) -> list[tuple[int, np.ndarray]]:
    """Every job image as an RGB ``uint8 [H, W, 3]`` array (stored pixels, the grid the annotations use)."""
    from PIL import Image

    gt = load_gt(job["val_ann"], job["limit"])
    return [(im["id"], np.asarray(Image.open(Path(job["val_images"]) / im["file_name"]).convert("RGB")))
            for im in gt["images"]]


# ---- the two sides, each run in a worker process --------------------------------------------------
def ov_settings(compiled) -> dict:
    """What an OpenVINO compiled model runs with: threads and the precision of its float parts."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    return {"threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "precision": hint.to_string() if hasattr(hint, "to_string") else str(hint)}


def open_anchorfree(job: dict):
    """``(call(image, conf) -> (xyxy, scores, category ids), prepare, info)`` of an anchorfree export."""
    import anchorfree

    n = job["threads"]
    model = anchorfree.load_model(job["path"], device="cpu")
    backend, info = model.backend, {"anchorfree": getattr(anchorfree, "__version__", "?")}
    if hasattr(backend, "session"):
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        if backend.session.get_session_options().intra_op_num_threads != n:  # a checkout without the variable
            options = ort.SessionOptions()
            options.log_severity_level, options.intra_op_num_threads = 3, n
            backend.session = ort.InferenceSession(job["path"], options, providers=["CPUExecutionProvider"])
            info["threads_set_by"] = "benchmark (session rebuilt)"
        info["threads"] = backend.session.get_session_options().intra_op_num_threads
    elif getattr(backend, "compiled", None) is not None:
        import openvino as ov

        info.update(openvino=ov.__version__.split("-")[0], **ov_settings(backend.compiled))
    cat = model.label_to_cat_id

    def call(image, conf):
        p = model(image, score_thresh=conf)
        return p.boxes, p.scores, [cat[int(x)] for x in p.labels]

    return call, (lambda rgb: rgb), info


def open_yolo(job: dict):
    """The same for an ultralytics export, with its backend's threads set to ``job['threads']``."""
    import cv2
    import torch
    import ultralytics.utils.torch_utils
    from ultralytics import YOLO

    n, cat, patched = job["threads"], job["cat_ids"], set()
    ultralytics.utils.torch_utils.NUM_THREADS = n  # its select_device() sets torch's threads to this
    cv2.setNumThreads(n)
    model = YOLO(job["path"], task="detect")
    args = dict(imgsz=job["imgsz"], iou=0.7, max_det=300, device="cpu", verbose=False)
    info = {"ultralytics": ultralytics.__version__}

    def set_threads():
        backend = model.predictor.model.backend
        if id(backend) in patched:
            return
        if hasattr(backend, "session"):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = n
            backend.session = ort.InferenceSession(str(job["path"]), options, providers=["CPUExecutionProvider"])
            info.update(onnxruntime=ort.__version__, threads=backend.session.get_session_options().intra_op_num_threads)
        elif hasattr(backend, "ov_compiled_model"):
            import openvino as ov

            xml = next(Path(job["path"]).glob("*.xml"))
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": n}
            backend.ov_compiled_model = compiled = ov.Core().compile_model(str(xml), "CPU", config)
            info.update(openvino=ov.__version__.split("-")[0], **ov_settings(compiled))
        info["end2end"] = bool(getattr(model.predictor.model, "end2end", False))
        torch.set_num_threads(n)
        patched.add(id(backend))

    def call(image, conf):
        first = model.predictor is None
        r = model.predict(image, conf=conf, **args)[0].boxes
        if first:  # the predictor (and its backend) exist from the first call on: this call ran before the patch
            set_threads()
            r = model.predict(image, conf=conf, **args)[0].boxes
        set_threads()  # a no-op unless ultralytics rebuilt its predictor
        return r.xyxy.numpy(), r.conf.numpy(), [cat[int(c)] for c in r.cls.tolist()]

    return call, (lambda rgb: np.ascontiguousarray(rgb[..., ::-1])), info


def worker(job_file: str) -> int:
    """``--worker JOB``: AP predictions (when asked) and the timing of one (row, threads), written to JSON."""
    import torch

    job = json.loads(Path(job_file).read_text())
    torch.set_num_threads(job["threads"])
    call, prepare, info = (open_yolo if job["side"] == "yolo" else open_anchorfree)(job)
    images = [(i, prepare(rgb)) for i, rgb in decode(job)]  # decoding: not timed
    out = {"info": info}
    if job["ap"]:
        out["detections"] = [{"image_id": i, "category_id": int(c), "score": float(s),
                              "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
                             for i, image in images for (x1, y1, x2, y2), s, c in zip(*call(image, job["eval_conf"]))]
    timed = [im for _, im in images[:job["time_images"]]]
    for k in range(job["warmup"]):
        call(timed[k % len(timed)], job["speed_conf"])
    if job["wait_idle"]:
        wait_for_idle(job["wait_idle"])
    times, count, mon = [], 0, CpuMonitor().start()
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        for image in timed:
            count += len(call(image, job["speed_conf"])[1])
        times.append(time.perf_counter() - t0)
    out.update(images_per_s=len(timed) / statistics.median(times), times_s=times, background=mon.stop(),
               dets_per_image=count / (len(timed) * job["repeats"]))
    Path(job["out"]).write_text(json.dumps(out))
    return 0


# ---- exports ---------------------------------------------------------------------------------------
def yolo_export(job_file: str) -> int:
    """``--yolo-export JOB`` (in the ultralytics Python): one ``model.export`` in a folder of its own (an int8 ONNX
    export deletes the fp32 file it started from), the written path to ``JOB.result``."""
    os.environ["YOLO_OFFLINE"] = "1"
    import torch
    from ultralytics import YOLO

    job = json.loads(Path(job_file).read_text())
    pt = Path(job["dir"]) / "best.pt"
    pt.parent.mkdir(parents=True, exist_ok=True)
    if job["weights"]:
        shutil.copy(job["weights"], pt)
    else:  # untrained, from the yaml, with the dataset's classes
        from ultralytics.nn.tasks import DetectionModel

        torch.manual_seed(0)
        model = YOLO(job["yaml"])
        model.model = DetectionModel(model.model.yaml, nc=len(job["names"]), verbose=False)
        model.model.names = dict(enumerate(job["names"]))
        model.save(pt)
    options = dict(format=job["format"], imgsz=job["imgsz"], batch=1, dynamic=False, simplify=True, device="cpu",
                   **({"nms": False} if job["e2e"] else {}))
    if job["precision"] == "int8":
        options.update(quantize=8, data=job["data"], split="train", fraction=job["calib"])
    path = YOLO(str(pt), task="detect").export(**options)
    Path(job_file + ".result").write_text(json.dumps({"path": str(path)}))
    return 0


def run_logged(cmd: list[str], log: Path, env: dict | None = None) -> tuple[bool, str]:
    """Run ``cmd`` (output to ``log``): whether it succeeded, and its last output line."""
    print("  $ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    log.write_text(proc.stdout)
    return proc.returncode == 0, ([x.strip() for x in proc.stdout.splitlines() if x.strip()] or ["no output"])[-1][:200]


def file_size(path: Path) -> int:
    """Bytes of an export: the file, or for OpenVINO the .xml and its .bin (a folder: every .xml/.bin in it)."""
    path = Path(path)
    files = ([*path.glob("*.xml"), *path.glob("*.bin")] if path.is_dir()
             else [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path])
    return sum(f.stat().st_size for f in files if f.is_file())


def anchorfree_export(args, imgsz: int, fmt: str, prec: str, work: Path) -> dict:
    given = dict(item.split("=", 1) for item in args.af_files)
    key = f"{fmt}-{prec}"
    path = given.get(f"{key}@{imgsz}") or (given.get(key) if imgsz == args.imgsz[0] else None)
    if path:
        return {"path": str(Path(path).resolve())} if Path(path).is_file() else {"skip": f"--af-files: no {path}"}
    out = work / "anchorfree" / f"best{'_int8' * (prec == 'int8')}.{'xml' if fmt == 'openvino' else 'onnx'}"
    if out.is_file() and not args.reexport:
        return {"path": str(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "anchorfree", "export", str(args.af_run), "--format", fmt, "--out", str(out)]
    cmd += ["--input-size", str(imgsz)] if imgsz != args.train_imgsz else []
    cmd += ["--int8", "--data", str(args.data), "--calib", str(args.calib), "--max-ap-drop", "100"] * (prec == "int8")
    ok, line = run_logged(cmd, work / "logs" / f"anchorfree_{key}.log")
    return {"path": str(out)} if ok and out.is_file() else {"skip": f"export failed: {line}"}


def yolo_export_row(args, detector: str, imgsz: int, fmt: str, prec: str, work: Path, names: list[str]) -> dict:
    folder = work / detector / f"{fmt}_{prec}"
    done = Path(str(work / "logs" / f"{detector}_{fmt}_{prec}.json") + ".result")
    if done.is_file() and not args.reexport and Path(json.loads(done.read_text())["path"]).exists():
        return json.loads(done.read_text())
    weights = {"yolo26n": args.yolo26_weights, "yolo26n-e2e": args.yolo26_weights, "yolov8n": args.yolov8_weights}
    job = {"dir": str(folder.resolve()), "weights": weights[detector] and str(Path(weights[detector]).resolve()),
           "yaml": detector.split("-")[0] + ".yaml", "names": names, "format": fmt, "precision": prec,
           "imgsz": imgsz, "e2e": detector.endswith("-e2e"), "data": str(args.yolo_data), "calib": args.calib}
    job_file = done.with_suffix("")
    job_file.write_text(json.dumps(job, indent=1))
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    ok, line = run_logged([args.yolo_python, SCRIPT, "--yolo-export", str(job_file)],
                          work / "logs" / f"{detector}_{fmt}_{prec}.log", env)
    return json.loads(done.read_text()) if ok and done.is_file() else {"skip": f"export failed: {line}"}


# ---- the benchmark ---------------------------------------------------------------------------------
def run_row(args, row: dict, threads: int, ap: bool, work: Path, cat_ids: list[int]) -> dict:
    tag = f"{row['detector']}_{row['format']}_{row['precision']}_{row['imgsz']}_t{threads}"
    job = {"side": row["side"], "path": row["path"], "imgsz": row["imgsz"], "threads": threads, "ap": ap,
           "cat_ids": cat_ids, "val_ann": str(args.val_ann), "val_images": str(args.val_images), "limit": args.limit,
           "eval_conf": 0.001, "speed_conf": args.speed_conf, "time_images": args.time_images,
           "repeats": args.repeats, "warmup": args.warmup, "wait_idle": args.wait_idle,
           "out": str((work / "logs" / f"{tag}.out.json").resolve())}
    job_file = work / "logs" / f"{tag}.json"
    job_file.write_text(json.dumps(job, indent=1))
    python = args.yolo_python if row["side"] == "yolo" else sys.executable
    env = {**os.environ, "YOLO_OFFLINE": "1", **{v: str(threads) for v in (
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ANCHORFREE_RUNTIME_THREADS")}}
    ok, line = run_logged([python, SCRIPT, "--worker", str(job_file)], work / "logs" / f"{tag}.log", env)
    return json.loads(Path(job["out"]).read_text()) if ok else {"error": line}


def plan(args, work: Path, names: list[str]) -> list[dict]:
    rows = []
    for imgsz in args.imgsz:
        sized = work / f"s{imgsz}"
        (sized / "logs").mkdir(parents=True, exist_ok=True)
        for detector in args.detectors:
            for fmt in args.formats:
                for prec in args.precisions:
                    print(f"export {detector} {fmt} {prec} {imgsz}px", flush=True)
                    got = (anchorfree_export(args, imgsz, fmt, prec, sized) if detector == "anchorfree"
                           else yolo_export_row(args, detector, imgsz, fmt, prec, sized, names))
                    notes = [detector == "yolov8n" and not args.yolov8_weights and "UNTRAINED (random weights)",
                             detector == "yolo26n-e2e" and "NMS-free one-to-one head (nms=False)",
                             NOTES.get(f"{'anchorfree' if detector == 'anchorfree' else 'yolo'}-{fmt}-{prec}")]
                    rows.append({"detector": detector, "side": "anchorfree" if detector == "anchorfree" else "yolo",
                                 "format": fmt, "precision": prec, "imgsz": imgsz,
                                 "note": "; ".join(n for n in notes if n), **got})
                    if "path" in got:
                        rows[-1]["size_mb"] = file_size(Path(got["path"])) / 1e6
    return rows


def num(x, spec: str = ".1f") -> str:
    return "-" if x is None or x < 0 else format(x, spec)


def table(rows: list[dict], threads: list[int]) -> str:
    """Markdown, a row per export; ``af x Nt``: anchorfree's images/s / this row's (same runtime, precision, size)."""
    head = ["detector", "format", "prec", "px", "AP", "AP50", "APs", *(f"img/s {t}t" for t in threads),
            *(f"af x {t}t" for t in threads), "dets/img", "MB", "bg", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ips = lambda r, t: r.get("speed", {}).get(str(t), {}).get("images_per_s")  # noqa: E731
    for r in rows:
        cells = [r["detector"], r["format"], r["precision"], str(r["imgsz"])]
        if "skip" in r:
            lines.append("| " + " | ".join(cells + ["-"] * (len(head) - 5) + [f"skipped: {r['skip']}"]) + " |")
            continue
        m, speed = r.get("metrics") or {}, r.get("speed", {}).values()
        af = next((a for a in rows if a["detector"] == "anchorfree" and all(a[k] == r[k] for k in SAME_ROW)), {})
        bgs = [s["background"] for s in speed if s.get("background") is not None]
        dets = [s["dets_per_image"] for s in speed if "dets_per_image" in s]
        cells += [num(100 * m[k] if m.get(k, -1) >= 0 else None) for k in ("AP", "AP50", "APs")]
        cells += [num(ips(r, t)) for t in threads]
        cells += [num(ips(af, t) / ips(r, t), ".2f") if r["side"] == "yolo" and ips(af, t) and ips(r, t) else "-"
                  for t in threads]
        cells += [num(dets[0] if dets else None), num(r.get("size_mb"), ".2f"),
                  f"{max(bgs):.2f}{'*' if max(bgs) > 0.2 else ''}" if bgs else "-",
                  "; ".join([r["note"]] * bool(r["note"]) + [f"error: {s['error']}" for s in speed if "error" in s])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--worker", help=argparse.SUPPRESS)  # internal: one (row, threads) in this process
    add("--yolo-export", help=argparse.SUPPRESS)  # internal: one ultralytics export
    add("--work", default="runs/bench_exports", help="exports, logs, results (default runs/bench_exports)")
    add("--data", default="/tmp/photos3k", help="dataset, COCO layout: {train,val}/annotations.json, "
                                                "{train,val}/images/ (default /tmp/photos3k)")
    add("--yolo-data", help="its YOLO data.yaml (default: written into WORK by bench_peers.write_yolo_dataset)")
    add("--af-run", default=str(AF_RUN), help="anchorfree run folder or .pt (default: the photos3k nano run)")
    add("--af-files", nargs="*", default=[], metavar="FMT-PREC[@PX]=PATH",
        help="anchorfree exports made beforehand, e.g. onnx-int8=a.onnx openvino-fp32@320=b.xml (no @PX: the first "
             "--imgsz)")
    add("--yolo26-weights", default=str(YOLO26_PT), help="trained YOLO26n .pt (default: the photos3k run)")
    add("--yolov8-weights", help="trained YOLOv8n .pt (default: none, untrained from yolov8n.yaml)")
    add("--yolo-python", default=next((p for p in ["/tmp/ulvenv/bin/python"] if Path(p).is_file()), sys.executable),
        help="a Python with ultralytics (default /tmp/ulvenv/bin/python, else this one)")
    add("--detectors", nargs="+", default=["anchorfree", "yolo26n", "yolov8n"],
        choices=["anchorfree", "yolo26n", "yolov8n", "yolo26n-e2e"])
    add("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    add("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    add("--imgsz", type=int, nargs="+", default=[192], help="input sizes (default 192)")
    add("--train-imgsz", type=int, default=192, help="the models' training size, the only one with AP (default 192)")
    add("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
        help="runtime threads of the speed columns (default: 1 and every core)")
    add("--calib", type=int, default=300, help="int8 calibration images, from train (default 300)")
    add("--limit", type=int, help="only the first N validation images (AP and timing)")
    add("--speed-conf", type=float, default=0.25, help="score threshold when timing (default 0.25)")
    add("--time-images", type=int, default=100, help="images per timed pass (default 100)")
    add("--repeats", type=int, default=5, help="timed passes, median taken (default 5)")
    add("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    add("--wait-idle", type=float, default=0, help="wait up to S s for a quiet machine before each timing")
    add("--reexport", action="store_true", help="export again even when WORK has the files")
    add("--table", action="store_true", help="only print the table of WORK/results.json")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.yolo_export:
        return yolo_export(args.yolo_export)
    work = Path(args.work).resolve()
    if args.table:
        saved = json.loads((work / "results.json").read_text())
        print(f"CPU: {saved['env']['cpu']}, flags: {saved['env']['cpu_flags']}\n"
              + table(saved["rows"], saved["args"]["threads"]))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    args.val_ann, args.val_images = data / "val" / "annotations.json", data / "val" / "images"
    gt = load_gt(args.val_ann, args.limit)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    if not args.yolo_data and any(d != "anchorfree" for d in args.detectors):
        from anchorfree.data import load_data_spec
        from bench_peers import write_yolo_dataset

        args.yolo_data = str(write_yolo_dataset(load_data_spec(data), work / "yolo_data")[0])
    env = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "python": sys.version.split()[0],
           "yolo_python": args.yolo_python, "loadavg_start": os.getloadavg(), "command": " ".join(sys.argv)}
    cpu = f"CPU: {env['cpu']}, {env['cores']} cores, flags: {env['cpu_flags']}"
    print(f"{cpu}\ncommand: {env['command']}", flush=True)
    rows = plan(args, work, names)
    from anchorfree.evaluation import coco_evaluate

    saved_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for r in rows:
        what = f"{r['detector']} {r['format']} {r['precision']} {r['imgsz']}px"
        if "skip" in r:
            print(f"skip {what}: {r['skip']}", flush=True)
            continue
        r["speed"] = {}
        for t in sorted(args.threads, reverse=True):  # AP predictions in the all-cores process (the fastest)
            res = run_row(args, r, t, r["imgsz"] == args.train_imgsz and t == max(args.threads),
                          work / f"s{r['imgsz']}", cat_ids)
            dets = res.pop("detections", None)
            if dets is not None:
                r["metrics"] = coco_evaluate(gt, dets, backend="pycocotools")["metrics"]
            r["speed"][str(t)] = res
            bg = "?" if res.get("background") is None else f"{res['background']:.2f}"
            print(f"  {what} {t} thread(s): " + (f"FAILED: {res['error']}" if "error" in res else
                  f"{res['images_per_s']:.1f} img/s, {res['dets_per_image']:.1f} dets/img, bg {bg} cores, "
                  f"{res['info']}") + (f", AP {100 * r['metrics']['AP']:.1f}" if dets is not None else ""), flush=True)
        (work / "results.json").write_text(json.dumps({"env": env, "args": saved_args, "rows": rows}, indent=1))
    text = f"{cpu}\n\n{table(rows, args.threads)}\n"
    (work / "results.json").write_text(json.dumps({"env": env, "args": saved_args, "rows": rows}, indent=1))
    (work / "results.md").write_text(text)
    print(f"\n{text}wrote {work / 'results.json'} and {work / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
