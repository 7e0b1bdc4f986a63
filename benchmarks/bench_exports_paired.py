"""Deployed speed, paired: anchorfree's export and ultralytics' YOLO26n export of the same format and precision,
timed **in one process, alternately**, so that whatever else slows the machine slows both sides alike.

``bench_exports.py`` times every (row, threads) in its own process one after the other; on a shared VM the same
file's images/s moved by up to 1.5x between two such runs minutes apart (BENCHMARKS.md), more than the
difference being measured. Here one process (a Python that has both anchorfree and ultralytics) opens both
files with ``bench_exports``' own openers (same thread settings, same calls: resize/letterbox, network,
decoding, NMS, rescaling), warms both up, then runs ``--rounds`` rounds; each round times one pass of each side
over the same ``--images`` decoded images, the side that goes first alternating. Reported per side: the median
images/s over rounds; and the median (and range) of the per-round ratio anchorfree / YOLO (> 1: anchorfree
faster). Uses the exports ``bench_exports.py`` wrote in ``--work`` (run it first).

    python benchmarks/bench_exports.py --detectors anchorfree yolo26n --threads 1      # writes the exports
    /tmp/ulvenv/bin/python benchmarks/bench_exports_paired.py --threads 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_exports import decode, load_gt, open_anchorfree, open_yolo  # noqa: E402
from timing import CpuMonitor, cpu_flags, cpu_name  # noqa: E402

SCRIPT = str(Path(__file__).resolve())


def worker(job_file: str) -> int:
    """One (format, precision, threads): both sides in this process, alternating; results to ``job['out']``."""
    import torch

    job = json.loads(Path(job_file).read_text())
    torch.set_num_threads(job["threads"])
    af_call, _, af_info = open_anchorfree({**job, "path": job["af_path"]})
    yolo_call, yolo_prepare, yolo_info = open_yolo({**job, "path": job["yolo_path"]})
    rgb = [image for _, image in decode(job)]
    sides = {"anchorfree": (af_call, rgb), "yolo": (yolo_call, [yolo_prepare(image) for image in rgb])}
    for call, images in sides.values():
        for k in range(job["warmup"]):
            call(images[k % len(images)], job["conf"])
    times: dict[str, list[float]] = {"anchorfree": [], "yolo": []}
    monitor = CpuMonitor().start()
    for r in range(job["rounds"]):
        for name in (("anchorfree", "yolo") if r % 2 == 0 else ("yolo", "anchorfree")):
            call, images = sides[name]
            start = time.perf_counter()
            for image in images:
                call(image, job["conf"])
            times[name].append(time.perf_counter() - start)
    ratios = [y / a for a, y in zip(times["anchorfree"], times["yolo"])]  # af img/s over yolo img/s, per round
    n = len(rgb)
    out = {"anchorfree_images_per_s": n / statistics.median(times["anchorfree"]),
           "yolo_images_per_s": n / statistics.median(times["yolo"]), "ratio_median": statistics.median(ratios),
           "ratio_min": min(ratios), "ratio_max": max(ratios), "background": monitor.stop(),
           "info": {"anchorfree": af_info, "yolo": yolo_info}, "times_s": times}
    Path(job["out"]).write_text(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--worker", help=argparse.SUPPRESS)
    add("--work", default="runs/bench_exports", help="bench_exports.py's folder with both sides' exports")
    add("--data", default="/tmp/photos3k", help="dataset, COCO layout (its val images are timed)")
    add("--imgsz", type=int, default=192, help="input size of the exports (default 192)")
    add("--peer", default="yolo26n", help="the ultralytics side (default yolo26n)")
    add("--formats", nargs="+", default=["onnx", "openvino"], choices=["onnx", "openvino"])
    add("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    add("--threads", type=int, nargs="+", default=[1], help="runtime threads, both sides (default 1)")
    add("--images", type=int, default=20, help="images per timed pass (default 20)")
    add("--rounds", type=int, default=15, help="rounds of one pass per side (default 15)")
    add("--warmup", type=int, default=10, help="untimed calls per side first (default 10)")
    add("--conf", type=float, default=0.25, help="score threshold (default 0.25, ultralytics' predict default)")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    work, data = Path(args.work) / f"s{args.imgsz}", Path(args.data)
    val_ann = data / "val" / "annotations.json"
    cat_ids = sorted(c["id"] for c in load_gt(val_ann, None)["categories"])
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, flags: {cpu_flags()}", flush=True)
    lines = ["| format | precision | threads | anchorfree img/s | YOLO img/s | anchorfree ÷ YOLO, median of rounds "
             "(range) | bg cores |", "|---|---|---|---|---|---|---|"]
    for fmt in args.formats:
        for prec in args.precisions:
            af = work / "anchorfree" / f"best{'_int8' * (prec == 'int8')}.{'xml' if fmt == 'openvino' else 'onnx'}"
            done = work / "logs" / f"{args.peer}_{fmt}_{prec}.json.result"
            if not af.is_file() or not done.is_file():
                print(f"skip {fmt} {prec}: run bench_exports.py first ({af} / {done})", flush=True)
                continue
            for threads in args.threads:
                tag = f"paired_{fmt}_{prec}_t{threads}"
                job = {"af_path": str(af.resolve()), "yolo_path": json.loads(done.read_text())["path"],
                       "threads": threads, "imgsz": args.imgsz, "cat_ids": cat_ids, "val_ann": str(val_ann),
                       "val_images": str(data / "val" / "images"), "limit": args.images, "conf": args.conf,
                       "rounds": args.rounds, "warmup": args.warmup,
                       "out": str((work / "logs" / f"{tag}.out.json").resolve())}
                job_file = work / "logs" / f"{tag}.json"
                job_file.write_text(json.dumps(job, indent=1))
                env = {**os.environ, "YOLO_OFFLINE": "1", **{v: str(threads) for v in (
                    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ANCHORFREE_RUNTIME_THREADS")}}
                proc = subprocess.run([sys.executable, SCRIPT, "--worker", str(job_file)], env=env,
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{tag} failed: {proc.stderr[-1500:]}", flush=True)
                    continue
                r = json.loads(Path(job["out"]).read_text())
                lines.append(f"| {fmt} | {prec} | {threads} | {r['anchorfree_images_per_s']:.1f} | "
                             f"{r['yolo_images_per_s']:.1f} | **{r['ratio_median']:.2f}** ({r['ratio_min']:.2f}–"
                             f"{r['ratio_max']:.2f}) | {r['background']:.2f} |")
                print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
