"""GFL / GFLv2: Quality and Distribution Focal Loss, integral decoding, DGQP, and the heads end to end."""
import math

import pytest
import torch
import torch.nn.functional as F

from anchorfree.boxes import aligned_iou
from anchorfree.config import GFLHeadConfig
from anchorfree.errors import ConfigError
from anchorfree.losses import box_iou_loss, distribution_focal_loss, quality_focal_loss
from anchorfree.models.heads.atss import ATSSHead, atss_assign
from anchorfree.models.heads.dense import flatten_levels
from anchorfree.models.detector import HEADS, Detector
from anchorfree.models.heads.gfl import (
    GFLHead, GFLv2Head, dgqp_features, distance_targets, integral_distance,
)
from anchorfree.models.priors import Priors
from anchorfree.presets import get_preset

REG_MAX = 16


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def qfl_formula(x, y, beta=2.0):
    s = sigmoid(x)
    return -((1 - y) * math.log(1 - s) + y * math.log(s)) * abs(y - s) ** beta


# ---- Quality Focal Loss ---------------------------------------------------------------------

def test_qfl_hand_values():
    logits = torch.tensor([[0.0, 2.0, -1.0], [-3.0, 0.5, 1.5]])
    target = torch.tensor([[0.0, 0.7, 0.0], [0.0, 0.0, 0.0]])  # row 0: a positive of class 1 with IoU 0.7
    loss = quality_focal_loss(logits, target, beta=2.0)
    expected = torch.tensor([[qfl_formula(x, y) for x, y in zip(row_x, row_y)]
                             for row_x, row_y in zip(logits.tolist(), target.tolist())])
    assert torch.allclose(loss, expected, rtol=1e-5)
    # negatives (y = 0): BCE(σ, 0) · σ^β = -log(1 - σ) · σ²
    assert loss[0, 0].item() == pytest.approx(math.log(2) * 0.25, rel=1e-6)
    # y = σ: no loss at all
    assert quality_focal_loss(torch.tensor([[0.0]]), torch.tensor([[0.5]])).item() == pytest.approx(0.0, abs=1e-8)
    total = quality_focal_loss(logits, target, 2.0, reduction="sum")
    assert total.item() == pytest.approx(expected.sum().item(), rel=1e-5)
    # β = 0 is plain BCE
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert torch.allclose(quality_focal_loss(logits, target, beta=0.0), bce)


def test_qfl_probabilities_equal_logits_after_sigmoid():
    torch.manual_seed(0)
    logits = torch.randn(6, 5) * 3
    target = torch.zeros(6, 5)
    target[[0, 2, 3], [1, 4, 0]] = torch.tensor([0.3, 0.9, 0.55])
    from_logits = quality_focal_loss(logits, target, 2.0, use_sigmoid=True)
    from_probs = quality_focal_loss(logits.sigmoid(), target, 2.0, use_sigmoid=False)
    assert torch.allclose(from_logits, from_probs, rtol=1e-4, atol=1e-6)
    # probabilities of exactly 0 and 1 stay finite, gradients too
    probs = torch.tensor([[0.0, 1.0, 0.5]], requires_grad=True)
    loss = quality_focal_loss(probs, torch.tensor([[0.0, 0.0, 1.0]]), 2.0, use_sigmoid=False, reduction="sum")
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(probs.grad).all()


# ---- Distribution Focal Loss ----------------------------------------------------------------

