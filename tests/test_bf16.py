"""The bf16 paths — fast inference and bf16 autocast training, the defaults on CPUs with AVX512-BF16 or AMX —
run on every machine here: ``ANCHORFREE_CPU_BF16=1`` makes PyTorch emulate bf16 where the CPU lacks it (slowly,
with bf16's rounding), so a bf16-only failure shows on an AVX2 machine too."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from anchorfree.api import Model
from anchorfree.cli import main

from anchorfree.config import apply_overrides
from anchorfree.models.detector import Detector
from anchorfree.models.fuse import inference_detector
from anchorfree.models.layers import FloatConv2d
from anchorfree.presets import get_preset
from anchorfree.runtime import BF16_ENV, autocast, autocast_dtype
from anchorfree.structures import Batch

CPU = torch.device("cpu")
TINY = {
    "cornernet_hg_tiny": ["backbone.hourglass_depth=2", "backbone.hourglass_channels=[16,16,24]",
                          "backbone.hourglass_blocks=[1,1,1]", "backbone.hourglass_feat_channels=16",
                          "head.feat_channels=16", "head.pool_channels=8"],
    "centernet_r18_tiny": ["backbone.name=resnet10", "neck.upconv_channels=[16,16]", "neck.upconv_kernels=[4,4]",
                           "head.feat_channels=16"],
}


@pytest.fixture
def bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BF16_ENV, "1")
    assert autocast_dtype(CPU) == torch.bfloat16


def test_the_environment_variable_forces_either_path(monkeypatch):
    monkeypatch.setenv(BF16_ENV, "1")
    assert autocast_dtype(CPU) == torch.bfloat16
    monkeypatch.setenv(BF16_ENV, "0")
    assert autocast_dtype(CPU) is None
    monkeypatch.setenv(BF16_ENV, "yes")
    with pytest.raises(Exception, match="ANCHORFREE_CPU_BF16='yes'"):
        autocast_dtype(CPU)


def _batch(size: int = 128) -> Batch:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), generator=g, dtype=torch.uint8)
    sizes = torch.tensor([[size, size]] * 2)
    return Batch(images, sizes, [{}, {}], sizes.clone(), torch.ones(2, 2), [-1, -1])


def _compare(want: list, got: list, name: str) -> None:
    """Per image the same number of detections, scores within bf16's rounding of the last features, and most
    boxes found again (all four sides within 1 px in total, same label)."""
    for w, g in zip(want, got):
        assert len(w.scores) == 100 and len(g.scores) == len(w.scores), f"{name}: {len(g.scores)} detections in " \
                                                                        f"bf16, {len(w.scores)} in float32"
        torch.testing.assert_close(g.scores.float(), w.scores.float(), atol=2e-3, rtol=0)
        near = torch.cdist(w.boxes.float(), g.boxes.float(), p=1) <= 1.0
        same = (near & (w.labels[:, None] == g.labels[None])).any(dim=1)
        assert same.float().mean() > 0.5, f"{name}: {int(same.sum())} of 100 boxes found again"


def test_fast_centernet_keeps_its_detections_in_bf16(bf16):
    """A freshly initialised CenterNet predicts heatmap logits near its prior bias everywhere: in bf16 (8 bits of
    mantissa) they collapsed to a few values and peak picking returned plateaus. The output convs now compute
    in float32 under autocast (and keep float32 weights in the fast model)."""
    torch.manual_seed(0)
    preset = "centernet_r18_tiny"
    cfg = apply_overrides(get_preset(preset), ["model.input.min_size=128", "model.input.max_size=128", *TINY[preset]])
    model = Detector(cfg.model).eval()
    batch = _batch()
    options = {"score_thresh": 0.0, "nms": "none", "max_detections": 100}
    with torch.no_grad():
        want = inference_detector(model, fast=False).predict(batch, **options)
        fast = inference_detector(model, fast=True)
        assert any(isinstance(m, FloatConv2d) and m.weight.dtype == torch.float32 for m in fast.modules())
        with autocast(CPU):
            heat = fast(batch.images, batch.image_sizes)["heatmap"][0]
            got = fast.predict(batch, **options)
    assert heat.dtype == torch.float32 and heat.unique().numel() > 0.5 * heat.numel()  # no plateaus
    _compare(want, got, preset)


@pytest.fixture(scope="module")
def cornernet_run(small_synth, tmp_path_factory) -> Path:
    """A tiny CornerNet trained for one epoch in float32 (its corners pair; a fresh one pairs none)."""
    out = tmp_path_factory.mktemp("cornernet") / "run"
    argv = ["train", "cornernet_hg_tiny", "--data", str(small_synth), "--out", str(out), "--no-progress",
            "model.input.min_size=128", "model.input.max_size=128", "train.epochs=1", "train.workers=0",
            "train.batch_size=4", "train.warmup_iters=2", *TINY["cornernet_hg_tiny"]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(BF16_ENV, "0")
        assert main(argv) == 0
    return out


def test_fast_cornernet_keeps_its_detections_in_bf16(cornernet_run, small_synth, bf16):
    """``predict --fast on`` on a CPU with bf16 gave 55 CornerNet detections on 4 images against 400 in float32,
    here 0 of 400: the corner heatmaps' bf16 logits tied over whole regions, so the top peaks were plateau
    cells that formed no TL/BR pair. With float32 output convs both modes give 100 per image."""
    images = [Image.open(p).convert("RGB") for p in sorted((small_synth / "val" / "images").glob("*.jpg"))[:4]]
    options = {"score_thresh": 0.0, "nms": "none", "max_detections": 100}
    want = Model(cornernet_run, device="cpu", fast=False)(images, **options)
    got = Model(cornernet_run, device="cpu", fast=True)(images, **options)
    _compare(want, got, "cornernet_hg_tiny")
