"""Dataset checks that agree with training: every problem training would stop on, listed before it starts.

* :func:`check_dataset` reads a dataset (YAML or folder, any format) with the readers training
  uses, but with a collecting :class:`~anchorfree.data.report.ProblemLog`: every problem is listed
  (at most :data:`~anchorfree.data.report.LISTED_PER_KIND` of one kind per file, the rest counted),
  errors (training stops on them) apart from warnings (training clips, drops or ignores and goes
  on). ``anchorfree data check`` prints its report.
* :func:`check_images` opens every image file of a dataset. The default header pass reads each
  file's header (the size from a JPEG's SOF or a PNG's IHDR, other formats through PIL's
  ``Image.open``; no pixel decoding) and looks for the end marker of JPEG (``FF D9``) and PNG
  (``IEND``) files and the length recorded in WebP and BMP headers, so truncated files are found
  without decoding. A file whose header does not open, or whose end is missing, is then decoded
  with :func:`~anchorfree.data.load_image`, the decoder training uses, and reported only if that
  fails: the header pass never rejects a file training would read. ``decode=True`` decodes every
  file instead (slower; also finds damage inside files). Both report missing files, unreadable
  files and files whose size differs from the declared width/height (which training stops on: see
  :func:`~anchorfree.data.coco.size_mismatch_message`).
* :func:`preflight` runs the image pass on datasets already built, for a trainer to call before
  its first epoch: ``preflight(train_set, val_set).raise_if_errors()``.
"""
from __future__ import annotations

import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image

from anchorfree.data.coco import CocoDetection, load_image, size_mismatch_message
from anchorfree.data.crops import object_sizes
from anchorfree.data.report import LISTED_PER_KIND, DatasetReport, DatasetWarning, Problem, ProblemLog
from anchorfree.data.spec import DataSpec, load_data_spec
from anchorfree.errors import DatasetError

__all__ = ["check_dataset", "check_images", "preflight"]

ImageCheck = bool | Literal["headers"]
DEFAULT_THREADS = 1
"""Threads of the image pass. More threads overlap the file reads of network or cold storage; on files in the
page cache one thread is fastest (the parsing holds the GIL)."""
_TAIL_BYTES = 1024  # how far from the end a JPEG's EOI or a PNG's IEND may be (padding after them is common)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_NO_SIZE_BEFORE = frozenset((0xFF, 0xD8, 0xD9, 0xDA, 0x01, *range(0xD0, 0xD8)))  # fill, SOI, EOI, SOS, no length


def check_images(dataset: CocoDetection, decode: bool = False, threads: int = DEFAULT_THREADS,
                 problems: ProblemLog | None = None) -> list[Problem]:
    """Open every image file of ``dataset`` and return the problems training would stop on.

    Args:
        dataset: a built dataset (its file names, ids and declared sizes are used).
        decode: decode every file fully (as ``anchorfree data check --images``) instead of the header
            pass (see the module docstring).
        threads: files checked at the same time (``1``: one after the other).
        problems: a log that also receives the problems (a strict log raises on the first).

    Returns:
        The problems found, in image order: missing, unreadable, corrupt or truncated files, and files
        whose size differs from their declared width/height; all of them are errors.
    """
    arrays = dataset.arrays()
    ids, sizes = arrays["image_ids"].tolist(), arrays["sizes"].tolist()
    folder = str(dataset.image_dir)
    source = dataset.source

    def one(index: int) -> str | None:
        path = os.path.join(folder, dataset.file_name(index))
        return _image_problem(path, ids[index], tuple(sizes[index]), source, decode)

    if threads > 1 and len(dataset) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            messages = list(pool.map(one, range(len(dataset)), chunksize=256))
    else:
        messages = [one(i) for i in range(len(dataset))]
    bad = [index for index, message in enumerate(messages) if message is not None]
    limit = problems.limit if problems is not None else LISTED_PER_KIND
    found = [Problem(messages[i], os.path.join(folder, dataset.file_name(i)), f"image id {ids[i]}")
             for i in bad[:limit]]
    if len(bad) > limit:
        found.append(Problem(f"{source}: {len(bad) - limit} more image files with problems are not listed; the first "
                             f"{limit} are above.", source, None, True, len(bad) - limit))
    if problems is not None:
        problems.extend(found)
    return found


