"""Memory and load time of ``CocoDetection`` on a large COCO file, and the speed of the image header pass.

A synthetic COCO file (default 120,000 images, 1,000,000 boxes, 80 categories) is written once to
``--workdir``; every image entry names its own file, and all files are hard links to small identical
JPEGs (one per 50,000 links; the declared width/height are their size), so an epoch decodes real
images without 120,000 files' worth of disk. Each variant runs in a fresh process:

* ``new``: ``anchorfree.data.CocoDetection`` of the working tree;
* ``old``: the class at ``--old-rev`` (default ``b442fc3``, the last version that parsed entry by entry),
  read with ``git show REV:anchorfree/data/coco.py`` into a temporary module (the rest of the package
  is the working tree's);
* ``dicts``: for reference, the common pattern of a list of image dicts and per-image lists of
  annotation dicts, read on every ``__getitem__`` (what makes DataLoader workers' memory grow).

Sources: ``json`` (the dataset reads the file itself) and ``dict`` (the file is parsed first and the
dataset is built from the dict, as for YOLO and Pascal VOC datasets; the dict stays alive in the main
process, and forked workers inherit it).

For each variant the script reports the load time, the main process's resident memory (RSS) after
loading, and each DataLoader worker's RSS, PSS (shared pages divided among the processes sharing
them) and USS (pages only that worker holds) at the start (first batch), middle and end of one
epoch, read from ``/proc/PID/smaps_rollup``. Flat USS across the epoch means the workers do not copy
the dataset's pages. It then times :func:`anchorfree.data.check_images` (the header pass) on the
dataset of ``new:json``. Linux only (``/proc``)::

    python benchmarks/bench_data_memory.py                      # ~8 min on 2 busy cores
    python benchmarks/bench_data_memory.py --images 20000 --boxes 150000 --variants new:json,old:json
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = (64, 48)  # (width, height) of the one real JPEG every entry points to
MB = 1024 * 1024
LINKS_PER_FILE = 50_000
OLD_REV = "b442fc3"  # CocoDetection before the vectorised parse and the packed file names


# ----------------------------------------------------------------------------- memory


def memory(pid: int | str = "self") -> dict[str, float]:
    """``rss``, ``pss`` and ``uss`` (private clean + dirty) of a process in MiB, from /proc."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    return {"rss": fields["Rss"] / 1024, "pss": fields["Pss"] / 1024,
            "uss": (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024}


# ----------------------------------------------------------------------------- data


