"""Pascal VOC XML datasets: reading image sets as COCO dicts, and writing them.

Layout of a VOC root (several roots, e.g. ``VOCdevkit/VOC2007`` and ``VOC2012``, can be combined)::

    Annotations/000001.xml         # one XML per image
    JPEGImages/000001.jpg
    ImageSets/Main/train.txt       # image ids, one per line (also val.txt, trainval.txt, test.txt)

Splits of a folder (:func:`default_image_sets`): when a root has ``test.txt`` (VOC2007 with its
test set), ``train`` is ``trainval`` of every root and ``val`` is ``test`` -- the usual "07+12"
protocol; otherwise ``train`` is ``train.txt`` and ``val`` is ``val.txt`` of every root.

Coordinates: VOC boxes are 1-based pixel indices, inclusive at both ends (``xmin=1, xmax=W`` is
the full width; the VOC devkit measures widths as ``xmax - xmin + 1``). The COCO view uses
continuous pixel coordinates with the image spanning ``0..W``, so a box becomes
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``, the rule detectron2 uses. mmdetection
subtracts 1 from all four values (boxes 1 px narrower and lower); torchvision's ``VOCDetection``
returns the raw strings. Values are read as floats (no rounding) and written back exactly (at most
6 decimals, integers without any), so a COCO -> VOC -> COCO round trip keeps boxes to 1e-6 px.

Objects with ``<difficult>1</difficult>`` become ``iscrowd=1``: neither trained on nor counted
as missed by COCO evaluation, and a detection on them is not a false positive, as in VOC's own
evaluation. Images are numbered ``1..N`` in image-set order; class ``k`` is category id ``k + 1``.

Problems go to a :class:`~anchorfree.data.report.ProblemLog`: by default the first one raises; a
collecting log (``anchorfree data check``) gets every one, and the bad lines, XML files and objects
are left out of the COCO view.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import yaml

from anchorfree.data.formats import IMAGE_SUFFIXES, SplitBoxes, build_coco, image_sizes, place_file, unique_names
from anchorfree.data.report import ProblemLog

__all__ = ["VOC_CLASSES", "VocReader", "default_image_sets", "find_voc_roots", "is_voc_root", "voc_image_ids",
           "write_voc_split", "write_voc_yaml"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
"""The 20 Pascal VOC classes in their usual order (used when a dataset has exactly these names)."""

_COORDS = ("xmin", "ymin", "xmax", "ymax")


def is_voc_root(folder: Path) -> bool:
    """Whether ``folder`` has ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``."""
    return all((folder / sub).is_dir() for sub in ("Annotations", "JPEGImages", "ImageSets/Main"))


def find_voc_roots(folder: Path) -> list[Path]:
    """VOC roots at ``folder``, or among its sub-folders, or theirs (``VOCdevkit/VOC2007``), sorted."""
    folder = Path(folder)
    if is_voc_root(folder):
        return [folder]
    for depth in (1, 2):
        pattern = "/".join(["*"] * depth)
        roots = sorted(p for p in folder.glob(pattern) if p.is_dir() and is_voc_root(p))
        if roots:
            return roots
    return []


def default_image_sets(roots: Sequence[Path], source: str,
                       problems: ProblemLog | None = None) -> dict[str, list[Path]]:
    """The ``train`` and ``val`` image-set lists of VOC roots (see the module docstring)."""
    log = problems if problems is not None else ProblemLog()
    def lists(root: Path, *names: str) -> list[Path]:
        return [root / "ImageSets" / "Main" / f"{name}.txt" for name in names
                if (root / "ImageSets" / "Main" / f"{name}.txt").is_file()]

    with_test = [root for root in roots if lists(root, "test")]
    if with_test:
        train = [p for root in roots for p in (lists(root, "trainval") or lists(root, "train", "val"))]
        val = [p for root in with_test for p in lists(root, "test")]
    else:
        train = [p for root in roots for p in lists(root, "train")]
        val = [p for root in roots for p in lists(root, "val")]
    if not val:
        log.stop(f"{source}: no ImageSets/Main/val.txt or test.txt in {', '.join(map(str, roots))}; "
                 "add one (image ids, one per line) or name the lists in a data.yaml "
                 "(format: voc, train: ..., val: ...).", source)
    return {"train": train, "val": val} if train else {"val": val}


@dataclass
class _VocImage:
    image: Path | None  # None when the image file is missing (its objects still name classes)
    xml: Path
    width: int  # 0 when the XML has no usable <size>
    height: int
    names: list[str] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)  # VOC xmin, ymin, xmax, ymax
    numbers: list[int] = field(default_factory=list)  # 1-based position of each object in the XML


class VocReader:
    """Reads the XML files of VOC image sets, each once, and turns splits into COCO dicts.

    Args:
        image_sets: split name -> image-set list files (``ROOT/ImageSets/Main/NAME.txt``).
        class_names: the classes in label order; ``None``: the 20 VOC classes when exactly
            those occur in all splits, otherwise the names found, sorted.
        source: how messages name the dataset (its YAML or folder).
        problems: where problems go (default: raise on the first).
    """

    def __init__(self, image_sets: dict[str, list[Path]], class_names: Sequence[str] | None, source: str,
                 problems: ProblemLog | None = None) -> None:
        self.image_sets = {split: [Path(p) for p in lists] for split, lists in image_sets.items()}
        self.source = source
        self.log = problems if problems is not None else ProblemLog()
        self._names = list(class_names) if class_names is not None else None
        self._parsed: dict[Path, list[_VocImage]] = {}

    @property
    def class_names(self) -> list[str]:
        if self._names is None:
            found = {name for lists in self.image_sets.values() for path in lists for img in self._parse_list(path)
                     for name in img.names}
            if not found:
                self.log.stop(f"{self.source}: no <object> in any annotation file, so there are no class "
                              "names; add 'names: [...]' to a data.yaml (format: voc).", self.source)
            self._names = list(VOC_CLASSES) if found == set(VOC_CLASSES) else sorted(found)
        return self._names

    def read(self, split: str) -> tuple[dict[str, Any], Path]:
        """``(COCO dict, image folder)`` of ``split``; ``file_name`` entries are relative to the folder."""
        names = self.class_names
        label_of = {name: label for label, name in enumerate(names)}
        log = self.log
        listed = [img for path in self.image_sets[split] for img in self._parse_list(path)]
        entries = [img for img in listed if img.image is not None]  # each missing image is already an error
        if not entries:
            if listed:
                log.stop(file=self.source)  # no image of the split exists: the errors are recorded
            log.stop(f"{self.source}: split '{split}' has no images.", self.source)
        sizes = np.asarray([(e.width, e.height) for e in entries], dtype=np.int64)
        unknown = np.flatnonzero((sizes <= 0).any(axis=1))
        if len(unknown):  # no <size> in the XML: read the image headers
            sizes[unknown] = image_sizes([entries[i].image for i in unknown], f"{self.source} ({split})", log)
            readable = (sizes > 0).all(axis=1)
            entries = [e for e, ok in zip(entries, readable.tolist()) if ok]  # collecting logs only
            sizes = sizes[readable]
            if not entries:
                log.stop(file=self.source)  # the errors are recorded
        box_image, labels, boxes, crowd = [], [], [], []
        for index, entry in enumerate(entries):
            for k, name in enumerate(entry.names):
                label = label_of.get(name)
                if label is None:
                    log.error(f"{entry.xml}: object[{entry.numbers[k]}]/name is {name!r}, which is not one of the "
                              f"{len(names)} class names {names}. Fix the name or add it to 'names'.", entry.xml,
                              f"object[{entry.numbers[k]}]", "class name")
                    continue
                labels.append(label)
                box_image.append(index)
                boxes.append(entry.boxes[k])
                crowd.append(entry.difficult[k])
        voc = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([voc[:, :2] - 1.0, voc[:, 2:]], axis=1)  # 1-based inclusive -> continuous
        image_root = Path(os.path.commonpath([str(e.image.parent) for e in entries]))
        file_names = [e.image.relative_to(image_root).as_posix() for e in entries]
        lists = ", ".join(str(p) for p in self.image_sets[split])
        data = build_coco(file_names, sizes, np.asarray(box_image, dtype=np.int64), xyxy,
                          np.asarray(labels, dtype=np.int64), np.asarray(crowd, dtype=bool), names,
                          f"{self.source} ({split}: {lists})")
        return data, image_root

    # ------------------------------------------------------------------ parsing

    def _parse_list(self, path: Path) -> list[_VocImage]:
        if path not in self._parsed:
            self._parsed[path] = self._read_list(path)
        return self._parsed[path]

    def _read_list(self, path: Path) -> list[_VocImage]:
        log = self.log
        if not (path.parent.name == "Main" and path.parent.parent.name == "ImageSets"):
            log.error(f"{self.source}: image set {path} must be ROOT/ImageSets/Main/NAME.txt, next to "
                      "ROOT/Annotations and ROOT/JPEGImages.", path)
            return []
        root = path.parents[2]
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            log.error(f"{self.source}: image set {path} does not exist. Check the path (relative to the "
                      "dataset root).", path)
            return []
        except (OSError, UnicodeDecodeError) as e:
            log.error(f"Cannot read image set {path}: {e}.", path)
            return []
        out = []
        for lineno, line in enumerate(lines, 1):
            parts = line.split()
            if not parts:
                continue
            image_id = parts[0]  # class lists (Main/cat_train.txt) add a -1/0/1 column
            xml = root / "Annotations" / f"{image_id}.xml"
            if not os.path.isfile(xml):
                log.error(f"{path}, line {lineno}: image id {image_id!r} has no annotation file {xml}. "
                          "Add it or remove the line.", path, f"line {lineno}", "missing annotation file")
                continue
            entry = _parse_xml(xml, log)
            image = _find_image(root / "JPEGImages", image_id, entry.image if entry else Path(""), path, lineno, log)
            if entry is None:
                continue
            entry.image = image  # None: left out of the split, but the XML was read (class names, statistics)
            out.append(entry)
        return out


def _find_image(folder: Path, image_id: str, filename: Path, listed_in: Path, lineno: int,
                log: ProblemLog) -> Path | None:
    """``JPEGImages/<id>.jpg``, else the XML's ``<filename>``, else ``<id>`` with another image suffix;
    ``None`` (and one error naming the file) when there is none."""
    names = [f"{image_id}.jpg", filename.name, *(image_id + s for s in IMAGE_SUFFIXES + tuple(map(str.upper,
                                                                                                IMAGE_SUFFIXES)))]
    for name in names:
        if name and os.path.isfile(os.path.join(folder, name)):
            return folder / name
    tried = list(dict.fromkeys(n for n in names[:2] if n))
    log.error(f"{listed_in}, line {lineno}: image id {image_id!r} is listed but {folder} has no image "
              f"for it ({' or '.join(tried)}). Add the image or remove the line.", listed_in, f"line {lineno}",
              "missing image")
    return None


def _parse_xml(xml: Path, log: ProblemLog) -> _VocImage | None:
    """The image entry of one XML file (``None`` when it cannot be read; objects with a problem are left out)."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        log.error(f"{xml} is not valid XML ({e}). Fix or regenerate the file.", xml, None, "invalid XML")
        return None
    except OSError as e:
        log.error(f"Cannot read annotation file {xml}: {e}.", xml)
        return None
    if root.tag != "annotation":
        log.error(f"{xml}: the root element is <{root.tag}>, expected <annotation> (Pascal VOC XML).", xml)
        return None
    width = _size(root, "width", xml, log)
    height = _size(root, "height", xml, log)
    entry = _VocImage(Path((root.findtext("filename") or "").strip()), xml, width, height)
    for k, obj in enumerate(root.iter("object"), 1):
        where = f"object[{k}]"
        name = (obj.findtext("name") or "").strip()
        if not name:
            log.error(f"{xml}: object[{k}] has no <name>; every object needs its class name.", xml, where, "object")
            continue
        difficult_text = (obj.findtext("difficult") or "0").strip()
        if difficult_text not in ("0", "1"):
            log.error(f"{xml}: object[{k}]/difficult is {difficult_text!r}; expected 0 or 1.", xml, where, "object")
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            log.error(f"{xml}: object[{k}] ({name}) has no <bndbox>; add xmin, ymin, xmax, ymax.", xml, where,
                      "object")
            continue
        box = []
        for tag in _COORDS:
            text = bndbox.findtext(tag)
            try:
                box.append(float(text))
            except (TypeError, ValueError):
                problem = "is missing" if text is None else f"is {text.strip()!r}, not a number"
                log.error(f"{xml}: object[{k}]/bndbox/{tag} {problem}; VOC boxes are 1-based pixel "
                          "coordinates xmin, ymin, xmax, ymax.", xml, where, "object")
                break
        if len(box) < 4:
            continue
        if not all(map(math.isfinite, box)):
            log.error(f"{xml}: object[{k}]/bndbox has {box}; coordinates must be finite numbers.", xml, where,
                      "object")
            continue
        entry.names.append(name)
        entry.difficult.append(difficult_text == "1")
        entry.boxes.append(box)
        entry.numbers.append(k)
    return entry


