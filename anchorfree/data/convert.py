"""Convert a dataset between COCO, YOLO and Pascal VOC (``anchorfree data convert``).

The source, in any of the three formats, is read with :func:`~anchorfree.data.load_data_spec` and
checked as for training; its ``train`` and ``val`` splits are written as:

- ``coco``: ``DST/<split>/annotations.json``, ``DST/<split>/images/``, ``DST/data.yaml``
- ``yolo``: ``DST/images/<split>/``, ``DST/labels/<split>/``, ``DST/data.yaml`` (ultralytics layout)
- ``voc``: ``DST/JPEGImages/``, ``DST/Annotations/``, ``DST/ImageSets/Main/<split>.txt`` (and
  ``trainval.txt``), ``DST/data.yaml`` (``format: voc`` with ``names``)

Images are hard-linked where the file system allows (no extra space; the two paths then share one
file, so editing an image in place changes both), else copied; ``link=False`` always copies.

Classes and ids: YOLO and VOC have no category ids, only classes in order. The classes keep their
order (COCO categories sorted by id) and names, including classes without any box (``names`` in
``data.yaml``); reading YOLO or VOC numbers them ``1..K``. So COCO -> YOLO -> COCO keeps every
category and name, but ids ``1, 2, 3, 5, 7`` come back as ``1..5``; COCO -> COCO keeps the
annotation file as it is (ids and extra fields). Images are numbered ``1..N`` when read from YOLO
or VOC.

Boxes: the YOLO and VOC writers clip boxes to their image and leave out boxes without area
(counted in the summary). YOLO has no ignore regions, so crowd boxes (VOC ``difficult``) are left
out; VOC writes crowd boxes as ``difficult``. YOLO coordinates are written with 10 significant
digits and VOC coordinates with up to 6 decimals, so round trips keep boxes to 1e-6 px.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from anchorfree.data.coco import CocoDetection, read_coco_json
from anchorfree.data.formats import place_file, split_boxes, unique_names
from anchorfree.data.spec import DATA_FORMATS, SPEC_FILE_NAME, load_data_spec
from anchorfree.data.voc import voc_image_ids, write_voc_split, write_voc_yaml
from anchorfree.data.yolo import write_yolo_split, write_yolo_yaml
from anchorfree.errors import ConfigError, DatasetError

__all__ = ["convert_dataset"]


def convert_dataset(src: str | Path, dst: str | Path, to: str, link: bool = True) -> dict[str, Any]:
    """Write the dataset ``src`` (folder or YAML, any format) to the new folder ``dst`` in format ``to``.

    Returns a summary ``{"source", "from", "to", "out", "spec", "splits": {split: counts}}`` with,
    per split, ``images``, ``boxes`` and how many images were ``linked`` / ``copied`` (plus
    ``clipped`` / ``dropped`` boxes for YOLO and VOC, ``crowd_left_out`` for YOLO, ``difficult``
    for VOC, ``crowd`` for COCO).

    Raises:
        ConfigError: ``to`` is not one of ``coco``, ``yolo``, ``voc``.
        DatasetError: the source is invalid, an image is missing, or ``dst`` is not empty.
    """
    if to not in DATA_FORMATS:
        raise ConfigError(f"unknown dataset format {to!r}; choose one of {', '.join(DATA_FORMATS)}")
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetError(f"{dst} already exists and is not an empty folder; choose a new output folder.")
    spec = load_data_spec(src)
    splits = []
    for name in spec.splits:
        ann, image_dir = spec.split(name)
        data = ann if isinstance(ann, dict) else read_coco_json(ann)
        dataset = CocoDetection(data, image_dir, class_names=spec.class_names)  # the checks of training
        splits.append((name, data, Path(image_dir), dataset.source))
    class_names = list(spec.class_names or dataset.class_names)

    dst.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    if to == "coco":
        for name, data, image_dir, _ in splits:
            counts[name] = _write_coco_split(name, data, image_dir, dst, link)
        spec_path = _write_coco_yaml(dst, [s[0] for s in splits], class_names)
    elif to == "yolo":
        for name, data, image_dir, source in splits:
            boxes = split_boxes(data, source)
            counts[name] = {**write_yolo_split(name, boxes, image_dir, dst, link), "clipped": boxes.clipped,
                            "dropped": boxes.dropped}
        spec_path = write_yolo_yaml(dst, [s[0] for s in splits], class_names)
    else:
        ids = voc_image_ids({name: [img["file_name"] for img in data["images"]] for name, data, _, _ in splits})
        for name, data, image_dir, source in splits:
            boxes = split_boxes(data, source)
            counts[name] = {**write_voc_split(name, boxes, image_dir, dst, ids[name], class_names, link),
                            "clipped": boxes.clipped, "dropped": boxes.dropped}
        spec_path = write_voc_yaml(dst, [s[0] for s in splits], class_names)
    return {"source": str(src), "from": spec.format, "to": to, "out": str(dst), "spec": str(spec_path),
            "splits": counts}


def _write_coco_split(split: str, data: dict[str, Any], image_dir: Path, dst: Path, link: bool) -> dict[str, int]:
    """``dst/<split>/images/`` and ``dst/<split>/annotations.json``; annotations written unchanged."""
    images = [dict(img) for img in data["images"]]
    names = [str(img["file_name"]) for img in images]
    if any(os.path.isabs(n) or ".." in Path(n).parts for n in names):  # would land outside dst: flatten
        names = unique_names([n.replace("\\", "/").strip("/").replace("/", "_") for n in names])
    linked = 0
    for img, name in zip(images, names):
        linked += place_file(image_dir / img["file_name"], dst / split / "images" / name, link)
        img["file_name"] = name
    out = {key: value for key, value in data.items() if key != "info"}
    info = {k: v for k, v in (data.get("info") or {}).items() if k != "source"}
    if info:
        out["info"] = info
    out["images"] = images
    (dst / split / "annotations.json").write_text(json.dumps(out), encoding="utf-8")
    crowd = sum(bool(a.get("iscrowd", 0)) for a in data["annotations"])
    return {"images": len(images), "boxes": len(data["annotations"]) - crowd, "crowd": crowd, "linked": linked,
            "copied": len(images) - linked}


def _write_coco_yaml(dst: Path, splits: list[str], class_names: list[str]) -> Path:
    spec: dict[str, Any] = {s: {"annotations": f"{s}/annotations.json", "images": f"{s}/images"} for s in splits}
    spec["names"] = class_names
    path = dst / SPEC_FILE_NAME
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
