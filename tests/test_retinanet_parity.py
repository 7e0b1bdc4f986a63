"""anchorfree RetinaNet vs torchvision's ``retinanet_resnet50_fpn`` (v1) and ``_v2`` with identical
(random) weights: the same detections and the same training losses."""
import pytest
import torch
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

from anchorfree.interop.torchvision import load_torchvision_retinanet
from anchorfree.presets import retinanet_r50_fpn_torchvision, retinanet_r50_fpn_v2_torchvision

from conftest import parity_batch

BUILDERS = {"v1": (retinanet_resnet50_fpn, retinanet_r50_fpn_torchvision),
            "v2": (retinanet_resnet50_fpn_v2, retinanet_r50_fpn_v2_torchvision)}


@pytest.fixture(scope="module", params=["v1", "v2"])
def models(request):
    version = request.param
    build_tv, preset = BUILDERS[version]
    torch.manual_seed(0)
    tv = build_tv(weights=None, weights_backbone=None, num_classes=7, min_size=256, max_size=384)
    # spread the outputs so that scores and boxes vary (untrained heads predict near-constant maps),
    # without saturating the sigmoid: tied scores would make the order of detections arbitrary
    with torch.no_grad():
        cls, reg = tv.head.classification_head.cls_logits, tv.head.regression_head.bbox_reg
        cls.weight.normal_(0, 0.02)
        cls.bias.normal_(-2.0, 0.5)
        reg.weight.normal_(0, 0.01)
        reg.bias.normal_(0, 0.2)
    cfg = preset().model
    cfg.backbone.norm = "bn"  # torchvision builds BatchNorm2d when weights_backbone=None
    cfg.backbone.frozen_stages = 0
    ours = load_torchvision_retinanet(tv.state_dict(), cfg, version=version)
    return tv, ours


def make_batch():
    return parity_batch([
        {"boxes": torch.tensor([[10.0, 20.0, 100.0, 130.0], [40.5, 60.25, 300.0, 250.0], [5.0, 5.0, 30.0, 22.0],
                                [200.0, 10.0, 340.0, 60.0]]),
         "labels": torch.tensor([1, 3, 6, 0])},
        {"boxes": torch.tensor([[100.0, 80.0, 220.0, 200.0]]), "labels": torch.tensor([2])},
    ])


def canonical(boxes, scores, labels):
    """Detections sorted by score, ties broken by label then box: exactly tied scores may leave
    NMS in either order (it happens once in a few hundred detections)."""
    order = torch.arange(len(scores))
    for key in [boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], labels.double(), -scores.double()]:
        order = order[torch.sort(key[order], stable=True).indices]
    return boxes[order], scores[order], labels[order]


def assert_same_detections(got, expected, tol=1e-4):
    assert len(got) == len(expected["boxes"])
    assert (got.scores[1:] <= got.scores[:-1]).all()
    got_boxes, got_scores, got_labels = canonical(got.boxes, got.scores, got.labels)
    exp_boxes, exp_scores, exp_labels = canonical(expected["boxes"], expected["scores"], expected["labels"])
    torch.testing.assert_close(got_scores, exp_scores, atol=tol, rtol=0)
    torch.testing.assert_close(got_boxes, exp_boxes, atol=tol, rtol=0)
    assert torch.equal(got_labels, exp_labels)


def test_detections_match_torchvision(models):
    tv, ours = models
    tv.eval()
    ours.eval()
    images, batch = make_batch()
    with torch.no_grad():
        expected = tv([img.float() / 255 for img in images])
    got = ours.predict(batch)
    for e, d in zip(expected, got):
        assert len(e["boxes"]) > 50 and len(e["labels"].unique()) > 1  # the comparison is not vacuous
        assert_same_detections(d, e)


def test_training_losses_match_torchvision(models):
    tv, ours = models
    tv.train()
    ours.train()
    images, batch = make_batch()
    expected = tv([img.float() / 255 for img in images], [dict(t) for t in batch.targets])
    got = ours.loss(batch)
    for tv_name, name in {"classification": "loss_cls", "bbox_regression": "loss_bbox"}.items():
        assert expected[tv_name].item() > 0
        torch.testing.assert_close(got[name], expected[tv_name], atol=1e-4, rtol=0)