def _image_problem(path: str, image_id: int, declared_hw: tuple[int, int], source: str, decode: bool) -> str | None:
    """What is wrong with one image file (the message training would stop with), or ``None``."""
    size = None if decode else _header_size(path)
    if size is None:  # decoding asked for, or the header pass has a doubt: decode as training does
        try:
            image = load_image(path, image_id)
        except DatasetError as e:
            return str(e)
        size = tuple(image.shape[-2:])
    if size != declared_hw:
        return size_mismatch_message(path, image_id, size, declared_hw, source)
    return None


def _header_size(path: str) -> tuple[int, int] | None:
    """``(h, w)`` from the file's header when the file opens and looks complete, else ``None``.

    JPEG (its SOF segment) and PNG (IHDR) sizes are read here, walking the segment lengths without
    parsing them; other formats, and JPEGs laid out unusually, go through PIL's ``Image.open``.
    """
    try:
        with open(path, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            head = f.read(24)
            kind, size = None, None
            if head[:3] == b"\xff\xd8\xff":
                kind, size = "JPEG", _jpeg_size(f)
            elif head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                kind, size = "PNG", (height, width)
            if size is None:
                f.seek(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(f) as im:
                        width, height = im.size
                        kind, size = im.format, (height, width)
            if not _looks_complete(f, kind, length):
                return None
    except Exception:  # missing, unreadable, not an image, too large for PIL: decoding decides
        return None
    return size


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """``(h, w)`` of the first SOF segment, skipping the segments before it; ``None`` if the layout is unusual."""
    f.seek(2)
    while True:
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF or marker[1] in _JPEG_NO_SIZE_BEFORE:
            return None
        if marker[1] in _JPEG_SOF:
            data = f.read(5)
            height, width = (data[1] << 8) | data[2], (data[3] << 8) | data[4]
            return (height, width) if len(data) == 5 and height and width else None
        f.seek(((marker[2] << 8) | marker[3]) - 2, os.SEEK_CUR)


def _looks_complete(f: BinaryIO, kind: str | None, length: int) -> bool:
    """Whether the file holds its end marker or its recorded length (formats without either: ``True``)."""
    if kind in ("JPEG", "MPO", "PNG"):
        f.seek(max(0, length - _TAIL_BYTES))
        tail = f.read()
        return (b"\xff\xd9" if kind != "PNG" else b"IEND") in tail
    if kind in ("WEBP", "BMP"):
        f.seek(0)
        head = f.read(14)
        if kind == "WEBP" and head[:4] == b"RIFF":
            return length >= struct.unpack("<I", head[4:8])[0] + 8
        if kind == "BMP" and head[:2] == b"BM":
            recorded = struct.unpack("<I", head[2:6])[0]
            return recorded == 0 or length >= recorded
    return True


def check_dataset(data: str | Path | DataSpec, images: ImageCheck = "headers",
                  threads: int = DEFAULT_THREADS, input_size: int = 320) -> DatasetReport:
    """Check a dataset as training reads it, listing every problem instead of stopping at the first.

    Args:
        data: a dataset folder or YAML (COCO, YOLO or Pascal VOC), or a loaded :class:`DataSpec`
            (then problems of the YAML and of YOLO/VOC files are not read again: pass the path to
            list those too).
        images: ``"headers"`` (default): the header pass of :func:`check_images`; ``True``: decode
            every image; ``False``: annotations only.
        threads: files the image pass checks at the same time.
        input_size: the network input the object sizes are reported at (:func:`anchorfree.data.crops.object_sizes`).

    Returns:
        A :class:`DatasetReport`: ``report.ok`` is ``False`` exactly when training on the dataset
        would stop on one of ``report.errors``; ``report.warnings`` are what training warns about.
        A dataset without a train split gets a warning (it can be evaluated on, not trained on).
    """
    log = ProblemLog(strict=False)
    report = DatasetReport(source=str(data.source if isinstance(data, DataSpec) else data))
    report.images = "not checked" if images is False else ("decoded" if images is True else "headers")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spec = data if isinstance(data, DataSpec) else load_data_spec(data, log)
        except DatasetError as e:
            log.absorb(e)
            spec = None
        if spec is not None:
            report.source, report.format = spec.source, spec.format
            _check_splits(spec, images, threads, log, report, input_size)
    for warning in caught:
        if isinstance(warning.message, (DatasetWarning, Image.DecompressionBombWarning)):
            log.absorb_warning(warning)
    report.problems = log.problems
    return report


def _check_splits(spec: DataSpec, images: ImageCheck, threads: int, log: ProblemLog, report: DatasetReport,
                  input_size: int = 320) -> None:
    """Build each split's dataset as the trainer does (val checked against the train class names)."""
    try:
        names = spec.class_names
    except DatasetError as e:
        log.absorb(e)
        return
    if "train" not in spec.splits:
        log.warning(f"{spec.source} has no train split: it can be evaluated on but not trained on (add 'train:').",
                    spec.source, "train")
    for split in spec.splits:
        try:
            ann, image_dir = spec.split(split)
            dataset = CocoDetection(ann, image_dir, class_names=names, problems=log)
        except DatasetError as e:
            log.absorb(e)
            continue
        if split == "train":
            names = dataset.class_names  # the trainer checks val against the training classes
        report.stats[split] = dict(dataset.stats)
        report.split_sources[split] = dataset.source
        arrays = dataset.arrays()
        counts = torch.from_numpy(np.diff(arrays["box_offsets"]))
        report.sizes[split] = object_sizes(torch.from_numpy(arrays["sizes"].copy()), torch.from_numpy(arrays["boxes"].copy()),
                                           torch.repeat_interleave(torch.arange(len(counts)), counts), input_size)
        report.input_size = input_size
        if images is not False:
            check_images(dataset, decode=images is True, threads=threads, problems=log)
            report.images_checked[split] = len(dataset)
    report.class_names = list(names or [])


def preflight(*datasets: CocoDetection, decode: bool = False, threads: int = DEFAULT_THREADS) -> DatasetReport:
    """The image pass (:func:`check_images`) of datasets already built, before training starts.

    A trainer calls it once its datasets are built and before the first epoch, so that a missing,
    corrupt or truncated file, or one whose size differs from its declared width/height, stops the
    run at once instead of in the middle of an epoch::

        preflight(train_set, val_set).raise_if_errors()

    Args:
        datasets: the datasets (e.g. the training and validation sets).
        decode: decode every image instead of reading headers.
        threads: files checked at the same time.

    Returns:
        A :class:`DatasetReport` with the problems and, per dataset, its :attr:`CocoDetection.stats`
        (keyed ``train``/``val`` by :attr:`CocoDetection.train`, numbered when repeated).
    """
    log = ProblemLog(strict=False)
    report = DatasetReport(source=", ".join(dict.fromkeys(str(ds.source) for ds in datasets)),
                           images="decoded" if decode else "headers")
    for dataset in datasets:
        key = "train" if dataset.train else "val"
        key = key if key not in report.stats else f"{key}{sum(k.startswith(key) for k in report.stats) + 1}"
        report.stats[key] = dict(dataset.stats)
        report.split_sources[key] = dataset.source
        check_images(dataset, decode=decode, threads=threads, problems=log)
        report.images_checked[key] = len(dataset)
    if datasets:
        report.class_names = list(datasets[0].class_names)
    report.problems = log.problems
    return report
