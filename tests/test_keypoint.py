"""Keypoint heads, piece by piece, against hand-computed values: Gaussian radius and heatmaps, the
penalty-reduced focal loss, associative-embedding pull/push, corner pooling, and decode(encode(boxes))."""
from __future__ import annotations

import math

import pytest
import torch

from anchorfree.config import CenterNetHeadConfig, CornerNetHeadConfig
from anchorfree.errors import ConfigError
from anchorfree.models.heads.centernet import CenterNetHead, centernet_targets
from anchorfree.models.heads.cornernet import CornerNetHead, corner_pool, cornernet_targets, embedding_losses
from anchorfree.models.heads.keypoint import (draw_gaussians, gaussian_radius, integer_radius, local_maxima,
                                              penalty_reduced_focal_loss, top_peaks)

CPU = torch.device("cpu")


def radius_by_hand(h: float, w: float, iou: float, variant: str) -> float:
    """CornerNet's three cases written out (Sec. 3.2 / the reference code)."""
    a1, b1, c1 = 1, h + w, w * h * (1 - iou) / (1 + iou)
    a2, b2, c2 = 4, 2 * (h + w), (1 - iou) * w * h
    a3, b3, c3 = 4 * iou, -2 * iou * (h + w), (iou - 1) * w * h
    d1, d2, d3 = math.sqrt(b1 ** 2 - 4 * a1 * c1), math.sqrt(b2 ** 2 - 4 * a2 * c2), math.sqrt(b3 ** 2 - 4 * a3 * c3)
    if variant == "corrected":  # the smaller root of each quadratic
        return min((b1 - d1) / (2 * a1), (b2 - d2) / (2 * a2), (-b3 - d3 * -1) / (2 * a3))
    return min((b1 + d1) / 2, (b2 + d2) / 2, (b3 + d3) / 2)


@pytest.mark.parametrize("variant,iou", [("corrected", 0.3), ("corrected", 0.7), ("original", 0.7)])
@pytest.mark.parametrize("h,w", [(10.0, 20.0), (3.0, 3.0), (50.0, 7.5)])
def test_gaussian_radius_formula(variant, iou, h, w):
    ours = gaussian_radius(torch.tensor([h], dtype=torch.float64), torch.tensor([w], dtype=torch.float64), iou, variant)
    assert ours.item() == pytest.approx(radius_by_hand(h, w, iou, variant), rel=1e-12)


def test_corrected_radius_keeps_the_iou():
    # by hand for 40 x 60 at IoU 0.7: case 1 (100 - sqrt(10000 - 4·423.53)) / 2 = 4.43, case 2 (both corners
    # inside) (200 - sqrt(40000 - 16·720)) / 8 = 3.905, case 3 (-140 + sqrt(19600 + 4·2.8·720)) / 5.6 = 4.70
    h, w, iou = 40.0, 60.0, 0.7
    r = gaussian_radius(torch.tensor([h]).double(), torch.tensor([w]).double(), iou, "corrected").item()
    assert r == pytest.approx(3.905, abs=1e-3)
    assert (w - 2 * r) * (h - 2 * r) / (w * h) == pytest.approx(iou)  # case 2 holds with equality
    assert (w - 2 * (r + 0.1)) * (h - 2 * (r + 0.1)) / (w * h) < iou
    # the original code: case 3 without the division by a, (-140 + 166.32) / 2 = 13.16, three times larger
    original = gaussian_radius(torch.tensor([h]).double(), torch.tensor([w]).double(), iou, "original").item()
    assert original == pytest.approx(13.162, abs=1e-3)


def test_radius_variant_is_checked():
    with pytest.raises(ConfigError, match="gaussian_radius"):
        gaussian_radius(torch.ones(1), torch.ones(1), 0.7, "buggy")


def test_draw_gaussian_values_border_and_overlap():
    # radius 1 → sigma = 3/6 = 0.5: neighbours exp(-1/0.5) = e^-2, diagonals e^-4
    heat = draw_gaussians((1, 2, 5, 6), torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1]),
                          torch.tensor([[0, 0], [1, 1], [5, 4]]), torch.tensor([1, 1, 2]))
    e2, e4 = math.exp(-2), math.exp(-4)
    expected0 = torch.zeros(5, 6)
    # object at the corner (0, 0): only the in-map part of its window
    expected0[0, 0], expected0[0, 1], expected0[1, 0], expected0[1, 1] = 1, e2, e2, e4
    # object at (1, 1): element-wise max with the first
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            value = math.exp(-(dx * dx + dy * dy) / 0.5)
            expected0[1 + dy, 1 + dx] = max(expected0[1 + dy, 1 + dx].item(), value)
    torch.testing.assert_close(heat[0, 0], expected0, atol=1e-6, rtol=0)
    # class 1: radius 2 at the bottom-right corner (x=5, y=4): sigma = 5/6
    sigma2 = 2 * (5 / 6) ** 2
    for y in range(5):
        for x in range(6):
            d2 = (x - 5) ** 2 + (y - 4) ** 2
            inside = abs(x - 5) <= 2 and abs(y - 4) <= 2
            assert heat[0, 1, y, x].item() == pytest.approx(math.exp(-d2 / sigma2) if inside else 0.0, abs=1e-6)


