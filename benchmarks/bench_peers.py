"""anchorfree's light presets vs ultralytics' current small models (YOLO26n, YOLO11n, YOLOv8n): same
data, same training time, same metric, trained side by side.

Every training is its own process, at ``--threads`` torch threads (default 1, with ``OMP_NUM_THREADS``
set to match), ``--parallel`` of them at a time (default 2: one per core of a 2-core machine). The jobs
of one dataset and seed (each anchorfree preset/variant and each peer) form a group that starts
together; the next group starts when the whole group has finished. Each job writes its result to
``--results`` (JSON lines, one per training, default ``WORK/results.jsonl``) as soon as it ends, so an
interrupted run keeps what it finished and a rerun skips it.

Scoring: both sides predict the same validation images and are scored by pycocotools' COCOeval on the
same annotation file. Inference speed is images/s at batch 1 on the validation images, counting the
network and box post-processing (NMS) of each library, not image decoding or resizing.

* anchorfree: ``anchorfree.compare`` (the code behind ``anchorfree bench compare``) with
  ``train.minutes`` = ``--minutes``: the run's length is re-estimated as it goes from the measured time
  per step, and the schedule laid over it; ``train.seed`` is the seed, ``train.workers`` is ``--workers``
  (default 0: loading in the training process), ``train.device=cpu``; ``--overrides key=value ...`` go to
  every preset, ``--variant LABEL key=value ...`` (repeatable) adds a named set of overrides (each
  preset is trained once per variant). The input size is the preset's (320 for the light presets) unless
  ``--imgsz`` is given. Inference as ``predict`` runs it (BatchNorm folded, channels_last, bf16 where the
  CPU has it) and also in fp32.
* peers: ultralytics (``pip install ultralytics``; 8.4 has ``yolo26n.yaml``), built from ``<peer>.yaml``
  (no weights are downloaded, ``YOLO_OFFLINE=1``), trained with its defaults (``imgsz`` 640, ``batch``
  16, ``optimizer=auto``, mosaic with close_mosaic, HSV, flip, EMA, ...) and ``time=--minutes/60``, which
  makes ultralytics fit its epochs (and lr schedule) to the budget after the first epoch;
  ``val=False`` (it validates once, at the end, as the anchorfree side), ``plots=False``, ``seed=`` the
  seed, ``workers=0`` (ultralytics uses 0 on CPUs anyway). ``optimizer=auto`` picks AdamW (lr
  ``0.002 * 5 / (4 + classes)``) when the planned iterations (``ceil(images / max(batch, 64)) x epochs``,
  with ``epochs`` the argument, 100 by default, not the time-fitted count) are at most 10 000 and MuSGD
  beyond: ``--peer-epochs`` sets that argument, and the optimizer ultralytics actually built is read from
  its trainer and reported. Predictions at ``conf=0.001``, ``iou=0.7``, ``max_det=100``, at the training
  ``imgsz``, as its validator does; fp32 (its default on CPUs).
* ``--throughput``: training images/s (the step alone, and with each library's loader), GFLOPs at
  the training size, images/s x GFLOPs and a profile of the step (``train_throughput.py``, YOLOv8n).

Run it with a Python that has both libraries (e.g. a virtual environment with ultralytics that sees the
system site-packages where anchorfree is installed)::

    python benchmarks/small_data.py --out runs/small_data --datasets yell2
    python benchmarks/bench_peers.py --data runs/small_data/yell2 --work runs/peers --minutes 10 --seeds 0 1 2 \\
        --presets gfl_shufflenetv2_pan_nano --peers yolo26n
    python benchmarks/bench_peers.py --data runs/small_data/yell2 --minutes 1 --peers yolo26n  # smoke run
    python benchmarks/bench_peers.py --throughput --imgsz 192 --presets gfl_shufflenetv2_pan_nano gfl_csp_pan_n
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: never reach the network

import torch  # noqa: E402

try:
    import anchorfree  # noqa: F401
except ImportError:  # a virtual environment (e.g. ultralytics') that does not see an editable install: this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anchorfree.config import apply_overrides  # noqa: E402
from anchorfree.data import generate_photo_dataset, generate_synthetic_dataset, load_data_spec  # noqa: E402
from timing import cpu_flags  # noqa: E402
from anchorfree.data.coco import read_categories, read_coco_json  # noqa: E402
from anchorfree.compare import METRICS, compare, inference_speed  # noqa: E402
from anchorfree.inference.evaluate import make_eval_dataset, predict_dataset  # noqa: E402
from anchorfree.inference.checkpoint import load_detector  # noqa: E402
from anchorfree.evaluation import coco_evaluate  # noqa: E402
from anchorfree.models.fuse import inference_detector  # noqa: E402
from anchorfree.presets import get_preset  # noqa: E402
from anchorfree.runtime import cpu_supports_bf16  # noqa: E402

TABLE_METRICS = ("AP", "AP50", "APs")


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


# ---- peers (ultralytics) -------------------------------------------------------------------------
def run_peer(job: dict) -> dict:
    """Train ultralytics ``job['peer']`` from its yaml for ``job['minutes']`` and score it."""
    import ultralytics
    import ultralytics.utils.torch_utils as ultralytics_torch
    from ultralytics import YOLO

    ultralytics_torch.NUM_THREADS = job["threads"]  # select_device() resets torch's threads to this
    spec = load_data_spec(job["data"])
    data_yaml, cat_ids = Path(job["yolo_data"]) / "data.yaml", job["cat_ids"]
    run = Path(job["dir"]).resolve() / job["peer"]  # absolute: else ultralytics puts it under its runs folder
    options = dict(data=str(data_yaml), time=job["minutes"] / 60, seed=job["seed"], workers=job["workers"],
                   device="cpu", pretrained=False, plots=False, val=False, project=str(run.parent), name=run.name,
                   exist_ok=True, verbose=False)
    for key in ("epochs", "imgsz", "batch"):
        if job.get(key) is not None:
            options[key] = job[key]
    options.update(job.get("peer_args") or {})
    start = time.perf_counter()
    model = YOLO(f"{job['peer']}.yaml")
    model.train(**options)
    train_minutes = (time.perf_counter() - start) / 60
    trainer = model.trainer
    optimizer = type(trainer.optimizer).__name__ if trainer.optimizer is not None else str(trainer.args.optimizer)
    imgsz = int(trainer.args.imgsz)
    settings = {"imgsz": imgsz, "batch": int(trainer.args.batch), "optimizer": optimizer,
                "optimizer_arg": str(trainer.args.optimizer), "lr0": float(trainer.args.lr0),
                "epochs_arg": options.get("epochs", "default"), "planned_epochs": int(trainer.epochs),
                "workers": int(trainer.args.workers), "nbs": int(trainer.args.nbs),
                "peer_args": job.get("peer_args") or {}, "ultralytics": ultralytics.__version__}
    weights = run / "weights" / "last.pt"
    model = YOLO(str(weights))
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
    epochs, _ = _yolo_epochs(run)
    return {"detector": f"{job['peer']} (ultralytics)", "params": params,
            "epochs": epochs if epochs is not None else trainer.epoch + 1, "train_minutes": train_minutes,
            "settings": settings,
            "infer_images_per_s": 1000 / statistics.median(per_image_ms) if per_image_ms else None,
            "infer_fp32_images_per_s": None, "metrics": {k: metrics[k] for k in METRICS}}


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
def anchorfree_overrides(job: dict) -> list[str]:
    size = [f"model.input.min_size={job['imgsz']}", f"model.input.max_size={job['imgsz']}"] if job.get("imgsz") else []
    return [f"train.workers={job['workers']}", "train.device=cpu", f"train.seed={job['seed']}", *size,
            *job["overrides"]]


def run_anchorfree(job: dict) -> dict:
    preset = job["preset"]
    torch.manual_seed(job["seed"])
    spec = load_data_spec(job["data"])
    cfg = apply_overrides(get_preset(preset), anchorfree_overrides(job))
    entry = compare({preset: cfg}, spec, Path(job["dir"]), job["minutes"], progress=False)[0]
    detector, cfg, _ = load_detector(Path(entry.run) / "best.pt")
    dataset = make_eval_dataset(detector, spec.val_ann, spec.val_images, cfg.model.class_names)
    fast = cpu_supports_bf16()
    results = predict_dataset(inference_detector(detector, fast), dataset, batch_size=8, workers=0, fast=fast,
                              progress=False)
    metrics = coco_evaluate(spec.val_ann, results, backend="pycocotools")["metrics"]
    exact = inference_speed(detector, dataset, fast=False)
    t, a = cfg.train, cfg.train.augment
    settings = {"input": f"{cfg.model.input.min_size}/{cfg.model.input.max_size}", "batch": t.batch_size,
                "optimizer": t.optimizer, "lr": t.lr, "ema": t.ema, "mosaic_prob": a.mosaic_prob,
                "close_mosaic": a.close_mosaic, "hsv": [a.hsv_h, a.hsv_s, a.hsv_v], "color_jitter": a.color_jitter,
                "warmup_iters": t.warmup_iters, "recipe": getattr(t, "recipe", None), "overrides": job["overrides"]}
    return {"detector": f"{preset}", "params": entry.params, "epochs": entry.epochs,
            "train_minutes": entry.run_minutes, "settings": settings,
            "infer_images_per_s": entry.infer_images_per_s, "infer_fp32_images_per_s": exact,
            "metrics": {k: metrics[k] for k in METRICS}}


def run_job(path: str) -> int:
    """``--job FILE``: one training (in this process), its result appended to the job's results file."""
    job = json.loads(Path(path).read_text())
    torch.set_num_threads(job["threads"])
    start = time.perf_counter()
    row = run_peer(job) if job["side"] == "peer" else run_anchorfree(job)
    row.update({"key": job["key"], "dataset": job["dataset"], "label": job["label"], "side": job["side"],
                "seed": job["seed"], "minutes": job["minutes"], "threads": job["threads"],
                "wall_minutes": round((time.perf_counter() - start) / 60, 2),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())})
    with open(job["results"], "a") as f:  # one short line per write: safe with the other process appending
        f.write(json.dumps(row) + "\n")
    print("RESULT " + json.dumps(row), flush=True)
    return 0


