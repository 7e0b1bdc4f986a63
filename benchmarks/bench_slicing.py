"""Small objects in large images: AP on objects under 16 px (in the original image) with and without sliced
inference.

The large images are mosaics of a COCO validation split at its own resolution: ``--grid G`` images per side,
each in a cell of ``--cell`` px (top-left aligned, grey elsewhere), so every object keeps the pixel size it was
annotated at while the image grows to ``G * cell`` px. A model trained on the original images then sees a
*whole* mosaic shrunk ``G`` times more than an original image (what ``predict`` does to a drone photo), and
the same mosaic in tiles at the scale it was trained at (``--slice``). Scored by pycocotools with three area
ranges: all objects, objects under 16 px (``sqrt(area) < 16``: area < 256) and COCO's small (area < 32²)::

    python benchmarks/bench_slicing.py --run RUN --data DATA --out runs/bench_slicing --slice 192 256

Each row runs ``predict_dataset`` (what ``anchorfree eval`` runs) on the mosaics: the whole image at the model's
size, then once per ``--slice`` size (tiles of S px with ``--overlap``, merged by NMS). A last row scores the
original images at the model's size, the reference the tiles try to get back to.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from anchorfree.data import load_data_spec
from anchorfree.inference.checkpoint import load_detector
from anchorfree.inference.evaluate import make_eval_dataset, predict_dataset
from anchorfree.inference.slicing import SliceOptions
from anchorfree.models.fuse import inference_detector
from anchorfree.runtime import cpu_flags

AREAS = {"all": [0, 1e10], "under16": [0, 16 ** 2], "small": [0, 32 ** 2]}


def make_mosaics(coco: dict, image_dir: Path, out: Path, grid: int, cell: int) -> Path:
    """Mosaics of ``grid x grid`` validation images (the last partial one dropped) with their boxes shifted;
    returns the annotation file."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = [im for im in coco["images"] if im["width"] <= cell and im["height"] <= cell]
    per = grid * grid
    new_images, new_anns = [], []
    for m in range(len(images) // per):
        canvas = np.full((grid * cell, grid * cell, 3), 114, np.uint8)
        for k, im in enumerate(images[m * per:(m + 1) * per]):
            y0, x0 = (k // grid) * cell, (k % grid) * cell
            pixels = np.asarray(Image.open(image_dir / im["file_name"]).convert("RGB"))
            canvas[y0:y0 + pixels.shape[0], x0:x0 + pixels.shape[1]] = pixels
            for ann in by_image.get(im["id"], []):
                x, y, w, h = ann["bbox"]
                new_anns.append({**ann, "id": len(new_anns) + 1, "image_id": m + 1, "bbox": [x + x0, y + y0, w, h]})
                new_anns[-1].pop("segmentation", None)
        name = f"mosaic_{m:03d}.jpg"
        Image.fromarray(canvas).save(out / name, quality=95)
        new_images.append({"id": m + 1, "file_name": name, "width": grid * cell, "height": grid * cell})
    ann_out = out / "annotations.json"
    ann_out.write_text(json.dumps({"images": new_images, "annotations": new_anns, "categories": coco["categories"]}))
    return ann_out


def score(ann_file: Path, results: list[dict]) -> dict[str, float]:
    """AP and AP50 per area range (pycocotools, maxDets 100)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann_file))
    if not results:
        return {f"{k}_{m}": 0.0 for k in AREAS for m in ("ap", "ap50")}
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    ev.params.areaRng, ev.params.areaRngLbl = list(AREAS.values()), list(AREAS)
    ev.params.maxDets = [100, 300, 1000]  # a mosaic holds up to grid^2 x 40 objects
    ev.evaluate()
    ev.accumulate()
    out = {}
    for a, label in enumerate(AREAS):
        for name, t in (("ap", slice(None)), ("ap50", 0)):
            p = ev.eval["precision"][t, :, :, a, -1]  # [T, R, K] (or [R, K]) at maxDets 1000
            out[f"{label}_{name}"] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a trained run folder or .pt")
    parser.add_argument("--data", required=True, help="its dataset (the validation split makes the mosaics)")
    parser.add_argument("--out", default="runs/bench_slicing")
    parser.add_argument("--grid", type=int, default=4, help="images per mosaic side (default 4)")
    parser.add_argument("--cell", type=int, default=320, help="cell size in px (default 320)")
    parser.add_argument("--slice", type=int, nargs="+", default=[256], help="tile sizes to try (default 256)")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    spec = load_data_spec(args.data)
    out = Path(args.out)
    val = spec.val_ann if isinstance(spec.val_ann, dict) else json.loads(Path(spec.val_ann).read_text())
    (out / "mosaics").mkdir(parents=True, exist_ok=True)
    val_ann = out / "mosaics" / "original_val.json"  # the split as COCO JSON (YOLO / VOC datasets give a dict)
    val_ann.write_text(json.dumps(val))
    mosaic_ann = make_mosaics(val, Path(spec.val_images), out / "mosaics", args.grid, args.cell)
    detector, cfg, _ = load_detector(args.run)
    model = inference_detector(detector, False)
    print(f"CPU flags: {cpu_flags()}; {args.threads} thread(s); model input {cfg.model.input.max_size} px; "
          f"mosaics of {args.grid}x{args.grid} cells of {args.cell} px")
    cases = [("whole mosaic at the model's size", mosaic_ann, out / "mosaics", None)]
    cases += [(f"--slice {s} --overlap {args.overlap}", mosaic_ann, out / "mosaics", SliceOptions(s, args.overlap))
              for s in args.slice]
    cases += [("original images (reference)", val_ann, Path(spec.val_images), None)]
    rows = []
    for label, ann, images, slicing in cases:
        dataset = make_eval_dataset(model, ann, images)
        start = time.perf_counter()
        with torch.inference_mode():
            results = predict_dataset(model, dataset, batch_size=8, workers=0, progress=False, slicing=slicing,
                                      max_detections=1000)
        rows.append({"case": label, "seconds": round(time.perf_counter() - start, 1), **score(ann, results)})
        print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n| case | AP | AP50 | AP < 16 px | AP50 < 16 px | AP small | s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['all_ap']:.3f} | {r['all_ap50']:.3f} | {r['under16_ap']:.3f} | "
              f"{r['under16_ap50']:.3f} | {r['small_ap']:.3f} | {r['seconds']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
