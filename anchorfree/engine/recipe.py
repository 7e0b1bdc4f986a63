"""``train.recipe``: the training recipe chosen from the dataset's size.

On small datasets (``SMALL_DATA_IMAGES`` training images or fewer) the light presets' recipe, chosen on the
synthetic 3000-image photo set, loses by a wide margin to YOLO's; ``small`` is YOLO's recipe (YOLOv5/v8
``hyp.scratch``: 4-image mosaic on every sample with random affine scale, HSV 0.015/0.7/0.4, horizontal flip,
EMA of the weights, mosaic off for the last 10 epochs) plus an epoch floor and a warm-up of at most 3 epochs, so
that a run on 50 images without ``train.minutes`` trains long enough. ``auto`` picks ``small`` up to
``SMALL_DATA_IMAGES`` images and the preset's own recipe above; ``preset`` always keeps the preset's.

The recipe sets a field only where the config still holds the preset's value: a value set by the user (in a YAML or
a ``key=value`` override) is kept and listed. The run's ``config.yaml`` records the resolved recipe, so that
``--resume`` continues with the same settings. See BENCHMARKS.md, "Small real data".
"""
from __future__ import annotations

import copy
from typing import Any

from ..config import Config
from ..errors import ConfigError

SMALL_DATA_IMAGES = 1000
CHOICES = ("auto", "small", "preset")
SMALL: dict[str, Any] = {  # train.* path -> value
    "augment.mosaic_prob": 1.0,
    "augment.close_mosaic": 10,
    "augment.hsv_h": 0.015,
    "augment.hsv_s": 0.7,
    "augment.hsv_v": 0.4,
    "augment.color_jitter": 0.0,
    "ema": True,
}
MIN_EPOCHS = 100  # without train.minutes: YOLO's default epochs
WARMUP_EPOCHS = 3  # the warm-up never takes more than this many epochs (YOLO's warmup_epochs)


def get_path(obj: Any, path: str) -> Any:
    """``obj.a.b`` for ``path='a.b'``."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, name, value)


def _reference(cfg: Config) -> Config:
    """The config the user started from: the preset of ``cfg.model.name``, or the defaults."""
    from ..presets import PRESETS, get_preset

    return get_preset(cfg.model.name) if cfg.model.name in PRESETS else Config()


def resolve_recipe(cfg: Config, num_train: int, iters_per_epoch: int) -> tuple[Config, list[str]]:
    """The config to train with (a copy when the recipe changes it, ``train.recipe`` then naming the one used)
    and the lines that say what was chosen and why."""
    t = cfg.train
    if t.recipe not in CHOICES:
        raise ConfigError(f"train.recipe={t.recipe!r}: choose auto (small up to {SMALL_DATA_IMAGES} training images, "
                          "else the preset's), small or preset")
    if t.recipe == "preset" or (t.recipe == "auto" and num_train > SMALL_DATA_IMAGES):
        why = "" if t.recipe == "preset" else f" ({num_train} training images > {SMALL_DATA_IMAGES})"
        return cfg, [f"train.recipe={t.recipe}: the preset's recipe{why}"]
    reference = _reference(cfg).train
    out = copy.deepcopy(cfg)
    applied, kept = [], []
    for path, value in SMALL.items():
        current = get_path(t, path)
        if current != get_path(reference, path) and current != value:
            kept.append(f"{path}={current!r}")
        elif current != value:
            _set(out.train, path, value)
            applied.append(f"{path}={value!r}")
    if t.minutes <= 0 and t.epochs == reference.epochs and t.epochs < MIN_EPOCHS:
        out.train.epochs = MIN_EPOCHS
        if t.schedule == "step":
            out.train.milestones = [m * MIN_EPOCHS / t.epochs for m in t.milestones]
        applied.append(f"epochs={MIN_EPOCHS}")
    warmup = max(1, WARMUP_EPOCHS * iters_per_epoch)
    if t.warmup_iters > warmup and t.warmup_iters == reference.warmup_iters:
        out.train.warmup_iters = warmup
        applied.append(f"warmup_iters={warmup} ({WARMUP_EPOCHS} epochs)")
    out.train.recipe = "small"
    why = f"{num_train} training images <= {SMALL_DATA_IMAGES}" if t.recipe == "auto" else "asked for"
    lines = [f"train.recipe={t.recipe}: the small-data recipe ({why}): "
             + (", ".join(f"train.{a}" for a in applied) if applied else "nothing to change")]
    if kept:
        lines.append(f"train.recipe: kept the values set in the config: {', '.join(f'train.{k}' for k in kept)}")
    if t.recipe == "auto":
        lines.append("train.recipe: train.recipe=preset keeps the preset's recipe")
    return out, lines


__all__ = ["CHOICES", "MIN_EPOCHS", "SMALL", "SMALL_DATA_IMAGES", "resolve_recipe"]


def resolve_crop(cfg: Config, image_sizes: Any) -> tuple[Config, list[str]]:
    """``train.augment.crop_size=-1`` (auto) resolved from the training images' sizes (``[N, 2]`` (h, w)) into a copy
    of the config (:func:`anchorfree.data.crops.large_image_crop`), and the line that says what was chosen."""
    import numpy as np
    import torch

    from ..data.crops import LARGE_FACTOR, large_image_crop

    a, inp = cfg.train.augment, cfg.model.input
    sizes = torch.as_tensor(np.array(image_sizes)).reshape(-1, 2)
    long_side = int(sizes.max(dim=1).values.float().median()) if len(sizes) else 0
    if a.crop_size == -1:
        out = copy.deepcopy(cfg)
        out.train.augment.crop_size = large_image_crop(sizes, inp.max_size)
        if out.train.augment.crop_size == 0:
            return out, []
        return out, [f"train.augment.crop_size=auto -> {out.train.augment.crop_size}: the training images' median long "
                     f"side is {long_side} px, at least {LARGE_FACTOR:g}x model.input.max_size={inp.max_size}, so the "
                     f"samples are random {out.train.augment.crop_size} px windows at the images' resolution (predict "
                     f"large images with --slice {out.train.augment.crop_size}; crop_size=0 trains on whole images)"]
    if a.crop_size > 0:
        return cfg, [f"train.augment.crop_size={a.crop_size}: random {a.crop_size} px windows at the images' "
                     f"resolution (median long side {long_side} px)"]
    return cfg, []
