"""Dataset spec: where the annotations and images of each split live, in COCO, YOLO or VOC format.

**COCO**: a YAML file (paths relative to the YAML's folder)::

    train:
      annotations: train/annotations.json
      images: train/images
    val:
      annotations: val/annotations.json
      images: val/images
    names: [circle, square]   # optional; default: the val JSON categories sorted by id

or a folder that contains such a ``data.yaml``, or a folder with the conventional layout
``train/annotations.json``, ``train/images/``, ``val/annotations.json``, ``val/images/``
(as written by :func:`anchorfree.data.generate_synthetic_dataset`).

**YOLO** (ultralytics layout, see :mod:`anchorfree.data.yolo`): a ``data.yaml`` whose ``train``
and ``val`` are strings (folders of images or .txt lists) or lists of them, with ``names``::

    path: .                   # optional dataset root, relative to the YAML's folder
    train: images/train
    val: images/val
    names: {0: cat, 1: dog}   # or [cat, dog]

**Pascal VOC** (see :mod:`anchorfree.data.voc`): a folder with ``Annotations/``, ``JPEGImages/``
and ``ImageSets/Main/`` (or sub-folders such as ``VOC2007/``, ``VOCdevkit/VOC2012/`` with them),
or a YAML with ``format: voc`` whose ``train``/``val`` name image-set lists
(``VOC2007/ImageSets/Main/test.txt``, or a list of them) and optional ``names``.

Detection: ``format: coco|yolo|voc`` in a YAML decides; otherwise ``val`` as a mapping means
COCO, ``val`` naming ``ImageSets/Main/*.txt`` lists means VOC, and ``val`` as a path with
``names`` means YOLO. A folder is read through its ``data.yaml`` if it has one, else as the COCO
layout, else as VOC. ``train`` is optional (evaluation-only datasets); ``val`` is required.

YOLO and VOC splits are read into in-memory COCO dicts (:mod:`anchorfree.data.formats`) the
first time :attr:`DataSpec.train_ann` / :attr:`DataSpec.val_ann` is used, so evaluating on
``val`` never reads the training labels.

Keys: a YAML key that the format does not use (see :data:`KNOWN_KEYS`) is reported with a warning
that suggests the closest known key (``nmaes`` -> ``names``) and is otherwise ignored; a missing
required key that such a misspelling stands for is named in the error too.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from anchorfree.data.coco import read_categories, read_coco_json
from anchorfree.data.report import ProblemLog
from anchorfree.data.voc import VocReader, default_image_sets, find_voc_roots
from anchorfree.data.yolo import list_split_images, parse_names, read_yolo_split
from anchorfree.errors import DatasetError

__all__ = ["DATA_FORMATS", "KNOWN_KEYS", "SPEC_FILE_NAME", "DataSpec", "load_data_spec"]

SPEC_FILE_NAME = "data.yaml"
DATA_FORMATS = ("coco", "yolo", "voc")
SPLITS = ("train", "val")
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "coco": ("format", "train", "val", "test", "names", "nc"),
    "yolo": ("format", "path", "train", "val", "test", "names", "nc", "download"),
    "voc": ("format", "path", "train", "val", "test", "names", "nc"),
}
"""Top-level keys of a dataset YAML per format (``test``, ``nc`` and ``download`` are accepted as in
ultralytics files; ``test`` is not read)."""
_EXAMPLE = """train:
  annotations: train/annotations.json
  images: train/images
val:
  annotations: val/annotations.json
  images: val/images
names: [cat, dog]   # optional"""
_YOLO_EXAMPLE = """train: images/train
val: images/val
names: [cat, dog]"""

Annotations = Path | dict[str, Any]
SplitLoader = Callable[[], tuple[dict[str, Any], Path]]


