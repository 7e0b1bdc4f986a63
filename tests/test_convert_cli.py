"""``anchorfree convert``: torchvision and mmdetection weights become run folders that eval, predict and the
Python API read, with torchvision's detections reproduced after the round trip through the files."""
import json

import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn

from anchorfree import Model
from anchorfree.cli import main
from anchorfree.inference.checkpoint import load_detector

from conftest import parity_batch
from golden_weights import synthetic_images, synthetic_state_dict

GOLDEN = torch.load(__import__("pathlib").Path(__file__).parent / "fixtures" / "mmdet_detectors.pt", weights_only=True)


def test_torchvision_fcos_through_the_cli(tmp_path, capsys):
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=7, min_size=256, max_size=384,
                           score_thresh=0.05).eval()
    with torch.no_grad():
        for conv in (tv.head.classification_head.cls_logits, tv.head.regression_head.bbox_reg,
                     tv.head.regression_head.bbox_ctrness):
            conv.weight.normal_(0, 0.05)
            conv.bias.normal_(0, 1.0)
    torch.save(tv.state_dict(), tmp_path / "fcos.pth")
    run = tmp_path / "run"
    # torchvision builds BatchNorm2d when weights_backbone=None; its score threshold was set to 0.05
    assert main(["convert", "torchvision", str(tmp_path / "fcos.pth"), "--out", str(run), "backbone.norm=bn",
                 "head.score_thresh=0.05"]) == 0
    assert "preset fcos_r50_fpn_torchvision" in capsys.readouterr().out
    info = json.loads((run / "conversion.json").read_text())
    assert info["num_classes"] == 7 and info["class_names"] == [f"class_{i}" for i in range(7)]

    model, cfg, _ = load_detector(run)
    images, batch = parity_batch([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2)
    with torch.no_grad():
        expected = tv([img.float() / 255 for img in images])
    for e, d in zip(expected, model.predict(batch)):
        assert len(e["boxes"]) > 20 and len(d) == len(e["boxes"])
        torch.testing.assert_close(d.scores, e["scores"], atol=1e-4, rtol=0)
        torch.testing.assert_close(d.boxes, e["boxes"], atol=1e-4, rtol=0)
        assert torch.equal(d.labels, e["labels"])


def test_mmdet_checkpoint_through_the_cli(tmp_path, capsys):
    g = GOLDEN["gfl"]
    state = synthetic_state_dict(g["keys"], bias_means=g["bias_means"])
    torch.save({"state_dict": state, "meta": {"dataset_meta": {"classes": ("cat", "dog", "bird")}}}, tmp_path / "g.pth")
    run = tmp_path / "run"
    assert main(["convert", "mmdet", str(tmp_path / "g.pth"), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "mmdetection gfl → preset gfl_r50_fpn_mmdet" in out and "anchorfree export" in out

    image = synthetic_images([(160, 192)])[0]
    prediction = Model(run, fast=False)(image.permute(1, 2, 0).numpy())
    assert len(prediction) > 0 and set(prediction.names) <= {"cat", "dog", "bird"}

    # the same folder again: refused, nothing overwritten
    before = (run / "best.pt").stat().st_mtime_ns
    assert main(["convert", "mmdet", str(tmp_path / "g.pth"), "--out", str(run)]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert (run / "best.pt").stat().st_mtime_ns == before


def test_mismatch_is_a_message_naming_the_fitting_preset(tmp_path, capsys):
    g = GOLDEN["retinanet"]
    torch.save({"state_dict": synthetic_state_dict(g["keys"], bias_means=g["bias_means"])}, tmp_path / "r.pth")
    assert main(["convert", "mmdet", str(tmp_path / "r.pth"), "--out", str(tmp_path / "x"),
                 "--model", "fcos_r50_fpn_mmdet"]) == 2
    err = capsys.readouterr().err
    assert "mmdetection retinanet checkpoint" in err and "--model retinanet_r50_fpn_mmdet" in err
    assert "Traceback" not in err
    assert main(["convert", "torchvision", str(tmp_path / "r.pth"), "--out", str(tmp_path / "y")]) == 2
    assert "use `anchorfree convert mmdet`" in capsys.readouterr().err
    torch.save({"backbone.conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    assert main(["convert", "torchvision", str(tmp_path / "other.pth"), "--out", str(tmp_path / "y")]) == 2
    assert "not a torchvision FCOS or RetinaNet state dict" in capsys.readouterr().err
