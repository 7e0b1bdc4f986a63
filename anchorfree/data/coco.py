"""COCO-format detection dataset with validated annotations and actionable errors.

A split's annotations are held in a few flat NumPy arrays (boxes ``float32 [M, 4]``, labels, the
offsets of each image's boxes, image ids and sizes, and the file names packed into one UTF-8 byte
array with offsets), never as per-image Python objects: DataLoader workers read them without
touching Python reference counts, so their memory does not grow over an epoch. Parsing is
vectorised; only a file with a problem goes through the entry-by-entry checks that name each bad
entry (:class:`~anchorfree.data.report.ProblemLog` decides whether the first one raises or all are
collected).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from anchorfree.data.report import ProblemLog
from anchorfree.data.transforms import MIN_BOX_SIZE
from anchorfree.errors import DatasetError
from anchorfree.data.coco_json import (ANNOTATION_FIELDS, NAME_ERRORS, check_coco_dict, checked_image_columns, coco_source,
                                      contains, has_fields, image_columns, is_finite, is_number, lookup, pack_names,
                                      read_categories, read_coco_json, types_within)
from anchorfree.data.crops import crop_sample, random_window
from anchorfree.data.decode import load_image, size_mismatch_message

__all__ = ["CocoDetection", "check_coco_dict", "coco_source", "load_image", "read_categories", "read_coco_json",
           "size_mismatch_message"]

CLIP_TOLERANCE = 0.01
"""Pixels a box may reach outside its image without being counted (or warned about) as clipped."""

Transform = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]

class CocoDetection(Dataset):
    """A COCO-format detection dataset.

    Items are ``(image uint8 [3, H, W], target)`` with target keys ``boxes`` (float32 ``[N, 4]``
    xyxy in transformed pixels), ``labels`` (int64 ``[N]``, contiguous), ``image_id`` (int),
    ``orig_size`` (int64 ``[2]`` = ``(h, w)`` on disk) and ``scale`` (float32 ``[2]`` = ``(sy, sx)``
    from disk to transformed pixels). Crowd boxes are never part of the targets; images without
    boxes are kept as negatives. Boxes are clipped to their image and boxes narrower than 1 px are
    dropped once at load time; the counts are in :attr:`stats` and summarised in one warning (an
    overshoot up to :data:`CLIP_TOLERANCE`, the rounding of normalised or decimal coordinates, is
    clipped without being counted). An image file whose size differs from its declared
    width/height stops loading (:func:`size_mismatch_message`); :func:`~anchorfree.data.preflight`
    finds such files, and missing or corrupt ones, before training starts.

    Memory: everything per image and per box lives in flat NumPy arrays (no per-image Python
    objects), so forked DataLoader workers share the pages instead of copying them as they read.

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
        problems: where problems go; default: raise :class:`~anchorfree.errors.DatasetError` on the
            first error and warn about the rest. :func:`~anchorfree.data.check_dataset` passes a
            collecting log to list every problem (bad entries are then left out).
    """

    def __init__(
        self,
        ann_file: str | Path | dict[str, Any],
        image_dir: str | Path,
        transforms: Transform | None = None,
        class_names: Sequence[str] | None = None,
        train: bool = False,
        *,
        problems: ProblemLog | None = None,
    ) -> None:
        log = problems if problems is not None else ProblemLog()
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.train = train
        self.crop_size = 0  # > 0: training samples are random windows of this size (data/crops.py)
        if isinstance(ann_file, dict):
            self.coco_json_path: Path | None = None
            self.source = coco_source(ann_file)
            data = check_coco_dict(ann_file, self.source, log)
            self._gt_dict: dict[str, Any] | None = ann_file
        else:
            self.coco_json_path = Path(ann_file)
            self.source = str(self.coco_json_path)
            data = read_coco_json(self.coco_json_path, log)
            self._gt_dict = None
        if not self.image_dir.is_dir():
            log.error(f"Image folder {self.image_dir} (for {self.source}) does not exist. "
                      "Check the 'images' path in your dataset spec.", self.image_dir)

        self.cat_ids, self.class_names = read_categories(data, self.source, log)
        if class_names is not None:
            self._check_class_names(list(class_names), log)
        self.cat_id_to_label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.label_to_cat_id = dict(enumerate(self.cat_ids))

        skipped_ids = self._parse_images(data["images"], log)
        self._parse_annotations(data["annotations"], skipped_ids, log)
        self._warn_about_fixed_boxes(log)

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

    def file_name(self, index: int) -> str:
        """``file_name`` of image ``index`` (relative to :attr:`image_dir`), as declared."""
        start, end = self._name_offsets[index], self._name_offsets[index + 1]
        return self._name_bytes[start:end].tobytes().decode("utf-8", NAME_ERRORS)

    def get_image_info(self, index: int) -> dict[str, Any]:
        """``{"id", "file_name", "width", "height"}`` of image ``index`` as declared in the JSON."""
        height, width = self._sizes[index].tolist()
        return {"id": int(self._image_ids[index]), "file_name": self.file_name(index),
                "width": width, "height": height}

    def arrays(self) -> dict[str, np.ndarray]:
        """The flat arrays the dataset holds (read-only views), for inspection and tools.

        ``image_ids int64 [N]``, ``sizes int64 [N, 2]`` ``(h, w)`` as declared, ``name_bytes uint8``
        (UTF-8 file names back to back) with ``name_offsets int64 [N + 1]``, ``boxes float32 [M, 4]``
        xyxy clipped, ``labels int64 [M]`` and ``box_offsets int64 [N + 1]`` (image ``i`` has boxes
        ``box_offsets[i]:box_offsets[i + 1]``).
        """
        out = {"image_ids": self._image_ids, "sizes": self._sizes, "name_bytes": self._name_bytes,
               "name_offsets": self._name_offsets, "boxes": self._boxes, "labels": self._labels,
               "box_offsets": self._offsets}
        views = {}
        for key, array in out.items():
            view = array.view()
            view.flags.writeable = False
            views[key] = view
        return views

    def load_sample(self, index: int) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
        """Image ``index`` as stored, before :attr:`transforms`: ``(image uint8 [3, H, W], boxes
        float32 [N, 4] xyxy, labels int64 [N], info)`` with ``info`` from :meth:`get_image_info`."""
        info = self.get_image_info(index)
        path = self.image_dir / info["file_name"]
        image = load_image(path, info["id"])
        if tuple(image.shape[-2:]) != (info["height"], info["width"]):
            raise DatasetError(size_mismatch_message(path, info["id"], tuple(image.shape[-2:]),
                                                     (info["height"], info["width"]), self.source))
        start, end = self._offsets[index], self._offsets[index + 1]
        boxes = torch.from_numpy(self._boxes[start:end].copy()).reshape(-1, 4)
        labels = torch.from_numpy(self._labels[start:end].copy())
        if self.crop_size > 0:  # large images: a random window at the image's own resolution (data/crops.py)
            x0, y0 = random_window(image.shape[-2], image.shape[-1], self.crop_size, boxes)
            image, boxes, labels = crop_sample(image, boxes, labels, x0, y0, self.crop_size)
        return image, boxes, labels, info

    def ground_truth(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index``'s ground truth as loaded, for reports and tools that draw or match it: ``(boxes float32
        [N, 4] xyxy, labels int64 [N], crowd bool [N])``, the training boxes then the crowd regions, both clipped
        to the image, without the boxes dropped at load time (see :attr:`stats`)."""
        start, end = self._offsets[index], self._offsets[index + 1]
        c_start, c_end = self._crowd_offsets[index], self._crowd_offsets[index + 1]
        boxes = np.concatenate([self._boxes[start:end], self._crowd_boxes[c_start:c_end]]).reshape(-1, 4)
        labels = np.concatenate([self._labels[start:end], self._crowd_labels[c_start:c_end]])
        crowd = np.arange(len(labels)) >= end - start
        return boxes, labels, crowd

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

    def _check_class_names(self, expected: list[str], log: ProblemLog) -> None:
        path = self.source
        if len(expected) != len(self.class_names):
            log.error(f"{path} declares {len(self.class_names)} categories {self.class_names} but "
                      f"{len(expected)} class names were given {expected}. Make the dataset's "
                      "'names' list match the JSON 'categories' (sorted by id).", path, "categories")
            return
        for label, (got, want) in enumerate(zip(self.class_names, expected)):
            if got != want:
                log.error(f"{path}: label {label} (category id {self.cat_ids[label]}) is named "
                          f"'{got}' in the JSON but '{want}' in the given class names. Make the "
                          "dataset's 'names' list match the JSON 'categories' sorted by id.", path, "categories",
                          "class name")

    def _parse_images(self, images: list[Any], log: ProblemLog) -> set[Any]:
        """Store ids, file names and sizes as arrays; return the ids of entries left out (collecting logs)."""
        path = self.source
        if not images:
            log.error(f"{path} has an empty 'images' list; add the images of this split.", path, "images")
        columns = image_columns(images)
        skipped: set[Any] = set()
        if columns is None:
            columns, skipped = checked_image_columns(images, path, log)
        ids, names, sizes = columns
        self._image_ids, self._sizes = ids, sizes
        self._name_bytes, self._name_offsets = pack_names(names)
        unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            for at in np.sort(first[counts > 1]):
                log.error(f"{path}: image id {ids[at]} appears more than once in 'images'; image ids must be unique.",
                          path, f"images[{at}]", "duplicate image id")
        self._sorted_ids, self._id_order = unique, first  # distinct ids ascending, the first entry of each
        return skipped

    def _image_index(self, image_ids: np.ndarray) -> np.ndarray:
        """Index of the image of each id in ``image_ids`` (``-1`` where no image has that id)."""
        if len(self._sorted_ids) == 0:
            return np.full(len(image_ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_ids, image_ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[pos] == image_ids, self._id_order[pos], -1)

    def _parse_annotations(self, annotations: list[Any], skipped_ids: set[Any], log: ProblemLog) -> None:
        """Validate annotations; store the clipped boxes (training boxes and crowd regions apart) grouped by image,
        and :attr:`stats`."""
        columns = self._annotation_columns(annotations)
        if columns is None:
            columns = self._checked_annotation_columns(annotations, skipped_ids, log)
        image_index, xywh, labels, crowd = columns

        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        wh = self._sizes[image_index][:, ::-1].astype(np.float64)  # (w, h) of each box's image
        clipped = np.clip(xyxy, 0.0, np.concatenate([wh, wh], axis=1))
        valid = ((clipped[:, 2:] - clipped[:, :2]) >= MIN_BOX_SIZE).all(axis=1)
        was_clipped = (np.abs(clipped - xyxy) > CLIP_TOLERANCE).any(axis=1)
        keep = valid & ~crowd
        self._crowd_boxes, self._crowd_labels, self._crowd_offsets, _ = _by_image(
            clipped, labels, image_index, valid & crowd, len(self))  # regions to ignore, for evaluation tools
        self._boxes, self._labels, self._offsets, counts = _by_image(clipped, labels, image_index, keep, len(self))
        self.stats = {
            "images": len(self),
            "annotations": len(annotations),
            "boxes": int(keep.sum()),
            "crowd": int(crowd.sum()),
            "clipped": int((was_clipped & valid & ~crowd).sum()),
            "dropped": int((~valid & ~crowd).sum()),
            "negative_images": int((counts == 0).sum()),
        }

    def _annotation_columns(self, annotations: list[Any]) -> tuple[np.ndarray, ...] | None:
        """``(image index, xywh, label, crowd)`` arrays of well-formed annotations, or ``None`` when
        any entry needs the entry-by-entry checks (which then name it)."""
        count = len(annotations)
        if count == 0:
            return (np.zeros(0, dtype=np.int64), np.zeros((0, 4)), np.zeros(0, dtype=np.int64),
                    np.zeros(0, dtype=bool))
        if not types_within(annotations, (dict,)):
            return None
        try:
            image_ids = list(map(itemgetter("image_id"), annotations))
            category_ids = list(map(itemgetter("category_id"), annotations))
            bboxes = list(map(itemgetter("bbox"), annotations))
        except KeyError:
            return None
        if not (types_within(image_ids, (int,)) and types_within(category_ids, (int,))
                and types_within(bboxes, (list,)) and set(map(len, bboxes)) == {4}
                and types_within(itertools.chain.from_iterable(bboxes), (int, float))):
            return None
        try:
            image_ids = np.asarray(image_ids, dtype=np.int64)
            category_ids = np.asarray(category_ids, dtype=np.int64)
            xywh = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        except OverflowError:  # integers beyond 64 bits
            return None
        if not np.isfinite(xywh).all():
            return None
        image_index = self._image_index(image_ids)
        cats = np.asarray(self.cat_ids, dtype=np.int64)
        if (image_index < 0).any() or len(cats) == 0:
            return None
        labels = np.minimum(np.searchsorted(cats, category_ids), len(cats) - 1)
        if not (cats[labels] == category_ids).all():
            return None
        flags = list(map(methodcaller("get", "iscrowd", 0), annotations))
        if types_within(flags, (int, bool, float)):  # numpy's bool of a number is Python's
            crowd = np.asarray(flags, dtype=bool)
        else:
            crowd = np.fromiter(map(bool, flags), dtype=bool, count=count)
        return image_index, xywh, labels.astype(np.int64), crowd

    def _checked_annotation_columns(self, annotations: list[Any], skipped_ids: set[Any],
                                    log: ProblemLog) -> tuple[np.ndarray, ...]:
        """The entry-by-entry checks of every annotation; bad entries are reported and left out."""
        path = self.source
        index_of_image: dict[int, int] = {}
        for i, image_id in enumerate(self._image_ids.tolist()):
            index_of_image.setdefault(image_id, i)
        image_index, bboxes, labels, crowd = [], [], [], []
        for index, ann in enumerate(annotations):
            where = f"annotations[{index}]"
            if not has_fields(ann, ANNOTATION_FIELDS, where, path, log):
                continue
            ann_id = ann.get("id", f"at index {index}")
            bbox, ok = ann["bbox"], True
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
                log.error(f"{path}: annotation {ann_id} has bbox {bbox!r}; it must be 4 numbers "
                          "[x, y, width, height] in pixels.", path, where, "bbox")
                ok = False
            elif not all(is_finite(v) for v in bbox):
                log.error(f"{path}: {where} has bbox {bbox!r}; all 4 values must be finite numbers.", path, where,
                          "bbox")
                ok = False
            label = lookup(self.cat_id_to_label, ann["category_id"])
            if label is None and self.cat_ids:
                log.error(f"{path}: annotation {ann_id} uses category_id {ann['category_id']!r}, which is not "
                          f"declared in 'categories' (declared: {self.cat_ids}). Add the category to 'categories' "
                          "or remove the annotation.", path, where, "category_id")
            img = lookup(index_of_image, ann["image_id"])
            if img is None and not contains(skipped_ids, ann["image_id"]):
                log.error(f"{path}: annotation {ann_id} refers to image_id {ann['image_id']!r}, which is not in "
                          "'images'. Add the image entry or remove the annotation.", path, where, "image_id")
            if not ok or label is None or img is None:
                continue
            image_index.append(img)
            bboxes.append([float(v) for v in bbox])
            labels.append(label)
            crowd.append(bool(ann.get("iscrowd", 0)))
        return (np.asarray(image_index, dtype=np.int64), np.asarray(bboxes, dtype=np.float64).reshape(-1, 4),
                np.asarray(labels, dtype=np.int64), np.asarray(crowd, dtype=bool))

    def _warn_about_fixed_boxes(self, log: ProblemLog) -> None:
        parts = []
        if self.stats["clipped"]:
            parts.append(f"clipped {self.stats['clipped']} boxes that extended outside their image")
        if self.stats["dropped"]:
            parts.append(f"dropped {self.stats['dropped']} boxes with zero or negative size "
                         f"(width or height < {MIN_BOX_SIZE:g} px after clipping)")
        if parts:
            log.warning(f"{self.source}: {', '.join(parts)}.", self.source, "annotations", stacklevel=3)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source}, images={len(self)}, "
                f"boxes={self.stats['boxes']}, classes={self.num_classes}, train={self.train})")


def _by_image(xyxy: np.ndarray, labels: np.ndarray, image_index: np.ndarray, keep: np.ndarray,
              num_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The boxes where ``keep`` grouped by image: ``(boxes float32 [M, 4], labels [M], offsets [N + 1], counts
    [N])``."""
    order = np.argsort(image_index[keep], kind="stable")
    counts = np.bincount(image_index[keep], minlength=num_images)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return np.ascontiguousarray(xyxy[keep][order], dtype=np.float32), labels[keep][order], offsets, counts
