"""Dataset spec: where the annotation files and images of each split live.

A spec is a YAML file (paths relative to the YAML's folder)::

    train:
      annotations: train/annotations.json
      images: train/images
    val:
      annotations: val/annotations.json
      images: val/images
    names: [circle, square]   # optional; default: the val JSON categories sorted by id

or a folder that contains such a ``data.yaml``, or a folder with the conventional layout
``train/annotations.json``, ``train/images/``, ``val/annotations.json``, ``val/images/``
(as written by :func:`anchorfree.data.generate_synthetic_dataset`). ``train`` is optional
(evaluation-only datasets); ``val`` is required.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from anchorfree.data.coco import read_categories, read_coco_json
from anchorfree.errors import DatasetError

__all__ = ["DataSpec", "SPEC_FILE_NAME", "load_data_spec"]

SPEC_FILE_NAME = "data.yaml"
_EXAMPLE = """train:
  annotations: train/annotations.json
  images: train/images
val:
  annotations: val/annotations.json
  images: val/images
names: [cat, dog]   # optional"""


@dataclass
class DataSpec:
    """Resolved (absolute) paths of a dataset.

    ``class_names`` is filled by :func:`load_data_spec` (from ``names`` or the val JSON
    categories sorted by id); ``None`` only for hand-built specs, meaning "use the JSON's".
    """

    train_ann: Path | None
    train_images: Path | None
    val_ann: Path
    val_images: Path
    class_names: list[str] | None
    root: Path


def load_data_spec(path: str | Path) -> DataSpec:
    """Load a dataset spec from a YAML file or a dataset folder (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"Dataset {path} does not exist. Pass a dataset folder or a dataset YAML file "
                           f"such as:\n{_EXAMPLE}")
    if path.is_file():
        return _from_mapping(_read_yaml(path), path.parent.resolve(), str(path))
    if (path / SPEC_FILE_NAME).is_file():
        return load_data_spec(path / SPEC_FILE_NAME)
    if not (path / "val" / "annotations.json").is_file():
        raise DatasetError(f"Dataset folder {path} has neither a {SPEC_FILE_NAME} nor val/annotations.json. "
                           f"Add a {SPEC_FILE_NAME} like:\n{_EXAMPLE}\nor use the layout train/annotations.json, "
                           "train/images/, val/annotations.json, val/images/.")
    splits = ("train", "val") if (path / "train" / "annotations.json").is_file() else ("val",)
    raw = {s: {"annotations": f"{s}/annotations.json", "images": f"{s}/images"} for s in splits}
    return _from_mapping(raw, path.resolve(), str(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise DatasetError(f"Dataset YAML {path} does not parse{where}: {problem}. "
                           f"It should look like:\n{_EXAMPLE}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"Cannot read dataset YAML {path}: {e}.") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"Dataset YAML {path} must be a mapping with 'train'/'val' keys, like:\n{_EXAMPLE}")
    return raw


def _from_mapping(raw: dict[str, Any], root: Path, source: str) -> DataSpec:
    if "val" not in raw:
        raise DatasetError(f"{source}: missing key 'val' (the evaluation split). Example:\n{_EXAMPLE}")
    train_ann, train_images = _split_paths(raw, "train", root, source) if "train" in raw else (None, None)
    val_ann, val_images = _split_paths(raw, "val", root, source)
    names = raw.get("names")
    if names is None:
        names = read_categories(read_coco_json(val_ann), val_ann)[1]
    elif not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise DatasetError(f"{source}: 'names' must be a non-empty list of class names in category-id "
                           f"order, got {names!r}. Example:\n{_EXAMPLE}")
    return DataSpec(train_ann, train_images, val_ann, val_images, list(names), root)


def _split_paths(raw: dict[str, Any], split: str, root: Path, source: str) -> tuple[Path, Path]:
    entry = raw[split]
    if not isinstance(entry, dict):
        raise DatasetError(f"{source}: '{split}' must be a mapping with 'annotations' and 'images', got "
                           f"{entry!r}. Example:\n{_EXAMPLE}")
    resolved = []
    for key, exists in (("annotations", Path.is_file), ("images", Path.is_dir)):
        if not isinstance(entry.get(key), str):
            problem = "is missing" if key not in entry else f"must be a path, got {entry[key]!r}"
            raise DatasetError(f"{source}: key '{split}.{key}' {problem}. Example:\n{_EXAMPLE}")
        path = root / Path(entry[key]).expanduser()
        if not exists(path):
            kind = "file" if key == "annotations" else "folder"
            raise DatasetError(f"{source}: '{split}.{key}' points to {path}, which is not an existing {kind}. "
                               "Paths are relative to the YAML file's folder.")
        resolved.append(path)
    return resolved[0], resolved[1]
