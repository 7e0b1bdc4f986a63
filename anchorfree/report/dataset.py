"""The dataset report of ``anchorfree data check --show N``: images with their boxes, class counts, box
sizes and aspect ratios, and the boxes most likely to be label mistakes."""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anchorfree.data import CocoDetection, DataSpec, load_data_spec, load_image
from anchorfree.errors import DatasetError

from .figures import aspect_ratio_figure, bar_figure, box_size_figure
from .gallery import ground_truth_thumbnail
from .html import image_uri, render, write_page
from .matching import load_coco_gt

REPORT_NAME = "dataset_report.html"
UNUSUAL_LISTED = 10
"""Boxes listed in each "boxes to look at" table."""
STAT_KEYS = ("images", "annotations", "boxes", "crowd", "clipped", "dropped", "negative_images")


@dataclass
class SplitStatistics:
    """Counts of one split's annotations as written in its files (before clipping).

    Attributes:
        class_boxes: category id → non-crowd annotations of that class.
        class_images: category id → images with at least one such annotation.
        crowd: category id → crowd annotations.
        widths / heights: ``w`` and ``h`` of every non-crowd annotation, in ``annotations`` order.
        annotations: the non-crowd annotations those sizes belong to.
    """

    class_boxes: Counter = field(default_factory=Counter)
    class_images: Counter = field(default_factory=Counter)
    crowd: Counter = field(default_factory=Counter)
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    annotations: list[Mapping[str, Any]] = field(default_factory=list)


def split_statistics(gt: Mapping[str, Any]) -> SplitStatistics:
    """The :class:`SplitStatistics` of a COCO dict."""
    stats = SplitStatistics()
    images_of: dict[int, set] = {}
    widths, heights = [], []
    for ann in gt["annotations"]:
        cat = int(ann["category_id"])
        if ann.get("iscrowd", 0):
            stats.crowd[cat] += 1
            continue
        stats.class_boxes[cat] += 1
        images_of.setdefault(cat, set()).add(ann["image_id"])
        widths.append(float(ann["bbox"][2]))
        heights.append(float(ann["bbox"][3]))
        stats.annotations.append(ann)
    stats.class_images = Counter({cat: len(ids) for cat, ids in images_of.items()})
    stats.widths, stats.heights = np.asarray(widths, dtype=float), np.asarray(heights, dtype=float)
    return stats


def write_dataset_report(spec_or_dataset: DataSpec | CocoDetection | str | Path, out_dir: str | Path,
                         show: int = 16, out: str | Path | None = None) -> Path:
    """Write the HTML report of a dataset and return its path (``out_dir/dataset_report.html``).

    Args:
        spec_or_dataset: a dataset path or :class:`~anchorfree.data.DataSpec` (every split is shown), or one
            :class:`~anchorfree.data.CocoDetection`.
        out_dir: the folder to write the page to (created).
        show: images drawn with their ground-truth boxes, per split, spread evenly over the split.
        out: the page's path, instead of ``out_dir/dataset_report.html``.

    A split that cannot be read is reported on the page with the reason; :class:`~anchorfree.errors.DatasetError`
    is raised only when the dataset spec itself cannot be read.
    """
    splits, source, fmt, class_names = _splits(spec_or_dataset)
    sections = [_split_section(name, load, class_names, show) for name, load in splits]
    rows = [[s["name"], *(str(s["stats"].get(k, "?")) for k in STAT_KEYS)] for s in sections]
    names = class_names or next((s["class_names"] for s in sections if s["class_names"]), [])
    facts = [("format", fmt), ("classes", str(len(names))), ("splits", ", ".join(s["name"] for s in sections))]
    context = {
        "title": f"Dataset report: {_dataset_name(source)}",
        "subtitle": str(source),
        "sections": [("summary", "Summary"), *((s["name"], s["name"]) for s in sections)],
        "facts": facts,
        "stats": {"header": ["split", *(k.replace("_", " ") for k in STAT_KEYS)], "rows": rows},
        "splits": sections,
    }
    return write_page(render("dataset.html", **context), Path(out) if out else Path(out_dir) / REPORT_NAME)


def _splits(data: DataSpec | CocoDetection | str | Path) -> tuple[list, str, str, list[str] | None]:
    """``[(split name, loader)]``, the source, the format and the class names of ``data``."""
    if isinstance(data, CocoDetection):
        return [("train" if data.train else "val", lambda: data)], data.source, "coco", list(data.class_names)
    spec = data if isinstance(data, DataSpec) else load_data_spec(data)

    def loader(split: str):
        def load() -> CocoDetection:
            ann, images = spec.split(split)
            return CocoDetection(ann, images, class_names=spec.class_names)
        return load

    try:
        names = spec.class_names
    except DatasetError:
        names = None  # reported with the split that cannot be read
    return [(s, loader(s)) for s in spec.splits], spec.source, spec.format, names