# ---- the side-by-side runs -------------------------------------------------------------------------
def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed process
    return rows


def plan_jobs(args, datasets: list[Path], work: Path, results: Path) -> list[list[dict]]:
    """Groups of jobs (one group per dataset and seed: every preset x variant, then every peer)."""
    variants = [(label, list(overrides)) for label, *overrides in (args.variant or [])] or [("", [])]
    groups = []
    for data in datasets:
        name = data.name if data.is_dir() else data.stem
        spec = load_data_spec(data)
        yolo_data, cat_ids = None, None
        if args.peers:
            yolo_dir = work / name / "yolo_data"
            _, cat_ids = write_yolo_dataset(spec, yolo_dir)
            yolo_data = str(yolo_dir.resolve())
        for seed in args.seeds:
            group = []
            common = {"data": str(data.resolve()), "dataset": name, "seed": seed, "minutes": args.minutes,
                      "threads": args.threads, "workers": args.workers, "results": str(results.resolve())}
            for preset in args.presets:
                for vlabel, voverrides in variants:
                    label = f"{preset} [{vlabel}]" if vlabel else preset
                    tag = f"{preset}-{vlabel}" if vlabel else preset
                    key = f"{name}|{label}|{seed}|{args.minutes:g}"
                    group.append({**common, "side": "anchorfree", "preset": preset, "label": label, "key": key,
                                  "overrides": [*args.overrides, *voverrides], "imgsz": args.imgsz,
                                  "dir": str(work / name / f"seed{seed}" / tag)})
            peer_args = dict(parse_peer_arg(a) for a in args.peer_args)
            for peer in args.peers:
                label = f"{peer} [{' '.join(args.peer_args)}]" if args.peer_args else peer
                key = f"{name}|{label}|{seed}|{args.minutes:g}"
                group.append({**common, "side": "peer", "peer": peer, "label": label, "key": key,
                              "peer_args": peer_args,
                              "epochs": args.peer_epochs, "imgsz": args.imgsz, "batch": args.peer_batch,
                              "yolo_data": yolo_data, "cat_ids": cat_ids,
                              "dir": str(work / name / f"seed{seed}" / ("-".join([peer, *args.peer_args])
                                                                         if args.peer_args else ""))})
            groups.append(group)
    return groups


