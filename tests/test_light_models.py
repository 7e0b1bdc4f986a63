"""Light models: torchvision bodies (taps, ImageNet weights, frozen BN), the slim PAN, the depthwise
head tower and the ``*_pan_nano`` / ``*_pan_small`` presets."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from anchorfree.config import BackboneConfig, NeckConfig
from anchorfree.errors import CheckpointError, ConfigError
from anchorfree.models.backbones import BODIES, build_backbone
from anchorfree.models.heads.dense import conv_tower
from anchorfree.models.detector import Detector
from anchorfree.models.necks.fpn import FPN
from anchorfree.models.necks.pan import PAN
from anchorfree.presets import get_preset
from anchorfree.structures import Batch

LIGHT = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "mobilenet_v3_large", "mobilenet_v3_small", "regnet_x_400mf",
         "regnet_y_400mf", "efficientnet_b0"]
LIGHT_PRESETS = ["gfl_shufflenetv2_pan_nano", "gflv2_mobilenetv3_pan_nano", "gfl_regnetx400_pan_small"]


def light_backbone(name: str, **kwargs) -> nn.Module:
    return build_backbone(BackboneConfig(name=name, **{"norm": "bn", "frozen_stages": 0, **kwargs}))


# ---- backbones ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LIGHT)
def test_light_backbone_levels_are_the_deepest_maps_of_their_stride(name):
    """C2..C5 have strides 4..32 and the announced channels, and each is the last map at its stride."""
    body = light_backbone(name, out_levels=[2, 3, 4, 5]).eval().to(memory_format=torch.channels_last)
    sizes: dict[str, tuple[int, int]] = {}
    for path in body.run:
        body.get_submodule(path).register_forward_hook(
            lambda module, args, out, path=path: sizes.__setitem__(path, tuple(out.shape[-2:])))
    x = torch.zeros(1, 3, 256, 320).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        outs = body(x)
    assert [o.shape[1] for o in outs] == body.out_channels
    assert [tuple(o.shape[-2:]) for o in outs] == [(256 >> level, 320 >> level) for level in (2, 3, 4, 5)]
    spec = BODIES[name]
    for level, path in spec.taps.items():
        following = spec.run[spec.run.index(path) + 1:]
        if following:  # the next module already works at the next stride
            assert sizes[following[0]] == (256 >> (level + 1), 320 >> (level + 1)), (level, path)


def test_default_levels_are_c3_to_c5():
    body = light_backbone("shufflenet_v2_x1_0")
    outs = body(torch.zeros(1, 3, 64, 96))
    assert body.out_channels == [116, 232, 464] and [o.shape[1:] for o in outs] == [
        (116, 8, 12), (232, 4, 6), (464, 2, 3)]
    assert not hasattr(body, "conv5") and not hasattr(body, "fc")  # unused layers are not built


@pytest.mark.parametrize("name", LIGHT)
def test_local_imagenet_weights_load(name, tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.get_model(name, weights=None)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(2)  # a different random init, overwritten by the file
    ours = light_backbone(name, weights=str(path)).state_dict()
    expected = reference.state_dict()
    assert ours and all(torch.equal(value, expected[key]) for key, value in ours.items())
    dropped = set(expected) - set(ours)
    assert dropped and all(k.startswith(BODIES[name].unused) for k in dropped)  # classifier and tail only


def test_mismatched_weights_give_a_checkpoint_error(tmp_path):
    small = tmp_path / "x0_5.pth"
    torch.save(torchvision.models.shufflenet_v2_x0_5(weights=None).state_dict(), small)
    with pytest.raises(CheckpointError, match="x0_5.pth does not fit"):  # same keys, other shapes
        light_backbone("shufflenet_v2_x1_0", weights=str(small))
    resnet = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    with pytest.raises(CheckpointError, match="r18.pth does not match.*missing"):  # other keys
        light_backbone("mobilenet_v3_small", weights=str(resnet))
    with pytest.raises(CheckpointError, match="does not exist"):
        light_backbone("mobilenet_v3_small", weights=str(tmp_path / "nothing.pth"))


def test_frozen_bn_keeps_imagenet_statistics_in_training_mode(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    for m in reference.modules():  # non-trivial statistics, so that using them is visible
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "mnv3s.pth"
    torch.save(reference.state_dict(), path)
    body = light_backbone("mobilenet_v3_small", norm="frozen_bn", weights=str(path)).train()
    frozen = [m for m in body.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert all(m.eps == 1e-3 for m in frozen)  # torchvision's MobileNetV3 eps is kept
    before = [m.running_mean.clone() for m in frozen]
    x = torch.randn(2, 3, 64, 64)
    out = body(x)[-1]
    assert all(torch.equal(m.running_mean, b) for m, b in zip(frozen, before))
    with torch.no_grad():
        expected = reference.eval().features[:12](x)  # the ImageNet model in eval mode
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_frozen_stages_of_a_light_body():
    body = light_backbone("shufflenet_v2_x0_5", frozen_stages=2)  # stem + stage2 (up to stride 8)
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"stage3", "stage4"}


def test_backbone_config_errors():
    with pytest.raises(ConfigError) as err:
        light_backbone("shufflenet_v3")
    assert all(name in str(err.value) for name in BODIES)
    with pytest.raises(ConfigError, match="bn or frozen_bn for efficientnet_b0"):
        light_backbone("efficientnet_b0", norm="gn")
    with pytest.raises(ConfigError, match="frozen_stages"):
        light_backbone("regnet_x_400mf", frozen_stages=5)


# ---- PAN ------------------------------------------------------------------------------------

def c3_to_c5(channels: tuple[int, ...] = (116, 232, 464), batch: int = 2) -> list[torch.Tensor]:
    """Random C3..C5 of a 256x320 image."""
    return [torch.randn(batch, c, 256 >> level, 320 >> level, requires_grad=True)
            for c, level in zip(channels, (3, 4, 5))]


@pytest.mark.parametrize("extra, block, downsample", [(0, "dwconv", "interp"), (2, "dwconv", "conv"),
                                                      (0, "conv", "conv"), (2, "none", "interp")])
def test_pan_levels(extra, block, downsample):
    neck = PAN([116, 232, 464], NeckConfig(type="pan", out_channels=32, num_extra_levels=extra, block=block,
                                           downsample=downsample))
    outs = neck(c3_to_c5())
    assert neck.num_levels == len(outs) == 3 + extra and neck.out_channels == 32
    sizes = [(math.ceil(256 / 2**level), math.ceil(320 / 2**level)) for level in range(3, 6 + extra)]  # P7: 2x3
    assert [tuple(o.shape) for o in outs] == [(2, 32, *size) for size in sizes]


def test_pan_has_both_paths_and_depthwise_blocks():
    feats = c3_to_c5()
    neck = PAN([116, 232, 464], NeckConfig(type="pan", out_channels=32, num_extra_levels=0))
    outs = neck(feats)
    # bottom-up path: the coarsest output sees the finest input (an FPN's P5 does not)
    assert torch.autograd.grad(outs[-1].sum(), feats[0], retain_graph=True)[0].abs().sum() > 0
    # top-down path: the finest output sees the coarsest input
    assert torch.autograd.grad(outs[0].sum(), feats[-1])[0].abs().sum() > 0
    convs = [m for m in neck.out_blocks[0].modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.groups) for c in convs] == [((3, 3), 32), ((1, 1), 1)]
    fpn_outs = FPN([116, 232, 464], NeckConfig(num_extra_levels=0, out_channels=32))(feats)
    assert torch.autograd.grad(fpn_outs[-1].sum(), feats[0], allow_unused=True)[0] is None


def test_pan_config_errors():
    with pytest.raises(ConfigError, match="neck.block"):
        PAN([8], NeckConfig(type="pan", block="ghost"))
    with pytest.raises(ConfigError, match="neck.activation"):
        PAN([8], NeckConfig(type="pan", activation="gelu"))
    cfg = get_preset("gfl_shufflenetv2_pan_nano").model
    cfg.neck.type = "bifpn"
    with pytest.raises(ConfigError, match="neck.type 'bifpn'; available: fpn, pan"):
        Detector(cfg)


# ---- head tower -------------------------------------------------------------------------------

def test_depthwise_tower():
    tower = conv_tower(16, 24, 2, "bn", 8, conv="dwconv", act="hardswish")
    kinds = [type(m).__name__ for m in tower]
    assert kinds == ["Conv2d", "BatchNorm2d", "Hardswish"] * 4
    dw, pw = tower[0], tower[3]
    assert (dw.in_channels, dw.out_channels, dw.groups, dw.kernel_size, dw.bias) == (16, 16, 16, (3, 3), None)
    assert (pw.in_channels, pw.out_channels, pw.groups, pw.kernel_size) == (16, 24, 1, (1, 1))
    assert tower(torch.randn(2, 16, 8, 8)).shape == (2, 24, 8, 8)
    with pytest.raises(ConfigError, match="head.tower_conv"):
        conv_tower(16, 24, 2, "bn", 8, conv="sepconv")


# ---- presets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LIGHT_PRESETS)
def test_light_preset_trains_and_predicts(name):
    torch.manual_seed(0)
    cfg = get_preset(name).model
    cfg.num_classes = 3
    cfg.head.score_thresh = 0.0  # an untrained model's scores are low; keep every candidate
    model = Detector(cfg)
    assert isinstance(model.neck, PAN) and model.head.strides == [8, 16, 32]
    batch = Batch(images=torch.randint(0, 256, (2, 3, 128, 160), dtype=torch.uint8),
                  image_sizes=torch.tensor([[128, 160], [96, 128]]),
                  targets=[{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0], [50.0, 50.0, 150.0, 110.0]]),
                            "labels": torch.tensor([1, 2])},
                           {"boxes": torch.tensor([[30.0, 30.0, 70.0, 90.0]]), "labels": torch.tensor([0])}])
    losses = model.loss(batch)
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is not None for p in model.neck.parameters())
    model.eval()
    detections = model.predict(batch, rescale=False)
    for det, (h, w) in zip(detections, batch.image_sizes.tolist()):
        assert len(det.boxes) > 0 and bool((det.labels < 3).all())
        assert bool((det.boxes[:, 2] <= w).all() and (det.boxes[:, 3] <= h).all() and (det.boxes >= 0).all())


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "efficientnet_b0"])
def test_trained_batchnorm_uses_momentum_0_1(name):
    # torchvision builds these with momentum 0.01; running statistics must follow a short detection run
    body = build_backbone(BackboneConfig(name=name, norm="bn", frozen_stages=0))
    norms = [m for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 for m in norms)