def test_dfl_formula_and_boundary_bins():
    torch.manual_seed(0)
    logits = torch.randn(5, REG_MAX + 1)
    target = torch.tensor([3.0, 2.4, REG_MAX - 0.01, 0.0, float(REG_MAX)])
    log_p = logits.log_softmax(dim=-1)
    expected = torch.stack([
        -log_p[0, 3],  # integer target: all weight on the left bin 3, none on bin 4
        -(0.6 * log_p[1, 2] + 0.4 * log_p[1, 3]),
        -(0.01 * log_p[2, 15] + 0.99 * log_p[2, 16]),
        -log_p[3, 0],
        -log_p[4, 16],  # t == reg_max: right bin would be 17 (out of range) with weight 0
    ])
    loss = distribution_focal_loss(logits, target)
    assert torch.allclose(loss, expected, atol=1e-5)
    total = distribution_focal_loss(logits, target, reduction="sum")
    assert total.item() == pytest.approx(expected.sum().item(), rel=1e-5)
    # minimised by the two-bin distribution that interpolates the target
    ideal = torch.full((1, REG_MAX + 1), -30.0)
    ideal[0, 2], ideal[0, 3] = math.log(0.6), math.log(0.4)
    assert integral_distance(ideal.repeat(1, 4), REG_MAX)[0].tolist() == pytest.approx([2.4] * 4, abs=1e-4)


def test_distance_targets_clamp():
    points = torch.tensor([[100.0, 100.0], [100.0, 100.0]])
    boxes = torch.tensor([[76.0, 98.0, 400.0, 104.0], [120.0, 0.0, 500.0, 101.0]])
    t = distance_targets(points, boxes, torch.tensor([8.0, 16.0]), REG_MAX)
    assert t[0].tolist() == pytest.approx([3.0, 0.25, REG_MAX - 0.1, 0.5])  # 300/8 = 37.5 clamped at 15.9
    assert t[1].tolist() == pytest.approx([0.0, 6.25, 15.9, 1 / 16])  # l = -20 (outside) clamped at 0


# ---- integral decoding ----------------------------------------------------------------------

def test_integral_one_hot_and_uniform():
    one_hot = torch.full((2, 4, REG_MAX + 1), -1e4)
    for side, k in enumerate([0, 3, 7, 16]):
        one_hot[:, side, k] = 0.0
    assert integral_distance(one_hot.reshape(2, -1), REG_MAX).tolist() == [[0.0, 3.0, 7.0, 16.0]] * 2
    uniform = torch.zeros(1, 4 * (REG_MAX + 1))
    assert integral_distance(uniform, REG_MAX).tolist() == [pytest.approx([REG_MAX / 2] * 4)]


def tiny_head_cfg(preset: str = "gfl_r18_fpn_tiny", **kw) -> GFLHeadConfig:
    h = get_preset(preset).model.head
    h.strides, h.feat_channels, h.num_convs, h.gn_groups = [8, 16, 32], 16, 1, 4
    for k, v in kw.items():
        setattr(h, k, v)
    return h


def test_decode_boxes_in_strides_from_anchor_centers():
    head = GFLHead(tiny_head_cfg(), in_channels=8, num_classes=2)
    points, strides = torch.tensor([[40.0, 48.0], [64.0, 32.0]]), torch.tensor([8.0, 32.0])
    priors = Priors(points, strides, torch.tensor([0, 2]), [1, 0, 1])
    reg = torch.full((1, 2, 4, REG_MAX + 1), -1e4)
    reg[0, 0, :, 3] = 0.0  # prior 0: every side 3 bins = 24 px
    reg[0, 1] = 0.0  # prior 1: uniform, 8 bins = 256 px
    boxes = head.decode_boxes(reg.reshape(1, 2, -1), priors)
    assert boxes[0, 0].tolist() == [16.0, 24.0, 64.0, 72.0]
    assert boxes[0, 1].tolist() == pytest.approx([64.0 - 256, 32.0 - 256, 64.0 + 256, 32.0 + 256])


# ---- GFLv2: DGQP ----------------------------------------------------------------------------

