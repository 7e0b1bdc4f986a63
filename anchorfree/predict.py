"""Predicting image files into a folder: drawn images and ``results.json`` (COCO results with file names), what
``anchorfree predict`` and the demo do. Unreadable files are skipped and listed; nothing readable is lost."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .api import to_uint8_chw
from .data import read_categories, read_coco_json
from .errors import AnchorfreeError, DatasetError
from .files import atomic_write_text
from .images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageReadError, video_container, video_problem
from .inference.evaluate import match_image_ids
from .structures import Detections
from .visualize import draw_detections, save_image


def collect_images(inputs: list[str]) -> list[Path]:
    """The image files of ``inputs`` (files, and the images of folders); videos are named and left out."""
    paths: list[Path] = []
    videos: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            paths += [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            videos += [(f, VIDEO_SUFFIXES[f.suffix.lower()]) for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
        elif p.is_file():
            container = VIDEO_SUFFIXES.get(p.suffix.lower())
            try:
                with p.open("rb") as f:
                    container = video_container(f.read(512)) or container
            except OSError:
                pass  # reading it fails again below, with the error reported per file
            if container:
                videos.append((p, container))
            else:
                paths.append(p)
        else:
            raise AnchorfreeError(f"{p} is neither an image file nor a folder")
    if videos and not paths:
        first, container = videos[0]
        more = f" (and {len(videos) - 1} more video file(s))" if len(videos) > 1 else ""
        raise AnchorfreeError(f"{first} {video_problem(container)}{more}")
    if videos:
        listed = ", ".join(str(v) for v, _ in videos[:5]) + (f" and {len(videos) - 5} more" if len(videos) > 5 else "")
        print(f"note: skipped {len(videos)} video file(s) of the folder(s): {listed} — pass a video file by name to "
              "predict it frame by frame", file=sys.stderr)
    if not paths:
        raise AnchorfreeError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {' '.join(inputs)}")
    return paths


def annotation_ids(ann_file: str, paths: list[Path], class_names: list) -> tuple[list[int], list[int], list[Path]]:
    """Image ids (by file name) and category ids (by label) from a COCO file; paths it does not list are left out."""
    data = read_coco_json(ann_file)
    cat_ids, names = read_categories(data, ann_file)
    if len(cat_ids) != len(class_names):
        raise DatasetError(f"{ann_file} has {len(cat_ids)} categories but the model predicts {len(class_names)} "
                           "classes; pass the annotation file of the dataset the model was trained for")
    if [str(n) for n in class_names] != names:
        print(f"note: the model's class names differ from {ann_file}'s; label k is written as its k-th category "
              "(sorted by id)", file=sys.stderr)
    ids = match_image_ids(paths, data["images"], ann_file)
    missing = [p for p, i in zip(paths, ids) if i is None]
    if len(missing) == len(paths):
        raise DatasetError(f"none of the {len(paths)} images is listed in {ann_file} (e.g. {paths[0].name}); pass "
                           "the images of that annotation file")
    if missing:
        print(f"note: {len(missing)} image(s) are not listed in {ann_file} and are skipped, e.g. {missing[0]}",
              file=sys.stderr)
    kept = [(i, p) for p, i in zip(paths, ids) if i is not None]
    return [i for i, _ in kept], cat_ids, [p for _, p in kept]


@dataclass
class FolderPrediction:
    """What :func:`predict_to_folder` wrote: ``out`` holds one drawn ``<stem>.jpg`` per image and ``results.json``."""

    out: Path
    images: int  # images predicted
    detections: int
    unreadable: list[tuple[Path, ImageReadError]] = field(default_factory=list)

    def skipped_message(self) -> str:
        """The unreadable files, each with its problem, and what to do."""
        bad = self.unreadable
        listed = "\n  ".join(f"{p}: {e.problem}" + (f" ({e.reason})" if e.reason else "") for p, e in bad[:10])
        more = f"\n  … and {len(bad) - 10} more" if len(bad) > 10 else ""
        advice = ("\nRe-export or remove these files (e.g. open and save them again with an image editor) and run "
                  "predict on them again." if any(e.kind != "video" for _, e in bad) else "")
        return f"skipped {len(bad)} unreadable file(s) — no results for them:\n  {listed}{more}{advice}"


def predict_to_folder(model: Any, paths: Sequence[Path], out: str | Path, options: dict[str, Any] | None = None,
                      image_ids: Sequence[int] | None = None, category_ids: Sequence[int] | None = None,
                      orient: bool = True, progress: bool = True) -> FolderPrediction:
    """Run ``model`` (:func:`anchorfree.load_model`'s: a checkpoint or an export) on every image of ``paths``:
    a drawn copy per image and ``results.json`` in ``out``.

    ``options``: inference options (``score_thresh``, ``nms``…); ``image_ids`` / ``category_ids`` (from
    :func:`annotation_ids`) write the ids of an annotation file instead of 1..N and the model's own; ``orient``
    turns photos as their EXIF says (``False``: the stored pixel grid that annotations refer to). Raises when
    no image could be read."""
    options = options or {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = list(image_ids) if image_ids is not None else list(range(1, len(paths) + 1))
    results: list[dict] = []
    total, unreadable = 0, []
    for image_id, path in zip(ids, tqdm(paths, desc="predict", unit="img", disable=not progress)):
        try:
            image = to_uint8_chw(path, orient=orient)
        except ImageReadError as e:  # a damaged, non-image or video file: skip it, report it at the end
            unreadable.append((path, e))
            continue
        pred = model(image, **options)
        entries = pred.to_coco(image_id)
        if category_ids is not None:  # label k is the k-th category of the annotation file, as in `eval`
            entries = [dict(e, category_id=category_ids[label]) for e, label in zip(entries, pred.labels.tolist())]
        results += [dict(r, file_name=str(path)) for r in entries]
        boxes, scores, labels = (torch.as_tensor(v) for v in (pred.boxes, pred.scores, pred.labels))  # numpy: export
        save_image(draw_detections(image, Detections(boxes, scores, labels), model.class_names), out / f"{path.stem}.jpg")
        total += len(pred)
    done = len(paths) - len(unreadable)
    if not done:
        if all(e.kind == "video" for _, e in unreadable):
            raise unreadable[0][1]
        raise AnchorfreeError(f"none of the {len(paths)} images could be read (e.g. {unreadable[0][1]}); check that "
                              "the files are images (JPEG, PNG, BMP, WebP, TIFF) and not damaged")
    atomic_write_text(out / "results.json", json.dumps(results))
    return FolderPrediction(out, done, total, unreadable)
