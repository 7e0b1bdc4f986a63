"""Data pipeline: COCO datasets, transforms, collation, dataset specs and synthetic data."""
from anchorfree.data.coco import CocoDetection, load_image, read_categories, read_coco_json
from anchorfree.data.collate import collate, make_collate
from anchorfree.data.mosaic import MosaicDetection, mosaic_enabled
from anchorfree.data.spec import DataSpec, load_data_spec
from anchorfree.data.synth import SYNTH_CATEGORY_IDS, SYNTH_CLASSES, generate_synthetic_dataset
from anchorfree.data.transforms import (
    MIN_BOX_SIZE,
    DetectionTransform,
    ResizeKeepRatio,
    build_transforms,
    keep_ratio_size,
)

__all__ = [
    "CocoDetection",
    "DataSpec",
    "DetectionTransform",
    "MIN_BOX_SIZE",
    "MosaicDetection",
    "ResizeKeepRatio",
    "SYNTH_CATEGORY_IDS",
    "SYNTH_CLASSES",
    "build_transforms",
    "collate",
    "generate_synthetic_dataset",
    "keep_ratio_size",
    "load_data_spec",
    "load_image",
    "make_collate",
    "mosaic_enabled",
    "read_categories",
    "read_coco_json",
]
