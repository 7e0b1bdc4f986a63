"""Shared fixtures: a small synthetic dataset and a model config small enough for CPU tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anchorfree.config import Config
from anchorfree.data import generate_synthetic_dataset
from anchorfree.presets import get_preset

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training and 8 validation images of 96..128 px."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("small_synth"), num_train=24, num_val=8,
                                      image_size=(96, 128), seed=3)


def micro_config() -> Config:
    """A very small FCOS (ResNet-10, 32 channels, 128 px) for tests of the machinery, not accuracy."""
    cfg = get_preset("fcos_r18_fpn_tiny")
    m, t = cfg.model, cfg.train
    m.backbone.name = "resnet10"
    m.neck.out_channels = 32
    m.head.feat_channels = 32
    m.head.num_convs = 1
    m.head.gn_groups = 8
    m.input.min_size = m.input.max_size = 128
    t.batch_size, t.epochs, t.workers, t.warmup_iters, t.log_interval = 4, 2, 0, 4, 2
    t.augment.color_jitter = 0.0
    return cfg