class DataSpec:
    """The splits of a dataset: annotations (a COCO JSON path or an in-memory COCO dict) and image folders.

    Args:
        train_ann / val_ann: COCO JSON path or COCO dict of each split (``train_ann=None``: no train
            split).
        train_images / val_images: the folders that the ``file_name`` entries are relative to.
        class_names: class names in label order; ``None`` only for hand-built specs, meaning "use
            the annotations' categories sorted by id". :func:`load_data_spec` always fills it.
        root: the dataset's folder.
        format: ``"coco"``, ``"yolo"`` or ``"voc"``: the format on disk.
        source: the YAML file or folder the spec was read from (for messages).
    """

    def __init__(self, train_ann: Annotations | None, train_images: Path | None, val_ann: Annotations,
                 val_images: Path, class_names: list[str] | None, root: Path, format: str = "coco",
                 source: str | None = None) -> None:
        self._splits: dict[str, tuple[Annotations, Path]] = {"val": (val_ann, val_images)}
        if train_ann is not None:
            self._splits["train"] = (train_ann, train_images)
        self._loaders: dict[str, SplitLoader] = {}
        self._names: list[str] | Callable[[], list[str]] | None = class_names
        self.root = Path(root)
        self.format = format
        self.source = source or str(root)

    @classmethod
    def from_loaders(cls, loaders: dict[str, SplitLoader], class_names: list[str] | Callable[[], list[str]],
                     root: Path, format: str, source: str) -> DataSpec:
        """A spec whose splits are read on first use: ``loaders[split]()`` returns ``(COCO dict, image folder)``;
        ``class_names`` may be a function called on first use too."""
        spec = cls.__new__(cls)
        spec._splits, spec._loaders, spec._names = {}, dict(loaders), class_names
        spec.root, spec.format, spec.source = Path(root), format, source
        return spec

    @property
    def splits(self) -> list[str]:
        """The split names the dataset has, in order ``train``, ``val`` (nothing is read)."""
        return [s for s in SPLITS if s in self._splits or s in self._loaders]

    def split(self, name: str) -> tuple[Annotations | None, Path | None]:
        """``(annotations, image folder)`` of split ``name`` (``(None, None)`` if the dataset has no such split)."""
        if name not in self._splits and name in self._loaders:
            self._splits[name] = self._loaders[name]()  # a failed read raises again on the next use
            del self._loaders[name]
        return self._splits.get(name, (None, None))

    @property
    def train_ann(self) -> Annotations | None:
        return self.split("train")[0]

    @property
    def train_images(self) -> Path | None:
        return self.split("train")[1]

    @property
    def val_ann(self) -> Annotations:
        return self.split("val")[0]

    @property
    def val_images(self) -> Path:
        return self.split("val")[1]

    @property
    def class_names(self) -> list[str] | None:
        if callable(self._names):
            self._names = self._names()
        return self._names

    @class_names.setter
    def class_names(self, names: list[str] | None) -> None:
        self._names = names

    def __repr__(self) -> str:
        return f"DataSpec({self.source!r}, format={self.format!r}, splits={self.splits})"


def load_data_spec(path: str | Path, problems: ProblemLog | None = None) -> DataSpec:
    """Load a dataset spec from a YAML file or a dataset folder, in any of :data:`DATA_FORMATS`
    (see the module docstring for the layouts and how the format is detected).

    ``problems`` receives what is wrong with the spec and, later, with the YOLO/VOC files its splits
    are read from (default: raise :class:`~anchorfree.errors.DatasetError` on the first error, warn
    about the rest). With a collecting log, a spec that cannot be built still raises after its
    problems are recorded.
    """
    log = problems if problems is not None else ProblemLog()
    path = Path(path).expanduser()
    if not path.exists():
        log.stop(f"Dataset {path} does not exist. Pass a dataset folder or a dataset YAML file "
                 f"such as:\n{_EXAMPLE}", path)
    if path.is_file():
        raw = _read_yaml(path, log)
        return _from_yaml(raw, path.parent.resolve(), str(path), log)
    if (path / SPEC_FILE_NAME).is_file():
        return load_data_spec(path / SPEC_FILE_NAME, log)
    if (path / "val" / "annotations.json").is_file():
        splits = ("train", "val") if (path / "train" / "annotations.json").is_file() else ("val",)
        raw = {s: {"annotations": f"{s}/annotations.json", "images": f"{s}/images"} for s in splits}
        return _from_mapping(raw, path.resolve(), str(path), log)
    if find_voc_roots(path):
        return _voc_spec({}, path.resolve(), str(path), log)
    hint = ""
    if (path / "images").is_dir() and (path / "labels").is_dir():
        hint = (f"\nIt looks like a YOLO dataset (images/ and labels/): add a {SPEC_FILE_NAME} with the class "
                f"names, like:\n{_YOLO_EXAMPLE}")
    log.stop(f"Dataset folder {path} has neither a {SPEC_FILE_NAME} nor val/annotations.json nor a Pascal "
             f"VOC layout (Annotations/, JPEGImages/, ImageSets/Main/).{hint}\nAdd a {SPEC_FILE_NAME} "
             f"like:\n{_EXAMPLE}\nor use the layout train/annotations.json, train/images/, "
             "val/annotations.json, val/images/.", path)


