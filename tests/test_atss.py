"""ATSS assignment (vs a brute-force reference, mean + std threshold, center rule, ties, padding)
and ATSSHead.loss sanity."""
import math
import random
import statistics

import pytest
import torch

from anchorfree.config import ATSSHeadConfig
from anchorfree.models.heads.atss import ATSSHead, atss_assign
from anchorfree.models.priors import anchor_priors, level_anchor_shapes
from anchorfree.models.heads.dense import pad_targets
from anchorfree.models.priors import Priors, grid_priors
from anchorfree.presets import get_preset

CPU = torch.device("cpu")
STRIDES = [8, 16, 32]


def atss_cfg(**kw) -> ATSSHeadConfig:
    h = get_preset("atss_r18_fpn_tiny").model.head
    h.strides = list(STRIDES)
    for k, v in kw.items():
        setattr(h, k, v)
    return h


def grid_anchor_priors(height, width, cfg):
    shapes = [(math.ceil(height / s), math.ceil(width / s)) for s in cfg.strides]
    return anchor_priors(grid_priors(shapes, cfg.strides, cfg.prior_offset, CPU), level_anchor_shapes(cfg))


def hand_priors(anchors, levels=None):
    """Priors from explicit anchors (centers = anchor centers), all on one level unless given."""
    anchors = torch.tensor(anchors, dtype=torch.float32)
    levels = [0] * len(anchors) if levels is None else levels
    counts = [levels.count(level) for level in range(max(levels) + 1)]
    return Priors((anchors[:, :2] + anchors[:, 2:]) / 2, torch.full((len(anchors),), 8.0), torch.tensor(levels),
                  counts, anchors)