def parse_peer_arg(item: str) -> tuple[str, object]:
    """``key=value`` for ultralytics (value parsed as YAML: ``320``, ``true``, ``0.01``)."""
    import yaml

    key, _, raw = item.partition("=")
    return key, yaml.safe_load(raw)


def run_groups(groups: list[list[dict]], work: Path, parallel: int, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "YOLO_OFFLINE": "1"}
    done = {r["key"] for r in read_results(Path(groups[0][0]["results"]))} if groups and groups[0] else set()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for group in groups:
        todo = [j for j in group if j["key"] not in done]
        for j in group:
            if j["key"] in done:
                print(f"done before: {j['key']}", flush=True)
        running: list[tuple[subprocess.Popen, dict, float]] = []
        while todo or running:
            while todo and len(running) < parallel:
                job = todo.pop(0)
                Path(job["dir"]).mkdir(parents=True, exist_ok=True)
                tag = job["key"].replace("|", "_").replace(" ", "").replace("[", "").replace("]", "")
                job_file = logs / f"{tag}.json"
                job_file.write_text(json.dumps(job, indent=1))
                log = open(logs / f"{tag}.log", "w")
                cmd = [sys.executable, str(Path(__file__).resolve()), "--job", str(job_file)]
                print(f"{time.strftime('%H:%M:%S')} start {job['key']}  (log {log.name})", flush=True)
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), job,
                                time.perf_counter()))
            time.sleep(2)
            for item in list(running):
                proc, job, started = item
                if proc.poll() is not None:
                    running.remove(item)
                    state = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                    print(f"{time.strftime('%H:%M:%S')} end {job['key']}: {state} after "
                          f"{(time.perf_counter() - started) / 60:.1f} min", flush=True)


