"""The cross-stage-partial body and the CSP-PAN neck: shapes, strides, gradients and parameter counts
(counted by hand from the layer list in the modules' docstrings)."""
from __future__ import annotations

import pytest
import torch

from anchorfree.config import BackboneConfig, CSPBackboneConfig, NeckConfig
from anchorfree.errors import ConfigError
from anchorfree.models.backbones import build_backbone
from anchorfree.models.backbones.csp import C2f
from anchorfree.models.detector import Detector
from anchorfree.models.necks import build_neck
from anchorfree.presets import get_preset
from anchorfree.structures import Batch


def conv(cin: int, cout: int, k: int) -> int:
    """A k x k conv without bias and its BatchNorm (weight and bias)."""
    return cin * cout * k * k + 2 * cout


def c2f(cin: int, cout: int, n: int) -> int:
    hidden = max(8, cout // 2)
    return conv(cin, 2 * hidden, 1) + n * 2 * conv(hidden, hidden, 3) + conv((2 + n) * hidden, cout, 1)


def body_params(widths: list[int], depths: list[int]) -> int:
    total = conv(3, widths[0], 3)
    for cin, cout, n in zip(widths[:-1], widths[1:], depths):
        total += conv(cin, cout, 3) + c2f(cout, cout, n)
    c = widths[-1]
    return total + conv(c, c // 2, 1) + conv(2 * c, c, 1)  # SPPF


def neck_params(in_channels: list[int], c: int, n: int) -> int:
    levels = len(in_channels)
    return (sum(conv(ch, c, 1) for ch in in_channels) + (levels - 1) * (2 * c2f(2 * c, c, n) + conv(c, c, 3)))


def csp_config(widths=(16, 32, 64, 128, 256), depths=(1, 2, 2, 1), **kwargs) -> BackboneConfig:
    return CSPBackboneConfig(name="csp", norm="bn", frozen_stages=0, csp_widths=list(widths), csp_depths=list(depths),
                          **kwargs)


@pytest.mark.parametrize("widths,depths", [((16, 32, 64, 128, 256), (1, 2, 2, 1)), ((8, 16, 24, 32, 48), (1, 1, 3, 1))])
def test_body_parameter_count_and_maps(widths, depths):
    body = build_backbone(csp_config(widths, depths, out_levels=[2, 3, 4, 5]))
    assert sum(p.numel() for p in body.parameters()) == body_params(list(widths), list(depths))
    maps = body(torch.randn(2, 3, 96, 128))
    assert [tuple(m.shape) for m in maps] == [(2, widths[i], 96 // 2 ** (i + 1), 128 // 2 ** (i + 1)) for i in (1, 2, 3, 4)]
    assert body.out_channels == list(widths[1:]) and body.out_strides == [4, 8, 16, 32]


def test_body_stops_at_the_last_level_used():
    body = build_backbone(csp_config(out_levels=[3, 4]))
    assert len(body.stages) == 3  # C2, C3, C4: the C5 stage (and its SPPF) is not built
    assert [m.shape[1] for m in body(torch.randn(1, 3, 64, 64))] == [64, 128]


def test_c2f_concatenates_every_bottleneck_output():
    block = C2f(16, 32, n=3, act="relu")
    assert block.fuse[0].in_channels == (2 + 3) * 16
    assert block(torch.randn(1, 16, 8, 8)).shape == (1, 32, 8, 8)


def test_neck_parameter_count_odd_sizes_and_gradients():
    body = build_backbone(csp_config())
    neck = build_neck(body.out_channels, NeckConfig(type="csp_pan", out_channels=48, csp_depth=2,
                                                    num_extra_levels=0, activation="silu"))
    assert sum(p.numel() for p in neck.parameters()) == neck_params(body.out_channels, 48, 2)
    x = torch.randn(2, 3, 100, 140, requires_grad=True)  # odd map sizes at C4/C5
    outs = neck(body(x))
    assert [tuple(o.shape[-2:]) for o in outs] == [(13, 18), (7, 9), (4, 5)] and {o.shape[1] for o in outs} == {48}
    sum(o.square().mean() for o in outs).backward()
    params = [*body.parameters(), *neck.parameters()]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert sum(bool(p.grad.abs().sum() > 0) for p in params) == len(params)


@pytest.mark.parametrize("preset,low,high", [("gfl_csp_pan_n", 0.9e6, 1.5e6), ("gfl_csp_pan_s", 2.7e6, 3.6e6),
                                             ("gfl_csp_pan_m", 5.4e6, 6.6e6), ("gflv2_csp_pan_s", 2.7e6, 3.6e6)])
def test_presets_are_about_1_3_and_6_million_parameters_and_train(preset, low, high):
    cfg = get_preset(preset)
    cfg.model.num_classes = 6
    model = Detector(cfg.model)
    assert low <= sum(p.numel() for p in model.parameters()) <= high
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    batch = Batch(images=images, image_sizes=torch.tensor([[96, 96], [80, 96]]),
                  targets=[{"boxes": torch.tensor([[10.0, 12, 50, 60]]), "labels": torch.tensor([3])},
                           {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}])
    losses = model.loss(batch)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0


def test_bad_csp_settings_are_named():
    with pytest.raises(ConfigError, match="csp_widths"):
        build_backbone(csp_config(widths=(16, 32, 64)))
    with pytest.raises(ConfigError, match="csp_depths"):
        build_backbone(csp_config(depths=(1, 0, 1, 1)))
    with pytest.raises(ConfigError, match="backbone.norm must be bn"):
        build_backbone(CSPBackboneConfig(name="csp", norm="frozen_bn"))
    with pytest.raises(ConfigError, match="csp_activation"):
        build_backbone(csp_config(csp_activation="gelu"))
