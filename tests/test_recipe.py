"""train.recipe: the small-data recipe chosen from the dataset's size (anchorfree/engine/recipe.py)."""
from __future__ import annotations

import pytest

from anchorfree.config import apply_overrides, load_config
from anchorfree.data import MosaicDetection, load_data_spec
from anchorfree.engine.recipe import SMALL, SMALL_DATA_IMAGES, resolve_recipe
from anchorfree.engine.trainer import Trainer
from anchorfree.errors import ConfigError
from anchorfree.presets import get_preset

from conftest import micro_config


def test_light_presets_choose_the_small_recipe_up_to_the_limit():
    cfg = get_preset("gfl_shufflenetv2_pan_nano")
    assert cfg.train.recipe == "auto" and cfg.train.augment.mosaic_prob == 0.0 and cfg.train.epochs == 8
    small, lines = resolve_recipe(cfg, 50, iters_per_epoch=7)
    t = small.train
    assert (t.recipe, t.augment.mosaic_prob, t.augment.close_mosaic, t.ema) == ("small", 1.0, 10, True)
    assert (t.augment.hsv_h, t.augment.hsv_s, t.augment.hsv_v, t.augment.color_jitter) == (0.015, 0.7, 0.4, 0.0)
    assert t.epochs == 100  # no train.minutes: YOLO's 100 epochs instead of 8 (8 x 7 steps would barely train)
    assert t.warmup_iters == 21  # at most 3 epochs of 7 steps (the preset's 100 would outlast the first 14 epochs)
    assert "50 training images <= 1000" in lines[0] and "train.augment.mosaic_prob=1.0" in lines[0]
    assert cfg.train.augment.mosaic_prob == 0.0 and cfg.train.recipe == "auto"  # the input config is not touched
    same, lines = resolve_recipe(cfg, SMALL_DATA_IMAGES + 1, iters_per_epoch=200)
    assert same is cfg and "1001 training images > 1000" in lines[0]


def test_values_set_by_the_user_are_kept_and_named():
    cfg = apply_overrides(get_preset("gfl_csp_pan_n"), ["train.augment.hsv_s=0.3", "train.minutes=10",
                                                       "train.augment.mosaic_prob=0.5"])
    small, lines = resolve_recipe(cfg, 120, iters_per_epoch=15)
    assert small.train.augment.hsv_s == 0.3 and small.train.augment.mosaic_prob == 0.5
    assert small.train.augment.hsv_v == SMALL["augment.hsv_v"]
    assert small.train.epochs == cfg.train.epochs  # a time budget sets the run's length
    assert "kept the values set in the config: train.augment.mosaic_prob=0.5, train.augment.hsv_s=0.3" in lines[1]
    again, _ = resolve_recipe(small, 120, iters_per_epoch=15)  # --resume reads the resolved config: nothing moves
    assert again.train == small.train


def test_preset_recipe_and_bad_values():
    cfg = apply_overrides(get_preset("gfl_shufflenetv2_pan_nano"), ["train.recipe=preset"])
    assert resolve_recipe(cfg, 10, iters_per_epoch=2)[0] is cfg
    cfg.train.recipe = "large"
    with pytest.raises(ConfigError, match="train.recipe='large': choose auto"):
        resolve_recipe(cfg, 10, iters_per_epoch=2)


def test_trainer_trains_and_records_the_resolved_recipe(small_synth, tmp_path):
    cfg = micro_config()
    cfg.train.recipe = "auto"  # 24 training images
    trainer = Trainer(cfg, load_data_spec(small_synth), tmp_path / "run", progress=False)
    assert isinstance(trainer.train_data, MosaicDetection) and trainer.ema is not None
    assert trainer.train_set.transforms is not None
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.train.recipe == "small" and saved.train.augment.mosaic_prob == 1.0 and saved.train.ema
    assert saved.train.epochs == 2  # micro_config's own epochs, not the preset's: kept
    assert "train.recipe=auto: the small-data recipe (24 training images <= 1000)" in \
        (tmp_path / "run" / "train.log").read_text()


def test_large_images_resolve_to_window_training_and_small_ones_do_not():
    """``train.augment.crop_size=-1`` (auto): random windows of input.max_size when the training images' median long
    side is >= 2x it (said so, with the --slice to predict with); whole images otherwise; a set value is kept."""
    import torch

    from anchorfree.engine.recipe import resolve_crop

    cfg = get_preset("gfl_shufflenetv2_pan_nano")
    assert cfg.train.augment.crop_size == -1 and cfg.model.input.max_size == 320
    big, lines = resolve_crop(cfg, torch.tensor([[2472, 2299], [1035, 1249], [3000, 4000]]))
    assert big.train.augment.crop_size == 320 and cfg.train.augment.crop_size == -1  # a copy: the input is kept
    assert "crop_size=auto -> 320" in lines[0] and "median long side is 2472 px" in lines[0] and "--slice 320" in lines[0]
    small, lines = resolve_crop(cfg, torch.tensor([[320, 320]] * 5))
    assert small.train.augment.crop_size == 0 and lines == []
    fixed, lines = resolve_crop(apply_overrides(cfg, ["train.augment.crop_size=512"]), torch.tensor([[320, 320]]))
    assert fixed.train.augment.crop_size == 512 and "random 512 px windows" in lines[0]
