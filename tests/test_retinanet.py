"""RetinaNet: anchors, max-IoU assignment (vs torchvision's Matcher and a loop over boxes as in
mmdetection), losses on hand-made maps, weight-key conversion, and the presets end to end."""
import math

import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou, generalized_box_iou_loss

from anchorfree.config import RetinaNetHeadConfig
from anchorfree.errors import CheckpointError, ConfigError
from anchorfree.interop.torchvision import convert_torchvision_retinanet
from anchorfree.models.detector import Detector
from anchorfree.models.priors import level_anchor_shapes
from anchorfree.models.heads.retinanet import RetinaNetHead, anchor_gt_ious, max_iou_assign
from anchorfree.presets import get_preset, retinanet_r50_fpn, retinanet_r50_fpn_torchvision
from anchorfree.structures import Batch

LN2 = math.log(2.0)


def head(num_classes=2, **fields):
    cfg = RetinaNetHeadConfig(num_convs=1, feat_channels=8, norm="none")
    for key, value in fields.items():
        setattr(cfg, key, value)
    return RetinaNetHead(cfg, in_channels=8, num_classes=num_classes)


def maps(shapes, channels=1):
    return {"cls": [torch.zeros(1, channels, h, w) for h, w in shapes]}


def assign(ious, valid=None, rule="none", pos=0.5, neg=0.4):
    ious = torch.tensor(ious, dtype=torch.float32)[None]
    valid = torch.ones(ious.shape[0], ious.shape[2], dtype=torch.bool) if valid is None else torch.tensor([valid])
    return max_iou_assign(ious, valid, pos, neg, rule)[0].tolist()


# ---- anchors --------------------------------------------------------------------------------

def test_octave_anchor_shapes_hand_values():
    # stride 8, octave base 4, scales 2**(0, 1/3, 2/3): sizes 32, 40.3175, 50.7968; w = s / sqrt(r),
    # h = s * sqrt(r) for r = h / w in (.5, 1, 2), ratio-major
    shapes = level_anchor_shapes(retinanet_r50_fpn().model.head)
    assert [len(s) for s in shapes] == [9] * 5
    s8 = shapes[0]
    widths, heights = (s8[:, 2] - s8[:, 0]).tolist(), (s8[:, 3] - s8[:, 1]).tolist()
    expected_w = [45.2548, 57.0175, 71.8376, 32.0, 40.3175, 50.7968, 22.6274, 28.5087, 35.9188]
    expected_h = [22.6274, 28.5087, 35.9188, 32.0, 40.3175, 50.7968, 45.2548, 57.0175, 71.8376]
    assert widths == pytest.approx(expected_w, abs=1e-3)
    assert heights == pytest.approx(expected_h, abs=1e-3)
    assert torch.allclose(s8[:, :2], -s8[:, 2:])  # centred at 0
    assert torch.allclose(shapes[4], s8 * 16)  # stride 128


def test_anchors_on_the_grid_location_then_anchor():
    h = head(prior_offset=0.0, strides=[8, 16])
    priors = h.priors(maps([(2, 3), (1, 2)]))
    assert priors.anchors.shape == (2 * 3 * 9 + 1 * 2 * 9, 4)
    assert priors.num_per_level == [54, 18]
    centers = (priors.anchors[:, :2] + priors.anchors[:, 2:]) / 2
    # rows 0..8: location (x 0, y 0); 9..17: (x 8, y 0); 27..35: (x 0, y 8); level 2 starts at 54
    assert torch.allclose(centers[:9], torch.zeros(9, 2), atol=1e-4)
    assert torch.allclose(centers[9:18], torch.tensor([8.0, 0.0]).expand(9, 2), atol=1e-4)
    assert torch.allclose(centers[27:36], torch.tensor([0.0, 8.0]).expand(9, 2), atol=1e-4)
    assert torch.allclose(centers[63:72], torch.tensor([16.0, 0.0]).expand(9, 2), atol=1e-4)
    assert torch.allclose(priors.points, centers, atol=1e-4)
    assert torch.equal(priors.strides[:54], torch.full((54,), 8.0))