def _from_yaml(raw: dict[str, Any], root: Path, source: str, log: ProblemLog) -> DataSpec:
    fmt = _yaml_format(raw, source, log)
    _check_keys(raw, fmt, source, log)
    if fmt == "yolo":
        return _yolo_spec(raw, root, source, log)
    if fmt == "voc":
        return _voc_spec(raw, root, source, log)
    return _from_mapping(raw, root, source, log)


def _check_keys(raw: dict[str, Any], fmt: str, source: str, log: ProblemLog) -> None:
    """Warn about keys ``fmt`` does not use, suggesting the closest known key."""
    known = KNOWN_KEYS[fmt]
    for key in raw:
        if key in known:
            continue
        match = _close_key(key, known)
        hint = f" (did you mean '{match}'?)" if match else ""
        log.warning(f"{source}: unknown key {str(key)!r}{hint} is ignored. The keys of a {fmt.upper()} dataset YAML "
                    f"are: {', '.join(known)}.", source, str(key), "unknown key", stacklevel=5)


def _close_key(key: Any, known: tuple[str, ...]) -> str | None:
    matches = difflib.get_close_matches(str(key).lower(), known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _misspelt(raw: dict[str, Any], key: str, fmt: str) -> str:
    """`` The YAML has 'vall': a misspelling of 'val'?`` when an unknown key is closest to ``key``."""
    for other in raw:
        if other not in KNOWN_KEYS[fmt] and _close_key(other, KNOWN_KEYS[fmt]) == key:
            return f" The YAML has {str(other)!r}: a misspelling of '{key}'?"
    return ""


def _yaml_format(raw: dict[str, Any], source: str, log: ProblemLog) -> str:
    fmt = raw.get("format")
    if fmt is not None:
        if fmt not in DATA_FORMATS:
            log.stop(f"{source}: 'format' is {fmt!r}; use one of {', '.join(DATA_FORMATS)} (or leave it "
                     "out to detect the format).", source, "format")
        return fmt
    val = raw.get("val")
    if isinstance(val, (str, list)):
        entries = val if isinstance(val, list) else [val]
        if entries and all(isinstance(e, str) and Path(e).suffix == ".txt" and Path(e).parent.parts[-2:] ==
                           ("ImageSets", "Main") for e in entries):
            return "voc"
        if "names" in raw or _misspelt(raw, "names", "yolo"):
            return "yolo"
        log.stop(f"{source}: 'val' must be a mapping with 'annotations' and 'images' (COCO), like:\n"
                 f"{_EXAMPLE}\nor, for a YOLO dataset (val: a folder of images or a .txt list), add the "
                 f"class 'names', like:\n{_YOLO_EXAMPLE}", source, "val")
    return "coco"


def _dataset_root(raw: dict[str, Any], yaml_dir: Path, source: str, log: ProblemLog) -> Path:
    """``path`` relative to the YAML's folder (default: the folder itself).

    ultralytics resolves a relative ``path`` against its own datasets folder; when ``path`` does not
    exist here but the YAML's folder holds the ``val`` entry, the YAML's folder is the root.
    """
    value = raw.get("path")
    if value is None or value == "":
        return yaml_dir
    if not isinstance(value, str):
        log.stop(f"{source}: 'path' must be the dataset root folder, got {value!r:.80}.", source, "path")
    root = (yaml_dir / Path(value).expanduser()).resolve()
    if root.is_dir():
        return root
    val = raw.get("val")
    first = val[0] if isinstance(val, list) and val else val
    if isinstance(first, str) and (yaml_dir / first).exists():
        return yaml_dir
    log.stop(f"{source}: 'path' points to {root}, which is not an existing folder. 'path' is relative to "
             "the YAML's folder; leave it out to use that folder.", source, "path")


def _yolo_spec(raw: dict[str, Any], yaml_dir: Path, source: str, log: ProblemLog) -> DataSpec:
    if raw.get("names") is None and _misspelt(raw, "names", "yolo"):
        log.error(f"{source}: key 'names' is missing; list the class names in class-id order, e.g. "
                  f"names: [cat, dog].{_misspelt(raw, 'names', 'yolo')}", source, "names")
        names = None
    else:
        names = parse_names(raw.get("names"), source, log)
    if names is not None and "nc" in raw and raw["nc"] != len(names):
        log.error(f"{source}: 'nc' is {raw['nc']!r} but 'names' has {len(names)} classes; make them agree "
                  "(or remove 'nc').", source, "nc")
    if raw.get("val") is None:
        log.error(f"{source}: missing key 'val' (the evaluation split). Example:\n{_YOLO_EXAMPLE}"
                  f"{_misspelt(raw, 'val', 'yolo')}", source, "val")
    root = _dataset_root(raw, yaml_dir, source, log)
    loaders = {}
    for split in SPLITS:
        if raw.get(split) is None:
            continue
        entries = raw[split] if isinstance(raw[split], list) else [raw[split]]
        missing = [entry for entry in entries  # fail early on a wrong path; the images are listed on first use
                   if isinstance(entry, str) and not (root / Path(entry).expanduser()).exists()]
        for entry in missing:
            log.error(f"{source}: '{split}' points to {root / entry}, which does not exist. Paths are "
                      "relative to 'path' (default: the YAML's folder).", source, split, "split path")
        if not missing:
            loaders[split] = partial(_read_yolo, raw[split], root, split, names, source, log)
    if names is None or "val" not in loaders:
        log.stop(file=source)  # the errors are recorded
    return DataSpec.from_loaders(loaders, names, root, "yolo", source)


def _read_yolo(entry: Any, root: Path, split: str, names: list[str], source: str,
               log: ProblemLog) -> tuple[dict[str, Any], Path]:
    return read_yolo_split(list_split_images(entry, root, split, source, log), names, f"{source} ({split})", log)


def _voc_spec(raw: dict[str, Any], yaml_dir: Path, source: str, log: ProblemLog) -> DataSpec:
    names = parse_names(raw["names"], source, log) if raw.get("names") is not None else None
    root = _dataset_root(raw, yaml_dir, source, log)
    if raw.get("train") is None and raw.get("val") is None:
        roots = find_voc_roots(root)
        if not roots:
            log.stop(f"{source}: {root} is not a Pascal VOC folder (Annotations/, JPEGImages/, "
                     f"ImageSets/Main/), and no 'train'/'val' image sets are given.{_misspelt(raw, 'val', 'voc')}",
                     source)
        image_sets = default_image_sets(roots, source, log)
    else:
        if raw.get("val") is None:
            log.error(f"{source}: missing key 'val' (the evaluation split), e.g. "
                      f"val: VOC2007/ImageSets/Main/test.txt{_misspelt(raw, 'val', 'voc')}", source, "val")
        image_sets = {}
        for split in SPLITS:
            entry = raw.get(split)
            if entry is None:
                continue
            entries = entry if isinstance(entry, list) else [entry]
            if not entries or not all(isinstance(e, str) and e for e in entries):
                log.error(f"{source}: '{split}' must be an image-set list ROOT/ImageSets/Main/NAME.txt "
                          f"or a list of them, got {entry!r:.100}", source, split)
                continue
            image_sets[split] = [root / Path(e).expanduser() for e in entries]
        if "val" not in image_sets:
            log.stop(file=source)  # the errors are recorded
    if raw.get("names") is not None and names is None:
        log.stop(file=source)
    reader = VocReader(image_sets, names, source, log)
    loaders = {split: partial(reader.read, split) for split in image_sets}
    class_names = names if names is not None else (lambda: reader.class_names)
    return DataSpec.from_loaders(loaders, class_names, root, "voc", source)


def _read_yaml(path: Path, log: ProblemLog) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        log.stop(f"Dataset YAML {path} does not parse{where}: {problem}. "
                 f"It should look like:\n{_EXAMPLE}", path, f"line {mark.line + 1}" if mark is not None else None)
    except (OSError, UnicodeDecodeError) as e:
        log.stop(f"Cannot read dataset YAML {path}: {e}.", path)
    if not isinstance(raw, dict):
        log.stop(f"Dataset YAML {path} must be a mapping with 'train'/'val' keys, like:\n{_EXAMPLE}", path)
    return raw


def _from_mapping(raw: dict[str, Any], root: Path, source: str, log: ProblemLog) -> DataSpec:
    if "val" not in raw:
        log.error(f"{source}: missing key 'val' (the evaluation split). Example:\n{_EXAMPLE}"
                  f"{_misspelt(raw, 'val', 'coco')}", source, "val")
    train = _split_paths(raw, "train", root, source, log) if "train" in raw else (None, None)
    val = _split_paths(raw, "val", root, source, log) if "val" in raw else None
    names = raw.get("names")
    if names is not None and not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        log.error(f"{source}: 'names' must be a non-empty list of class names in category-id "
                  f"order, got {names!r}. Example:\n{_EXAMPLE}", source, "names")
        names = None
    if val is None or train is None:
        log.stop(file=source)  # the errors are recorded
    val_ann, val_images = val
    if names is None:
        if log.strict:
            names = read_categories(read_coco_json(val_ann), val_ann)[1]
        else:  # checking: the val split's own check reports what is wrong with its JSON
            names = _default_names(val_ann)
    return DataSpec(train[0], train[1], val_ann, val_images, None if names is None else list(names), root, "coco",
                    source)


def _default_names(val_ann: Path) -> list[str] | None:
    """The val JSON's category names sorted by id, or ``None`` when the JSON has a problem."""
    try:
        return read_categories(read_coco_json(val_ann), val_ann)[1]
    except DatasetError:
        return None


def _split_paths(raw: dict[str, Any], split: str, root: Path, source: str,
                 log: ProblemLog) -> tuple[Path, Path] | None:
    """``(annotation file, image folder)`` of ``split``, or ``None`` after reporting what is wrong."""
    entry = raw[split]
    if not isinstance(entry, dict):
        log.error(f"{source}: '{split}' must be a mapping with 'annotations' and 'images', got "
                  f"{entry!r}. Example:\n{_EXAMPLE}", source, split)
        return None
    resolved = []
    for key, exists in (("annotations", Path.is_file), ("images", Path.is_dir)):
        if not isinstance(entry.get(key), str):
            problem = "is missing" if key not in entry else f"must be a path, got {entry[key]!r}"
            log.error(f"{source}: key '{split}.{key}' {problem}. Example:\n{_EXAMPLE}", source, f"{split}.{key}")
            continue
        path = root / Path(entry[key]).expanduser()
        if not exists(path):
            kind = "file" if key == "annotations" else "folder"
            log.error(f"{source}: '{split}.{key}' points to {path}, which is not an existing {kind}. "
                      "Paths are relative to the YAML file's folder.", source, f"{split}.{key}")
            continue
        resolved.append(path)
    return (resolved[0], resolved[1]) if len(resolved) == 2 else None