def _size(root: ET.Element, tag: str, xml: Path, log: ProblemLog) -> int:
    """``<size><tag>`` as a positive integer, or 0 when absent or malformed (the image header is read instead)."""
    text = root.findtext(f"size/{tag}")
    if text is None or not text.strip():
        return 0
    try:
        value = float(text)
    except ValueError:
        log.error(f"{xml}: size/{tag} is {text.strip()!r}; expected the image {tag} in pixels.", xml, f"size/{tag}")
        return 0
    if not (value.is_integer() and value >= 0):
        log.error(f"{xml}: size/{tag} is {text.strip()!r}; expected a whole number of pixels.", xml, f"size/{tag}")
        return 0
    return int(value)


# ------------------------------------------------------------------------------------------ writing


def voc_image_ids(file_names: dict[str, list[str]]) -> dict[str, list[str]]:
    """VOC image ids (``Annotations/<id>.xml``) for the images of each split: the file name
    without suffix, sub-folders joined with ``_``; prefixed with the split name (``train_000001``)
    when splits share names, and made unique."""
    flat = {split: [os.path.splitext(n.replace("\\", "/").replace("/", "_"))[0] for n in names]
            for split, names in file_names.items()}
    everything = [i for ids in flat.values() for i in ids]
    if len({i.lower() for i in everything}) != len(everything):
        flat = {split: [f"{split}_{i}" for i in ids] for split, ids in flat.items()}
    unique = unique_names([i for ids in flat.values() for i in ids], has_suffix=False)
    out, start = {}, 0
    for split, ids in flat.items():
        out[split] = unique[start:start + len(ids)]
        start += len(ids)
    return out