def test_torchvision_sizes_equal_torchvision_anchor_generator():
    cfg = retinanet_r50_fpn_torchvision().model.head
    h = RetinaNetHead(cfg, in_channels=8, num_classes=3)
    assert cfg.anchor_sizes[0] == [32, 40, 50] and cfg.anchor_sizes[4] == [512, 645, 812]
    # a 256x384 input: torchvision's stride (padded size // feature size) is the nominal one
    shapes = [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    generator = AnchorGenerator(tuple(tuple(s) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    images = ImageList(torch.zeros(1, 3, 256, 384), [(256, 384)])
    expected = generator(images, [torch.zeros(1, 8, hh, ww) for hh, ww in shapes])[0]
    assert torch.equal(h.priors(maps(shapes)).anchors, expected)
    assert torch.equal(h.anchor_shapes[0], generator.cell_anchors[0])  # rounded half-sizes


def test_bad_anchor_config_is_rejected():
    with pytest.raises(ConfigError, match="anchor_sizes"):
        head(anchor_sizes=[[32.0]])  # 1 level of sizes for 5 strides
    with pytest.raises(ConfigError, match="box_loss"):
        head(box_loss="iou")
    with pytest.raises(ConfigError, match="low_quality"):
        head(low_quality_matches="best")


# ---- max-IoU assignment ---------------------------------------------------------------------

def test_positive_negative_and_ignored_bands():
    ious = [[0.6, 0.1], [0.45, 0.2], [0.1, 0.39], [0.4, 0.0], [0.2, 0.5], [0.0, 0.0]]
    assert assign(ious) == [0, -2, -1, -2, 1, -1]  # >= .5 pos, < .4 bg, [.4, .5) ignored


def test_low_quality_match_below_threshold():
    ious = [[0.3], [0.2], [0.0]]
    assert assign(ious) == [-1, -1, -1]
    assert assign(ious, rule="gt") == [0, -1, -1]  # IoU .3 is the box's best: positive
    assert assign(ious, rule="argmax") == [0, -1, -1]


def test_argmax_and_gt_rules_differ():
    # anchor 1 is box 1's best anchor (IoU .35) but overlaps box 0 more (IoU .45)
    ious = [[0.7, 0.0], [0.45, 0.35], [0.1, 0.2]]
    assert assign(ious) == [0, -2, -1]
    assert assign(ious, rule="argmax") == [0, 0, -1]  # torchvision: its own best box
    assert assign(ious, rule="gt") == [0, 1, -1]  # mmdetection: the box it is best for
    # a positive of box 0 that is box 1's best anchor is taken over by box 1 under 'gt' only
    ious = [[0.8, 0.3], [0.6, 0.1]]
    assert assign(ious, rule="argmax") == [0, 0]
    assert assign(ious, rule="gt") == [1, 0]


def test_ties():
    # both anchors share box 0's best IoU: both become positive
    assert assign([[0.3], [0.3], [0.1]], rule="gt") == [0, 0, -1]
    assert assign([[0.3], [0.3], [0.1]], rule="argmax") == [0, 0, -1]
    # one anchor is the best of two boxes with equal IoU: the later box wins under 'gt' (mmdet's
    # loop overwrites), the first maximal box under 'argmax' (torch.max)
    ious = [[0.3, 0.3], [0.1, 0.0]]
    assert assign(ious, rule="gt") == [1, -1]
    assert assign(ious, rule="argmax") == [0, -1]
    assert Matcher(0.5, 0.4, True)(torch.tensor(ious).T).tolist() == [0, -1]


def test_padded_boxes_never_match():
    ious = [[0.2, 0.9], [0.1, 0.9], [0.0, 0.9]]
    for rule in ("none", "gt", "argmax"):
        expected = [-1, -1, -1] if rule == "none" else [0, -1, -1]
        assert assign(ious, valid=[True, False], rule=rule) == expected


def test_images_without_boxes_are_background():
    for rule in ("none", "gt", "argmax"):
        assert assign([[0.9], [0.0]], valid=[False], rule=rule) == [-1, -1]
        empty = max_iou_assign(torch.zeros(2, 5, 0), torch.zeros(2, 0, dtype=torch.bool), 0.5, 0.4, rule)
        assert empty.tolist() == [[-1] * 5] * 2


def test_degenerate_box_gets_no_low_quality_match():
    assert assign([[0.0, 0.6], [0.0, 0.1]], rule="gt") == [1, -1]
    assert assign([[0.0, 0.6], [0.0, 0.1]], rule="argmax") == [1, -1]


def random_case(seed, num_images=3, max_boxes=6, snap=False):
    g = torch.Generator().manual_seed(seed)
    anchors = head(prior_offset=0.0, strides=[8, 16]).priors(maps([(12, 12), (6, 6)])).anchors
    counts = torch.randint(0, max_boxes + 1, (num_images,), generator=g).tolist()
    counts[0] = max(counts[0], 1)
    boxes = torch.zeros(num_images, max_boxes, 4)
    valid = torch.zeros(num_images, max_boxes, dtype=torch.bool)
    for i, n in enumerate(counts):
        if snap:  # copies of anchors: exact ties between anchors and boxes
            shift = 8 * torch.randint(-1, 2, (n, 1), generator=g)
            b = anchors[torch.randint(0, len(anchors), (n,), generator=g)] + shift
        else:
            xy = torch.rand(n, 2, generator=g) * 80
            b = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 90], dim=1)
        boxes[i, :n], valid[i, :n] = b, True
    return anchors, boxes, valid, counts


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("snap", [False, True])
def test_argmax_rule_equals_torchvision_matcher(seed, snap):
    anchors, boxes, valid, counts = random_case(seed, snap=snap)
    matched = max_iou_assign(anchor_gt_ious(anchors, boxes), valid, 0.5, 0.4, "argmax")
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    for i, n in enumerate(counts):
        if n == 0:
            assert (matched[i] == -1).all()
            continue
        assert torch.equal(matched[i], matcher(box_iou(boxes[i, :n], anchors)))
    assert (matched >= 0).any()


def mmdet_max_iou_assigner(overlaps, pos_thr=0.5, neg_thr=0.4):
    """mmdetection's MaxIoUAssigner (min_pos_iou=0, gt_max_assign_all=True) for one image,
    written as its loop over boxes; ``overlaps [M, N]``; returns our convention (-1 bg, -2 ign)."""
    assigned = torch.full((overlaps.shape[1],), -2, dtype=torch.long)
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps = overlaps.max(dim=1).values
    assigned[(max_overlaps >= 0) & (max_overlaps < neg_thr)] = -1
    pos = max_overlaps >= pos_thr
    assigned[pos] = argmax_overlaps[pos]
    for i in range(overlaps.shape[0]):
        if gt_max_overlaps[i] > 0:
            assigned[overlaps[i] == gt_max_overlaps[i]] = i
    return assigned


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("snap", [False, True])
def test_gt_rule_equals_mmdet_loop(seed, snap):
    anchors, boxes, valid, counts = random_case(seed, snap=snap)
    ious = anchor_gt_ious(anchors, boxes)
    matched = max_iou_assign(ious, valid, 0.5, 0.4, "gt")
    for i, n in enumerate(counts):
        expected = mmdet_max_iou_assigner(box_iou(boxes[i, :n], anchors)) if n else torch.full_like(matched[i], -1)
        assert torch.equal(matched[i], expected)
        assert torch.equal(ious[i, :, :n], box_iou(anchors, boxes[i, :n]))


# ---- losses on hand-made maps ---------------------------------------------------------------
# one level, stride 8, a 4x4 map (32x32 input), one 16x16 anchor per location centred at
# 4, 12, 20, 28; a box equal to the anchor at (12, 12) has IoU 1 with it and 1/3 or 1/7 with its
# neighbours, so it has exactly one positive

def loss_head(**fields):
    return head(num_classes=2, strides=[8], prior_offset=0.5, anchor_sizes=[[16.0]], anchor_ratios=[1.0],
                **fields)


def loss_outputs(num_images=1, reg=0.1):
    return {"cls": [torch.zeros(num_images, 2, 4, 4, requires_grad=True)],
            "reg": [torch.full((num_images, 4, 4, 4), reg, requires_grad=True)]}


def target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def test_losses_hand_values_l1():
    h = loss_head(box_loss="l1")
    outputs = loss_outputs()
    losses = h.loss(outputs, [target([[4.0, 4.0, 20.0, 20.0]], [1])], torch.tensor([[32, 32]]))
    # p = .5 everywhere: focal = α (1-p)^2 ln 2 for the target class, (1-α) p^2 ln 2 otherwise;
    # 16 anchors x 2 classes, one positive element, divided by 1 positive
    assert losses["loss_cls"].item() == pytest.approx(LN2 * (31 * 0.75 * 0.25 + 0.25 * 0.25), rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(4 * 0.1, rel=1e-5)  # target deltas are 0
    sum(losses.values()).backward()
    assert outputs["reg"][0].grad.abs().sum() > 0


def test_ignored_anchors_do_not_count():
    # box 16x18: IoU 256/288 with the anchor at (12, 12), 160/384 = .417 (ignored) with (12, 20)
    h = loss_head(box_loss="l1")
    losses = h.loss(loss_outputs(), [target([[4.0, 4.0, 20.0, 22.0]], [0])], torch.tensor([[32, 32]]))
    assert losses["loss_cls"].item() == pytest.approx(LN2 * (29 * 0.75 * 0.25 + 0.25 * 0.25), rel=1e-5)


def test_smooth_l1_and_giou_box_losses():
    boxes = [target([[4.0, 4.0, 20.0, 20.0]], [1])]
    smooth = loss_head(box_loss="smooth_l1", smooth_l1_beta=0.11).loss(loss_outputs(), boxes, None)
    assert smooth["loss_bbox"].item() == pytest.approx(4 * 0.5 * 0.1 ** 2 / 0.11, rel=1e-5)
    giou = loss_head(box_loss="giou").loss(loss_outputs(), boxes, None)
    # deltas .1 on the anchor (4, 4, 20, 20): centre 12 + 1.6, size 16 e^.1
    c, half = 12 + 1.6, 8 * math.exp(0.1)
    pred = torch.tensor([[c - half, c - half, c + half, c + half]])
    expected = generalized_box_iou_loss(pred, torch.tensor([[4.0, 4.0, 20.0, 20.0]])).item()
    assert giou["loss_bbox"].item() == pytest.approx(expected, rel=1e-5)


def test_batch_and_image_normalisers():
    # image 0: one positive (class 1); image 1: two positives (classes 0 and 1)
    targets = [target([[4.0, 4.0, 20.0, 20.0]], [1]),
               target([[4.0, 4.0, 20.0, 20.0], [12.0, 12.0, 28.0, 28.0]], [0, 1])]
    sum0, sum1 = LN2 * (31 * 0.1875 + 0.0625), LN2 * (30 * 0.1875 + 2 * 0.0625)
    batch = loss_head().loss(loss_outputs(2), targets, None)
    assert batch["loss_cls"].item() == pytest.approx((sum0 + sum1) / 3, rel=1e-5)
    h = loss_head()
    h.cfg.loss_normalizer = "image"  # torchvision: each image by its positives, then the mean
    per_image = h.loss(loss_outputs(2), targets, None)
    assert per_image["loss_cls"].item() == pytest.approx((sum0 / 1 + sum1 / 2) / 2, rel=1e-5)


def test_image_without_boxes():
    h = loss_head()
    outputs = loss_outputs(2)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = h.loss(outputs, [empty, target([[4.0, 4.0, 20.0, 20.0]], [1])], None)
    assert losses["loss_cls"].item() == pytest.approx(LN2 * (32 * 0.1875 + 31 * 0.1875 + 0.0625), rel=1e-5)
    losses = h.loss(loss_outputs(1), [empty], None)
    assert losses["loss_cls"].item() == pytest.approx(LN2 * 32 * 0.1875, rel=1e-5)  # / max(1, 0 positives)
    assert losses["loss_bbox"].item() == 0.0
    sum(losses.values()).backward()


# ---- decoding and key conversion ------------------------------------------------------------

def test_scores_and_boxes_decode_deltas():
    h = loss_head()
    outputs = {"cls": [torch.full((1, 2, 4, 4), math.log(3.0))], "reg": [torch.zeros(1, 4, 4, 4)]}
    outputs["reg"][0][0, 2, 1, 2] = math.log(2.0)  # dw of the anchor at x = 20, y = 12
    priors = h.priors(outputs)
    scores, boxes = h.scores_and_boxes(outputs, priors)
    assert torch.allclose(scores, torch.full((1, 16, 2), 0.75))
    assert torch.allclose(boxes[0, 6], torch.tensor([4.0, 4.0, 36.0, 20.0]))  # width 16 -> 32
    assert torch.allclose(boxes[0, 5], priors.anchors[5])


def test_convert_retinanet_keys():
    t = torch.zeros(4, 4, 3, 3)
    v1 = convert_torchvision_retinanet({"head.classification_head.conv.1.0.weight": t,
                                        "head.regression_head.conv.3.0.bias": torch.zeros(4),
                                        "backbone.fpn.extra_blocks.p7.weight": t})
    assert set(v1) == {"head.cls_tower.2.weight", "head.reg_tower.6.bias", "neck.extra_blocks.1.weight"}
    legacy = convert_torchvision_retinanet({"head.classification_head.conv.6.weight": t})  # conv, relu, ...
    assert set(legacy) == {"head.cls_tower.6.weight"}
    v2 = convert_torchvision_retinanet({"head.classification_head.conv.1.0.weight": t,
                                        "head.classification_head.conv.1.1.weight": torch.ones(4),
                                        "head.regression_head.bbox_reg.weight": t})
    assert set(v2) == {"head.cls_tower.3.weight", "head.cls_tower.3.bias", "head.cls_tower.4.weight",
                       "head.bbox_pred.weight"}
    assert torch.equal(v2["head.cls_tower.3.bias"], torch.zeros(4))  # GN convs have no bias in torchvision
    with pytest.raises(CheckpointError, match="unexpected key"):
        convert_torchvision_retinanet({"head.something.weight": t})


# ---- presets end to end ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["retinanet_r18_fpn_tiny"])
def test_tiny_preset_trains_and_predicts(name):
    cfg = get_preset(name).model
    cfg.backbone.name, cfg.neck.out_channels, cfg.head.feat_channels, cfg.head.gn_groups = "resnet10", 16, 16, 4
    cfg.num_classes = 3
    torch.manual_seed(0)
    model = Detector(cfg)
    assert model.head.cls_logits.out_channels == 9 * 3 and model.head.bbox_pred.out_channels == 9 * 4
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    batch = Batch(images, torch.tensor([[128, 128], [96, 128]]),
                  [target([[10.0, 10.0, 60.0, 70.0]], [2]),
                   {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    losses = model.loss(batch)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    model.head.cfg.score_thresh = 0.0
    detections = model.predict(batch)
    assert len(detections) == 2 and 0 < len(detections[0]) <= cfg.head.max_detections
    assert (detections[1].boxes[:, 3] <= 96).all()
