"""anchorfree's small presets vs ultralytics YOLOv8n: same data, same training time, same metric.

Both detectors are trained from scratch on one COCO-format dataset (default: generated photograph-like
data, ``data synth --style photos``, 600 train / 100 val images) for about ``--minutes`` each, then
both predict the validation images and both are scored by pycocotools' COCOeval on the same
annotation file. Inference speed is images/s at batch 1 on the validation images, counting the
network and box post-processing (NMS) of each library, not image decoding or resizing.

* anchorfree: ``anchorfree.engine.compare`` (the code behind ``anchorfree bench compare``): a speed
  calibration sets the epoch count so the whole schedule fits the budget; inference as ``predict``
  runs it (BatchNorm folded, channels_last, bf16 where the CPU has it) and also in fp32.
* YOLOv8n: ultralytics (installed only for this benchmark: ``pip install ultralytics``), built from
  its ``yolov8n.yaml`` (no weights are downloaded), trained with its defaults (``optimizer=auto``,
  mosaic with close_mosaic, HSV, flip, EMA, task-aligned assignment, DFL) and ``time=--minutes/60``,
  which makes ultralytics fit its epochs (and lr schedule) to the budget; predictions at
  ``conf=0.001``, ``max_det=100`` for mAP, as its validator does. It runs in fp32 on CPUs (its
  default). ``epochs`` is left at its default (100): ``optimizer=auto`` picks AdamW (lr
  ``0.002 * 5 / (4 + classes)``) up to 10 000 planned iterations and MuSGD beyond, and MuSGD's
  Newton–Schulz steps take seconds each on one CPU thread (ultralytics 8.4), so a large ``epochs``
  (the time budget overrides it anyway) would slow YOLOv8n ~20x.
* ``--throughput``: training images/s (the step alone, and with each library's loader), GFLOPs at
  the training size, images/s x GFLOPs and a profile of the step (``train_throughput.py``).

    pip install ultralytics
    python benchmarks/bench_yolov8.py --minutes 20 --train 3000 --val 500 --presets gfl_csp_pan_n
    python benchmarks/bench_yolov8.py --throughput --presets gfl_shufflenetv2_pan_nano gfl_csp_pan_n
    python benchmarks/bench_yolov8.py --minutes 1 --train 100 --val 30  # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: never reach the network

import torch  # noqa: E402

from anchorfree.config import apply_overrides  # noqa: E402
from anchorfree.data import generate_photo_dataset, generate_synthetic_dataset, load_data_spec  # noqa: E402
from anchorfree.data.coco import read_categories, read_coco_json  # noqa: E402
from anchorfree.engine.compare import METRICS, compare, inference_speed  # noqa: E402
from anchorfree.engine.evaluate import make_eval_dataset, predict_dataset  # noqa: E402
from anchorfree.engine.checkpoint import load_detector  # noqa: E402
from anchorfree.evaluation import coco_evaluate  # noqa: E402
from anchorfree.models.fuse import inference_detector  # noqa: E402
from anchorfree.presets import get_preset  # noqa: E402
from anchorfree.runtime import cpu_supports_bf16  # noqa: E402


# ---- dataset in YOLO's layout ------------------------------------------------------------------
def write_yolo_dataset(spec, out: Path) -> tuple[Path, list[int]]:
    """``out/images/{train,val}`` (symlinks) + ``out/labels/{train,val}/*.txt`` (class cx cy w h, 0..1) +
    ``out/data.yaml``; class ``i`` is the ``i``-th category id in ascending order (anchorfree's labels)."""
    cat_ids = None
    for split, ann, images in (("train", spec.train_ann, spec.train_images), ("val", spec.val_ann, spec.val_images)):
        data = read_coco_json(ann)
        ids, names = read_categories(data, ann)
        cat_ids = cat_ids or ids
        label_of = {c: i for i, c in enumerate(ids)}
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        lines: dict[int, list[str]] = {img["id"]: [] for img in data["images"]}
        size = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
        for a in data["annotations"]:
            if a.get("iscrowd", 0):
                continue
            w_img, h_img = size[a["image_id"]]
            x, y, w, h = a["bbox"]
            x1, y1 = max(x, 0.0), max(y, 0.0)
            x2, y2 = min(x + w, w_img), min(y + h, h_img)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            lines[a["image_id"]].append(f"{label_of[a['category_id']]} {(x1 + x2) / 2 / w_img:.6f} "
                                        f"{(y1 + y2) / 2 / h_img:.6f} {(x2 - x1) / w_img:.6f} {(y2 - y1) / h_img:.6f}")
        for img in data["images"]:
            src = (Path(images) / img["file_name"]).resolve()
            link = out / "images" / split / src.name
            if not link.exists():
                link.symlink_to(src)
            (out / "labels" / split / f"{src.stem}.txt").write_text("\n".join(lines[img["id"]]))
    yaml_path = out / "data.yaml"
    yaml_path.write_text(json.dumps({"path": str(out.resolve()), "train": "images/train", "val": "images/val",
                                     "names": {i: n for i, n in enumerate(names)}}))
    return yaml_path, cat_ids


# ---- YOLOv8n -----------------------------------------------------------------------------------
def run_yolov8(spec, work: Path, minutes: float, imgsz: int, batch: int, workers: int,
               weights: str | None = None) -> dict:
    """Train YOLOv8n from its yaml for ``minutes`` (or take trained ``weights``) and score it."""
    from ultralytics import YOLO

    data_yaml, cat_ids = write_yolo_dataset(spec, work / "yolo_data")
    run = work.resolve() / "yolov8n"  # absolute: ultralytics puts relative projects under its own runs folder
    train_minutes = None
    if weights is None:
        start = time.perf_counter()
        YOLO("yolov8n.yaml").train(data=str(data_yaml), time=minutes / 60, imgsz=imgsz, batch=batch,
                                   workers=workers, device="cpu", pretrained=False, amp=False, plots=False,
                                   val=False, project=str(run.parent), name=run.name, exist_ok=True, seed=0,
                                   deterministic=False, verbose=False)
        train_minutes = (time.perf_counter() - start) / 60
        weights = str(run / "weights" / "last.pt")
    run = Path(weights).parent.parent
    model = YOLO(weights)
    params = sum(p.numel() for p in model.model.parameters())

    data = read_coco_json(spec.val_ann)
    results, per_image_ms = [], []
    for i, img in enumerate(data["images"]):
        pred = model.predict(str(Path(spec.val_images) / img["file_name"]), imgsz=imgsz, conf=0.001, iou=0.7,
                             max_det=100, device="cpu", verbose=False)[0]
        if i >= 2:
            per_image_ms.append(pred.speed["inference"] + pred.speed["postprocess"])
        for (x1, y1, x2, y2), score, cls in zip(pred.boxes.xyxy.tolist(), pred.boxes.conf.tolist(),
                                                pred.boxes.cls.tolist()):
            results.append({"image_id": img["id"], "category_id": cat_ids[int(cls)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    metrics = coco_evaluate(spec.val_ann, results, backend="pycocotools")["metrics"]
    epochs, logged_minutes = _yolo_epochs(run)
    return {"name": "yolov8n (ultralytics)", "params": params, "epochs": epochs,
            "train_minutes": train_minutes if train_minutes is not None else logged_minutes,
            "infer_images_per_s": 1000 / statistics.median(per_image_ms), "infer_fp32_images_per_s": None,
            "metrics": {k: metrics[k] for k in METRICS}}


def _yolo_epochs(run: Path) -> tuple[int | None, float | None]:
    """Epochs and training minutes from ultralytics' ``results.csv`` (its ``time`` column is seconds)."""
    csv = run / "results.csv"
    if not csv.is_file():
        return None, None
    header, *rows = [[cell.strip() for cell in line.split(",")] for line in csv.read_text().strip().splitlines()]
    if "time" not in header or not rows:
        return len(rows), None
    return len(rows), float(rows[-1][header.index("time")]) / 60


# ---- anchorfree --------------------------------------------------------------------------------
def run_anchorfree(preset: str, overrides: list[str], spec, work: Path, minutes: float, workers: int,
                   imgsz: int) -> dict:
    cfg = apply_overrides(get_preset(preset), [f"train.workers={workers}", f"input.min_size={imgsz}",
                                               f"input.max_size={imgsz}", *overrides])
    entry = compare({preset: cfg}, spec, work / "anchorfree", minutes, progress=False)[0]
    detector, cfg, _ = load_detector(Path(entry.run) / "best.pt")
    dataset = make_eval_dataset(detector, spec.val_ann, spec.val_images, cfg.model.class_names)
    fast = cpu_supports_bf16()
    results = predict_dataset(inference_detector(detector, fast), dataset, batch_size=8, workers=workers, fast=fast,
                              progress=False)
    metrics = coco_evaluate(spec.val_ann, results, backend="pycocotools")["metrics"]
    exact = inference_speed(detector, dataset, fast=False)
    return {"name": f"anchorfree {preset}", "params": entry.params, "epochs": entry.epochs,
            "train_minutes": entry.run_minutes, "infer_images_per_s": entry.infer_images_per_s,
            "infer_fp32_images_per_s": exact, "metrics": {k: metrics[k] for k in METRICS}}


def print_table(rows: list[dict]) -> str:
    head = ["detector", "params (M)", "epochs", "train min", "infer img/s", "infer fp32 img/s", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        fp32 = r["infer_fp32_images_per_s"]
        cells = [r["name"], f"{r['params'] / 1e6:.2f}", str(r["epochs"]), ("-" if r["train_minutes"] is None else f"{r['train_minutes']:.1f}"),
                 f"{r['infer_images_per_s']:.1f}", "-" if fp32 is None else f"{fp32:.1f}",
                 *(f"{100 * r['metrics'][k]:.1f}" for k in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder or YAML (default: generate the synthetic dataset in --work)")
    parser.add_argument("--work", default="runs/bench_yolov8", help="working folder (default runs/bench_yolov8)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per detector (default 10)")
    parser.add_argument("--presets", nargs="+", default=["gfl_shufflenetv2_pan_nano"], help="anchorfree presets")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="key=value for anchorfree presets")
    parser.add_argument("--imgsz", type=int, default=192,
                        help="input size of both (default 192; anchorfree: input.min_size = max_size)")
    parser.add_argument("--batch", type=int, default=8, help="YOLO batch size (default 8, as the tiny presets)")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes for both")
    parser.add_argument("--train", type=int, default=600, help="synthetic training images (default 600)")
    parser.add_argument("--val", type=int, default=100, help="synthetic validation images (default 100)")
    parser.add_argument("--style", choices=("shapes", "photos"), default="photos",
                        help="generated data: photos (photograph-like, default) or shapes")
    parser.add_argument("--min-size", type=int, default=192, help="generated images' smallest side (default 192)")
    parser.add_argument("--max-size", type=int, default=320, help="generated images' largest side (default 320)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each detector (default 1)")
    parser.add_argument("--throughput", action="store_true",
                        help="measure training throughput per FLOP (step and loop img/s, GFLOPs, profile) instead "
                             "of training to a budget")
    parser.add_argument("--fast", action="store_true", help="throughput: also anchorfree in bf16 (CPUs with it)")
    parser.add_argument("--skip-yolo", action="store_true", help="only run the anchorfree presets")
    parser.add_argument("--yolo-only", action="store_true", help="only run YOLOv8n")
    parser.add_argument("--yolo-weights", help="score these trained YOLOv8n weights instead of training one")
    args = parser.parse_args(argv)

    work = Path(args.work)
    torch.set_num_threads(args.threads)
    data = args.data
    if data is None:
        data = work / f"synth-{args.style}-{args.train}-{args.val}"
        if not (data / "data.yaml").is_file():
            make = generate_photo_dataset if args.style == "photos" else generate_synthetic_dataset
            make(data, num_train=args.train, num_val=args.val, image_size=(args.min_size, args.max_size), seed=0)
    spec = load_data_spec(data)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} thread(s), bf16: {cpu_supports_bf16()}, CPU flags: {cpu_flags()}, "
          f"budget {args.minutes} min per detector", flush=True)
    if args.throughput:
        return throughput(args, spec, work)
    rows = [] if args.yolo_only else [run_anchorfree(p, args.overrides, spec, work, args.minutes, args.workers,
                                                     args.imgsz) for p in args.presets]
    if not args.skip_yolo:
        rows.append(run_yolov8(spec, work, args.minutes, args.imgsz, args.batch, args.workers, args.yolo_weights))
    table = print_table(rows)
    (work / "bench_yolov8.json").write_text(json.dumps(rows, indent=2))
    (work / "bench_yolov8.md").write_text(table + "\n")
    return 0


def cpu_flags() -> str:
    """The SIMD flags that decide which convolution kernels run (from /proc/cpuinfo on Linux)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(f for f in wanted if f in flags.split()) or "no AVX2"


def throughput(args, spec, work: Path) -> int:
    """``--throughput``: the table of :mod:`train_throughput` for the presets and YOLOv8n."""
    from train_throughput import anchorfree_throughput, format_throughput, yolov8_throughput

    size = [f"input.min_size={args.imgsz}", f"input.max_size={args.imgsz}", f"train.batch_size={args.batch}",
            f"train.workers={args.workers}"]
    rows = []
    for preset in args.presets:
        rows.append(anchorfree_throughput(preset, [*size, *args.overrides], spec, work))
        if args.fast and cpu_supports_bf16():
            rows.append(anchorfree_throughput(preset, [*size, *args.overrides], spec, work, fast=True))
        print(format_throughput(rows[-1:]), flush=True)
    if not args.skip_yolo:
        data_yaml, _ = write_yolo_dataset(spec, work / "yolo_data")
        rows.append(yolov8_throughput(data_yaml, work, args.imgsz, args.batch, args.workers))
    table = format_throughput(rows)
    print(table)
    (work / "throughput.json").write_text(json.dumps(rows, indent=2))
    (work / "throughput.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
