"""Reading COCO annotation JSON: the file, its top-level structure, its categories, and the column parsers of its
image and annotation entries (vectorised; entry-by-entry checks that name each bad entry)."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from anchorfree.data.report import ProblemLog

MINIMAL_EXAMPLE = (
    '{"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],\n'
    ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0}],\n'
    ' "categories": [{"id": 1, "name": "cat"}]}'
)
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
MAX_SIDE = 2 ** 31 - 1  # pixels; a larger width or height is not an image size
NAME_ERRORS = "surrogatepass"  # JSON strings may hold lone surrogates: keep them through the byte array
IMAGE_FIELDS = ("id", "file_name", "width", "height")
ANNOTATION_FIELDS = ("image_id", "bbox", "category_id")



def read_coco_json(path: str | Path, problems: ProblemLog | None = None) -> dict[str, Any]:
    """Parse a COCO annotation file and check its three top-level lists exist.

    ``problems`` receives what is wrong (default: raise on the first problem); a file that cannot
    be read at all raises in any case.
    """
    log = problems if problems is not None else ProblemLog()
    path = Path(path)
    if not path.is_file():
        log.stop(f"Annotation file {path} does not exist. Check the path in your dataset spec.", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        log.stop(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. "
                 "Fix the file (for example with a JSON linter).", path, f"line {e.lineno}")
    except (OSError, UnicodeDecodeError) as e:
        log.stop(f"Cannot read annotation file {path}: {e}.", path)
    return check_coco_dict(data, path, log)


def check_coco_dict(data: Any, source: str | Path, problems: ProblemLog | None = None) -> dict[str, Any]:
    """Check that ``data`` is a mapping with the three COCO lists; return it unchanged."""
    log = problems if problems is not None else ProblemLog()
    if not isinstance(data, dict):
        log.stop(f"{source} must contain a JSON object with 'images', 'annotations' and "
                 f"'categories' lists, for example:\n{MINIMAL_EXAMPLE}", source)
    bad = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    for key in bad:
        problem = "is missing" if key not in data else "is not a list"
        log.error(f"{source}: top-level key '{key}' {problem}. A COCO file needs 'images', "
                  f"'annotations' and 'categories' lists, for example:\n{MINIMAL_EXAMPLE}", source, key)
    if bad:
        log.stop(file=source)  # the errors are recorded: the entries cannot be read without the lists
    return data


def coco_source(ann: str | Path | dict[str, Any]) -> str:
    """How messages name a COCO ground truth: the JSON path, or a dict's ``info["source"]``."""
    if not isinstance(ann, dict):
        return str(ann)
    info = ann.get("info")
    source = info.get("source") if isinstance(info, dict) else None
    return str(source) if source else "the in-memory COCO annotations"


def read_categories(data: dict[str, Any], path: str | Path,
                    problems: ProblemLog | None = None) -> tuple[list[int], list[str]]:
    """Category ids sorted ascending and their names (label ``i`` is ``cat_ids[i]``).

    With a collecting ``problems`` log, bad entries are recorded and left out.
    """
    log = problems if problems is not None else ProblemLog()
    names: dict[int, str] = {}
    categories = data["categories"]
    for index, cat in enumerate(categories):
        where = f"categories[{index}]"
        if not has_fields(cat, ("id", "name"), where, path, log):
            continue
        if not is_int(cat["id"]):
            log.error(f"{path}: {where} has id {cat['id']!r}; category ids must be integers.", path, where,
                      "category id")
        elif cat["id"] in names:
            log.error(f"{path}: category id {cat['id']} is declared twice in 'categories'; remove the duplicate.",
                      path, where, "duplicate category id")
        else:
            names[cat["id"]] = str(cat["name"])
    if not categories:
        log.error(f"{path}: 'categories' is empty; declare at least one category, "
                  'e.g. {"id": 1, "name": "cat"}.', path, "categories")
    cat_ids = sorted(names)
    return cat_ids, [names[c] for c in cat_ids]


# ---------------------------------------------------------------------------------------- images


