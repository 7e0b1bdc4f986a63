"""FCOS target assignment (scale ranges, center sampling, ambiguity) and FCOSHead.loss on hand-made cases."""
import math

import pytest
import torch

from anchorfree.config import FCOSHeadConfig
from anchorfree.models.heads.fcos import FCOSHead, fcos_assign
from anchorfree.errors import ConfigError
from anchorfree.models.priors import Priors, grid_priors, grid_spacing

FCOS_RANGES = torch.tensor([[-1, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]], dtype=torch.float32)
CPU = torch.device("cpu")


def grid(h, w, strides, offset=0.5):
    shapes = [(math.ceil(h / s), math.ceil(w / s)) for s in strides]
    return grid_priors(shapes, strides, offset, CPU)


def one_image(boxes):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(1, -1, 4)
    return boxes, torch.ones(boxes.shape[:2], dtype=torch.bool)


def positives(priors, matched_row, box_index=None):
    """Set of (level, x, y) of the points matched (to ``box_index`` if given)."""
    sel = matched_row >= 0 if box_index is None else matched_row == box_index
    return {(int(priors.level_index[n]), float(priors.points[n, 0]), float(priors.points[n, 1]))
            for n in sel.nonzero().flatten().tolist()}


def hand_priors(points, strides, levels):
    counts = [levels.count(level) for level in range(max(levels) + 1)]
    return Priors(torch.tensor(points, dtype=torch.float32), torch.tensor(strides, dtype=torch.float32),
                  torch.tensor(levels), counts)


# ---- prior spacing --------------------------------------------------------------------------

def test_prior_spacing_from_padded_input_as_torchvision():
    # an 800x1216 batch (multiple of 32, not of 128): P3..P7 maps as the strided convs give them
    shapes = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
    strides = [8, 16, 32, 64, 128]
    assert grid_spacing(shapes, strides) == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)]
    # torchvision: image_size // grid_size per axis: 800 // 13 = 61, 1216 // 19 = 64, 800 // 7 = 114, 1216 // 10 = 121
    assert grid_spacing(shapes, strides, "padded_input") == [(8, 8), (16, 16), (32, 32), (61, 64), (114, 121)]
    priors = grid_priors(shapes, strides, 0.0, CPU, spacing="padded_input")
    p7 = priors.points[priors.level_index == 4]
    assert p7[1].tolist() == [121.0, 0.0] and p7[10].tolist() == [0.0, 114.0]
    assert priors.strides[priors.level_index == 4].unique().tolist() == [128.0]  # regression scale stays nominal
    # a 768x1024 batch (multiples of 128): both agree
    shapes = [(96, 128), (48, 64), (24, 32), (12, 16), (6, 8)]
    assert grid_spacing(shapes, strides, "padded_input") == grid_spacing(shapes, strides)
    with pytest.raises(ConfigError, match="head.prior_stride"):
        grid_spacing(shapes, strides, "torchvision")


# ---- scale ranges ---------------------------------------------------------------------------

def test_scale_ranges_on_grid():
    # 128x128 input, strides [8, 16]: stride-8 points at 4 + 8k, stride-16 points at 8 + 16k
    priors = grid(128, 128, [8, 16])
    boxes, valid = one_image([[10.0, 10.0, 94.0, 30.0]])
    ranges = torch.tensor([[-1.0, 64.0], [64.0, 128.0]])
    matched = fcos_assign(priors, boxes, valid, ranges, center_sampling_radius=0.0)
    # stride 8: inside x in (10, 94) -> 12..92, y in (10, 30) -> 12, 20, 28; t, b <= 18.
    #   max(l, r) = max(x - 10, 94 - x) <= 64  <=>  30 <= x <= 74  ->  x in {36, 44, 52, 60, 68}
    #   (x = 36: l = 26, r = 58; x = 28 would have r = 66 > 64)
    # stride 16: inside x in {24, 40, 56, 72, 88}, y = 24 (t = 14, b = 6)
    #   x = 24: l = 14, r = 70 -> max 70 in [64, 128]   positive
    #   x = 40: r = 54; x = 56: l = 46; x = 72: l = 62 -> < 64, negative
    #   x = 88: l = 78 -> positive
    expected = {(0, float(x), float(y)) for x in (36, 44, 52, 60, 68) for y in (12, 20, 28)}
    expected |= {(1, 24.0, 24.0), (1, 88.0, 24.0)}
    assert positives(priors, matched[0]) == expected
    assert set(matched[0].unique().tolist()) == {-1, 0}


