"""The training data as the trainer reads it: the dataset wrapped for mosaic / affine augmentation, and the run's
``train.log``."""
from __future__ import annotations

import logging
from pathlib import Path

from torch.utils.data import Dataset

from ..config import AugmentConfig
from ..data import CocoDetection, MosaicDetection
from ..errors import ConfigError

log = logging.getLogger("anchorfree")


def build_train_data(dataset: CocoDetection, augment: AugmentConfig, size: int) -> Dataset:
    """``dataset`` wrapped in :class:`~anchorfree.data.MosaicDetection` when mosaic or affine is on."""
    a = augment
    if a.mosaic_prob == 0 and not a.affine:
        return dataset
    if not 0 <= a.mosaic_prob <= 1:
        raise ConfigError(f"train.augment.mosaic_prob must be in [0, 1], got {a.mosaic_prob}")
    if len(a.affine_scale) != 2 or not 0 < a.affine_scale[0] <= a.affine_scale[1]:
        raise ConfigError(f"train.augment.affine_scale must be [low, high] with 0 < low <= high, got {a.affine_scale}")
    return MosaicDetection(dataset, size, a.mosaic_prob, a.affine, a.affine_scale, a.affine_translate,
                           a.affine_degrees, a.affine_shear, a.min_area_ratio, a.hflip_prob, a.color_jitter,
                           (a.hsv_h, a.hsv_s, a.hsv_v))


def setup_logging(run: Path) -> None:
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        if isinstance(handler, logging.FileHandler):
            log.removeHandler(handler)
    handler = logging.FileHandler(run / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