def test_centernet_targets_by_hand():
    # one box 8 px wide, 12 high at stride 4: center (5, 7) px → map (1.25, 1.75) → cell (1, 1)
    targets = [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 13.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    t = centernet_targets(targets, 3, (8, 8), 4, 0.3, "corrected", CPU)
    assert t["heatmap"].shape == (2, 3, 8, 8) and t["heatmap"][0, 2, 1, 1] == 1 and t["heatmap"][1].sum() == 0
    assert t["heatmap"].eq(1).sum() == 1
    torch.testing.assert_close(t["wh"][0, :, 1, 1], torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(t["offset"][0, :, 1, 1], torch.tensor([0.25, 0.75]))
    assert t["weight"].sum() == 2  # one location, two channels
    r = integer_radius(gaussian_radius(torch.tensor([3.0]), torch.tensor([2.0]), 0.3, "corrected")).item()
    assert (t["heatmap"][0, 2] > 0).sum() == min(2 * r + 1, 8) ** 2  # a full (2r+1)² window inside the map


def test_penalty_reduced_focal_loss_by_hand():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]]])
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.9]]]])
    p = torch.sigmoid(logits)[0, 0]
    expected = (-(1 - p[0, 0]) ** 2 * torch.log(p[0, 0])
                - (1 - 0.5) ** 4 * p[0, 1] ** 2 * torch.log(1 - p[0, 1])
                - 1.0 * p[1, 0] ** 2 * torch.log(1 - p[1, 0])
                - (1 - 0.9) ** 4 * p[1, 1] ** 2 * torch.log(1 - p[1, 1]))
    assert penalty_reduced_focal_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_pull_push_by_hand():
    # image 0: objects with embeddings (tl, br) = (1, 3) and (2, 2); image 1: one object (0, 1)
    tl = torch.zeros(2, 1, 2, 2)
    br = torch.zeros(2, 1, 2, 2)
    tl[0, 0, 0, 0], br[0, 0, 1, 1] = 1.0, 3.0  # object 0 of image 0: TL at (0,0), BR at (1,1)
    tl[0, 0, 0, 1], br[0, 0, 1, 0] = 2.0, 2.0  # object 1: TL at (0,1), BR at (1,0)
    tl[1, 0, 0, 0], br[1, 0, 1, 1] = 0.0, 1.0
    pull, push = embedding_losses(tl, br, torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.tensor([3, 2, 3]),
                                  num_images=2)
    # image 0: means 2 and 2 → pull ((1-2)² + (3-2)² + 0 + 0) / 2 = 1; push: |2 - 2| = 0 → 2·max(0, 1 - 0) / 2 = 1
    # image 1: mean 0.5 → pull (0.25 + 0.25) / 1 = 0.5; one object → push 0
    assert pull.item() == pytest.approx(1.5)
    assert push.item() == pytest.approx(1.0)


def test_corner_pool_matches_a_loop():
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    ref = {d: torch.empty_like(x) for d in ("top", "left", "bottom", "right")}
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            ref["top"][..., i, j] = x[..., i:, j].amax(dim=-1)  # everything below (and itself)
            ref["bottom"][..., i, j] = x[..., : i + 1, j].amax(dim=-1)  # everything above
            ref["left"][..., i, j] = x[..., i, j:].amax(dim=-1)  # everything to the right
            ref["right"][..., i, j] = x[..., i, : j + 1].amax(dim=-1)  # everything to the left
    for direction, expected in ref.items():
        assert torch.equal(corner_pool(x, direction), expected), direction


def test_peaks_are_local_maxima_top_k_over_classes():
    heat = torch.zeros(1, 2, 4, 4)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2] = 0.9, 0.8  # neighbours: only the larger survives
    heat[0, 1, 3, 0] = 0.7
    scores, location, classes, ys, xs = top_peaks(local_maxima(heat), 2)
    assert scores[0].tolist() == pytest.approx([0.9, 0.7])
    assert classes.tolist() == [[0, 1]] and ys.tolist() == [[1.0, 3.0]] and xs.tolist() == [[1.0, 0.0]]
    assert location.tolist() == [[1 * 4 + 1, 3 * 4 + 0]]


