"""COCO-format detection dataset with validated annotations and actionable errors."""
from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

try:  # deprecated since torchvision 0.29 (moving to TorchCodec); PIL is the fallback decoder
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # pragma: no cover - future torchvision without image decoding
    decode_image = None

from anchorfree.data.transforms import MIN_BOX_SIZE
from anchorfree.errors import DatasetError

__all__ = ["CocoDetection", "check_coco_dict", "coco_source", "load_image", "read_categories", "read_coco_json"]

CLIP_TOLERANCE = 0.01
"""Pixels a box may reach outside its image without being counted (or warned about) as clipped."""

Transform = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]

_MINIMAL_EXAMPLE = (
    '{"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],\n'
    ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0}],\n'
    ' "categories": [{"id": 1, "name": "cat"}]}'
)


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Parse a COCO annotation file and check its three top-level lists exist."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Annotation file {path} does not exist. Check the path in your dataset spec.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. "
                           "Fix the file (for example with a JSON linter).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"Cannot read annotation file {path}: {e}.") from None
    return check_coco_dict(data, path)


def check_coco_dict(data: Any, source: str | Path) -> dict[str, Any]:
    """Check that ``data`` is a mapping with the three COCO lists; return it unchanged."""
    if not isinstance(data, dict):
        raise DatasetError(f"{source} must contain a JSON object with 'images', 'annotations' and "
                           f"'categories' lists, for example:\n{_MINIMAL_EXAMPLE}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problem = "is missing" if key not in data else "is not a list"
            raise DatasetError(f"{source}: top-level key '{key}' {problem}. A COCO file needs 'images', "
                               f"'annotations' and 'categories' lists, for example:\n{_MINIMAL_EXAMPLE}")
    return data


def coco_source(ann: str | Path | dict[str, Any]) -> str:
    """How messages name a COCO ground truth: the JSON path, or a dict's ``info["source"]``."""
    if not isinstance(ann, dict):
        return str(ann)
    info = ann.get("info")
    source = info.get("source") if isinstance(info, dict) else None
    return str(source) if source else "the in-memory COCO annotations"


def read_categories(data: dict[str, Any], path: str | Path) -> tuple[list[int], list[str]]:
    """Category ids sorted ascending and their names (label ``i`` is ``cat_ids[i]``)."""
    names: dict[int, str] = {}
    for index, cat in enumerate(data["categories"]):
        _require_fields(cat, ("id", "name"), f"categories[{index}]", path)
        if not _is_int(cat["id"]):
            raise DatasetError(f"{path}: categories[{index}] has id {cat['id']!r}; category ids must be integers.")
        if cat["id"] in names:
            raise DatasetError(f"{path}: category id {cat['id']} is declared twice in 'categories'; "
                               "remove the duplicate.")
        names[cat["id"]] = str(cat["name"])
    if not names:
        raise DatasetError(f"{path}: 'categories' is empty; declare at least one category, "
                           'e.g. {"id": 1, "name": "cat"}.')
    cat_ids = sorted(names)
    return cat_ids, [names[c] for c in cat_ids]


def load_image(path: str | Path, image_id: int | str = "?") -> Tensor:
    """Decode an image file to ``uint8 [3, H, W]`` RGB (torchvision, then PIL as a fallback)."""
    path = Path(path)
    hint = f"(image id {image_id}). Fix the file or remove the image entry from the annotation file."
    if not path.is_file():
        raise DatasetError(f"Image file {path} does not exist {hint}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"Cannot read image file {path} {hint} ({e})") from None
    if decode_image is not None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
                return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            pass  # formats or variants torchvision cannot decode: let PIL try
    try:
        with Image.open(io.BytesIO(data)) as im:
            array = np.array(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for corrupt data
        raise DatasetError(f"Image file {path} is corrupt or not a supported image {hint} ({e})") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class CocoDetection(Dataset):
    """A COCO-format detection dataset.

    Items are ``(image uint8 [3, H, W], target)`` with target keys ``boxes`` (float32 ``[N, 4]``
    xyxy in transformed pixels), ``labels`` (int64 ``[N]``, contiguous), ``image_id`` (int),
    ``orig_size`` (int64 ``[2]`` = ``(h, w)`` on disk) and ``scale`` (float32 ``[2]`` = ``(sy, sx)``
    from disk to transformed pixels). Crowd boxes are never part of the targets; images without
    boxes are kept as negatives. Boxes are clipped to their image and boxes narrower than 1 px are
    dropped once at load time; the counts are in :attr:`stats` and summarised in one warning (an
    overshoot up to :data:`CLIP_TOLERANCE`, the rounding of normalised or decimal coordinates, is
    clipped without being counted).

    Args:
        ann_file: COCO annotation JSON, or the same content as an in-memory dict (as made by the
            YOLO and Pascal VOC readers, see :func:`anchorfree.data.load_data_spec`); used as-is
            for evaluation, see :attr:`coco_gt`. A dict may name where it came from in
            ``info["source"]``, which error messages then quote.
        image_dir: folder that ``file_name`` entries are relative to.
        transforms: ``(image, boxes, labels) -> (image, boxes, labels, scale)``, e.g. from
            :func:`anchorfree.data.build_transforms`; ``None`` keeps the image as stored.
        class_names: expected names, in label order; a mismatch with the JSON raises.
        train: whether this is a training split (kept as :attr:`train` for the engine/samplers).
    """

    def __init__(
        self,
        ann_file: str | Path | dict[str, Any],
        image_dir: str | Path,
        transforms: Transform | None = None,
        class_names: Sequence[str] | None = None,
        train: bool = False,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.train = train
        if isinstance(ann_file, dict):
            self.coco_json_path: Path | None = None
            self.source = coco_source(ann_file)
            data = check_coco_dict(ann_file, self.source)
            self._gt_dict: dict[str, Any] | None = ann_file
        else:
            self.coco_json_path = Path(ann_file)
            self.source = str(self.coco_json_path)
            data = read_coco_json(self.coco_json_path)
            self._gt_dict = None
        if not self.image_dir.is_dir():
            raise DatasetError(f"Image folder {self.image_dir} (for {self.source}) does not exist. "
                               "Check the 'images' path in your dataset spec.")

        self.cat_ids, self.class_names = read_categories(data, self.source)
        if class_names is not None:
            self._check_class_names(list(class_names))
        self.cat_id_to_label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.label_to_cat_id = dict(enumerate(self.cat_ids))

        index_of_image = self._parse_images(data["images"])
        self._parse_annotations(data["annotations"], index_of_image)
        self._warn_about_fixed_boxes()

    @property
    def coco_gt(self) -> Path | dict[str, Any]:
        """The ground truth for COCO evaluation: the JSON path, or the dict this dataset was made from."""
        return self.coco_json_path if self._gt_dict is None else self._gt_dict

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader workers only load samples: leave the (possibly large) ground-truth dict behind."""
        state = self.__dict__.copy()
        state["_gt_dict"] = None
        return state

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def __len__(self) -> int:
        return len(self._image_ids)

    def get_image_info(self, index: int) -> dict[str, Any]:
        """``{"id", "file_name", "width", "height"}`` of image ``index`` as declared in the JSON."""
        height, width = self._sizes[index].tolist()
        return {"id": int(self._image_ids[index]), "file_name": str(self._file_names[index]),
                "width": width, "height": height}

    def load_sample(self, index: int) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
        """Image ``index`` as stored, before :attr:`transforms`: ``(image uint8 [3, H, W], boxes
        float32 [N, 4] xyxy, labels int64 [N], info)`` with ``info`` from :meth:`get_image_info`."""
        info = self.get_image_info(index)
        path = self.image_dir / info["file_name"]
        image = load_image(path, info["id"])
        if tuple(image.shape[-2:]) != (info["height"], info["width"]):
            raise DatasetError(
                f"Image file {path} (image id {info['id']}) is {image.shape[-2]}x{image.shape[-1]} (h x w) but "
                f"{self.source} declares height={info['height']}, width={info['width']}. "
                "Fix the entry's width/height (the boxes must refer to the stored image).")
        start, end = self._offsets[index], self._offsets[index + 1]
        boxes = torch.tensor(self._boxes[start:end], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(self._labels[start:end], dtype=torch.int64)
        return image, boxes, labels, info

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, boxes, labels, info = self.load_sample(index)
        orig_size = tuple(image.shape[-2:])
        if self.transforms is None:
            scale = torch.ones(2, dtype=torch.float32)
        else:
            image, boxes, labels, scale = self.transforms(image, boxes, labels)
        target = {"boxes": boxes, "labels": labels, "image_id": info["id"],
                  "orig_size": torch.tensor(orig_size, dtype=torch.int64), "scale": scale}
        return image, target

    # ------------------------------------------------------------------ loading

    def _check_class_names(self, expected: list[str]) -> None:
        path = self.source
        if len(expected) != len(self.class_names):
            raise DatasetError(f"{path} declares {len(self.class_names)} categories {self.class_names} but "
                               f"{len(expected)} class names were given {expected}. Make the dataset's "
                               "'names' list match the JSON 'categories' (sorted by id).")
        for label, (got, want) in enumerate(zip(self.class_names, expected)):
            if got != want:
                raise DatasetError(f"{path}: label {label} (category id {self.cat_ids[label]}) is named "
                                   f"'{got}' in the JSON but '{want}' in the given class names. Make the "
                                   "dataset's 'names' list match the JSON 'categories' sorted by id.")

    def _parse_images(self, images: list[Any]) -> dict[int, int]:
        """Store ids, file names and sizes as arrays; return ``{image id: index}``."""
        path = self.source
        if not images:
            raise DatasetError(f"{path} has an empty 'images' list; add the images of this split.")
        ids, names, sizes = [], [], []
        for index, img in enumerate(images):
            where = f"images[{index}]"
            _require_fields(img, ("id", "file_name", "width", "height"), where, path)
            if not _is_int(img["id"]):
                raise DatasetError(f"{path}: {where} has id {img['id']!r}; image ids must be integers.")
            if not all(_is_number(img[k]) and img[k] >= 1 and float(img[k]).is_integer() for k in ("width", "height")):
                raise DatasetError(f"{path}: {where} (id {img['id']}) has width={img['width']!r}, "
                                   f"height={img['height']!r}; both must be positive integers (pixels).")
            ids.append(img["id"])
            names.append(str(img["file_name"]))
            sizes.append((int(img["height"]), int(img["width"])))
        index_of_image = {image_id: i for i, image_id in enumerate(ids)}
        if len(index_of_image) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise DatasetError(f"{path}: image id {duplicate} appears more than once in 'images'; "
                               "image ids must be unique.")
        self._image_ids = np.asarray(ids, dtype=np.int64)
        self._file_names = np.asarray(names)  # numpy strings: no per-item refcounts in workers
        self._sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        return index_of_image

    def _parse_annotations(self, annotations: list[Any], index_of_image: dict[int, int]) -> None:
        """Validate annotations; store clipped non-crowd boxes grouped by image, and :attr:`stats`."""
        path = self.source
        image_index, bboxes, labels, crowd = [], [], [], []
        for index, ann in enumerate(annotations):
            _require_fields(ann, ("image_id", "bbox", "category_id"), f"annotations[{index}]", path)
            ann_id = ann.get("id", f"at index {index}")
            bbox = ann["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                raise DatasetError(f"{path}: annotation {ann_id} has bbox {bbox!r}; it must be 4 numbers "
                                   "[x, y, width, height] in pixels.")
            label = _lookup(self.cat_id_to_label, ann["category_id"])
            if label is None:
                raise DatasetError(f"{path}: annotation {ann_id} uses category_id {ann['category_id']!r}, "
                                   f"which is not declared in 'categories' (declared: {self.cat_ids}). Add the "
                                   "category to 'categories' or remove the annotation.")
            img = _lookup(index_of_image, ann["image_id"])
            if img is None:
                raise DatasetError(f"{path}: annotation {ann_id} refers to image_id {ann['image_id']!r}, which "
                                   "is not in 'images'. Add the image entry or remove the annotation.")
            image_index.append(img)
            bboxes.append(bbox)
            labels.append(label)
            crowd.append(bool(ann.get("iscrowd", 0)))

        image_index = np.asarray(image_index, dtype=np.int64)
        xywh = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        not_finite = ~np.isfinite(xywh).all(axis=1)
        if not_finite.any():
            bad = int(np.argmax(not_finite))
            raise DatasetError(f"{path}: annotations[{bad}] has bbox {bboxes[bad]!r}; "
                               "all 4 values must be finite numbers.")
        crowd = np.asarray(crowd, dtype=bool)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        wh = self._sizes[image_index][:, ::-1].astype(np.float64)  # (w, h) of each box's image
        clipped = np.clip(xyxy, 0.0, np.concatenate([wh, wh], axis=1))
        valid = ((clipped[:, 2:] - clipped[:, :2]) >= MIN_BOX_SIZE).all(axis=1)
        was_clipped = (np.abs(clipped - xyxy) > CLIP_TOLERANCE).any(axis=1)
        keep = valid & ~crowd

        order = np.argsort(image_index[keep], kind="stable")
        self._boxes = clipped[keep][order].astype(np.float32)
        self._labels = np.asarray(labels, dtype=np.int64)[keep][order]
        counts = np.bincount(image_index[keep], minlength=len(self))
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.stats = {
            "images": len(self),
            "annotations": len(annotations),
            "boxes": int(keep.sum()),
            "crowd": int(crowd.sum()),
            "clipped": int((was_clipped & valid & ~crowd).sum()),
            "dropped": int((~valid & ~crowd).sum()),
            "negative_images": int((counts == 0).sum()),
        }

    def _warn_about_fixed_boxes(self) -> None:
        parts = []
        if self.stats["clipped"]:
            parts.append(f"clipped {self.stats['clipped']} boxes that extended outside their image")
        if self.stats["dropped"]:
            parts.append(f"dropped {self.stats['dropped']} boxes with zero or negative size "
                         f"(width or height < {MIN_BOX_SIZE:g} px after clipping)")
        if parts:
            warnings.warn(f"{self.source}: {', '.join(parts)}.", stacklevel=3)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source}, images={len(self)}, "
                f"boxes={self.stats['boxes']}, classes={self.num_classes}, train={self.train})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lookup(mapping: dict[int, int], key: Any) -> int | None:
    """``mapping.get(key)`` that treats unhashable JSON values (lists, objects) as unknown keys."""
    try:
        return mapping.get(key)
    except TypeError:
        return None


def _require_fields(entry: Any, fields: Sequence[str], where: str, path: str | Path) -> None:
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: {where} must be a JSON object, got {entry!r:.80}.")
    missing = [f for f in fields if f not in entry]
    if missing:
        raise DatasetError(f"{path}: {where} is missing field(s) {', '.join(map(repr, missing))} "
                           f"(entry: {json.dumps(entry)[:120]}). Every entry needs {', '.join(fields)}.")
