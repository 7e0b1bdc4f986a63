"""Small detection datasets of real annotated imagery (and small synthetic ones), built at run time.

Real data: the aerial RGB tree-crown images that ship, with people-drawn Pascal VOC boxes, inside the
PyPI package ``deepforest`` (NEON airborne imagery, 10 cm/px). The wheel is fetched with
``pip download deepforest==2.1.0 --no-deps`` into a cache folder (default ``~/.cache/anchorfree-bench``,
or ``$ANCHORFREE_BENCH_CACHE``) and the files are read straight out of it with :mod:`zipfile`;
deepforest itself is never installed and no image or annotation is kept in this repository.

The large images are cut into ``--tile`` px tiles (default 320). The validation tiles come from the
bottom strip of each image (the last ``round(0.2 * height / tile)`` tile rows, at least one) and the
training tiles from the rest, so the two splits cover disjoint ground; only the trees that straddle the
boundary appear (in part) on both sides. Training tiles cover their whole region (the last column/row
is shifted back inside, so neighbours overlap a little); validation tiles form a grid without overlap
(a strip narrower than a tile at the right edge is left out). A box is clipped to its tile and dropped
when less than half of its area is inside.

Datasets (COCO layout: ``train/annotations.json``, ``train/images/``, ``val/...``, ``data.yaml``):

* ``yell2``: ``2019_YELL_2_528000_4978000_image_crop2`` (2299 x 2472 px, 574 trees), one class ``tree``;
* ``yell1``: ``2019_YELL_2_541000_4977000_image_crop`` (1249 x 1035 px, 279 trees);
* ``yell_both``: both of them;
* ``yell_large``: ``yell_both``'s training tiles; its validation strips kept whole (2299 x 640 and 1249 x 315 px
  with ~40 px crowns): large images with small objects, for sliced inference (``eval --slice``);
* ``neon4``: ``yell_both`` plus ``OSBS_029`` (400 x 400, Florida) tiled into the training split and
  ``SOAP_061`` (400 x 400, California) into the validation split (another site: a domain shift);
* ``synth50``, ``synth200``: generated photograph-like data (:func:`anchorfree.data.generate_photo_dataset`),
  50 or 200 training and 50 validation images of 192..320 px, crowded (up to 40 objects).

    python benchmarks/small_data.py --out runs/small_data                # all datasets
    python benchmarks/small_data.py --out runs/small_data --datasets yell2 yell_both
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None

WHEEL = "deepforest-2.1.0-py3-none-any.whl"
PACKAGE = "deepforest==2.1.0"
YELL2 = "2019_YELL_2_528000_4978000_image_crop2"
YELL1 = "2019_YELL_2_541000_4977000_image_crop"
# dataset -> [(image stem, split: "both" = tile rows split train/val, or "train" / "val" = all of it)]
REAL = {
    "yell2": [(YELL2, "both")],
    "yell1": [(YELL1, "both")],
    "yell_both": [(YELL2, "both"), (YELL1, "both")],
    "neon4": [(YELL2, "both"), (YELL1, "both"), ("OSBS_029", "train"), ("SOAP_061", "val")],
    "yell_large": [(YELL2, "both"), (YELL1, "both")],
}
# datasets whose validation regions are kept whole (large images with small objects: for sliced inference)
WHOLE_VAL = {"yell_large"}
SYNTH = {"synth50": 50, "synth200": 200}
DATASETS = (*REAL, *SYNTH)
CLASS_NAME = "tree"


def cache_dir() -> Path:
    return Path(os.environ.get("ANCHORFREE_BENCH_CACHE", Path.home() / ".cache" / "anchorfree-bench"))


def deepforest_wheel(cache: Path | None = None) -> Path:
    """The deepforest wheel in ``cache`` (downloaded by ``pip download`` the first time)."""
    cache = cache or cache_dir()
    wheel = cache / WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary", ":all:",
                        "-d", str(cache)], check=True)
    return wheel


def read_voc_boxes(xml: bytes) -> list[tuple[float, float, float, float]]:
    """``(x1, y1, x2, y2)`` of every object of a Pascal VOC file (pixel corners, as written)."""
    boxes = []
    for obj in ET.fromstring(xml).iter("object"):
        b = obj.find("bndbox")
        x1, y1, x2, y2 = (float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x2 > x1 and y2 > y1:
            boxes.append((x1, y1, x2, y2))
    return boxes


def starts(lo: int, hi: int, tile: int, cover: bool) -> list[int]:
    """Tile origins along ``[lo, hi)``: a grid without overlap, or (``cover``) also a last tile shifted
    back so that the whole extent is covered."""
    n = (hi - lo) // tile
    out = [lo + i * tile for i in range(n)]
    if cover and (hi - lo) % tile and hi - lo >= tile:
        out.append(hi - tile)
    if hi - lo < tile and cover:
        out = [lo]  # a region smaller than a tile: one (smaller) tile
    return out


def tile_image(image: Image.Image, boxes, region: tuple[int, int, int, int], tile: int, cover: bool,
               min_keep: float = 0.5):
    """Yield ``(crop, origin, boxes in crop px as COCO [x, y, w, h])`` for the tiles of ``region``."""
    x0, y0, x1, y1 = region
    for ty in starts(y0, y1, tile, cover):
        for tx in starts(x0, x1, tile, cover):
            w, h = min(tile, x1 - tx), min(tile, y1 - ty)
            kept = []
            for bx1, by1, bx2, by2 in boxes:
                cx1, cy1 = max(bx1, tx), max(by1, ty)
                cx2, cy2 = min(bx2, tx + w), min(by2, ty + h)
                if cx2 <= cx1 or cy2 <= cy1:
                    continue
                if (cx2 - cx1) * (cy2 - cy1) < min_keep * (bx2 - bx1) * (by2 - by1):
                    continue
                kept.append([cx1 - tx, cy1 - ty, cx2 - cx1, cy2 - cy1])
            yield image.crop((tx, ty, tx + w, ty + h)), (tx, ty), kept


def build_real(name: str, out: Path, wheel: Path, tile: int = 320, val_fraction: float = 0.2) -> Path:
    """Write dataset ``name`` of :data:`REAL` to ``out`` (COCO layout) and return ``out``."""
    splits = {s: {"images": [], "annotations": [],
                  "categories": [{"id": 1, "name": CLASS_NAME, "supercategory": "plant"}]} for s in ("train", "val")}
    for s in splits:
        (out / s / "images").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for stem, where in REAL[name]:
            image = Image.open(io.BytesIO(z.read(f"deepforest/data/{stem}.png"))).convert("RGB")
            boxes = read_voc_boxes(z.read(f"deepforest/data/{stem}.xml"))
            width, height = image.size
            if where == "both":
                val_rows = max(1, round(val_fraction * height / tile))
                split_y = height - val_rows * tile
                regions = [("train", (0, 0, width, split_y), True), ("val", (0, split_y, width, height), False)]
            else:
                regions = [(where, (0, 0, width, height), where == "train")]
            for split, region, cover in regions:
                data = splits[split]
                whole = split == "val" and name in WHOLE_VAL
                for crop, (tx, ty), kept in tile_image(image, boxes, region, 10 ** 6 if whole else tile, cover or whole):
                    image_id = len(data["images"]) + 1
                    file_name = f"{stem}_{tx}_{ty}.png"
                    crop.save(out / split / "images" / file_name)
                    data["images"].append({"id": image_id, "file_name": file_name, "width": crop.width,
                                           "height": crop.height})
                    for bbox in kept:
                        data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id,
                                                    "category_id": 1, "bbox": [round(v, 2) for v in bbox],
                                                    "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0})
    for split, data in splits.items():
        (out / split / "annotations.json").write_text(json.dumps(data))
    write_spec(out, [CLASS_NAME])
    return out


def build_synth(name: str, out: Path) -> Path:
    from anchorfree.data import generate_photo_dataset

    generate_photo_dataset(out, num_train=SYNTH[name], num_val=50, image_size=(192, 320), seed=0, max_objects=40)
    val = json.loads((out / "val" / "annotations.json").read_text())
    write_spec(out, [c["name"] for c in sorted(val["categories"], key=lambda c: c["id"])])
    return out


def write_spec(out: Path, names: list[str]) -> None:
    (out / "data.yaml").write_text(
        "train:\n  annotations: train/annotations.json\n  images: train/images\n"
        "val:\n  annotations: val/annotations.json\n  images: val/images\n"
        f"names: {json.dumps(names)}\n")


def build(name: str, root: Path, cache: Path | None = None, tile: int = 320) -> Path:
    """Dataset ``name`` under ``root/name`` (built once; an existing ``data.yaml`` means done)."""
    out = root / name
    if (out / "data.yaml").is_file():
        return out
    if name in REAL:
        return build_real(name, out, deepforest_wheel(cache), tile)
    if name in SYNTH:
        return build_synth(name, out)
    raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def statistics_of(folder: Path) -> dict:
    """Images, boxes and the median box size (sqrt of area, px; also median width and height) per split."""
    stats = {}
    for split in ("train", "val"):
        data = json.loads((folder / split / "annotations.json").read_text())
        ws = [a["bbox"][2] for a in data["annotations"]]
        hs = [a["bbox"][3] for a in data["annotations"]]
        stats[split] = {"images": len(data["images"]), "boxes": len(ws),
                        "median_box_px": round(statistics.median(math.sqrt(w * h) for w, h in zip(ws, hs)), 1)
                        if ws else None,
                        "median_w": statistics.median(ws) if ws else None,
                        "median_h": statistics.median(hs) if hs else None,
                        "image_sizes": sorted({f"{i['width']}x{i['height']}" for i in data["images"]})}
    return stats


def format_statistics(name: str, stats: dict) -> str:
    parts = [f"{split} {s['images']} images, {s['boxes']} boxes, median box {s['median_box_px']} px "
             f"({s['median_w']:g} x {s['median_h']:g})" if s["boxes"] else f"{split} {s['images']} images, 0 boxes"
             for split, s in stats.items()]
    return f"{name}: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of the datasets (one sub-folder each)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--cache", help="where the deepforest wheel is kept (default $ANCHORFREE_BENCH_CACHE "
                                        "or ~/.cache/anchorfree-bench)")
    parser.add_argument("--tile", type=int, default=320, help="tile size in px (default 320)")
    args = parser.parse_args(argv)
    root = Path(args.out)
    for name in args.datasets:
        folder = build(name, root, Path(args.cache) if args.cache else None, args.tile)
        print(format_statistics(name, statistics_of(folder)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