def image_columns(images: list[Any]) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """``(ids int64 [N], file names, sizes int64 [N, 2] (h, w))`` of well-formed image entries, or
    ``None`` when any entry needs the entry-by-entry checks."""
    if not types_within(images, (dict,)):
        return None
    try:
        ids, names, widths, heights = (list(map(itemgetter(key), images)) for key in IMAGE_FIELDS)
    except KeyError:
        return None
    if not (types_within(ids, (int,)) and types_within(widths, (int, float))
            and types_within(heights, (int, float))):
        return None
    try:
        ids = np.asarray(ids, dtype=np.int64)
    except OverflowError:
        return None
    sides = np.asarray([heights, widths], dtype=np.float64).T.reshape(-1, 2)
    if not ((sides >= 1) & (sides <= MAX_SIDE) & (sides == np.floor(sides))).all():  # NaN fails every test
        return None
    if not types_within(names, (str,)):
        names = list(map(str, names))
    return ids, names, sides.astype(np.int64)


def checked_image_columns(images: list[Any], path: str,
                           log: ProblemLog) -> tuple[tuple[np.ndarray, list[str], np.ndarray], set[Any]]:
    """The entry-by-entry checks of every image entry; bad entries are reported and left out (their ids,
    where usable, are returned so that their annotations are not reported again)."""
    ids, names, sizes, skipped = [], [], [], set()
    for index, img in enumerate(images):
        where = f"images[{index}]"
        if not has_fields(img, IMAGE_FIELDS, where, path, log):
            if isinstance(img, dict) and hashable(img.get("id")):
                skipped.add(img.get("id"))
            continue
        ok = True
        if not (is_int(img["id"]) and INT64_MIN <= img["id"] <= INT64_MAX):
            log.error(f"{path}: {where} has id {img['id']!r}; image ids must be integers.", path, where, "image id")
            ok = False
        if not all(is_number(img[k]) and 1 <= img[k] <= MAX_SIDE and float(img[k]).is_integer()
                   for k in ("width", "height")):
            log.error(f"{path}: {where} (id {img['id']}) has width={img['width']!r}, "
                      f"height={img['height']!r}; both must be positive integers (pixels).", path, where, "image size")
            ok = False
        if not ok:
            if hashable(img["id"]):
                skipped.add(img["id"])
            continue
        ids.append(img["id"])
        names.append(str(img["file_name"]))
        sizes.append((int(img["height"]), int(img["width"])))
    return (np.asarray(ids, dtype=np.int64), names, np.asarray(sizes, dtype=np.int64).reshape(-1, 2)), skipped


def pack_names(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """File names as one ``uint8`` array of UTF-8 bytes and ``int64 [N + 1]`` offsets into it."""
    encoded = [name.encode("utf-8", NAME_ERRORS) for name in names]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


# ---------------------------------------------------------------------------------------- checks


def types_within(values: Any, types: tuple[type, ...]) -> bool:
    """Whether every value's exact type is one of ``types`` (``bool`` is not ``int`` here)."""
    return set(map(type, values)) <= set(types)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def contains(values: set[Any], key: Any) -> bool:
    return hashable(key) and key in values


def lookup(mapping: dict[int, int], key: Any) -> int | None:
    """``mapping.get(key)`` that treats unhashable JSON values (lists, objects) as unknown keys."""
    try:
        return mapping.get(key)
    except TypeError:
        return None


def has_fields(entry: Any, fields: Sequence[str], where: str, path: str | Path, log: ProblemLog) -> bool:
    """Whether ``entry`` is a dict with ``fields``; reports it otherwise."""
    if not isinstance(entry, dict):
        log.error(f"{path}: {where} must be a JSON object, got {entry!r:.80}.", path, where, "not an object")
        return False
    missing = [f for f in fields if f not in entry]
    if missing:
        try:
            shown = json.dumps(entry)[:120]
        except (TypeError, ValueError):
            shown = repr(entry)[:120]
        log.error(f"{path}: {where} is missing field(s) {', '.join(map(repr, missing))} "
                  f"(entry: {shown}). Every entry needs {', '.join(fields)}.", path, where, "missing fields")
        return False
    return True
