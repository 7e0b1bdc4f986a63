"""select_detections / batched_nms_all against an independent per-image torchvision reference."""
import math

import pytest
import torch
from torchvision.ops import batched_nms, box_iou

from anchorfree.config import DenseHeadConfig
from anchorfree.models.postprocess import batched_nms_all, select_detections, soft_nms, suppress


def opts(score_thresh: float, topk: int, nms_thresh: float, max_detections: int, nms: str = "classwise"):
    """Inference settings as a head config section carries them."""
    return DenseHeadConfig(score_thresh=score_thresh, topk=topk, nms_thresh=nms_thresh, max_detections=max_detections,
                           nms=nms)


def reference_detections(level_scores, level_boxes, image_sizes, score_thresh, topk, nms_thresh, max_det):
    """Per image, per level: threshold -> top-k -> gather boxes -> clip; concat; batched NMS; cap."""
    results = []
    num_classes = level_scores[0].shape[-1]
    for i in range(level_scores[0].shape[0]):
        h, w = image_sizes[i].tolist()
        all_scores, all_boxes, all_labels = [], [], []
        for scores, boxes in zip(level_scores, level_boxes):
            flat = scores[i].reshape(-1)
            cand = torch.nonzero(flat > score_thresh).flatten()
            cand_scores = flat[cand]
            k = min(topk, cand.numel())
            top, order = cand_scores.topk(k)
            idx = cand[order]
            prior, label = idx // num_classes, idx % num_classes
            b = boxes[i, prior].clone()
            b[:, 0::2] = b[:, 0::2].clamp(0, w)
            b[:, 1::2] = b[:, 1::2].clamp(0, h)
            all_scores.append(top)
            all_boxes.append(b)
            all_labels.append(label)
        s, b, lab = torch.cat(all_scores), torch.cat(all_boxes), torch.cat(all_labels)
        keep = batched_nms(b, s, lab, nms_thresh)[:max_det]
        results.append((b[keep], s[keep], lab[keep]))
    return results


def random_inputs(seed, num_images=3, shapes=((6, 8), (3, 4), (2, 2)), num_classes=4, size=64.0):
    g = torch.Generator().manual_seed(seed)
    level_scores, level_boxes = [], []
    for h, w in shapes:
        n = h * w
        level_scores.append(torch.rand(num_images, n, num_classes, generator=g))
        # boxes clustered so that NMS has work to do; some leave the image (clipping matters)
        centers = torch.rand(num_images, n, 2, generator=g) * size
        half = torch.rand(num_images, n, 2, generator=g) * 20 + 2
        level_boxes.append(torch.cat([centers - half, centers + half], dim=-1))
    return level_scores, level_boxes


def assert_same(ours, ref):
    assert len(ours) == len(ref)
    for det, (b, s, lab) in zip(ours, ref):
        assert det.boxes.shape == b.shape
        torch.testing.assert_close(det.scores, s, rtol=0, atol=0)
        torch.testing.assert_close(det.boxes, b, rtol=0, atol=0)
        assert torch.equal(det.labels, lab)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("levels", [2, 3])
def test_select_detections_matches_reference(seed, levels):
    shapes = ((6, 8), (3, 4), (2, 2))[:levels]
    level_scores, level_boxes = random_inputs(seed, shapes=shapes)
    image_sizes = torch.tensor([[60, 64], [40, 50], [64, 30]])
    args = dict(score_thresh=0.3, topk=20, nms_thresh=0.5, max_det=100)
    ours = select_detections(level_scores, level_boxes, image_sizes,
                             opts(args["score_thresh"], args["topk"], args["nms_thresh"], args["max_det"]))
    ref = reference_detections(level_scores, level_boxes, image_sizes, **args)
    assert_same(ours, ref)
    # non-trivial: every image kept something, and NMS removed something in the batch
    assert all(len(d) > 0 for d in ours)
    no_nms = reference_detections(level_scores, level_boxes, image_sizes, 0.3, 20, 1.0, 100)
    assert sum(len(d) for d in ours) < sum(len(b) for b, _, _ in no_nms)
    for det, (h, w) in zip(ours, image_sizes.tolist()):
        assert (det.boxes >= 0).all() and (det.boxes[:, 0::2] <= w).all() and (det.boxes[:, 1::2] <= h).all()
        assert (det.scores > 0.3).all()
        assert torch.all(det.scores[:-1] >= det.scores[1:])  # sorted by decreasing score


def test_select_detections_threshold_below_topk():
    # few candidates above the threshold on a level: top-k must not let sub-threshold scores in
    level_scores, level_boxes = random_inputs(7)
    image_sizes = torch.tensor([[64, 64]] * 3)
    ours = select_detections(level_scores, level_boxes, image_sizes, opts(0.9, 50, 0.6, 100))
    ref = reference_detections(level_scores, level_boxes, image_sizes, 0.9, 50, 0.6, 100)
    assert_same(ours, ref)
    assert all((d.scores > 0.9).all() for d in ours)