def _coord(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _xml(file_name: str, width: int, height: int, objects: list[tuple[str, bool, list[float]]]) -> str:
    parts = ["<annotation>", "  <folder>JPEGImages</folder>", f"  <filename>{escape(file_name)}</filename>",
             f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>",
             "  <segmented>0</segmented>"]
    for name, difficult, box in objects:
        coords = "\n".join(f"      <{tag}>{_coord(v)}</{tag}>" for tag, v in zip(_COORDS, box))
        parts.append(f"  <object>\n    <name>{escape(name)}</name>\n    <pose>Unspecified</pose>\n"
                     f"    <truncated>0</truncated>\n    <difficult>{int(difficult)}</difficult>\n"
                     f"    <bndbox>\n{coords}\n    </bndbox>\n  </object>")
    parts.append("</annotation>\n")
    return "\n".join(parts)


def write_voc_split(split: str, boxes: SplitBoxes, image_dir: Path, dst: Path, ids: list[str],
                    class_names: Sequence[str], link: bool) -> dict[str, int]:
    """Write the images, XML files and ``ImageSets/Main/<split>.txt`` of one split under ``dst``.

    Crowd boxes are written as ``difficult`` objects (both are regions to ignore).
    Returns counts for the conversion summary.
    """
    linked = 0
    for index, (img, image_id) in enumerate(zip(boxes.images, ids)):
        name = image_id + Path(img["file_name"]).suffix
        linked += place_file(image_dir / img["file_name"], dst / "JPEGImages" / name, link)
        xyxy, labels, crowd = boxes.of_image(index)
        voc = np.concatenate([xyxy[:, :2] + 1.0, xyxy[:, 2:]], axis=1)  # continuous -> 1-based inclusive
        objects = [(class_names[label], difficult, box)
                   for label, difficult, box in zip(labels.tolist(), crowd.tolist(), voc.tolist())]
        (dst / "Annotations").mkdir(parents=True, exist_ok=True)
        (dst / "Annotations" / f"{image_id}.xml").write_text(_xml(name, img["width"], img["height"], objects),
                                                             encoding="utf-8")
    image_sets = dst / "ImageSets" / "Main"
    image_sets.mkdir(parents=True, exist_ok=True)
    (image_sets / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return {"images": len(ids), "boxes": len(boxes.labels), "difficult": int(boxes.crowd.sum()), "linked": linked,
            "copied": len(ids) - linked}


def write_voc_yaml(dst: Path, splits: Sequence[str], class_names: Sequence[str]) -> Path:
    """Write ``dst/data.yaml`` (``format: voc``, the image sets, and ``names`` to keep the class
    order and classes without objects) and, with train and val, ``ImageSets/Main/trainval.txt``."""
    image_sets = dst / "ImageSets" / "Main"
    if "train" in splits and "val" in splits:
        (image_sets / "trainval.txt").write_text(
            (image_sets / "train.txt").read_text(encoding="utf-8") + (image_sets / "val.txt").read_text(
                encoding="utf-8"), encoding="utf-8")
    spec: dict[str, Any] = {"format": "voc"}
    spec.update({split: f"ImageSets/Main/{split}.txt" for split in splits})
    spec["names"] = list(class_names)
    path = dst / "data.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
