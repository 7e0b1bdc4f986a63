"""Box coding, aligned IoU, IoU/GIoU losses, focal loss and clipping against hand-computed values."""
import math

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss

from anchorfree.boxes import aligned_iou, bbox2distance, centerness_target, clip_boxes, distance2bbox
from anchorfree.losses import box_iou_loss, num_positives, sigmoid_focal_loss


# ---- distance coding ------------------------------------------------------------------------

def test_distance2bbox_hand_values():
    # point (10, 20), (l, t, r, b) = (1, 2, 3, 4) -> (10-1, 20-2, 10+3, 20+4) = (9, 18, 13, 24)
    points = torch.tensor([[10.0, 20.0]])
    dist = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.equal(distance2bbox(points, dist), torch.tensor([[9.0, 18.0, 13.0, 24.0]]))
    # and back: l = 10-9 = 1, t = 20-18 = 2, r = 13-10 = 3, b = 24-20 = 4
    assert torch.equal(bbox2distance(points, torch.tensor([[9.0, 18.0, 13.0, 24.0]])), dist)


def test_bbox2distance_negative_outside():
    # point (0, 0) left of / above box [5, 6, 7, 8]: l = 0-5 = -5, t = 0-6 = -6, r = 7-0 = 7, b = 8-0 = 8
    out = bbox2distance(torch.tensor([0.0, 0.0]), torch.tensor([5.0, 6.0, 7.0, 8.0]))
    assert out.tolist() == [-5.0, -6.0, 7.0, 8.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_box_round_trip_random(seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(2, 50, 2, generator=g) * 200
    dist = torch.rand(2, 50, 4, generator=g) * 80 + 0.1
    boxes = distance2bbox(points, dist)
    assert boxes.shape == (2, 50, 4)
    assert (boxes[..., 2:] > boxes[..., :2]).all()
    torch.testing.assert_close(bbox2distance(points, boxes), dist, rtol=0, atol=1e-4)
    # the other direction: boxes -> distances -> boxes
    rand_boxes = torch.cat([points - 5 - 30 * torch.rand(2, 50, 2, generator=g),
                            points + 5 + 30 * torch.rand(2, 50, 2, generator=g)], dim=-1)
    torch.testing.assert_close(distance2bbox(points, bbox2distance(points, rand_boxes)), rand_boxes,
                               rtol=0, atol=1e-4)


# ---- center-ness ----------------------------------------------------------------------------

def test_centerness_target_hand_values():
    ltrb = torch.tensor([
        [2.0, 4.0, 6.0, 4.0],  # sqrt(min(2,6)/max(2,6) * min(4,4)/max(4,4)) = sqrt(2/6 * 1) = 0.57735
        [1.0, 1.0, 1.0, 1.0],  # perfectly centred: 1
        [1.0, 2.0, 3.0, 8.0],  # sqrt(1/3 * 2/8) = sqrt(1/12) = 0.288675
        [6.0, 8.0, 2.0, 2.0],  # sqrt(2/6 * 2/8) = sqrt(1/12) = 0.288675 (symmetric in l<->r, t<->b)
    ])
    expected = torch.tensor([math.sqrt(1 / 3), 1.0, math.sqrt(1 / 12), math.sqrt(1 / 12)])
    torch.testing.assert_close(centerness_target(ltrb), expected)
    assert abs(centerness_target(ltrb)[0].item() - 0.57735) < 1e-5


# ---- aligned IoU ----------------------------------------------------------------------------

def test_aligned_iou_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0],
                      [0.0, 0.0, 2.0, 2.0],
                      [0.0, 0.0, 2.0, 2.0],
                      [0.0, 0.0, 1.0, 1.0],
                      [0.0, 0.0, 4.0, 4.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0],   # overlap 1x2 = 2, union 4+4-2 = 6 -> 1/3
                      [0.0, 0.0, 2.0, 2.0],   # identical -> 1
                      [1.0, 1.0, 3.0, 3.0],   # overlap 1x1 = 1, union 7 -> 1/7
                      [2.0, 0.0, 3.0, 1.0],   # disjoint -> 0
                      [1.0, 1.0, 2.0, 2.0]])  # contained: 1 / 16
    expected = torch.tensor([2 / 6, 1.0, 1 / 7, 0.0, 1 / 16])
    torch.testing.assert_close(aligned_iou(a, b), expected, rtol=0, atol=1e-6)
    # element-wise, not pairwise: [N] in, [N] out
    assert aligned_iou(a, b).shape == (5,)


# ---- IoU / GIoU losses ----------------------------------------------------------------------