def batch(*images):
    targets = [{"boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.zeros(len(b), dtype=torch.long)} for b in images]
    return pad_targets(targets, CPU)


# ---- brute-force reference ------------------------------------------------------------------

def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_atss(anchors, num_per_level, boxes_per_image, topk):
    """ATSS Alg. 1 with Python loops over images, boxes and levels."""
    result = []
    for boxes in boxes_per_image:
        best = [-math.inf] * len(anchors)
        matched = [-1] * len(anchors)
        for g, box in enumerate(boxes):
            gx, gy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            candidates, start = [], 0
            for count in num_per_level:
                order = sorted(range(start, start + count), key=lambda i: math.hypot(
                    (anchors[i][0] + anchors[i][2]) / 2 - gx, (anchors[i][1] + anchors[i][3]) / 2 - gy))
                candidates += order[:min(topk, count)]
                start += count
            ious = [_iou(anchors[i], box) for i in candidates]
            threshold = statistics.mean(ious) + statistics.stdev(ious)
            for i, iou in zip(candidates, ious):
                cx, cy = (anchors[i][0] + anchors[i][2]) / 2, (anchors[i][1] + anchors[i][3]) / 2
                inside = min(cx - box[0], cy - box[1], box[2] - cx, box[3] - cy) > 0.01
                if iou >= threshold and inside and iou > best[i]:
                    best[i], matched[i] = iou, g
        result.append(matched)
    return result


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = random.Random(seed)
    cfg = atss_cfg()
    height, width = 72, 96  # levels of 9x12, 5x6 and 3x3 priors (the last fewer than k = 9)
    priors = grid_anchor_priors(height, width, cfg)
    images = []
    for _ in range(2):
        boxes = []
        for _ in range(rng.randint(0, 5)):
            w, h = rng.uniform(4, 60), rng.uniform(4, 60)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            boxes.append([x, y, x + w, y + h])
        images.append(boxes)
    gt_boxes, _, gt_valid = batch(*images)
    matched = atss_assign(priors, gt_boxes, gt_valid, topk=9)
    # the reference sees the same float32 box coordinates
    images32 = [[[float(v) for v in gt_boxes[i, j]] for j in range(len(b))] for i, b in enumerate(images)]
    expected = reference_atss(priors.anchors.tolist(), priors.num_per_level, images32, topk=9)
    assert matched.tolist() == expected
    assert (matched >= 0).sum() > 0 or sum(map(len, images)) == 0  # for these seeds (a thin box may get none)


def test_anchors_are_8_stride_squares_at_offset_0():
    cfg = atss_cfg()
    priors = grid_anchor_priors(64, 64, cfg)
    assert priors.num_per_level == [64, 16, 4]
    assert priors.anchors[0].tolist() == [-32.0, -32.0, 32.0, 32.0]  # point (0, 0), 8 * 8 wide
    assert priors.anchors[64].tolist() == [-64.0, -64.0, 64.0, 64.0]
    assert torch.equal((priors.anchors[:, :2] + priors.anchors[:, 2:]) / 2, priors.points)


# ---- hand-made cases ------------------------------------------------------------------------

def test_threshold_is_mean_plus_unbiased_std():
    # box [0, 0, 10, 10]; anchors [0, 0, w, 10] inside it have IoU w / 10
    anchors = [[0, 0, 9, 10], [0, 0, 8, 10], [0, 0, 2, 10], [0, 0, 10, 2], [100, 100, 110, 110]]
    # IoUs 0.9, 0.8, 0.2, 0.2, 0: mean 0.42; unbiased std sqrt(0.648 / 4) = 0.4025 -> threshold 0.8225
    # (with the biased std 0.36 the threshold would be 0.78 and 0.8 would be positive too)
    ious = [0.9, 0.8, 0.2, 0.2, 0.0]
    assert statistics.mean(ious) + statistics.stdev(ious) == pytest.approx(0.822492, abs=1e-6)
    gt_boxes, _, gt_valid = batch([[0, 0, 10, 10]])
    matched = atss_assign(hand_priors(anchors), gt_boxes, gt_valid, topk=9)
    assert matched.tolist() == [[0, -1, -1, -1, -1]]


def test_topk_per_level_by_center_distance():
    # two levels of three anchors; with k = 2 only the two closest of each level are candidates
    anchors = [[0, 0, 10, 10], [0, 0, 8, 10], [40, 40, 50, 50],  # level 0: IoUs 1, 0.8, 0 (far)
               [0, 0, 9, 10], [60, 60, 70, 70], [80, 80, 90, 90]]  # level 1: IoUs 0.9, 0, 0
    gt_boxes, _, gt_valid = batch([[0, 0, 10, 10]])
    priors = hand_priors(anchors, [0, 0, 0, 1, 1, 1])
    # candidates with k=2: level 0 -> IoU 1, 0.8; level 1 -> 0.9, 0 (the anchor at 65, 65)
    # mean 0.675, std sqrt((.1056 + .0156 + .0506 + .4556) / 3) = 0.4573 -> threshold 1.132: none
    assert atss_assign(priors, gt_boxes, gt_valid, topk=2).tolist() == [[-1] * 6]
    # k = 3: IoUs 1, .8, 0, .9, 0, 0 -> mean 0.45, std sqrt(1.235 / 5) = 0.4970 -> threshold 0.947: only the first
    assert atss_assign(priors, gt_boxes, gt_valid, topk=3).tolist() == [[0, -1, -1, -1, -1, -1]]


def test_center_must_be_inside_by_more_than_001():
    far = [[100, 100, 110, 110], [120, 100, 130, 110], [140, 100, 150, 110], [160, 100, 170, 110]]
    # all three IoUs ~0.5, threshold ~0.48; the centers are at x = 0 (on the edge), 0.005 and 0.02
    anchors = [[-10, 0, 10, 10], [-9.99, 0, 10.0, 10], [-9.98, 0, 10.02, 10]] + far
    gt_boxes, _, gt_valid = batch([[0, 0, 10, 10]])
    matched = atss_assign(hand_priors(anchors), gt_boxes, gt_valid, topk=9)
    assert matched.tolist() == [[-1, -1, 0, -1, -1, -1, -1]]


def test_anchor_claimed_by_two_boxes_goes_to_highest_iou():
    far = [[100, 100, 110, 110], [120, 100, 130, 110], [140, 100, 150, 110], [160, 100, 170, 110],
           [180, 100, 190, 110]]
    anchors = [[0, 0, 10, 10]] + far
    box_a, box_b = [0, 0, 10, 12], [0, 0, 10, 10.5]  # IoU 0.833 and 0.952 with the anchor
    gt_boxes, _, gt_valid = batch([box_a, box_b], [box_b, box_a])
    matched = atss_assign(hand_priors(anchors), gt_boxes, gt_valid, topk=9)
    assert matched[:, 0].tolist() == [1, 0]  # box_b in both orders
    assert (matched[:, 1:] == -1).all()


def test_padded_and_invalid_boxes_never_match():
    cfg = atss_cfg()
    priors = grid_anchor_priors(64, 64, cfg)
    boxes_a = [[4.0, 6.0, 30.0, 40.0], [20.0, 24.0, 60.0, 50.0], [33.0, 1.0, 47.0, 19.0]]
    boxes_b = [[10.0, 12.0, 50.0, 44.0]]
    gt_boxes, _, gt_valid = batch(boxes_a, boxes_b)
    assert gt_valid.tolist() == [[True] * 3, [True, False, False]]
    together = atss_assign(priors, gt_boxes, gt_valid, topk=9)
    alone = [atss_assign(priors, *batch(b)[::2], topk=9)[0] for b in (boxes_a, boxes_b)]
    assert torch.equal(together[0], alone[0]) and torch.equal(together[1], alone[1])
    assert set(together[1].tolist()) == {-1, 0}
    # a real box marked invalid is ignored like padding: as if the image had only boxes 0 and 2
    gt_valid[0, 1] = False
    masked = atss_assign(priors, gt_boxes, gt_valid, topk=9)[0]
    without = atss_assign(priors, *batch([boxes_a[0], boxes_a[2]])[::2], topk=9)[0]
    assert torch.equal(masked, torch.where(without == 1, 2, without))


def test_empty_images():
    priors = grid_anchor_priors(64, 64, atss_cfg())
    gt_boxes, _, gt_valid = batch([], [])
    assert (atss_assign(priors, gt_boxes, gt_valid, topk=9) == -1).all()
    gt_boxes, _, gt_valid = batch([], [[8.0, 8.0, 40.0, 40.0]])
    matched = atss_assign(priors, gt_boxes, gt_valid, topk=9)
    assert (matched[0] == -1).all() and (matched[1] == 0).any()


# ---- the head -------------------------------------------------------------------------------

def small_head(**kw):
    torch.manual_seed(0)
    cfg = atss_cfg(feat_channels=16, num_convs=1, gn_groups=4, **kw)
    return ATSSHead(cfg, in_channels=8, num_classes=3)


def features(batch_size=2, size=64):
    return [torch.randn(batch_size, 8, math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]


def test_loss_without_boxes():
    head = small_head()
    outputs = head(features())
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = head.loss(outputs, [empty, empty], torch.tensor([[64, 64], [64, 64]]))
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_ctr"].item() == 0.0
    assert math.isfinite(losses["loss_cls"].item()) and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())


def test_loss_terms_with_boxes():
    head = small_head()
    outputs = head(features())
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 24.0, 60.0, 50.0]]),
                "labels": torch.tensor([0, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    losses = head.loss(outputs, targets, torch.tensor([[64, 64], [64, 64]]))
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_ctr"}
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    # at initialisation the deltas are ~0: boxes ~ anchors, GIoU loss ~ 1 - GIoU(anchor, box), x2
    assert 0 < losses["loss_bbox"].item() < 2 * 2
    sum(losses.values()).backward()
    scores, boxes = head.scores_and_boxes(outputs, head.priors(outputs))
    assert scores.shape == (2, 64 + 16 + 4, 3) and boxes.shape == (2, 84, 4)
    assert torch.allclose(boxes[0, :64], head.priors(outputs).anchors[:64], atol=4.0)


def test_several_anchors_per_location():
    # the head is not limited to one anchor: RetinaNet's 9 anchors flatten as (location, anchor)
    head = small_head(octave_base_scale=4.0, scales_per_octave=3, anchor_ratios=[0.5, 1.0, 2.0])
    outputs = head(features(1))
    priors = head.priors(outputs)
    assert head.num_anchors == 9 and len(priors.anchors) == 9 * 84 == len(priors.points)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])}]
    losses = head.loss(outputs, targets, torch.tensor([[64, 64]]))
    assert all(math.isfinite(v.item()) for v in losses.values())