def test_dgqp_features_topk_and_mean():
    probs = torch.full((4, REG_MAX + 1), 0.01)
    probs[0, :4] = torch.tensor([0.4, 0.3, 0.1, 0.07])  # the remaining 13 bins hold 0.01 each
    probs[1, 5:9] = torch.tensor([0.07, 0.4, 0.1, 0.3])
    probs[2] = 1 / (REG_MAX + 1)
    probs[3, 16], probs[3, 0] = 0.71, 0.13
    probs = probs / probs.sum(dim=-1, keepdim=True)
    reg = probs.log().reshape(1, -1, 1, 1).expand(2, -1, 3, 2)  # [B=2, 68, H=3, W=2]
    feats = dgqp_features(reg, REG_MAX, topk=4)
    assert feats.shape == (2, 20, 3, 2)
    per_side = feats[1, :, 2, 1].reshape(4, 5)
    top = probs.sort(dim=-1, descending=True).values[:, :4]
    assert torch.allclose(per_side[:, :4], top, atol=1e-6)
    assert torch.allclose(per_side[:, 4], top.mean(dim=-1), atol=1e-6)
    assert per_side[0].tolist() == pytest.approx([0.4, 0.3, 0.1, 0.07, 0.2175], abs=1e-6)
    assert per_side[0].tolist() == pytest.approx(per_side[1].tolist(), abs=1e-6)  # order within a side is irrelevant
    assert torch.equal(feats[0], feats[1])


def test_gflv2_score_is_cls_times_quality():
    torch.manual_seed(0)
    head = GFLv2Head(tiny_head_cfg("gflv2_r18_fpn_tiny"), in_channels=8, num_classes=3)
    feats = [torch.randn(2, 8, s, s) for s in (8, 4, 2)]
    outputs = head(feats)
    assert set(outputs) == {"cls", "reg", "quality"}
    for level, out_q in enumerate(outputs["quality"]):
        expected = head.dgqp(dgqp_features(outputs["reg"][level], REG_MAX, 4))
        assert torch.allclose(out_q, expected) and out_q.shape == (2, 1, 8 >> level, 8 >> level)
        assert ((out_q > 0) & (out_q < 1)).all()
    scores, _ = head.scores_and_boxes(outputs, head.priors(outputs))
    cls = torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, 3) for m in outputs["cls"]], 1).sigmoid()
    quality = torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, 1) for m in outputs["quality"]], 1)
    assert torch.allclose(scores, cls * quality)
    # GFL v1 has no quality branch: the score is σ(cls)
    v1 = GFLHead(tiny_head_cfg(), in_channels=8, num_classes=3)
    out1 = v1(feats)
    assert "quality" not in out1 and not hasattr(v1, "dgqp")
    assert torch.allclose(v1.scores_and_boxes(out1, v1.priors(out1))[0],
                          torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, 3) for m in out1["cls"]], 1).sigmoid())


def test_gfl_needs_one_anchor_per_location():
    with pytest.raises(ConfigError, match="one anchor per location"):
        GFLHead(tiny_head_cfg(anchor_ratios=[0.5, 1.0, 2.0]), in_channels=8, num_classes=2)


# ---- the loss's weighting conventions -------------------------------------------------------