def test_max_dist_70_goes_to_stride_16_only():
    # the same location seen by a stride-8 and a stride-16 point; box gives l=70, t=r=b=10
    priors = hand_priors([[100.0, 100.0], [100.0, 100.0]], [8, 16], [0, 1])
    boxes, valid = one_image([[30.0, 90.0, 110.0, 110.0]])
    ranges = torch.tensor([[-1.0, 64.0], [64.0, 128.0]])
    for closed in (True, False):
        matched = fcos_assign(priors, boxes, valid, ranges, 0.0, closed_ranges=closed)
        assert matched.tolist() == [[-1, 0]]


def test_exact_boundary_closed_vs_open():
    # max(l, t, r, b) == 64 exactly: l = 150 - 86 = 64, t = r = b = 10
    priors = hand_priors([[150.0, 50.0], [150.0, 50.0]], [8, 16], [0, 1])
    boxes, valid = one_image([[86.0, 40.0, 160.0, 60.0]])
    closed = fcos_assign(priors, boxes, valid, torch.tensor([[-1.0, 64.0], [64.0, 128.0]]), 0.0,
                         closed_ranges=True)
    assert closed.tolist() == [[0, 0]]  # -1 <= 64 <= 64 and 64 <= 64 <= 128
    opened = fcos_assign(priors, boxes, valid, torch.tensor([[0.0, 64.0], [64.0, 128.0]]), 0.0,
                         closed_ranges=False)
    assert opened.tolist() == [[-1, -1]]  # 64 not in (0, 64) nor in (64, 128)
    # just off the boundary (63 / 65) the open ranges do match one level each
    boxes_63, _ = one_image([[87.0, 40.0, 160.0, 60.0]])
    boxes_65, _ = one_image([[85.0, 40.0, 160.0, 60.0]])
    open_ranges = torch.tensor([[0.0, 64.0], [64.0, 128.0]])
    assert fcos_assign(priors, boxes_63, valid, open_ranges, 0.0, closed_ranges=False).tolist() == [[0, -1]]
    assert fcos_assign(priors, boxes_65, valid, open_ranges, 0.0, closed_ranges=False).tolist() == [[-1, 0]]


# ---- center sampling ------------------------------------------------------------------------

def test_center_sampling_radius():
    priors = grid(64, 64, [8])  # points 4, 12, ..., 60
    boxes, valid = one_image([[0.0, 0.0, 64.0, 64.0]])  # center (32, 32)
    ranges = torch.tensor([[-1.0, 1e8]])
    sampled = fcos_assign(priors, boxes, valid, ranges, center_sampling_radius=1.5)
    # |p - 32|_inf < 1.5 * 8 = 12 -> x, y in {28, 36} (20 and 44 are exactly 12 away: excluded)
    assert positives(priors, sampled[0]) == {(0, float(x), float(y)) for x in (28, 36) for y in (28, 36)}
    # point (20, 20) is inside the box but |20 - 32| = 12 is not < 12 -> negative; (4, 4) is 28 away
    idx_20 = 2 * 8 + 2  # row 2, col 2 -> point (20, 20)
    assert priors.points[idx_20].tolist() == [20.0, 20.0]
    assert sampled[0, idx_20] == -1 and sampled[0, 0] == -1
    # radius 0 disables center sampling: every one of the 8x8 points is strictly inside
    no_sampling = fcos_assign(priors, boxes, valid, ranges, center_sampling_radius=0.0)
    assert (no_sampling == 0).all()
    # radius 2 (16 px): |p - 32| < 16 -> {20, 28, 36, 44}
    wider = fcos_assign(priors, boxes, valid, ranges, center_sampling_radius=2.0)
    assert positives(priors, wider[0]) == {(0, float(x), float(y)) for x in (20, 28, 36, 44)
                                           for y in (20, 28, 36, 44)}


