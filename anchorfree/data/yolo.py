"""YOLO txt datasets (the ultralytics layout): reading a split as a COCO dict, and writing one.

Layout::

    data.yaml              # path: (optional root), train:, val:, names:
    images/train/a.jpg     # images of a split: a folder (searched recursively) or a .txt list
    labels/train/a.txt     # the image path with the last /images/ -> /labels/ and suffix -> .txt

Each line of a label file is one object, ``class x_center y_center width height``, the four
coordinates as fractions (0..1) of the image width and height. A line with more values,
``class x1 y1 x2 y2 x3 y3 ...`` (an ultralytics segmentation polygon), is read as the polygon's
bounding box. An image without a label file, or with an empty one, has no objects.

``data.yaml`` keys: ``path`` (the dataset root; relative to the YAML's folder, which is also the
default), ``train`` and ``val`` (a folder of images, a .txt file listing image paths, or a list of
those; relative to the root; paths inside a .txt list are relative to the list's folder, as in
ultralytics' ``./images/...`` lists), and ``names`` (a list, or a mapping ``{0: name, 1: ...}``).

In the COCO view, images are numbered ``1..N`` in sorted path order and class ``k`` is category
id ``k + 1``; boxes are in pixels of the image as stored (its header size; EXIF orientation is
not applied). Coordinates outside 0..1 are kept; the dataset clips boxes to their image and drops
those left without area, counting both (one warning names the first such line).

Problems go to a :class:`~anchorfree.data.report.ProblemLog`: by default the first malformed line
raises; a collecting log (``anchorfree data check``) gets every bad line, and the bad lines, and
images whose header cannot be read, are left out of the COCO view.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from anchorfree.data.formats import IMAGE_SUFFIXES, SplitBoxes, build_coco, image_sizes, place_file, unique_names
from anchorfree.data.report import ProblemLog

__all__ = ["label_path", "list_split_images", "parse_names", "read_yolo_split", "write_yolo_split",
           "write_yolo_yaml"]

_BOX_FIELDS = "class x_center y_center width height"
_NUMBER_FORMAT = "{:.10g}"  # 10 significant digits: below 1e-6 px for images up to 10,000 px
_PIXEL_DECIMALS = 6  # pixel boxes are rounded to 1e-6 px: 57.9999999978 (from 10-digit fractions) reads 58


def parse_names(names: Any, source: str, problems: ProblemLog | None = None) -> list[str] | None:
    """Class names from a YAML ``names`` entry: a list, or a mapping ``{0: name, 1: name, ...}``.

    Returns ``None`` after reporting a problem to a collecting ``problems`` log (the default log raises).
    """
    log = problems if problems is not None else ProblemLog()
    example = "names: [cat, dog]   or   names: {0: cat, 1: dog}"
    if names is None:
        log.error(f"{source}: key 'names' is missing; list the class names in class-id order, e.g. {example}",
                  source, "names")
        return None
    if isinstance(names, dict):
        keys = list(names)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or \
                sorted(keys) != list(range(len(keys))):
            log.error(f"{source}: the keys of 'names' must be the class ids 0, 1, ..., {len(keys) - 1} "
                      f"(got {keys!r:.100}), e.g. {example}", source, "names")
            return None
        names = [names[k] for k in range(len(keys))]
    if not isinstance(names, list) or not names:
        log.error(f"{source}: 'names' must be a non-empty list or id -> name mapping, got "
                  f"{names!r:.100}, e.g. {example}", source, "names")
        return None
    bad = [n for n in names if not isinstance(n, (str, int, float)) or isinstance(n, bool) or str(n) == ""]
    if bad:
        log.error(f"{source}: 'names' holds {bad[0]!r:.60}, which is not a class name; use strings, "
                  f"e.g. {example}", source, "names")
        return None
    out = [str(n) for n in names]
    if len(set(out)) != len(out):
        duplicate = next(n for n in out if out.count(n) > 1)
        log.error(f"{source}: class name {duplicate!r} appears twice in 'names'; names must be unique.", source,
                  "names")
        return None
    return out


def list_split_images(entry: Any, root: Path, key: str, source: str,
                      problems: ProblemLog | None = None) -> list[Path]:
    """The image files of a split entry: a folder, a .txt list of image paths, or a list of those."""
    log = problems if problems is not None else ProblemLog()
    entries = entry if isinstance(entry, list) else [entry]
    if not entries or not all(isinstance(e, str) and e for e in entries):
        log.stop(f"{source}: '{key}' must be a folder of images or a .txt list of image paths "
                 f"(relative to the dataset root {root}), or a list of those; got {entry!r:.100}", source, key)
    paths: list[Path] = []
    for item in entries:
        path = root / Path(item).expanduser()
        if path.is_dir():
            found = _images_under(path)
            if not found:
                log.error(f"{source}: '{key}' folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}).",
                          source, key)
            paths += found
        elif path.is_file() and path.suffix.lower() == ".txt":
            paths += _read_image_list(path, log)
        else:
            log.error(f"{source}: '{key}' points to {path}, which is neither a folder of images nor a "
                      ".txt list of image paths. Paths are relative to 'path' (default: the YAML's "
                      "folder).", source, key)
    return paths


def _images_under(folder: Path) -> list[Path]:
    """Image files in ``folder`` and its sub-folders, sorted by their path's parts."""
    found = []
    for parent, _, files in os.walk(folder, followlinks=True):
        found += [os.path.join(parent, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    return [Path(p) for p in sorted(found, key=lambda p: p.split(os.sep))]


def _read_image_list(path: Path, log: ProblemLog) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        log.error(f"Cannot read image list {path}: {e}.", path)
        return []
    out, listed = [], 0
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        listed += 1
        image = path.parent / Path(line).expanduser()  # absolute paths stay as they are
        if not image.is_file():
            log.error(f"{path}, line {lineno}: image {image} does not exist. Paths in an image list are "
                      "relative to the list's folder; fix the line or remove it.", path, f"line {lineno}",
                      "missing image")
            continue
        out.append(image)
    if not listed:
        log.error(f"Image list {path} is empty; list one image path per line.", path)
    return out


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``/images/`` of its path replaced by ``/labels/``, suffix ``.txt``."""
    return Path(_label_path(str(image)))


def _label_path(image: str) -> str:
    marker = f"{os.sep}images{os.sep}"
    if marker in image:
        head, tail = image.rsplit(marker, 1)
        image = f"{head}{os.sep}labels{os.sep}{tail}"
    return os.path.splitext(image)[0] + ".txt"


def read_yolo_split(images: Sequence[Path], class_names: Sequence[str], source: str,
                    problems: ProblemLog | None = None) -> tuple[dict[str, Any], Path]:
    """Read the label files of ``images``; return ``(COCO dict, image folder)``.

    ``file_names`` are relative to the returned folder (the images' deepest common folder).
    Raises :class:`~anchorfree.errors.DatasetError` naming the file and line of a malformed label
    (a collecting ``problems`` log gets every one instead; bad lines are left out).
    """
    log = problems if problems is not None else ProblemLog()
    paths = [os.path.abspath(p) for p in images]
    if not paths:
        log.stop(f"{source}: the split has no images.", source)

    values, counts, lines = [], np.zeros(len(paths), dtype=np.int64), []
    for index, image in enumerate(paths):
        label = _label_path(image)
        try:
            with open(label, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            counts[index] = -1
            continue
        except (OSError, UnicodeDecodeError) as e:
            log.error(f"Cannot read label file {label} (of image {image}): {e}. Fix or delete it.", label)
            continue
        rows, linenos = _parse_label_text(text, label, log)
        counts[index] = len(rows)
        values.append(rows)
        lines.append(linenos)
    if (counts < 0).all():
        log.warning(f"{source}: none of the {len(paths)} images has a label file (for {paths[0]} it would be "
                    f"{_label_path(paths[0])}); every image counts as having no objects.", source, None, stacklevel=2)

    rows = np.concatenate(values) if values else np.zeros((0, 5))
    box_image = np.repeat(np.arange(len(paths)), np.clip(counts, 0, None))
    where = _Locator(paths, box_image, np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64), source)
    good = _check_rows(rows, len(class_names), where, log)
    _warn_outside_unit_range(rows[good], _Locator(paths, box_image[good], where.lines[good]), source, log)
    rows, box_image = rows[good], box_image[good]
    sizes = image_sizes([Path(p) for p in paths], source, log)  # (width, height); -1 where unreadable
    readable = (sizes > 0).all(axis=1)
    if not readable.all():  # a collecting log: leave the images out of the view, and their boxes
        new_index = np.cumsum(readable) - 1
        keep = readable[box_image]
        rows, box_image = rows[keep], new_index[box_image[keep]]
        paths = [p for p, ok in zip(paths, readable.tolist()) if ok]
        sizes = sizes[readable]
        if not paths:
            log.stop(file=source)  # the errors are recorded
    image_root = os.path.commonpath([os.path.dirname(p) for p in paths])
    prefix = len(os.path.join(image_root, ""))
    file_names = [p[prefix:].replace(os.sep, "/") for p in paths]
    wh = sizes[box_image].astype(np.float64)
    centre, extent = rows[:, 1:3] * wh, rows[:, 3:5] * wh
    boxes = np.round(np.concatenate([centre - extent / 2, centre + extent / 2], axis=1), _PIXEL_DECIMALS) + 0.0
    data = build_coco(file_names, sizes, box_image, boxes, rows[:, 0].astype(np.int64),
                      np.zeros(len(rows), dtype=bool), class_names, source)
    return data, Path(image_root)


class _Locator:
    """``file, line`` of row ``i`` of the concatenated label rows, for messages."""

    def __init__(self, images: list[str], box_image: np.ndarray, lines: np.ndarray, source: str = "") -> None:
        self.images, self.box_image, self.lines, self.source = images, box_image, lines, source

    def file_line(self, row: int) -> tuple[str, str]:
        return _label_path(self.images[self.box_image[row]]), f"line {self.lines[row]}"

    def __call__(self, row: int) -> str:
        return ", ".join(self.file_line(row))


def _parse_label_text(text: str, path: str, log: ProblemLog) -> tuple[np.ndarray, np.ndarray]:
    """``float64 [K, 5]`` rows ``class cx cy w h`` of one label file and their line numbers (bad lines are
    reported and left out)."""
    rows: list[list[Any]] = [line.split() for line in text.splitlines()]
    if all(len(parts) == 5 for parts in rows):  # the usual file: boxes only, no blank lines
        linenos = list(range(1, len(rows) + 1))
    else:
        rows, linenos = _irregular_rows(rows, path, log)
    try:
        values = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    except ValueError:
        kept = [(parts, lineno) for parts, lineno in zip(rows, linenos)
                if all([_number(value, path, lineno, log) is not None for value in parts])]
        values = np.asarray([parts for parts, _ in kept], dtype=np.float64).reshape(-1, 5)
        linenos = [lineno for _, lineno in kept]
    return values, np.asarray(linenos, dtype=np.int64)


def _irregular_rows(split_lines: list[list[str]], path: str, log: ProblemLog) -> tuple[list[list[Any]], list[int]]:
    """Rows of a file with blank lines or polygons (read as their bounding box); a bad field count is reported."""
    rows: list[list[Any]] = []
    linenos: list[int] = []
    for lineno, parts in enumerate(split_lines, 1):
        if len(parts) == 5:
            rows.append(parts)
        elif not parts:
            continue
        elif len(parts) >= 7 and len(parts) % 2 == 1:
            box = _polygon_box(parts[1:], path, lineno, log)
            if box is None:
                continue
            rows.append([parts[0], *box])
        else:
            log.error(f"{path}, line {lineno}: expected 5 values '{_BOX_FIELDS}' (or a polygon "
                      f"'class x1 y1 x2 y2 x3 y3 ...'), found {len(parts)}: {' '.join(parts)!r:.100}. "
                      "Fix the line.", path, f"line {lineno}", "field count")
            continue
        linenos.append(lineno)
    return rows, linenos


def _check_rows(rows: np.ndarray, num_classes: int, where: _Locator, log: ProblemLog) -> np.ndarray:
    """Finite values and class ids in ``0..num_classes - 1``: reports every bad line (the default log raises
    on the first); returns the mask of good rows."""
    not_finite = ~np.isfinite(rows).all(axis=1)
    for at in np.flatnonzero(not_finite)[:log.limit].tolist():
        log.error(f"{where(at)}: values must be finite numbers, got "
                  f"{' '.join(f'{v:g}' for v in rows[at])}. Fix the line.", *where.file_line(at), "not finite")
    classes = rows[:, 0]
    bad = ((classes != np.floor(classes)) | (classes < 0) | (classes >= num_classes)) & ~not_finite
    for at in np.flatnonzero(bad)[:log.limit].tolist():
        problem = "is not an integer" if classes[at] != np.floor(classes[at]) else "is out of range"
        log.error(f"{where(at)}: class id {classes[at]:g} {problem}; 'names' has {num_classes} classes, "
                  f"so ids are 0..{num_classes - 1}. Fix the line or add the class to 'names'.", *where.file_line(at),
                  "class id")
    _count_unlisted(log, int(not_finite.sum()), "not finite", where.source)
    _count_unlisted(log, int(bad.sum()), "class id", where.source)
    return ~(not_finite | bad)


def _count_unlisted(log: ProblemLog, count: int, kind: str, source: str) -> None:
    """Problems of ``kind`` beyond the listed ones, counted without making a message for each."""
    if count > log.limit:
        log.error(f"{source}: {count - log.limit} more label lines with this problem ({kind}) are not listed; the "
                  f"first {log.limit} are above.", source, None, None)


def _number(value: Any, path: str, lineno: int, log: ProblemLog) -> float | None:
    try:
        return float(value)
    except ValueError:
        log.error(f"{path}, line {lineno}: {value!r:.40} is not a number; each line is "
                  f"'{_BOX_FIELDS}'. Fix the line.", path, f"line {lineno}", "not a number")
        return None


def _polygon_box(coords: list[str], path: str, lineno: int, log: ProblemLog) -> list[float] | None:
    """``cx, cy, w, h`` of the bounding box of a polygon ``x1 y1 x2 y2 ...`` (``None``: a value is not a number)."""
    values = [_number(v, path, lineno, log) for v in coords]
    if None in values:
        return None
    xy = np.asarray(values).reshape(-1, 2)
    low, high = xy.min(axis=0), xy.max(axis=0)
    return [*((low + high) / 2).tolist(), *(high - low).tolist()]


def _warn_outside_unit_range(rows: np.ndarray, where: _Locator, source: str, log: ProblemLog) -> None:
    outside = ((rows[:, 1:] < 0) | (rows[:, 1:] > 1)).any(axis=1)
    if outside.any():
        log.warning(f"{source}: {int(outside.sum())} label line(s) have coordinates outside 0..1, the first in "
                    f"{where(int(np.argmax(outside)))}. YOLO coordinates are fractions of the image width and "
                    "height; the boxes are clipped to their image and dropped when nothing is left.", source, None,
                    stacklevel=3)


# ------------------------------------------------------------------------------------------ writing


def write_yolo_split(split: str, boxes: SplitBoxes, image_dir: Path, dst: Path, link: bool) -> dict[str, int]:
    """Write ``dst/images/<split>/`` and ``dst/labels/<split>/`` for one split.

    Image paths are flattened to one folder level (``a/b.jpg`` -> ``a_b.jpg``, so no name can
    contain an ``images`` folder that would misplace its label) and made unique. Crowd
    boxes are left out: YOLO has no ignore regions. Every image gets a label file (empty for
    images without boxes). Returns counts for the conversion summary.
    """
    names = unique_names([img["file_name"].replace("\\", "/").replace("/", "_") for img in boxes.images])
    linked = 0
    for index, (img, name) in enumerate(zip(boxes.images, names)):
        linked += place_file(image_dir / img["file_name"], dst / "images" / split / name, link)
        xyxy, labels, crowd = boxes.of_image(index)
        xyxy, labels = xyxy[~crowd], labels[~crowd]
        size = np.asarray([img["width"], img["height"]] * 2, dtype=np.float64)
        norm = xyxy / size
        rows = np.concatenate([(norm[:, :2] + norm[:, 2:]) / 2, norm[:, 2:] - norm[:, :2]], axis=1)
        text = "".join(f"{label} " + " ".join(_NUMBER_FORMAT.format(v) for v in row) + "\n"
                       for label, row in zip(labels.tolist(), rows.tolist()))
        label = dst / "labels" / split / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(text, encoding="utf-8")
    return {"images": len(names), "boxes": int((~boxes.crowd).sum()), "crowd_left_out": int(boxes.crowd.sum()),
            "linked": linked, "copied": len(names) - linked}


def write_yolo_yaml(dst: Path, splits: Sequence[str], class_names: Sequence[str]) -> Path:
    """Write ``dst/data.yaml`` (no ``path``: ultralytics and anchorfree then use the YAML's folder)."""
    spec = {split: f"images/{split}" for split in splits}
    spec["names"] = dict(enumerate(class_names))
    path = dst / "data.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