@pytest.mark.parametrize("prior_prob", [0.5, 0.01])  # w ~ 0.5: Σw > 1; w ~ 0.01: Σw < 1, clamped to 1
def test_gfl_loss_weighting_matches_mmdet_convention(prior_prob):
    """loss_bbox = 2 Σ w·GIoU / max(Σw, 1), loss_dfl = .25 Σ w·DFL / (4 max(Σw, 1)), w = max_c σ(cls)."""
    torch.manual_seed(1)
    head = GFLHead(tiny_head_cfg(prior_prob=prior_prob), in_channels=8, num_classes=2)
    outputs = head([torch.randn(1, 8, s, s) for s in (8, 4, 2)])
    targets = [{"boxes": torch.tensor([[5.0, 7.0, 40.0, 50.0], [30.0, 20.0, 60.0, 62.0]]),
                "labels": torch.tensor([0, 1])}]
    losses = head.loss(outputs, targets, torch.tensor([[64, 64]]))

    priors = head.priors(outputs)
    matched = atss_assign(priors, targets[0]["boxes"][None], torch.ones(1, 2, dtype=torch.bool))[0]
    pos = matched >= 0
    gt = targets[0]["boxes"][matched[pos]]
    reg = flatten_levels(outputs["reg"], 4 * (REG_MAX + 1))[0, pos]
    cls = flatten_levels(outputs["cls"], 2)[0]
    w = cls.detach().sigmoid().max(dim=-1).values[pos]
    assert (w.sum() > 1) == (prior_prob == 0.5)
    avg = w.sum().clamp(min=1)
    pred = head.decode_boxes(reg[None], Priors(priors.points[pos], priors.strides[pos], None, [], None))[0]
    expected_bbox = 2.0 * (box_iou_loss(pred, gt) * w).sum() / avg
    t = distance_targets(priors.points[pos], gt, priors.strides[pos], REG_MAX)
    dfl = distribution_focal_loss(reg.reshape(-1, REG_MAX + 1), t.reshape(-1)).reshape(-1, 4).sum(dim=1)
    expected_dfl = 0.25 * (dfl * w).sum() / (4 * avg)
    score = torch.zeros_like(cls)
    score[pos.nonzero()[:, 0], targets[0]["labels"][matched[pos]]] = aligned_iou(pred.detach(), gt)
    expected_cls = quality_focal_loss(cls, score, 2.0, reduction="sum") / pos.sum()
    assert losses["loss_bbox"].item() == pytest.approx(expected_bbox.item(), rel=1e-5)
    assert losses["loss_dfl"].item() == pytest.approx(expected_dfl.item(), rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(expected_cls.item(), rel=1e-5)


# ---- every head on a tiny Detector ----------------------------------------------------------

@pytest.mark.parametrize("name", ["atss_r18_fpn_tiny", "gfl_r18_fpn_tiny", "gflv2_r18_fpn_tiny"])
def test_detector_forward_loss_backward(name):
    torch.manual_seed(0)
    m = get_preset(name).model
    m.backbone.name, m.neck.out_channels = "resnet10", 32
    m.head.feat_channels, m.head.num_convs, m.head.gn_groups = 32, 1, 8
    m.input.min_size = m.input.max_size = 128
    m.num_classes = 3
    model = Detector(m)
    assert isinstance(model.head, HEADS[m.head.type])
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    sizes = torch.tensor([[128, 128], [96, 112]])
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0], [50.0, 50.0, 120.0, 100.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    outputs = model(images, sizes)
    losses = model.head.loss(outputs, targets, sizes)
    expected_keys = {"loss_cls", "loss_bbox", "loss_ctr" if m.head.type == "atss" else "loss_dfl"}
    assert set(losses) == expected_keys
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    detections = model.head.predict({k: [t.detach() for t in v] for k, v in outputs.items()}, sizes)
    assert len(detections) == 2 and all(d.boxes.shape[-1] == 4 for d in detections)


def test_presets_reference_settings():
    atss, gfl, gflv2 = (get_preset(n).model for n in ("atss_r50_fpn", "gfl_r50_fpn", "gflv2_r50_fpn"))
    for m, head_type in ((atss, "atss"), (gfl, "gfl"), (gflv2, "gflv2")):
        h = m.head
        assert h.type == head_type and HEADS[h.type] in (ATSSHead, GFLHead, GFLv2Head)
        assert (h.octave_base_scale, h.scales_per_octave, h.anchor_ratios, h.prior_offset) == (8.0, 1, [1.0], 0.0)
        assert (h.num_convs, h.feat_channels, h.norm, h.gn_groups, h.atss_topk) == (4, 256, "gn", 32, 9)
        assert (h.bbox_weight, h.nms_thresh, h.score_thresh) == (2.0, 0.6, 0.05)
        assert m.neck.extra_from == "p5" and not m.neck.relu_before_extra and m.backbone.norm == "frozen_bn"
    assert atss.head.delta_stds == [0.1, 0.1, 0.2, 0.2]
    assert (gfl.head.reg_max, gfl.head.qfl_beta, gfl.head.dfl_weight) == (16, 2.0, 0.25)
    assert (gflv2.head.dgqp_topk, gflv2.head.dgqp_channels) == (4, 64)
    tiny, fcos_tiny = get_preset("gflv2_r18_fpn_tiny"), get_preset("fcos_r18_fpn_tiny")
    assert tiny.train == fcos_tiny.train and tiny.model.backbone == fcos_tiny.model.backbone
    assert tiny.model.head.type == "gflv2" and tiny.model.head.num_convs == fcos_tiny.model.head.num_convs