def test_center_sampling_radius_scales_with_stride():
    # same location, stride 8 vs 32: offset from center 20 px; 1.5 * 8 = 12 < 20 < 1.5 * 32 = 48
    priors = hand_priors([[70.0, 50.0], [70.0, 50.0]], [8, 32], [0, 1])
    boxes, valid = one_image([[0.0, 0.0, 100.0, 100.0]])  # center (50, 50)
    ranges = torch.tensor([[-1.0, 1e8], [-1.0, 1e8]])
    assert fcos_assign(priors, boxes, valid, ranges, 1.5).tolist() == [[-1, 0]]


# ---- ambiguity, background, padding, batching -----------------------------------------------

@pytest.mark.parametrize("small_first", [True, False])
def test_ambiguous_point_takes_smaller_box(small_first):
    priors = grid(64, 64, [8])
    big, small = [0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 48.0, 40.0]  # areas 4096 and 32 * 24 = 768
    boxes, valid = one_image([small, big] if small_first else [big, small])
    small_idx, big_idx = (0, 1) if small_first else (1, 0)
    matched = fcos_assign(priors, boxes, valid, torch.tensor([[-1.0, 1e8]]), 0.0)[0]
    # small box: x in (16, 48) -> 20..44, y in (16, 40) -> 20, 28, 36 -> 4 * 3 = 12 points
    small_pts = {(0, float(x), float(y)) for x in (20, 28, 36, 44) for y in (20, 28, 36)}
    assert positives(priors, matched, small_idx) == small_pts
    # all other 64 - 12 = 52 points are inside only the big box
    assert (matched == big_idx).sum() == 52


def test_points_outside_all_boxes_are_background():
    priors = grid(64, 64, [8])
    boxes, valid = one_image([[0.0, 0.0, 10.0, 10.0]])  # contains only point (4, 4)
    matched = fcos_assign(priors, boxes, valid, torch.tensor([[-1.0, 1e8]]), 0.0)
    assert matched[0, 0] == 0
    assert (matched[0, 1:] == -1).all()
    # a point exactly on the border is not inside (l > 0 strictly): box [4, 4, 20, 20] has (4, *) on its edge
    boxes, valid = one_image([[4.0, 4.0, 20.0, 20.0]])
    matched = fcos_assign(priors, boxes, valid, torch.tensor([[-1.0, 1e8]]), 0.0)
    assert positives(priors, matched[0]) == {(0, 12.0, 12.0)}


