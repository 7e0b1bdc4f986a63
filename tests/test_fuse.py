"""BatchNorm folding and bf16 conv weights for inference keep the detector's outputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from anchorfree.models.detector import Detector
from anchorfree.models.fuse import fold_batch_norms, inference_copy, inference_detector
from anchorfree.presets import get_preset
from anchorfree.models.layers import FloatConv2d
from anchorfree.runtime import BF16_ENV, autocast

CPU = torch.device("cpu")


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial statistics and affine parameters, so that folding has something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.running_mean.shape[0]
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)


def build(preset: str, norm: str) -> Detector:
    torch.manual_seed(0)
    cfg = get_preset(preset).model
    cfg.num_classes, cfg.backbone.norm = 4, norm
    model = Detector(cfg)
    randomize_norms(model)
    return model.eval()


def images(size: int = 128) -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.mark.parametrize("norm", ["frozen_bn", "bn"])
def test_folding_resnet50_keeps_raw_maps(norm: str) -> None:
    model = build("fcos_r50_fpn", norm)
    fused = inference_copy(model)
    # ResNet-50: the stem, 16 bottlenecks x 3 convs and 4 downsample convs each have one BatchNorm
    assert sum(isinstance(m, nn.Identity) for m in fused.backbone.modules()) == 1 + 16 * 3 + 4
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in fused.modules())
    x = images()
    with torch.no_grad():
        ref, out = model(x), fused(x)
    for key in ref:
        for a, b in zip(ref[key], out[key]):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item())


def test_folding_leaves_the_original_untouched() -> None:
    model = build("retinanet_r18_fpn_tiny", "bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = inference_copy(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(not p.requires_grad for p in fused.parameters())
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batch_norms) == 1 + 8 * 2 + 3  # ResNet-18 body (its head norm is GroupNorm)
    x = images()
    with torch.no_grad():
        for a, b in zip(model(x)["cls"], fused(x)["cls"]):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_folding_needs_eval_mode() -> None:
    model = build("fcos_r18_fpn_tiny", "bn").train()
    with pytest.raises(RuntimeError, match="eval mode"):
        fold_batch_norms(model)


def test_sequential_conv_bn_fold_matches_hand_computed_affine() -> None:
    conv = nn.Conv2d(1, 1, 1, bias=True)
    bn = nn.BatchNorm2d(1).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0), conv.bias.fill_(1.0)
        bn.running_mean.fill_(3.0), bn.running_var.fill_(4.0 - bn.eps), bn.weight.fill_(5.0), bn.bias.fill_(6.0)
    seq = nn.Sequential(conv, bn, nn.ReLU()).eval()
    assert fold_batch_norms(seq) == 1
    # y = ((2x + 1) - 3) / 2 * 5 + 6 = 5x + 1
    assert seq[0].weight.item() == pytest.approx(5.0) and seq[0].bias.item() == pytest.approx(1.0)
    assert isinstance(seq[1], nn.Identity)


@pytest.mark.parametrize("preset", ["fcos_r18_fpn_tiny", "centernet_r18_tiny"])
def test_bf16_weights_give_the_same_fast_detections_as_autocast_casts(monkeypatch, preset) -> None:
    """bf16 forced where the CPU emulates it (ANCHORFREE_CPU_BF16=1); the float32 output convs stay float32."""
    monkeypatch.setenv(BF16_ENV, "1")
    model = build(preset, "bn")
    fp32 = inference_copy(model).set_channels_last(True)
    bf16 = inference_detector(model, fast=True)
    convs = [m for m in bf16.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.dtype == (torch.float32 if isinstance(m, FloatConv2d) else torch.bfloat16) for m in convs)
    assert any(isinstance(m, FloatConv2d) for m in convs) == (preset == "centernet_r18_tiny")
    x = images()
    with torch.no_grad(), autocast(CPU):
        a, b = fp32(x), bf16(x)
    for key in a:
        for u, v in zip(a[key], b[key]):
            torch.testing.assert_close(v, u, rtol=0, atol=0)