def settings_text(row: dict) -> str:
    s = row["settings"]
    if row["side"] == "peer":
        return (f"imgsz {s['imgsz']}, batch {s['batch']} (nbs {s.get('nbs', 64)}), {s['optimizer']} lr0 {s['lr0']:g} "
                f"(epochs arg {s['epochs_arg']})")
    recipe = (f", mosaic {s['mosaic_prob']:g} (close {s['close_mosaic']}), hsv {'/'.join(f'{v:g}' for v in s['hsv'])}"
              if s["mosaic_prob"] else "") + (", EMA" if s["ema"] else "")
    jitter = f", jitter {s['color_jitter']:g}" if s["color_jitter"] else ""
    warmup = f", warm-up {s['warmup_iters']}" if s.get("warmup_iters") is not None else ""
    choice = f", recipe {s['recipe']}" if s.get("recipe") else ""
    return f"input {s['input']}, batch {s['batch']}, {s['optimizer']} lr {s['lr']:g}{recipe}{jitter}{warmup}{choice}"


def format_results(rows: list[dict], reference: str | None = None) -> str:
    """Per-seed table, then medians over seeds with the ratio to the reference (default: the first peer)."""
    head = ["dataset", "detector", "settings", "seed", "epochs", "min", *TABLE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["side"] != "anchorfree", r["label"], r["seed"])):
        lines.append("| " + " | ".join([r["dataset"], r["label"], settings_text(r), str(r["seed"]),
                                        f"{r['epochs']:g}", f"{r['wall_minutes']:.1f}",
                                        *(f"{100 * r['metrics'][k]:.1f}" for k in TABLE_METRICS)]) + " |")
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["label"], r["minutes"]), []).append(r)
    med = {k: {m: statistics.median(r["metrics"][m] for r in v) for m in TABLE_METRICS} | {"n": len(v),
           "side": v[0]["side"]} for k, v in groups.items()}
    head = ["dataset", "detector", "budget min", "seeds", *(f"median {m}" for m in TABLE_METRICS), "ratio AP",
            "vs"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for (dataset, label, minutes), m in sorted(med.items(), key=lambda kv: (kv[0][0], kv[1]["side"] != "anchorfree",
                                                                           kv[0][1])):
        refs = [k for k in med if k[0] == dataset and k[2] == minutes and k[1] != label
                and (k[1] == reference if reference else med[k]["side"] == "peer")]
        ratio, vs = "-", "-"
        if refs and m["side"] == "anchorfree" or (refs and reference):
            ref = med[refs[0]]
            ratio = f"{m['AP'] / ref['AP']:.2f}" if ref["AP"] > 0 else "-"
            vs = refs[0][1]
        lines.append("| " + " | ".join([dataset, label, f"{minutes:g}", str(m["n"]),
                                        *(f"{100 * m[k]:.1f}" for k in TABLE_METRICS), ratio, vs]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one training described by this file
    parser.add_argument("--data", nargs="+", help="dataset folders or YAMLs (default: generate the synthetic "
                                                  "dataset in --work)")
    parser.add_argument("--work", default="runs/bench_peers", help="working folder (default runs/bench_peers)")
    parser.add_argument("--results", help="JSON-lines results file (default WORK/results.jsonl)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per detector (default 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    parser.add_argument("--presets", nargs="*", default=["gfl_shufflenetv2_pan_nano"], help="anchorfree presets")
    parser.add_argument("--overrides", "--set", dest="overrides", nargs="*", default=[],
                        help="key=value for every anchorfree preset")
    parser.add_argument("--variant", nargs="+", action="append", metavar="LABEL [key=value ...]",
                        help="a named set of anchorfree overrides; repeat for several (each preset runs once per "
                             "variant)")
    parser.add_argument("--peers", nargs="*", default=["yolo26n"],
                        help="ultralytics models built from <name>.yaml (default yolo26n; e.g. yolov8n yolo11n)")
    parser.add_argument("--peer-epochs", type=int, help="ultralytics' epochs argument (default: its default, 100); "
                                                        "the time budget decides the epochs trained, this one "
                                                        "decides optimizer=auto's choice")
    parser.add_argument("--peer-args", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more ultralytics training arguments for every peer (e.g. imgsz=320 nbs=16); the "
                             "peer's label shows them")
    parser.add_argument("--peer-batch", type=int, help="ultralytics' batch (default: its default, 16)")
    parser.add_argument("--imgsz", type=int, help="input size of both (default: each its own: the preset's "
                                                  "input size, ultralytics' 640)")
    parser.add_argument("--reference", help="detector label the ratios are taken against (default: the first peer)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes of each training (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training (default 1)")
    parser.add_argument("--parallel", type=int, default=2, help="trainings at a time (default 2)")
    parser.add_argument("--train", type=int, default=600, help="synthetic training images (default 600)")
    parser.add_argument("--val", type=int, default=100, help="synthetic validation images (default 100)")
    parser.add_argument("--style", choices=("shapes", "photos"), default="photos",
                        help="generated data: photos (photograph-like, default) or shapes")
    parser.add_argument("--min-size", type=int, default=192, help="generated images' smallest side (default 192)")
    parser.add_argument("--max-size", type=int, default=320, help="generated images' largest side (default 320)")
    parser.add_argument("--throughput", action="store_true",
                        help="measure training throughput per FLOP (step and loop img/s, GFLOPs, profile) instead "
                             "of training to a budget (anchorfree presets and YOLOv8n, in this process)")
    parser.add_argument("--batch", type=int, default=8, help="throughput: batch size of both (default 8)")
    parser.add_argument("--fast", action="store_true", help="throughput: also anchorfree in bf16 (CPUs with it)")
    parser.add_argument("--skip-yolo", action="store_true", help="only run the anchorfree presets (= --peers)")
    parser.add_argument("--yolo-only", action="store_true", help="only run the peers (= --presets)")
    parser.add_argument("--table", action="store_true", help="only print the table of the results file")
    args = parser.parse_args(argv)
    if args.job:
        return run_job(args.job)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = Path(args.results) if args.results else work / "results.jsonl"
    if args.table:
        print(format_results(read_results(results), args.reference))
        return 0
    if args.skip_yolo:
        args.peers = []
    if args.yolo_only:
        args.presets = []
    torch.set_num_threads(args.threads)
    datasets = [Path(d) for d in args.data] if args.data else []
    if not datasets:
        data = work / f"synth-{args.style}-{args.train}-{args.val}"
        if not (data / "data.yaml").is_file():
            make = generate_photo_dataset if args.style == "photos" else generate_synthetic_dataset
            make(data, num_train=args.train, num_val=args.val, image_size=(args.min_size, args.max_size), seed=0)
        datasets = [data]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} thread(s) x {args.parallel} process(es), bf16: {cpu_supports_bf16()}, "
          f"CPU flags: {cpu_flags()}, budget {args.minutes} min per detector", flush=True)
    print("command: " + " ".join(shlex.quote(a) for a in sys.argv), flush=True)
    if args.throughput:
        return throughput(args, load_data_spec(datasets[0]), work)
    groups = plan_jobs(args, datasets, work, results)
    run_groups(groups, work, args.parallel, args.threads)
    keys = {j["key"] for g in groups for j in g}
    rows = [r for r in read_results(results) if r["key"] in keys]
    table = format_results(rows, args.reference)
    print(table)
    (work / "results.md").write_text(table + "\n")
    missing = keys - {r["key"] for r in rows}
    if missing:
        print("no result (see WORK/logs): " + ", ".join(sorted(missing)))
        return 1
    return 0


def throughput(args, spec, work: Path) -> int:
    """``--throughput``: the table of :mod:`train_throughput` for the presets and YOLOv8n."""
    from train_throughput import anchorfree_throughput, format_throughput, yolov8_throughput

    imgsz = args.imgsz or 192
    size = [f"input.min_size={imgsz}", f"input.max_size={imgsz}", f"train.batch_size={args.batch}",
            f"train.workers={args.workers}"]
    rows = []
    for preset in args.presets:
        rows.append(anchorfree_throughput(preset, [*size, *args.overrides], spec, work))
        if args.fast and cpu_supports_bf16():
            rows.append(anchorfree_throughput(preset, [*size, *args.overrides], spec, work, fast=True))
        print(format_throughput(rows[-1:]), flush=True)
    if not args.skip_yolo:
        data_yaml, _ = write_yolo_dataset(spec, work / "yolo_data")
        rows.append(yolov8_throughput(data_yaml, work, imgsz, args.batch, args.workers))
    table = format_throughput(rows)
    print(table)
    (work / "throughput.json").write_text(json.dumps(rows, indent=2))
    (work / "throughput.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