def perfect_logits(target: torch.Tensor) -> torch.Tensor:
    """Logits whose sigmoid peaks exactly at the target's 1s (and nowhere else)."""
    return torch.where(target.eq(1), torch.full_like(target, 8.0), torch.full_like(target, -8.0) + target)


BOXES = torch.tensor([[4.0, 8.0, 60.0, 40.0], [70.0, 10.0, 120.0, 118.0], [20.0, 64.0, 44.0, 100.0]])
LABELS = torch.tensor([0, 2, 0])


def test_centernet_decode_of_its_targets_recovers_the_boxes():
    head = CenterNetHead(CenterNetHeadConfig(), in_channels=8, num_classes=3)
    targets = [{"boxes": BOXES, "labels": LABELS}]
    t = centernet_targets(targets, 3, (32, 32), 4, 0.3, "corrected", CPU)
    maps = {"heatmap": [perfect_logits(t["heatmap"])], "wh": [t["wh"]], "offset": [t["offset"]]}
    det = head.predict(maps, torch.tensor([[128, 128]]), score_thresh=0.5)[0]
    order = torch.argsort(det.boxes[:, 0])
    torch.testing.assert_close(det.boxes[order], BOXES[torch.argsort(BOXES[:, 0])], atol=1e-4, rtol=0)
    assert sorted(det.labels.tolist()) == sorted(LABELS.tolist())


def test_cornernet_decode_of_its_targets_recovers_the_boxes():
    head = CornerNetHead(CornerNetHeadConfig(feat_channels=8, pool_channels=8), in_channels=8, num_classes=3,
                         num_stacks=1)
    t = cornernet_targets([{"boxes": BOXES, "labels": LABELS}], 3, (32, 32), 4, 0.3, "corrected", CPU)
    emb = torch.zeros(1, 1, 32, 32)
    for k in range(len(BOXES)):  # each object its own embedding, far from the others
        emb.view(-1)[t["tl_location"][k]] = 3.0 * k
    emb_br = torch.zeros(1, 1, 32, 32)
    for k in range(len(BOXES)):
        emb_br.view(-1)[t["br_location"][k]] = 3.0 * k + 0.1
    maps = {"tl_heat": [perfect_logits(t["tl_heatmap"])], "br_heat": [perfect_logits(t["br_heatmap"])],
            "tl_emb": [emb], "br_emb": [emb_br], "tl_off": [t["tl_offset"]], "br_off": [t["br_offset"]]}
    det = head.predict(maps, torch.tensor([[128, 128]]), score_thresh=0.5)[0]
    assert len(det) == 3  # the pairs across objects are rejected by their embeddings
    order = torch.argsort(det.boxes[:, 0])
    torch.testing.assert_close(det.boxes[order], BOXES[torch.argsort(BOXES[:, 0])], atol=1e-4, rtol=0)


def test_keypoint_configs_are_checked():
    with pytest.raises(ConfigError, match="gaussian_min_overlap"):
        CenterNetHead(CenterNetHeadConfig(gaussian_min_overlap=1.5), 8, 3)
    head = CenterNetHead(CenterNetHeadConfig(), 8, 3)
    with pytest.raises(ConfigError, match="centernet head predicts on one map"):
        head.check_levels(3)
    with pytest.raises(ConfigError, match="no inference option 'nms_iou'"):
        head.inference_options(nms_iou=0.5)