def _split_section(name: str, load, class_names: Sequence[str] | None, show: int) -> dict[str, Any]:
    section: dict[str, Any] = {"name": name, "source": "", "warnings": [], "stats": {}, "class_names": [],
                               "classes": {"header": [], "rows": []}, "figures": [], "unusual": [], "images": [],
                               "num_images": 0}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = load()
    except DatasetError as e:
        section["warnings"] = [f"This split cannot be read: {e}"]
        return section
    section["warnings"] = [str(w.message) for w in caught]
    section.update(source=ds.source, stats=dict(ds.stats), class_names=list(ds.class_names), num_images=len(ds))
    gt = load_coco_gt(ds.coco_gt)
    stats = split_statistics(gt)
    names = {cat: name for cat, name in zip(ds.cat_ids, ds.class_names)}
    section["classes"] = {
        "header": ["class", "id", "boxes", "images", "crowd"],
        "rows": [[names[c], c, stats.class_boxes[c], stats.class_images[c], stats.crowd[c]] for c in ds.cat_ids],
    }
    section["figures"] = [
        {"uri": bar_figure(list(ds.class_names), [stats.class_boxes[c] for c in ds.cat_ids], "boxes",
                           "Boxes per class"), "alt": f"boxes per class in {name}", "caption": ""},
        {"uri": box_size_figure(stats.widths, stats.heights), "alt": f"box sizes in {name}",
         "caption": "COCO counts areas below 32² as small and from 96² as large."},
        {"uri": aspect_ratio_figure(stats.widths, stats.heights), "alt": f"aspect ratios in {name}",
         "caption": "Boxes far from the others here are worth a look."},
    ]
    section["unusual"] = _unusual_boxes(gt, stats, names)
    section["images"] = _thumbnails(ds, gt, show)
    return section


def _unusual_boxes(gt: Mapping[str, Any], stats: SplitStatistics, names: Mapping[int, str]) -> list[dict]:
    if not stats.annotations:
        return []
    file_of = {img["id"]: img.get("file_name", "?") for img in gt["images"]}
    w, h = stats.widths, stats.heights
    size = np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None))
    elongation = np.where((w > 0) & (h > 0), np.maximum(w, h) / np.maximum(np.minimum(w, h), 1e-9), np.inf)

    def rows(order: np.ndarray, value: np.ndarray, fmt: str) -> list[list[str]]:
        out = []
        for i in order[:UNUSUAL_LISTED]:
            ann = stats.annotations[i]
            box = ", ".join(f"{float(v):g}" for v in ann["bbox"])
            out.append([str(file_of.get(ann["image_id"], ann["image_id"])), names.get(int(ann["category_id"]), "?"),
                        f"[{box}]", fmt.format(value[i])])
        return out

    header = ["image", "class", "bbox [x, y, w, h]"]
    return [
        {"caption": "Smallest boxes", "header": [*header, "√(w·h)"],
         "rows": rows(np.argsort(size, kind="stable"), size, "{:.1f}")},
        {"caption": "Most elongated boxes", "header": [*header, "long / short side"],
         "rows": rows(np.argsort(-elongation, kind="stable"), elongation, "{:.1f}")},
    ]


def _thumbnails(ds: CocoDetection, gt: Mapping[str, Any], show: int) -> list[dict]:
    """``show`` images spread over ``ds``, drawn with the boxes its loader keeps; a caption counts the
    annotations it dropped (zero or negative size after clipping: listed under "boxes to look at")."""
    if show <= 0 or len(ds) == 0:
        return []
    written = Counter(ann["image_id"] for ann in gt["annotations"])
    picks = sorted(set(np.linspace(0, len(ds) - 1, min(show, len(ds))).round().astype(int).tolist()))
    figures = []
    for index in picks:
        info = ds.get_image_info(index)
        boxes, labels, crowd = ds.ground_truth(index)
        try:
            image = load_image(ds.image_dir / info["file_name"], info["id"])
        except DatasetError as e:
            figures.append({"uri": _blank_uri(), "alt": "unreadable image", "caption": str(e)})
            continue
        drawn = ground_truth_thumbnail(image, boxes, labels, crowd, ds.class_names)
        caption = f"{info['file_name']} (id {info['id']}): {_count(len(labels), 'box', 'boxes')}"
        dropped = written[info["id"]] - len(labels)
        if dropped > 0:
            caption += f"; {_count(dropped, 'box', 'boxes')} of zero or negative size not drawn"
        figures.append({"uri": image_uri(drawn), "alt": f"{info['file_name']} with its boxes", "caption": caption})
    return figures


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _dataset_name(source: str) -> str:
    """The dataset's folder name (also when ``source`` is its YAML file)."""
    path = Path(str(source))
    return (path.parent.name if path.suffix in (".yaml", ".yml") else path.name) or str(source)


def _blank_uri() -> str:
    return image_uri(np.full((60, 100, 3), 230, dtype=np.uint8))