def make_dataset(workdir: Path, num_images: int, num_boxes: int, seed: int = 0) -> tuple[Path, Path]:
    """``(annotation JSON, image folder)`` in ``workdir``, written once and reused while the sizes match."""
    from PIL import Image

    ann_file = workdir / f"coco_{num_images}_{num_boxes}.json"
    sources = -(-num_images // LINKS_PER_FILE)
    image_dir = workdir / f"images_{num_images}"
    if ann_file.is_file() and image_dir.is_dir() and len(os.listdir(image_dir)) == num_images + sources:
        return ann_file, image_dir
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for i in range(num_images):
        source = image_dir / f"source{i // LINKS_PER_FILE}.jpg"  # file systems limit the links of one file
        if i % LINKS_PER_FILE == 0 and not source.exists():
            Image.fromarray(pixels).save(source, quality=90)
        target = image_dir / f"{i:09d}.jpg"
        if not target.exists():
            os.link(source, target)
    image = rng.integers(0, num_images, num_boxes)
    xy = rng.uniform(0, [width - 4, height - 4], (num_boxes, 2))
    wh = rng.uniform(2, 20, (num_boxes, 2))
    wh = np.minimum(wh, [width, height] - xy)  # inside the image: no clipping warnings
    images = [{"id": i + 1, "file_name": f"{i:09d}.jpg", "width": width, "height": height}
              for i in range(num_images)]
    annotations = [{"id": k + 1, "image_id": i + 1, "category_id": c + 1, "bbox": [*map(float, p), *map(float, s)],
                    "area": float(s[0] * s[1]), "iscrowd": 0}
                   for k, (i, c, p, s) in enumerate(zip(image.tolist(), rng.integers(0, 80, num_boxes).tolist(),
                                                        np.round(xy, 2).tolist(), np.round(wh, 2).tolist()))]
    categories = [{"id": k + 1, "name": f"class{k}"} for k in range(80)]
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file, image_dir


# ----------------------------------------------------------------------------- variants


def old_class(rev: str) -> type:
    """``CocoDetection`` as of git revision ``rev``, loaded from ``git show`` into a temporary module."""
    text = subprocess.run(["git", "show", f"{rev}:anchorfree/data/coco.py"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_coco.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_coco", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CocoDetection


class DictsDataset:
    """Reference: image dicts and per-image annotation dicts, looked up on every item."""

    def __init__(self, ann: str | Path | dict[str, Any], image_dir: str | Path) -> None:
        data = ann if isinstance(ann, dict) else json.loads(Path(ann).read_text())
        self.image_dir = Path(image_dir)
        self.images = data["images"]
        self.label_of = {c["id"]: k for k, c in enumerate(data["categories"])}
        self.by_image: dict[int, list[dict]] = defaultdict(list)
        for a in data["annotations"]:
            self.by_image[a["image_id"]].append(a)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        import torch

        from anchorfree.data import load_image

        img = self.images[index]
        image = load_image(self.image_dir / img["file_name"], img["id"])
        anns = [a for a in self.by_image.get(img["id"], []) if not a.get("iscrowd", 0)]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        target = {"boxes": boxes, "labels": labels, "image_id": img["id"],
                  "orig_size": torch.tensor(image.shape[-2:]), "scale": torch.ones(2)}
        return image, target


def count_boxes(samples: list) -> int:
    """A collate that only counts boxes: the epoch measures the dataset, not batch transfer to the main process."""
    return sum(len(target["boxes"]) for _, target in samples)


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this (fresh) process: load, then one DataLoader epoch with memory samples."""
    import warnings

    import torch
    from torch.utils.data import DataLoader

    impl, source = args.child.split(":")
    cls = {"new": lambda: __import__("anchorfree.data", fromlist=["CocoDetection"]).CocoDetection,
           "old": lambda: old_class(args.old_rev), "dicts": lambda: DictsDataset}[impl]()
    ann_file, image_dir = Path(args.ann_file), Path(args.image_dir)
    torch.set_num_threads(1)
    gc.collect()
    before = memory()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source == "json":
            dataset = cls(ann_file, image_dir)
        else:
            data = json.loads(ann_file.read_text())
            parsed = time.perf_counter()
            dataset = cls(data, image_dir)
    load_s = time.perf_counter() - start
    out: dict[str, Any] = {"variant": args.child, "load_s": load_s,
                           "from_dict_s": time.perf_counter() - parsed if source == "dict" else None}
    gc.collect()
    after = memory()
    out["main_before"], out["main_after"] = before, after

    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        collate_fn=count_boxes, generator=torch.Generator().manual_seed(0))
    batches = len(loader)
    marks = {0: "start", batches // 2: "middle", batches - 1: "end"}
    samples: dict[str, list[dict[str, float]]] = {}
    iterator = iter(loader)
    workers = [w.pid for w in iterator._workers]  # private, but the only way to reach the worker processes
    epoch_start = time.perf_counter()
    boxes = 0
    for index, batch_boxes in enumerate(iterator):
        boxes += batch_boxes
        if index in marks:
            samples[marks[index]] = [memory(pid) for pid in workers]
    out["epoch_s"] = time.perf_counter() - epoch_start
    out["workers"] = samples
    out["main_end"] = memory()
    out["images"], out["boxes_seen"] = len(dataset), boxes
    if impl == "new" and source == "json" and args.headers:
        from anchorfree.data import check_images

        for threads in args.header_threads:
            t0 = time.perf_counter()
            problems = check_images(dataset, threads=threads)
            seconds = time.perf_counter() - t0
            out.setdefault("headers", []).append({"threads": threads, "seconds": seconds,
                                                  "images_per_s": len(dataset) / seconds,
                                                  "problems": len(problems)})
    return out


# ----------------------------------------------------------------------------- report


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not results:
        return
    print(f"\n{args.images:,} images, {args.boxes:,} boxes; {args.workers} workers, batch {args.batch_size}; "
          f"{cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}")
    print("memory in MiB; worker columns: the larger of the workers at the epoch's start / middle / end\n")
    head = (f"{'variant':<12} {'load s':>7} {'main RSS':>9} {'+load':>7} {'epoch s':>8} "
            f"{'worker RSS':>17} {'worker PSS':>17} {'worker USS':>17}")
    print(head)
    print("-" * len(head))
    for r in results:
        cols = []
        for key in ("rss", "pss", "uss"):
            cols.append("/".join(f"{max(w[key] for w in r['workers'][m]):.0f}" for m in ("start", "middle", "end")))
        load = f"{r['load_s']:.1f}" + (f" ({r['from_dict_s']:.1f})" if r["from_dict_s"] is not None else "")
        print(f"{r['variant']:<12} {load:>7} {r['main_after']['rss']:>9.0f} "
              f"{r['main_after']['rss'] - r['main_before']['rss']:>7.0f} {r['epoch_s']:>8.1f} "
              f"{cols[0]:>17} {cols[1]:>17} {cols[2]:>17}")
    print("\nload s: construction time (for ':dict' the JSON parse is included; in brackets: from the parsed dict)")
    for r in results:
        for h in r.get("headers", []):
            print(f"header pass (check_images, {h['threads']} thread(s)): {r['images']:,} images in "
                  f"{h['seconds']:.1f} s = {h['images_per_s']:,.0f} images/s, {h['problems']} problems")


def time_real_files(workdir: Path, count: int) -> list[dict[str, Any]]:
    """Header pass and full decode on ``count`` distinct synthetic JPEGs (320..480 px) from
    :func:`anchorfree.data.generate_synthetic_dataset` (files in the page cache: written just before)."""
    import warnings

    from anchorfree.data import CocoDetection, check_images, generate_synthetic_dataset

    root = workdir / f"synth_{count}"
    if not (root / "train" / "annotations.json").is_file():
        generate_synthetic_dataset(root, num_train=count, num_val=1, image_size=(320, 480), seed=0, max_objects=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = CocoDetection(root / "train" / "annotations.json", root / "train" / "images")
    out = []
    for decode, threads in ((False, 1), (False, 4), (True, 1), (True, 2)):
        start = time.perf_counter()
        problems = check_images(dataset, decode=decode, threads=threads)
        seconds = time.perf_counter() - start
        out.append({"decode": decode, "threads": threads, "images": len(dataset), "seconds": seconds,
                    "images_per_s": len(dataset) / seconds, "problems": len(problems)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120_000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--variants", default="new:json,new:dict,old:json,old:dict,dicts:dict",
                        help="comma-separated IMPL:SOURCE with IMPL new|old|dicts and SOURCE json|dict")
    parser.add_argument("--old-rev", default=OLD_REV,
                        help=f"git revision of the 'old' CocoDetection (default {OLD_REV})")
    parser.add_argument("--header-threads", type=int, nargs="+", default=[1, 4],
                        help="threads of the header passes timed (default 1 4)")
    parser.add_argument("--no-headers", dest="headers", action="store_false", help="skip the header pass")
    parser.add_argument("--real-files", type=int, default=3000,
                        help="also time the header pass and full decoding on this many distinct JPEGs (0: skip)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "anchorfree_bench_data"))
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ann-file", help=argparse.SUPPRESS)
    parser.add_argument("--image-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_variant(args)))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ann_file, image_dir = make_dataset(workdir, args.images, args.boxes)
    print(f"data: {ann_file} ({ann_file.stat().st_size / MB:.0f} MiB), {image_dir} "
          f"(ready in {time.perf_counter() - t0:.0f} s)", flush=True)
    results = []
    for variant in filter(None, args.variants.split(",")):
        command = [sys.executable, __file__, "--child", variant, "--ann-file", str(ann_file),
                   "--image-dir", str(image_dir), "--workers", str(args.workers), "--batch-size",
                   str(args.batch_size), "--old-rev", args.old_rev, "--header-threads",
                   *map(str, args.header_threads)] + ([] if args.headers else ["--no-headers"])
        t0 = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode or not lines:
            print(f"{variant} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}", file=sys.stderr)
            continue
        results.append(json.loads(lines[-1][len("RESULT "):]))
        print(f"{variant}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    print_report(results, args)
    real = time_real_files(workdir, args.real_files) if args.real_files else []
    for r in real:
        what = "full decode" if r["decode"] else "header pass"
        print(f"{what} of {r['images']:,} distinct 320-480 px JPEGs, {r['threads']} thread(s): {r['seconds']:.1f} s "
              f"= {r['images_per_s']:,.0f} images/s, {r['problems']} problems")
    if args.json:
        Path(args.json).write_text(json.dumps({"variants": results, "real_files": real}, indent=1))


if __name__ == "__main__":
    main()