def test_giou_loss_hand_values():
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0],
                         [0.0, 0.0, 2.0, 2.0],
                         [0.0, 0.0, 2.0, 2.0],
                         [3.0, 3.0, 5.0, 6.0]])
    target = torch.tensor([[2.0, 0.0, 3.0, 1.0],   # IoU 0, union 2, enclosing [0,0,3,1] = 3: GIoU = 0 - 1/3 -> loss 4/3
                           [1.0, 0.0, 3.0, 2.0],   # IoU 2/6, enclosing [0,0,3,2] = 6 = union: GIoU 1/3 -> loss 2/3
                           [1.0, 1.0, 3.0, 3.0],   # IoU 1/7, enclosing 9, union 7: GIoU 1/7 - 2/9 = -5/63 -> 68/63
                           [3.0, 3.0, 5.0, 6.0]])  # identical -> 0
    expected = torch.tensor([4 / 3, 2 / 3, 68 / 63, 0.0])
    out = box_iou_loss(pred, target, "giou")
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_giou_loss_matches_torchvision_random():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(64, 2, generator=g) * 50
    pred = torch.cat([xy, xy + torch.rand(64, 2, generator=g) * 30 + 1], dim=1)
    xy2 = xy + torch.randn(64, 2, generator=g) * 10
    target = torch.cat([xy2, xy2 + torch.rand(64, 2, generator=g) * 30 + 1], dim=1)
    torch.testing.assert_close(box_iou_loss(pred, target, "giou"),
                               generalized_box_iou_loss(pred, target, reduction="none"))


def test_iou_loss_is_neg_log_iou():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 4.0]])
    target = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]])
    # IoU 1/3 -> log 3; identical -> 0; contained 1/16 -> log 16
    expected = torch.tensor([math.log(3), 0.0, math.log(16)])
    torch.testing.assert_close(box_iou_loss(pred, target, "iou"), expected, rtol=0, atol=1e-5)
    # disjoint boxes: IoU clamped at 1e-6 -> -log(1e-6) = 13.8155, finite
    disjoint = box_iou_loss(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]]), "iou")
    assert abs(disjoint.item() - (-math.log(1e-6))) < 1e-3


def test_unknown_iou_loss_kind():
    with pytest.raises(ValueError, match="unknown IoU loss"):
        box_iou_loss(torch.zeros(1, 4), torch.zeros(1, 4), "diou")


# ---- focal loss -----------------------------------------------------------------------------

def test_sigmoid_focal_loss_hand_values():
    # FL = -alpha_t (1 - p_t)^gamma log(p_t), alpha = 0.25, gamma = 2
    # x=0, y=1: p = 0.5, p_t = 0.5, a_t = 0.25: 0.25 * 0.25 * ln 2                        = 0.0433217
    # x=0, y=0: p_t = 0.5, a_t = 0.75:          0.75 * 0.25 * ln 2                        = 0.1299651
    # x=2, y=1: p = sigmoid(2) = 0.8807971, p_t = p: 0.25 * 0.1192029^2 * -ln(0.8807971)  = 0.00045089
    # x=2, y=0: p_t = 1 - p = 0.1192029, a_t = 0.75: 0.75 * 0.8807971^2 * -ln(0.1192029)  = 1.2375586
    logits = torch.tensor([0.0, 0.0, 2.0, 2.0])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = torch.tensor([0.0433217, 0.1299651, 0.00045089, 1.2375586])
    out = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none")
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-7)
    total = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="sum")
    torch.testing.assert_close(total, expected.sum(), rtol=1e-4, atol=1e-6)
    # gamma = 0, alpha = -1 (no weighting) reduces to BCE: y=1, x=0 -> ln 2
    bce = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), alpha=-1, gamma=0.0, reduction="none")
    assert abs(bce.item() - math.log(2)) < 1e-6


# ---- normaliser / clipping --------------------------------------------------------------------

def test_num_positives_at_least_one():
    assert num_positives(torch.zeros(3, 5, dtype=torch.bool)).item() == 1.0
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 1] = mask[2, 4] = mask[2, 0] = True
    assert num_positives(mask).item() == 3.0


def test_clip_boxes_per_image_sizes():
    boxes = torch.tensor([
        [[-5.0, -3.0, 25.0, 15.0], [2.0, 3.0, 4.0, 5.0]],
        [[-5.0, -3.0, 25.0, 15.0], [40.0, 40.0, 50.0, 50.0]],
    ])
    image_sizes = torch.tensor([[10, 20], [30, 5]])  # (h, w)
    out = clip_boxes(boxes, image_sizes)
    expected = torch.tensor([
        # image 0: x in [0, 20], y in [0, 10]
        [[0.0, 0.0, 20.0, 10.0], [2.0, 3.0, 4.0, 5.0]],
        # image 1: x in [0, 5], y in [0, 30]
        [[0.0, 0.0, 5.0, 15.0], [5.0, 30.0, 5.0, 30.0]],
    ])
    assert torch.equal(out, expected)
    assert out.dtype == boxes.dtype
