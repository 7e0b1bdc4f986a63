"""CenterNet and CornerNet against mmdetection 3.3.0's ``CenterNetHead`` / ``CornerHead``.

The golden files were written by ``scripts/mmdet_keypoint_golden.py`` (mmdetection on CPU, random weights,
4 images of 128×128 input: a few objects; none; 26 objects with same-class overlaps and shared centers;
objects on the border and a 2×3 px box). The same weights load into anchorfree's heads key by key; targets
and losses must agree to 1e-5 and the detections exactly (count, labels; boxes within 1e-3, scores 1e-5).
mmdetection does not clip boxes, hence ``clip_boxes=False``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anchorfree.config import CenterNetHeadConfig, CornerNetHeadConfig
from anchorfree.models.heads.centernet import CenterNetHead, centernet_targets
from anchorfree.models.heads.cornernet import CornerNetHead, cornernet_targets

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict:
    return torch.load(FIXTURES / name, weights_only=True)


def targets_of(golden: dict) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": b, "labels": lab} for b, lab in zip(golden["gt_bboxes"], golden["gt_labels"])]


def image_sizes_of(golden: dict) -> torch.Tensor:
    return torch.tensor([list(s[:2]) for s in golden["img_shapes"]])


def assert_detections(ours, golden: dict) -> None:
    for i, det in enumerate(ours):
        boxes, scores, labels = golden["bboxes"][i], golden["scores"][i], golden["labels"][i]
        assert len(det) == len(boxes), f"image {i}: {len(det)} detections, mmdetection {len(boxes)}"
        assert torch.equal(det.labels, labels.long()), f"image {i}: labels differ"
        torch.testing.assert_close(det.scores, scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(det.boxes, boxes, atol=1e-3, rtol=0)


# ---- CenterNet -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def centernet():
    golden = load("mmdet_centernet.pt")
    cfg = CenterNetHeadConfig(feat_channels=golden["head_args"]["feat_channels"], clip_boxes=False)
    head = CenterNetHead(cfg, golden["head_args"]["in_channels"], golden["num_classes"])
    head.load_state_dict(golden["state_dict"])  # same keys: heatmap_head.0/2, wh_head, offset_head
    return head.eval(), golden


def test_centernet_forward_matches(centernet):
    head, golden = centernet
    with torch.no_grad():
        out = head([golden["feats"]])
    torch.testing.assert_close(out["heatmap"][0].sigmoid(), golden["center_heatmap_pred"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["wh"][0], golden["wh_pred"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["offset"][0], golden["offset_pred"], atol=1e-5, rtol=1e-5)


def test_centernet_targets_match(centernet):
    _, golden = centernet
    ours = centernet_targets(targets_of(golden), 3, (32, 32), 4, 0.3, "corrected", torch.device("cpu"))
    ref = golden["targets"]
    torch.testing.assert_close(ours["heatmap"], ref["center_heatmap_target"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["wh"], ref["wh_target"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["offset"], ref["offset_target"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["weight"], ref["wh_offset_target_weight"], atol=0, rtol=0)
    assert int(ours["heatmap"].eq(1).sum()) == int(ref["avg_factor"])  # 36 objects, 35 peaks: a shared center


@pytest.mark.parametrize("case", ["random", "near_perfect"])
def test_centernet_losses_match(centernet, case):
    head, golden = centernet
    maps = golden if case == "random" else golden["near_perfect"]
    prob = maps["center_heatmap_pred"].double()
    outputs = {"heatmap": [torch.logit(prob).float()], "wh": [maps["wh_pred"]], "offset": [maps["offset_pred"]]}
    ours = head.loss(outputs, targets_of(golden), image_sizes_of(golden))
    ref = maps["losses"]
    for ours_key, ref_key in (("loss_heatmap", "loss_center_heatmap"), ("loss_wh", "loss_wh"),
                              ("loss_offset", "loss_offset")):
        assert ours[ours_key].item() == pytest.approx(ref[ref_key], rel=1e-5, abs=1e-7), ours_key


@pytest.mark.parametrize("case", ["random", "near_perfect"])
def test_centernet_detections_match(centernet, case):
    head, golden = centernet
    maps = golden if case == "random" else golden["near_perfect"]
    outputs = {"heatmap": [torch.logit(maps["center_heatmap_pred"].double()).float()], "wh": [maps["wh_pred"]],
               "offset": [maps["offset_pred"]]}
    assert_detections(head.predict(outputs, image_sizes_of(golden)), maps["detections"])


# ---- CornerNet -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cornernet():
    golden = load("mmdet_cornernet.pt")
    cfg = CornerNetHeadConfig(feat_channels=256, pool_channels=128, clip_boxes=False)
    head = CornerNetHead(cfg, golden["head_args"]["in_channels"], golden["num_classes"], num_stacks=2)
    head.load_state_dict(golden["state_dict"])  # same keys: tl_pool, tl_heat, tl_emb, tl_off, br_* per stack
    return head.eval(), golden


def test_cornernet_forward_matches(cornernet):
    head, golden = cornernet
    with torch.no_grad():
        out = head(golden["feats"])
    for key, maps in golden["outputs"].items():
        for stack, (ours, ref) in enumerate(zip(out[key], maps)):
            torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4, msg=lambda m: f"{key}[{stack}]: {m}")


def test_cornernet_targets_match(cornernet):
    _, golden = cornernet
    ours = cornernet_targets(targets_of(golden), 3, (32, 32), 4, 0.3, "corrected", torch.device("cpu"))
    ref = golden["targets"]
    for name, key in (("tl_heatmap", "topleft_heatmap"), ("br_heatmap", "bottomright_heatmap"),
                      ("tl_offset", "topleft_offset"), ("br_offset", "bottomright_offset")):
        torch.testing.assert_close(ours[name], ref[key], atol=1e-5, rtol=0, msg=lambda m: f"{name}: {m}")
    # the embedding pairs: per object (image, TL location, BR location) as mmdetection's corner_embedding
    expected = [(i, tl_y * 32 + tl_x, br_y * 32 + br_x)
                for i, pairs in enumerate(ref["corner_embedding"]) for (tl_y, tl_x), (br_y, br_x) in pairs]
    found = list(zip(ours["image_index"].tolist(), ours["tl_location"].tolist(), ours["br_location"].tolist()))
    assert found == expected


def test_cornernet_losses_match(cornernet):
    head, golden = cornernet
    ours = head.loss(golden["outputs"], targets_of(golden), image_sizes_of(golden))
    ref = {k: sum(v) for k, v in golden["losses"].items()}  # mmdetection sums each term over the stacks
    for ours_key, ref_key in (("loss_heatmap", "det_loss"), ("loss_pull", "pull_loss"), ("loss_push", "push_loss"),
                              ("loss_offset", "off_loss")):
        assert ours[ours_key].item() == pytest.approx(ref[ref_key], rel=1e-5), ours_key


def test_cornernet_pairs_match_before_soft_nms(cornernet):
    head, golden = cornernet
    boxes, scores, labels = head.decode(golden["outputs"], topk=100, peak_kernel=3, embedding_threshold=0.5,
                                        num_candidates=1000)
    raw = golden["raw_pairs"]
    for i in range(len(boxes)):
        valid = scores[i] > -0.1
        assert int(valid.sum()) == len(raw["scores"][i])
        torch.testing.assert_close(scores[i][valid], raw["scores"][i], atol=1e-5, rtol=0)
        torch.testing.assert_close(boxes[i][valid], raw["bboxes"][i], atol=1e-3, rtol=0)
        assert torch.equal(labels[i][valid], raw["labels"][i].long().reshape(-1))


def test_cornernet_detections_match_after_soft_nms(cornernet):
    head, golden = cornernet
    dets = head.predict(golden["outputs"], image_sizes_of(golden))
    assert [len(d) for d in dets] == golden["detection_counts"]  # 98, 100, 100, 100
    assert_detections(dets, golden["detections"])