def test_max_detections_cap_is_per_image():
    level_scores, level_boxes = random_inputs(11)
    # make image 0 dominate in score: a global cap would starve images 1 and 2
    level_scores[0][0] += 10.0
    image_sizes = torch.tensor([[64, 64]] * 3)
    uncapped = select_detections(level_scores, level_boxes, image_sizes, opts(0.05, 1000, 0.5, 10_000))
    capped = select_detections(level_scores, level_boxes, image_sizes, opts(0.05, 1000, 0.5, 3))
    ref = reference_detections(level_scores, level_boxes, image_sizes, 0.05, 1000, 0.5, 3)
    assert_same(capped, ref)
    assert [len(d) for d in capped] == [3, 3, 3]
    assert all(len(d) > 3 for d in uncapped)
    for c, u in zip(capped, uncapped):  # the cap keeps the 3 best of the uncapped result
        assert torch.equal(c.boxes, u.boxes[:3]) and torch.equal(c.scores, u.scores[:3])
        assert torch.equal(c.labels, u.labels[:3])


def test_image_without_scores_above_threshold_is_empty():
    level_scores, level_boxes = random_inputs(5)
    for s in level_scores:
        s[1] = s[1] * 0.1  # image 1: every score <= 0.1
    image_sizes = torch.tensor([[64, 64]] * 3)
    ours = select_detections(level_scores, level_boxes, image_sizes, opts(0.2, 100, 0.5, 100))
    assert len(ours[1]) == 0
    assert ours[1].boxes.shape == (0, 4) and ours[1].scores.shape == (0,) and ours[1].labels.shape == (0,)
    assert len(ours[0]) > 0 and len(ours[2]) > 0
    assert_same(ours, reference_detections(level_scores, level_boxes, image_sizes, 0.2, 100, 0.5, 100))
    # nothing above the threshold anywhere: every image empty
    none = select_detections([s * 0.1 for s in level_scores], level_boxes, image_sizes, opts(0.2, 100, 0.5, 100))
    assert [d.boxes.shape for d in none] == [(0, 4)] * 3


def test_select_detections_hand_case():
    # 1 image, 1 level, 3 priors, 2 classes; scores [N, C]
    scores = torch.tensor([[[0.9, 0.1], [0.8, 0.7], [0.05, 0.6]]])
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [-5.0, 20.0, 50.0, 40.0]]])
    dets = select_detections([scores], [boxes], torch.tensor([[30, 40]]), opts(0.2, 10, 0.5, 10))[0]
    # candidates > 0.2: (p0, c0, .9), (p1, c0, .8), (p1, c1, .7), (p2, c1, .6)
    # p0 and p1 boxes: IoU = 90 / 110 = 0.82 > 0.5 -> (p1, c0) suppressed by (p0, c0); class 1 is separate
    # p2 box clipped to w = 40, h = 30: [0, 20, 40, 30]
    assert dets.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert dets.labels.tolist() == [0, 1, 1]
    assert dets.boxes.tolist() == [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [0.0, 20.0, 40.0, 30.0]]


# ---- batched_nms_all ------------------------------------------------------------------------