def test_padded_boxes_never_match():
    priors = grid(64, 64, [8])
    boxes = torch.tensor([[[0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 48.0, 48.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.tensor([[False, True, False]])
    matched = fcos_assign(priors, boxes, valid, torch.tensor([[-1.0, 1e8]]), 0.0)
    # only the valid box (x, y in (16, 48) -> 20..44: 4 x 4 = 16 points) is matched, never 0 or 2
    assert set(matched.unique().tolist()) == {-1, 1}
    assert (matched == 1).sum() == 16
    # all invalid: everything is background
    matched = fcos_assign(priors, boxes, torch.zeros(1, 3, dtype=torch.bool), torch.tensor([[-1.0, 1e8]]), 0.0)
    assert (matched == -1).all()


def test_batch_equals_per_image():
    priors = grid(128, 96, [8, 16, 32])
    ranges = FCOS_RANGES[:3]
    img0 = [[5.0, 7.0, 90.0, 60.0], [30.0, 20.0, 50.0, 44.0], [0.0, 64.0, 96.0, 128.0]]
    img1 = [[10.0, 10.0, 40.0, 100.0]]
    boxes = torch.zeros(2, 3, 4)
    boxes[0] = torch.tensor(img0)
    boxes[1, :1] = torch.tensor(img1)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    for radius in (0.0, 1.5):
        batched = fcos_assign(priors, boxes, valid, ranges, radius)
        alone0 = fcos_assign(priors, *one_image(img0), ranges, radius)
        alone1 = fcos_assign(priors, *one_image(img1), ranges, radius)
        assert torch.equal(batched[0], alone0[0])
        assert torch.equal(batched[1], alone1[0])
        assert (batched[0] >= 0).sum() > 0 and (batched[1] >= 0).sum() > 0
        assert batched[1].max() == 0  # only box 0 is valid in image 1


# ---- brute force reference ------------------------------------------------------------------

def brute_force_assign(points, strides, levels, boxes, valid, ranges, radius, closed):
    """Plain-Python FCOS rules: inside, center region, scale range, then the smallest area."""
    out = []
    for b in range(len(boxes)):
        row = []
        for (px, py), s, lvl in zip(points, strides, levels):
            best, best_area = -1, float("inf")
            for m, (x1, y1, x2, y2) in enumerate(boxes[b]):
                if not valid[b][m]:
                    continue
                l, t, r, bt = px - x1, py - y1, x2 - px, y2 - py
                if min(l, t, r, bt) <= 0:
                    continue
                if radius > 0:
                    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                    if not max(abs(px - cx), abs(py - cy)) < radius * s:
                        continue
                d = max(l, t, r, bt)
                lo, hi = ranges[lvl]
                if not ((lo <= d <= hi) if closed else (lo < d < hi)):
                    continue
                area = (x2 - x1) * (y2 - y1)
                if area < best_area:
                    best, best_area = m, area
            row.append(best)
        out.append(row)
    return out


def random_case(seed, snap, h=96, w=128):
    """B=2 images with 1-6 and 0-6 boxes, coordinates on a ``snap``-pixel grid (exact in float32)."""
    g = torch.Generator().manual_seed(seed)
    counts = [int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(0, 7, (1,), generator=g))]
    boxes = torch.zeros(2, 6, 4)
    valid = torch.zeros(2, 6, dtype=torch.bool)
    for b, n in enumerate(counts):
        while True:
            xy = torch.round((torch.rand(n, 2, generator=g) * torch.tensor([w, h]) - 16) / snap) * snap
            wh = torch.round((torch.rand(n, 2, generator=g) * 340 + 4) / snap) * snap
            areas = (wh[:, 0] * wh[:, 1]).tolist()
            if len(set(areas)) == n and (wh > 0).all():  # distinct areas: the smallest box is unambiguous
                break
        boxes[b, :n] = torch.cat([xy, xy + wh], dim=1)
        valid[b, :n] = True
    # a padded slot with garbage coordinates that must be ignored
    boxes[1, 5] = torch.tensor([0.0, 0.0, 500.0, 500.0])
    valid[1, 5] = False
    return boxes, valid


# snap 4: distances from the points (4 + 8k, ...) are multiples of 4, so exact range boundaries
# (d == 64, 128, 256) and exact center-region boundaries (|p - c| == 1.5 * stride) occur often;
# snap 0.25: generic positions
@pytest.mark.parametrize("seed,snap", [(0, 4.0), (1, 4.0), (2, 4.0), (3, 0.25), (4, 0.25), (5, 0.25)])
@pytest.mark.parametrize("radius,closed", [(1.5, True), (0.0, True), (1.5, False), (0.0, False)])
def test_fcos_assign_matches_brute_force(seed, snap, radius, closed):
    strides = [8, 16, 32, 64, 128]
    priors = grid(96, 128, strides)  # h = 96, w = 128
    if closed:
        ranges = FCOS_RANGES
    else:
        ranges = torch.tensor([[0, 64], [64, 128], [128, 256], [256, 512], [512, float("inf")]])
    boxes, valid = random_case(seed, snap)
    matched = fcos_assign(priors, boxes, valid, ranges, radius, closed_ranges=closed)
    expected = brute_force_assign(priors.points.tolist(), priors.strides.tolist(), priors.level_index.tolist(),
                                  boxes.tolist(), valid.tolist(), ranges.tolist(), radius, closed)
    assert matched.shape == (2, priors.points.shape[0])
    assert matched.tolist() == expected


def test_brute_force_cases_are_not_trivial():
    # guard against a vacuous comparison: the random cases above produce positives on several levels,
    # several distinct boxes, and hit exact range boundaries (closed and open ranges disagree somewhere)
    priors = grid(96, 128, [8, 16, 32, 64, 128])
    open_ranges = torch.tensor([[-1, 64], [64, 128], [128, 256], [256, 512], [512, 1e8]])
    levels, boxes_hit, boundary_cases = set(), 0, 0
    for seed, snap in [(0, 4.0), (1, 4.0), (2, 4.0), (3, 0.25), (4, 0.25), (5, 0.25)]:
        boxes, valid = random_case(seed, snap)
        closed = fcos_assign(priors, boxes, valid, FCOS_RANGES, 0.0, closed_ranges=True)
        opened = fcos_assign(priors, boxes, valid, open_ranges, 0.0, closed_ranges=False)
        levels |= set(priors.level_index[(closed >= 0).any(0)].tolist())
        boxes_hit += len(set(closed[0].tolist()) - {-1})
        boundary_cases += int(not torch.equal(closed, opened))
    assert levels >= {0, 1, 2, 3}
    assert boxes_hit >= 10
    assert boundary_cases >= 2


# ---- FCOSHead.loss --------------------------------------------------------------------------

def one_level_head(**kw):
    cfg = FCOSHeadConfig(strides=[8], regress_ranges=[[-1, 1e8]], num_convs=0, feat_channels=8, norm="gn",
                     gn_groups=4, center_sampling_radius=0.0, **kw)
    return FCOSHead(cfg, in_channels=8, num_classes=3)


def bce(z, t):
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_fcos_loss_centerness_by_hand():
    head = one_level_head(bbox_weighting="none")
    # 32x32 input, stride 8: 4x4 map, points at 4, 12, 20, 28
    ctr = torch.zeros(2, 1, 4, 4)
    ctr_logits = {(0, 0): 1.0, (0, 1): -0.5, (1, 0): 2.0, (1, 1): 0.3}  # (row, col) -> logit, image 0
    for (i, j), z in ctr_logits.items():
        ctr[0, 0, i, j] = z
    ctr[1, 0, 3, 3] = -1.2  # image 1, point (28, 28)
    outputs = {"cls": [torch.zeros(2, 3, 4, 4)], "reg": [torch.ones(2, 4, 4, 4)], "ctr": [ctr]}
    targets = [
        # box [2, 2, 18, 14]: points with x in {4, 12}, y in {4, 12} are inside
        {"boxes": torch.tensor([[2.0, 2.0, 18.0, 14.0]]), "labels": torch.tensor([1])},
        # box [24, 22, 31, 31]: only point (28, 28): l = 4, t = 6, r = 3, b = 3
        {"boxes": torch.tensor([[24.0, 22.0, 31.0, 31.0]]), "labels": torch.tensor([2])},
    ]
    losses = head.loss(outputs, targets, torch.tensor([[32, 32], [32, 32]]))
    # center-ness targets:
    #  (4, 4):   l=2,  t=2,  r=14, b=10 -> sqrt(2/14 * 2/10) = sqrt(1/35)
    #  (12, 4):  l=10, t=2,  r=6,  b=10 -> sqrt(6/10 * 2/10) = sqrt(0.12)
    #  (4, 12):  l=2,  t=10, r=14, b=2  -> sqrt(2/14 * 2/10) = sqrt(1/35)
    #  (12, 12): l=10, t=10, r=6,  b=2  -> sqrt(6/10 * 2/10) = sqrt(0.12)
    #  (28, 28): l=4,  t=6,  r=3,  b=3  -> sqrt(3/4 * 3/6)   = sqrt(0.375)
    # (row, col) = (y index, x index)
    terms = [
        bce(1.0, math.sqrt(1 / 35)),   # (row 0, col 0) -> point (4, 4)
        bce(-0.5, math.sqrt(0.12)),    # (row 0, col 1) -> point (12, 4)
        bce(2.0, math.sqrt(1 / 35)),   # (row 1, col 0) -> point (4, 12)
        bce(0.3, math.sqrt(0.12)),     # (row 1, col 1) -> point (12, 12)
        bce(-1.2, math.sqrt(0.375)),   # image 1, point (28, 28)
    ]
    num_pos = 5
    assert abs(losses["loss_ctr"].item() - sum(terms) / num_pos) < 1e-5

    # focal loss by hand: all logits 0 -> p = 0.5; 5 positive entries, 2*16*3 - 5 = 91 negative entries
    # positive: 0.25 * 0.5^2 * ln 2, negative: 0.75 * 0.5^2 * ln 2; normalised by num_pos = 5
    expected_cls = (5 * 0.25 * 0.25 + 91 * 0.75 * 0.25) * math.log(2) / 5
    assert abs(losses["loss_cls"].item() - expected_cls) < 1e-4

    # reg = 1 everywhere -> relu(1) * stride 8 = 8 px on each side: 16x16 boxes centred on the points.
    # point (28, 28): pred [20, 20, 36, 36] (area 256), target [24, 22, 31, 31] (area 63) inside it:
    # IoU 63/256, enclosing = pred -> GIoU = 63/256 -> loss 1 - 63/256 = 193/256
    # point (4, 4): pred [-4, -4, 12, 12], target [2, 2, 18, 14] (16 x 12 = 192):
    # inter [2, 2, 12, 12] = 100, union 256 + 192 - 100 = 348, enclosing [-4, -4, 18, 14] = 22*18 = 396
    # GIoU = 100/348 - 48/396 -> loss 1 - 100/348 + 48/396
    # point (12, 4): pred [4, -4, 20, 12]: inter [4, 2, 18, 12] = 140, union 308, encl [2,-4,20,14] = 324
    # point (4, 12): pred [-4, 4, 12, 20]: inter [2, 4, 12, 14] = 100, union 348, encl [-4,2,18,20] = 396
    # point (12, 12): pred [4, 4, 20, 20]: inter [4, 4, 18, 14] = 140, union 308, encl [2,2,20,20] = 324
    giou_losses = [
        1 - 100 / 348 + 48 / 396,
        1 - 140 / 308 + 16 / 324,
        1 - 100 / 348 + 48 / 396,
        1 - 140 / 308 + 16 / 324,
        1 - 63 / 256,
    ]
    assert abs(losses["loss_bbox"].item() - sum(giou_losses) / num_pos) < 1e-5


def test_fcos_loss_bbox_zero_for_exact_regression_and_centerness_weighting():
    head = one_level_head(bbox_weighting="centerness")
    # single image, 4x4 map; box [2, 2, 18, 14], 4 positives as above
    box = torch.tensor([2.0, 2.0, 18.0, 14.0])
    priors = grid_priors([(4, 4)], [8], 0.5, CPU)
    reg = torch.full((1, 4, 4, 4), 0.5)
    for n, (x, y) in enumerate(priors.points.tolist()):
        if 2 < x < 18 and 2 < y < 14:
            ltrb = torch.tensor([x - 2.0, y - 2.0, 18.0 - x, 14.0 - y]) / 8  # norm_on_bbox: units of stride
            reg[0, :, n // 4, n % 4] = ltrb
    outputs = {"cls": [torch.zeros(1, 3, 4, 4)], "reg": [reg], "ctr": [torch.zeros(1, 1, 4, 4)]}
    losses = head.loss(outputs, [{"boxes": box[None], "labels": torch.tensor([0])}], torch.tensor([[32, 32]]))
    assert abs(losses["loss_bbox"].item()) < 1e-6
    # ctr logits all 0 -> BCE = ln 2 whatever the target, for each of the 4 positives: 4 ln2 / 4
    assert abs(losses["loss_ctr"].item() - math.log(2)) < 1e-6


def test_fcos_loss_no_boxes_anywhere():
    cfg = FCOSHeadConfig(strides=[8], regress_ranges=[[-1, 1e8]], num_convs=1, feat_channels=8, norm="gn", gn_groups=4)
    torch.manual_seed(0)
    head = FCOSHead(cfg, in_channels=6, num_classes=3)
    feats = [torch.randn(2, 6, 4, 5)]
    outputs = head(feats)
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in range(2)]
    losses = head.loss(outputs, targets, torch.tensor([[32, 40], [32, 40]]))
    assert losses["loss_bbox"].item() == 0.0
    assert losses["loss_ctr"].item() == 0.0
    assert torch.isfinite(losses["loss_cls"]) and losses["loss_cls"].item() > 0
    # with no positives, num_pos clamps to 1: loss_cls is the plain sum of the (all-negative) focal terms
    cls = torch.cat([m.permute(0, 2, 3, 1).reshape(-1) for m in outputs["cls"]])
    p = cls.sigmoid()
    expected = (0.75 * p ** 2 * -torch.log(1 - p)).sum()
    torch.testing.assert_close(losses["loss_cls"], expected, rtol=1e-5, atol=1e-6)
    total = sum(losses.values())
    total.backward()
    grad = head.cls_logits.bias.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
