"""Data pipeline: datasets (COCO, YOLO, Pascal VOC), transforms, collation, dataset specs, checks, conversion
and synthetic data."""
from anchorfree.data.check import check_dataset, check_images, preflight
from anchorfree.data.coco import CocoDetection, load_image, read_categories, read_coco_json
from anchorfree.data.collate import collate, make_collate
from anchorfree.data.convert import convert_dataset
from anchorfree.data.mosaic import MosaicDetection, mosaic_enabled
from anchorfree.data.report import DatasetReport, DatasetWarning, Problem, ProblemLog
from anchorfree.data.spec import DATA_FORMATS, DataSpec, load_data_spec
from anchorfree.data.synth import SYNTH_CATEGORY_IDS, SYNTH_CLASSES, generate_synthetic_dataset
from anchorfree.data.synth_photos import PHOTO_CATEGORY_IDS, PHOTO_CLASSES, PhotosUnavailableError, generate_photo_dataset
from anchorfree.data.transforms import (
    MIN_BOX_SIZE,
    DetectionTransform,
    ResizeKeepRatio,
    build_transforms,
    keep_ratio_size,
)
from anchorfree.data.voc import VOC_CLASSES

__all__ = [
    "CocoDetection",
    "DATA_FORMATS",
    "DataSpec",
    "DatasetReport",
    "DatasetWarning",
    "DetectionTransform",
    "MIN_BOX_SIZE",
    "MosaicDetection",
    "Problem",
    "ProblemLog",
    "ResizeKeepRatio",
    "SYNTH_CATEGORY_IDS",
    "SYNTH_CLASSES",
    "VOC_CLASSES",
    "build_transforms",
    "check_dataset",
    "check_images",
    "collate",
    "convert_dataset",
    "generate_synthetic_dataset",
    "generate_photo_dataset",
    "PHOTO_CATEGORY_IDS",
    "PHOTO_CLASSES",
    "PhotosUnavailableError",
    "keep_ratio_size",
    "load_data_spec",
    "load_image",
    "make_collate",
    "mosaic_enabled",
    "preflight",
    "read_categories",
    "read_coco_json",
]
