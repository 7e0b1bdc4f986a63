"""anchorfree FCOS vs torchvision's ``fcos_resnet50_fpn`` with identical (random) weights."""
import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn

from anchorfree.interop.torchvision import load_torchvision_fcos
from anchorfree.presets import fcos_r50_fpn_torchvision

from conftest import parity_batch



@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=7, min_size=256, max_size=384,
                           score_thresh=0.05)
    # spread the outputs so that scores and boxes vary (untrained heads predict near-constant maps)
    with torch.no_grad():
        for conv in (tv.head.classification_head.cls_logits, tv.head.regression_head.bbox_reg,
                     tv.head.regression_head.bbox_ctrness):
            conv.weight.normal_(0, 0.05)
            conv.bias.normal_(0, 1.0)
    cfg = fcos_r50_fpn_torchvision().model
    cfg.backbone.norm = "bn"  # torchvision builds BatchNorm2d when weights_backbone=None
    cfg.backbone.frozen_stages = 0
    cfg.head.score_thresh = 0.05
    ours = load_torchvision_fcos(tv.state_dict(), cfg)
    return tv, ours


def make_batch():
    return parity_batch([
        {"boxes": torch.tensor([[10.0, 20.0, 100.0, 130.0], [40.5, 60.25, 300.0, 250.0], [5.0, 5.0, 30.0, 22.0]]),
         "labels": torch.tensor([1, 3, 6])},
        {"boxes": torch.tensor([[100.0, 80.0, 220.0, 200.0]]), "labels": torch.tensor([2])},
    ])


@pytest.mark.parametrize("channels_last", [False, True])
def test_detections_match_torchvision(models, channels_last):
    tv, ours = models
    tv.eval()
    ours.eval()
    ours.set_channels_last(channels_last)
    images, batch = make_batch()
    with torch.no_grad():
        expected = tv([img.float() / 255 for img in images])
    got = ours.predict(batch)
    ours.set_channels_last(False)
    # NCHW runs the same conv kernels as torchvision: equal within 1e-4. channels_last sums in
    # another order; through 50 random-weight layers that moves boxes by up to ~2e-4 relative.
    box_tol = dict(atol=2e-3, rtol=3e-4) if channels_last else dict(atol=1e-4, rtol=0)
    for e, d in zip(expected, got):
        assert len(e["boxes"]) > 20  # the comparison is not vacuous
        assert len(d) == len(e["boxes"])
        torch.testing.assert_close(d.scores, e["scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(d.boxes, e["boxes"], **box_tol)
        assert torch.equal(d.labels, e["labels"])


def test_training_losses_match_torchvision(models):
    tv, ours = models
    tv.train()
    ours.train()
    images, batch = make_batch()
    expected = tv([img.float() / 255 for img in images], [dict(t) for t in batch.targets])
    got = ours.loss(batch)
    names = {"classification": "loss_cls", "bbox_regression": "loss_bbox", "bbox_ctrness": "loss_ctr"}
    for tv_name, name in names.items():
        assert expected[tv_name].item() > 0
        torch.testing.assert_close(got[name], expected[tv_name], atol=1e-4, rtol=0)