def test_batched_nms_all_groups():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.5, 0.9, 0.7])
    # identical boxes in different groups: both kept (sorted by score)
    assert batched_nms_all(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [1, 2, 0]
    # same group: the lower-scored duplicate is suppressed
    assert batched_nms_all(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [1, 2]
    assert batched_nms_all(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0


def test_batched_nms_all_matches_per_group_nms_random():
    g = torch.Generator().manual_seed(0)
    n = 300
    xy = torch.rand(n, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 1], dim=1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 12, (n,), generator=g)
    ours = batched_nms_all(boxes, scores, groups, 0.4)
    ref = batched_nms(boxes, scores, groups, 0.4)
    assert ours.tolist() == ref.tolist()
    assert 0 < ours.numel() < n
    # no two kept boxes of the same group overlap above the threshold
    kept = boxes[ours]
    iou = box_iou(kept, kept)
    same = groups[ours][:, None] == groups[ours][None, :]
    iou.fill_diagonal_(0)
    assert (iou[same] <= 0.4).all()


def test_batched_nms_all_large_coordinates_exact():
    # nearly identical boxes at ~1e4 px in many groups: the group offset must not round coordinates
    base = torch.tensor([10000.0, 10000.0, 10004.0, 10004.0])
    boxes = torch.stack([base, base + torch.tensor([0.0, 0.0, 0.0, 0.5])] * 50)
    scores = torch.linspace(1.0, 0.01, 100)
    groups = torch.arange(50).repeat_interleave(2)
    # within each group, IoU = 16 / 18 = 0.889 > 0.85 -> one kept per group; < 0.9 -> both kept
    assert batched_nms_all(boxes, scores, groups, 0.85).tolist() == list(range(0, 100, 2))
    assert batched_nms_all(boxes, scores, groups, 0.9).tolist() == list(range(100))


# ---- suppression modes ------------------------------------------------------------------------
def soft_nms_loop(boxes, scores, method, iou_thr, sigma, min_score):
    """Plain Soft-NMS (Bodla et al. 2017) on one group, as mmcv's CPU loop: select the best, decay the rest."""
    boxes, scores = boxes.tolist(), scores.tolist()
    alive = [i for i, s in enumerate(scores) if s >= min_score]
    out = []
    while alive:
        best = max(alive, key=lambda i: scores[i])
        out.append((best, scores[best]))
        alive.remove(best)
        bx = boxes[best]
        for i in list(alive):
            b = boxes[i]
            iw = max(0.0, min(bx[2], b[2]) - max(bx[0], b[0]))
            ih = max(0.0, min(bx[3], b[3]) - max(bx[1], b[1]))
            inter = iw * ih
            iou = inter / ((bx[2] - bx[0]) * (bx[3] - bx[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
            if method == "gaussian":
                scores[i] *= math.exp(-iou * iou / sigma)
            elif iou >= iou_thr:
                scores[i] *= 1 - iou
            if scores[i] < min_score:
                alive.remove(i)
    return out


@pytest.mark.parametrize("method", ["gaussian", "linear"])
def test_soft_nms_matches_a_loop_per_group(method):
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(60, 2, generator=g) * 20], dim=1)
    scores = torch.rand(60, generator=g)
    groups = torch.randint(0, 4, (60,), generator=g)
    keep, new_scores = soft_nms(boxes, scores, groups, method, iou_threshold=0.3, sigma=0.5, min_score=0.05)
    expected = []
    for grp in range(4):
        idx = (groups == grp).nonzero().flatten()
        expected += [(int(idx[i]), s) for i, s in soft_nms_loop(boxes[idx], scores[idx], method, 0.3, 0.5, 0.05)]
    expected.sort(key=lambda e: -e[1])
    assert keep.tolist() == [e[0] for e in expected]
    assert new_scores.tolist() == pytest.approx([e[1] for e in expected], abs=1e-6)
    assert len(expected) < 60 and (new_scores < scores[keep] - 1e-3).any()  # something decayed and dropped


def test_soft_nms_hand_case():
    # two boxes of IoU 0.5 (gaussian: 0.8 * exp(-0.25 / 0.5)), a third far away untouched
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 5], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, s = soft_nms(boxes, scores, torch.zeros(3, dtype=torch.long), "gaussian", sigma=0.5)
    assert keep.tolist() == [0, 2, 1]
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.8 * math.exp(-0.5)])
    keep, s = soft_nms(boxes, scores, torch.zeros(3, dtype=torch.long), "linear", iou_threshold=0.3)
    assert keep.tolist() == [0, 2, 1] and s.tolist() == pytest.approx([0.9, 0.7, 0.4])


def test_suppression_modes_hand_case():
    # image 0: two overlapping boxes of different classes and a duplicate of class 0; image 1: one box
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 10, 10], [0.0, 0, 10, 9.5], [5.0, 5, 9, 9]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 1, 0, 1])
    images = torch.tensor([0, 0, 0, 1])

    def run(nms, **kw):
        return [d.scores.tolist() for d in suppress(boxes, scores, labels, images, 2, opts(0.05, 10, 0.5, 100, nms))]

    assert run("classwise") == [pytest.approx([0.9, 0.8]), pytest.approx([0.6])]
    assert run("agnostic") == [pytest.approx([0.9]), pytest.approx([0.6])]
    assert run("none") == [pytest.approx([0.9, 0.8, 0.7]), pytest.approx([0.6])]
    soft = run("soft_gaussian")
    assert len(soft[0]) == 3 and soft[0][0] == pytest.approx(0.9) and soft[0][1] == pytest.approx(0.8)
    assert soft[0][2] < 0.7 * 0.2  # the class-0 duplicate (IoU 0.95) decays by exp(-0.95² / 0.5)


def test_soft_nms_applies_the_score_threshold_after_decay():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 9.5]])
    dets = suppress(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), torch.tensor([0, 0]), 1,
                    opts(0.3, 10, 0.5, 100, "soft_gaussian"))
    assert dets[0].scores.tolist() == pytest.approx([0.9])  # 0.8 decayed to 0.13 < 0.3


def test_soft_nms_stopping_at_max_detections_keeps_the_same_best():
    g = torch.Generator().manual_seed(9)
    xy = torch.rand(300, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 30], dim=1)
    scores, groups = torch.rand(300, generator=g), torch.randint(0, 3, (300,), generator=g)
    keep, s = soft_nms(boxes, scores, groups, "gaussian")
    keep_cut, s_cut = soft_nms(boxes, scores, groups, "gaussian", max_per_group=20)
    assert len(keep) > 60 and len(keep_cut) <= 60
    assert keep_cut[:20].tolist() == keep[:20].tolist() and s_cut[:20].tolist() == s[:20].tolist()