def test_flip_test_averages_probabilities_and_sizes():
    head = CenterNetHead(CenterNetHeadConfig(), in_channels=8, num_classes=2)
    g = torch.Generator().manual_seed(0)
    maps = {k: [torch.randn(1, c, 4, 6, generator=g)] for k, c in (("heatmap", 2), ("wh", 2), ("offset", 2))}
    flipped = {k: [torch.randn(1, c, 4, 6, generator=g)] for k, c in (("heatmap", 2), ("wh", 2), ("offset", 2))}
    merged = head.merge_flipped(maps, flipped)
    expected = (maps["heatmap"][0].sigmoid() + flipped["heatmap"][0].sigmoid().flip(-1)) / 2
    torch.testing.assert_close(merged["heatmap"][0].sigmoid(), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(merged["wh"][0], (maps["wh"][0] + flipped["wh"][0].flip(-1)) / 2)
    assert merged["offset"][0] is maps["offset"][0]


def test_detector_flip_test_runs_the_mirrored_batch():
    from anchorfree.models.detector import Detector
    from anchorfree.presets import get_preset
    from anchorfree.structures import Batch

    cfg = get_preset("centernet_r18_tiny").model
    cfg.backbone.name, cfg.neck.upconv_channels, cfg.num_classes = "resnet10", [16, 16], 2
    model = Detector(cfg).eval()
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mirror = images.flip(-1)
    batch, mirrored = Batch(images, torch.tensor([[64, 64]])), Batch(mirror, torch.tensor([[64, 64]]))
    a = model.predict(batch, flip_test=True)[0]
    b = model.predict(mirrored, flip_test=True)[0]
    # with flip test, an image and its mirror image give mirrored boxes with the same scores (sizes averaged)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-4)
    plain = model.predict(batch)[0]
    assert len(plain) != len(a) or not torch.allclose(plain.scores, a.scores)  # the flip changed the result


def test_hourglass_and_upconv_shapes():
    from anchorfree.config import BackboneConfig, HourglassBackboneConfig, NeckConfig
    from anchorfree.models.backbones import HourglassNet
    from anchorfree.models.necks import UpConvNeck

    hg = HourglassNet(HourglassBackboneConfig(name="hourglass", hourglass_stacks=3, hourglass_depth=2,
                                     hourglass_channels=[8, 12, 16], hourglass_blocks=[1, 1, 2],
                                     hourglass_feat_channels=10))
    outs = hg(torch.randn(1, 3, 96, 80))
    assert [tuple(o.shape) for o in outs] == [(1, 10, 24, 20)] * 3  # one stride-4 map per stack
    neck = UpConvNeck([64, 32], NeckConfig(type="upconv", upconv_channels=[16, 8, 4], upconv_kernels=[4, 4, 4]))
    assert tuple(neck([torch.randn(1, 64, 8, 8), torch.randn(1, 32, 5, 6)])[0].shape) == (1, 4, 40, 48)
    # the transposed convs start as bilinear upsampling: kernel [1, 3, 3, 1] / 4 outer itself
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(neck.deconv_layers[1].conv.weight[0, 0], ramp[:, None] * ramp[None, :])


@pytest.mark.parametrize("preset", ["centernet_r18_tiny", "cornernet_hg_tiny"])
def test_inference_copy_keeps_the_maps(preset):
    """``predict``/``eval`` run a copy with BatchNorms folded into the convs (also inside corner pooling and
    the Hourglass) and channels_last; the maps stay those of the trained model."""
    from anchorfree.models.detector import Detector
    from anchorfree.models.fuse import inference_detector
    from anchorfree.presets import get_preset

    cfg = get_preset(preset).model
    cfg.num_classes = 3
    if preset.startswith("centernet"):
        cfg.backbone.name = "resnet10"
    model = Detector(cfg)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    fused = inference_detector(model, fast=False)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules()) < \
        sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) / 2
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[64, 64]])
    with torch.no_grad():
        ref, out = model(images, sizes), fused(images, sizes)
    for key in ref:
        for a, b in zip(ref[key], out[key]):
            torch.testing.assert_close(b.contiguous(), a, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_max_filter_and_two_stage_top_k_equal_the_plain_ops(kernel):
    import torch.nn.functional as F

    from anchorfree.models.heads.keypoint import max_filter

    x = torch.randn(2, 7, 9, 11, generator=torch.Generator().manual_seed(kernel))
    assert torch.equal(max_filter(x, kernel), F.max_pool2d(x, kernel, stride=1, padding=kernel // 2))
    scores, location, classes, _, _ = top_peaks(x, 30)
    flat = x.reshape(2, -1).topk(30, dim=1)
    assert torch.equal(scores, flat.values) and torch.equal(classes * 99 + location, flat.indices)


def test_map_stride_must_match_the_heads_stride():
    from anchorfree.models.detector import Detector
    from anchorfree.presets import get_preset

    cfg = get_preset("centernet_r18_tiny").model  # C4 (stride 16) and two up-convolutions: stride 4
    cfg.backbone.name, cfg.num_classes = "resnet10", 2
    model = Detector(cfg)
    assert not hasattr(model.backbone, "layer4")  # stages after the last level used are not built
    cfg.neck.upconv_channels, cfg.neck.upconv_kernels = [16, 16, 16], [4, 4, 4]  # stride 2: wrong
    with pytest.raises(ConfigError, match="expects maps of stride head.stride=4 but the backbone and neck give "
                                          "stride 2"):
        Detector(cfg)
