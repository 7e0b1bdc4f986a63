"""mmdetection checkpoints of one architecture in several configurations: the converter reads the config a
checkpoint carries (mmengine's ``meta['cfg']``), says which variant it assumes when there is none, refuses
deformable convolutions by name, and never drops a class-count override in silence.

The config texts in ``fixtures/mmdet_configs`` are mmengine's ``pretty_text`` of mmdetection 3.3.0's configs
(``scripts/mmdet_config_texts.py``), i.e. what its checkpoints hold; the weights are the golden files' keys.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anchorfree.api import Model
from anchorfree.cli import main
from anchorfree.data.transforms import keep_ratio_size
from anchorfree.config import apply_overrides
from anchorfree.data import collate
from anchorfree.inference.checkpoint import load_model_state
from anchorfree.errors import CheckpointError
from anchorfree.interop.mmdet import convert_mmdet
from anchorfree.models.detector import Detector
from anchorfree.presets import get_preset

from test_mmdet_detector_parity import GOLDEN, GOLDEN_THREADS, match_detections
from golden_weights import synthetic_images, synthetic_state_dict

CONFIGS = Path(__file__).parent / "fixtures" / "mmdet_configs"
PLAIN = "fcos_r50-caffe_fpn_gn-head_1x_coco"
TRICKS = "fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco"
# the overrides that made the tricks preset match mmdetection's plain FCOS on 100 % of its detections
PLAIN_BY_HAND = ["head.norm_on_bbox=false", "head.bbox_activation=exp", "head.centerness_on_reg=false",
                 "head.nms_thresh=0.5", "input.mean=[0.403843529411765,0.454692156862745,0.481457647058824]"]


@pytest.fixture(autouse=True)
def golden_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(GOLDEN_THREADS)
    yield
    torch.set_num_threads(before)


def checkpoint(path: Path, name: str = "fcos", config: str | None = None, extra: dict | None = None,
               keys: list | None = None) -> Path:
    g = GOLDEN[name]
    state = synthetic_state_dict(keys or g["keys"], bias_means=g["bias_means"], weight_gain=g["weight_gain"])
    state.update(extra or {})
    meta = {"dataset_meta": {"classes": ("cat", "dog", "bird")}}
    if config is not None:
        meta["cfg"] = (CONFIGS / f"{config}.py.txt").read_text()
    torch.save({"state_dict": state, "meta": meta}, path)
    return path


def golden_batch(conversion):
    """The golden FCOS batch: 4 images, one smaller than the batch (padded), one without objects."""
    g = GOLDEN["fcos"]
    samples = [(img, {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      "labels": torch.tensor(labels, dtype=torch.long), "orig_size": torch.tensor(img.shape[-2:]),
                      "scale": torch.ones(2)})
               for img, (boxes, labels) in zip(synthetic_images(g["sizes"]), g["gt"])]
    return collate(samples, conversion.config.model.input.size_divisor)


def detections(conversion) -> list:
    with torch.no_grad():
        return conversion.model.predict(golden_batch(conversion), rescale=False)


def same(a, b) -> bool:
    return len(a.scores) == len(b.scores) and match_detections(a, {"boxes": b.boxes, "scores": b.scores,
                                                                  "labels": b.labels}, 1e-6, 1e-4, 0) == []


def test_a_stored_plain_fcos_config_converts_the_plain_variant(tmp_path):
    """mmdetection's plain FCOS and its "tricks" variant have the same tensors; the stored config decides. The
    conversion equals the overrides that matched mmdetection by hand and the named plain preset, and differs
    from the tricks preset that was assumed before."""
    from_config = convert_mmdet(checkpoint(tmp_path / "plain.pth", config=PLAIN))
    head, inp = from_config.config.model.head, from_config.config.model.input
    assert (head.norm_on_bbox, head.bbox_activation, head.centerness_on_reg, head.nms_thresh) == (False, "exp", False, 0.5)
    assert inp.mean == pytest.approx([102.9801 / 255, 115.9465 / 255, 122.7717 / 255]) and inp.channel_order == "bgr"
    assert "settings read from the checkpoint's config" in from_config.summary()
    bare = checkpoint(tmp_path / "bare.pth")
    by_hand = convert_mmdet(bare, "fcos_r50_fpn_mmdet", PLAIN_BY_HAND)
    named = convert_mmdet(bare, "fcos_r50_fpn_plain_mmdet")
    assumed = convert_mmdet(bare)
    ours, hand, preset, tricks = (detections(c) for c in (from_config, by_hand, named, assumed))
    for a, b, c, d in zip(ours, hand, preset, tricks):
        assert len(a.scores) > 20
        assert same(a, b) and same(a, c)
        assert not same(a, d)


def test_a_stored_tricks_config_still_matches_mmdetection(tmp_path):
    """The golden FCOS (mmdetection 3.3.0, the tricks config) converted through its stored config."""
    conversion = convert_mmdet(checkpoint(tmp_path / "tricks.pth", config=TRICKS))
    dets = detections(conversion)
    for i, (ours, theirs) in enumerate(zip(dets, GOLDEN["fcos"]["detections"])):
        assert len(ours) == len(theirs["scores"]) and match_detections(ours, theirs) == [], f"image {i}"
    assert sum(len(d) for d in dets) > 50


def test_without_a_config_the_assumed_variant_and_the_other_are_named(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["convert", "mmdet", str(checkpoint(tmp_path / "bare.pth")), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    notes = " ".join(json.loads((run / "conversion.json").read_text())["notes"])
    for text in (out, notes):
        assert f"assumed mmdetection's {TRICKS} (preset fcos_r50_fpn_mmdet)" in text
        assert f"for {PLAIN} use --model fcos_r50_fpn_plain_mmdet" in text


def test_deformable_convolutions_are_refused_by_name(tmp_path, capsys):
    """By the offsets' tensors (no config), and by the stored config."""
    g = GOLDEN["centernet"]
    offsets = {"neck.deconv_layers.0.conv.conv_offset.weight": torch.zeros(27, 512, 3, 3)}
    path = checkpoint(tmp_path / "dcn.pth", "centernet", extra=offsets)
    assert main(["convert", "mmdet", str(path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "deformable convolutions" in err and "conv_offset" in err and "Traceback" not in err
    assert "centernet_r18_8xb16-crop512-140e_coco" in err and "--model centernet_r18_mmdet" in err
    assert "with overrides" not in err
    path = checkpoint(tmp_path / "dcn_cfg.pth", "centernet", config="centernet_r18-dcnv2_8xb16-crop512-140e_coco")
    with pytest.raises(CheckpointError, match=r"deformable convolutions \(neck.use_dcn\).*--model centernet_r18_mmdet"):
        convert_mmdet(path)
    assert g["keys"]  # the weights themselves are the golden CenterNet's


def test_a_class_count_override_is_refused_not_dropped(tmp_path, capsys):
    path = checkpoint(tmp_path / "g.pth", "gfl")
    assert main(["convert", "mmdet", str(path), "--out", str(tmp_path / "x"), "model.num_classes=5"]) == 2
    err = capsys.readouterr().err
    assert "model.num_classes=5" in err and "3 classes" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "best.pt").exists()
    assert main(["convert", "mmdet", str(path), "--out", str(tmp_path / "y"), "model.num_classes=3"]) == 0


@pytest.mark.parametrize("preset,extra", [
    ("centernet_r18_tiny", ["backbone.name=resnet10", "neck.upconv_channels=[16,16]", "head.feat_channels=16"]),
    ("cornernet_hg_tiny", ["backbone.hourglass_depth=2", "backbone.hourglass_channels=[16,16,24]",
                           "backbone.hourglass_blocks=[1,1,1]", "backbone.hourglass_feat_channels=16",
                           "head.feat_channels=16", "head.pool_channels=8"]),
])
def test_keypoint_heads_say_the_class_count_differs(preset, extra):
    cfg = apply_overrides(get_preset(preset), [*extra, "model.num_classes=5"])
    state = Detector(cfg.model).state_dict()
    cfg.model.num_classes = 3
    with pytest.raises(CheckpointError, match=r"class count differs \(checkpoint 5, model 3\)"):
        load_model_state(Detector(cfg.model), state, "five.pt")


RESIZED = torch.load(Path(__file__).parent / "fixtures" / "mmdet_resized.pt", weights_only=True)


@pytest.mark.parametrize("name", ["fcos", "fcos_plain", "atss", "retinanet"])
def test_images_that_need_resizing_match_mmdetection_end_to_end(name, tmp_path):
    """mmdetection's test pipeline resizes 150×200 to 200×267 and 120×250 to 160×333 at its scale (333, 200)
    (sizes rounded, OpenCV's bilinear; at (1333, 800) 480×640 becomes 800×1067) where torchvision's rule gives
    200×266 and 159×333: converted models resize as mmdetection does, and ``Model`` returns its detections in the
    original pixels (``scripts/mmdet_resize_golden.py``; the scale is its config's divided by 4 to keep this short)."""
    golden = RESIZED[name]
    path = checkpoint(tmp_path / f"{name}.pth", golden["weights"], config=Path(golden["config"]).stem,
                      keys=golden["keys"])
    run = tmp_path / "run"
    long, short = RESIZED["scale"]
    assert main(["convert", "mmdet", str(path), "--out", str(run), f"model.input.max_size={long}",
                 f"model.input.min_size={short}"]) == 0
    model = Model(run, device="cpu", fast=False)
    assert model.config.model.input.resize == "mmdet"
    for image, theirs in zip(synthetic_images(RESIZED["sizes"], seed=7), golden["images"]):
        assert keep_ratio_size(*image.shape[-2:], short, long, "mmdet") == theirs["img_shape"]
        assert keep_ratio_size(*image.shape[-2:], short, long) != theirs["img_shape"]  # torchvision's differs
        ours = model(image.permute(1, 2, 0).numpy())
        assert len(ours) == len(theirs["scores"]) == 100
        assert match_detections(ours, theirs) == [], f"{name} {tuple(image.shape[-2:])}"
