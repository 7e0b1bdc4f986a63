"""What a run checks and opens before it trains: its settings, the training data (wrapped for mosaic / affine
augmentation), the run's ``train.log``, and the dataset problems found while loading (logged there too)."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from torch.utils.data import Dataset

from ..config import AugmentConfig, Config
from ..config_checks import validate_config
from ..data import CocoDetection, DatasetWarning, MosaicDetection
from ..errors import ConfigError, DatasetError
from .finetune import freeze_prefixes

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


def check_train_settings(cfg: Config) -> None:
    """Refuse out-of-range values (:func:`anchorfree.config_checks.validate_config`: every problem at once) and
    inconsistent scale-out settings, with messages naming the field."""
    validate_config(cfg)
    t = cfg.train
    freeze_prefixes(t.freeze)
    if t.weights and not Path(t.weights).exists():
        raise ConfigError(f"train.weights={t.weights}: no such file or folder; pass a run folder, a .pt checkpoint "
                          "or a run written by `anchorfree convert`")
    if not isinstance(t.accumulate, int) or t.accumulate < 1:
        raise ConfigError(f"train.accumulate must be a whole number >= 1 (micro-batches per step), got {t.accumulate}")
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size must be >= 1 (images per process), got {t.batch_size}")
    if t.checkpoint_interval < 0:
        raise ConfigError(f"train.checkpoint_interval must be >= 0 (0: per epoch only), got {t.checkpoint_interval}")
    if t.lr_reference_batch < 0:
        raise ConfigError(f"train.lr_reference_batch must be >= 0 (0: train.batch_size), got {t.lr_reference_batch}")
    if t.log_interval < 1:
        raise ConfigError(f"train.log_interval must be >= 1, got {t.log_interval}")


@contextlib.contextmanager
def dataset_problems_logged(log_message: Callable[[str, int], None]) -> Iterator[None]:
    """The dataset warnings raised inside go to ``train.log`` too (through ``log_message``, and are shown as usual),
    then the dataset error that stops the run."""
    error = None
    with warnings.catch_warnings(record=True) as caught:  # the filters still apply: ignored ones stay ignored
        try:
            yield
        except DatasetError as e:
            error = e
    for w in caught:
        if issubclass(w.category, DatasetWarning):
            log_message(f"dataset warning: {w.message}", logging.WARNING)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if error is not None:
        log_message(f"dataset error, training did not start: {error}", logging.ERROR)
        raise error
