"""Shared fixtures: a small synthetic dataset and a model config small enough for CPU tests."""
from __future__ import annotations

from pathlib import Path

import os

import pytest
import torch

from anchorfree.config import Config
from anchorfree.data import generate_synthetic_dataset
from anchorfree.presets import get_preset
from anchorfree.structures import Batch

# The suite runs in one pytest-xdist process per core (pyproject's addopts: -n auto): small CPU models gain
# little from a second thread, so one thread per process on each core finishes sooner than two threads in one.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads() // _WORKERS)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end trainings (most of the suite's time) first, longest first: with ``--dist worksteal``
    the other processes run the short tests meanwhile and then take trainings from the queue's end."""
    items.sort(key=lambda item: 0 if item.path.name == "test_end_to_end.py" else 1)  # stable: file order kept


def missing_browser(reason: str) -> None:
    """A browser test without its browser: skipped on a developer's machine (saying what to install), failed
    under CI (``CI`` set), where ``.ci/run`` installs Chromium, so that the test cannot pass by not running."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


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


# min_size=256, max_size=384: torchvision does not resize these. The batch pads to 256x352, not a
# multiple of 128: P6/P7 are 6 and 3 maps wide, so torchvision spaces their priors by 352 // 6 = 58
# and 352 // 3 = 117 px (head.prior_stride=padded_input), not by 64 and 128.
PARITY_SIZES = [(256, 352), (256, 256)]


def parity_batch(targets: list[dict[str, torch.Tensor]]) -> tuple[list[torch.Tensor], Batch]:
    """Random uint8 images of ``PARITY_SIZES`` (seeded), as a list for torchvision and as anchorfree's
    padded :class:`Batch` with ``targets``."""
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in PARITY_SIZES]
    padded = torch.zeros(len(images), 3, 256, 352, dtype=torch.uint8)
    for i, img in enumerate(images):
        padded[i, :, : img.shape[1], : img.shape[2]] = img
    sizes = torch.tensor(PARITY_SIZES)
    return images, Batch(padded, sizes, targets, orig_sizes=sizes.clone())
