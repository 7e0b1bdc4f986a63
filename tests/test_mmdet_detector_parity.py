"""Whole mmdetection 3.3.0 detectors (backbone + neck + head) converted by ``anchorfree.interop.mmdet``: the same
losses and the same detections as mmdetection on the golden files of ``scripts/mmdet_detector_golden.py``.

The golden file holds the mmdetection state dict's keys and shapes; the weights are derived from the keys
(``golden_weights.synthetic_state_dict``), saved as an mmdetection checkpoint file and converted as a user
would. Batch: 4 images (one smaller than the batch, so padded; one without objects), 3 classes.
"""
from pathlib import Path

import pytest
import torch

from anchorfree.data import collate
from anchorfree.errors import CheckpointError
from anchorfree.interop.mmdet import convert_mmdet

from golden_weights import synthetic_images, synthetic_state_dict

GOLDEN = torch.load(Path(__file__).parent / "fixtures" / "mmdet_detectors.pt", weights_only=True)
MODELS = ["fcos", "atss", "gfl", "retinanet", "centernet", "cornernet"]
# mmdetection's loss names → ours
LOSS_NAMES = {
    "loss_cls": "loss_cls", "loss_bbox": "loss_bbox", "loss_centerness": "loss_ctr", "loss_dfl": "loss_dfl",
    "loss_center_heatmap": "loss_heatmap", "loss_wh": "loss_wh", "loss_offset": "loss_offset",
    "det_loss": "loss_heatmap", "off_loss": "loss_offset", "pull_loss": "loss_pull", "push_loss": "loss_push",
}


def mmdet_checkpoint(name: str, path: Path) -> Path:
    g = GOLDEN[name]
    state = synthetic_state_dict(g["keys"], bias_means=g["bias_means"], weight_gain=g["weight_gain"])
    torch.save({"state_dict": state, "meta": {"dataset_meta": {"classes": ("cat", "dog", "bird")}}}, path)
    return path


GOLDEN_THREADS = 2  # torch threads of the golden run: convolutions sum in an order that depends on it


@pytest.fixture(scope="module", autouse=True)
def golden_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(GOLDEN_THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=MODELS)
def converted(request, tmp_path_factory):
    name = request.param
    path = mmdet_checkpoint(name, tmp_path_factory.mktemp(name) / f"{name}.pth")
    conversion = convert_mmdet(path)
    assert conversion.config.model.name == GOLDEN[name]["preset"]
    g = GOLDEN[name]
    samples = [(img, {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      "labels": torch.tensor(labels, dtype=torch.long), "orig_size": torch.tensor(img.shape[-2:]),
                      "scale": torch.ones(2)})
               for img, (boxes, labels) in zip(synthetic_images(g["sizes"]), g["gt"])]
    batch = collate(samples, conversion.config.model.input.size_divisor)
    return name, conversion, batch


def test_classes_and_count(converted):
    name, conversion, _ = converted
    assert conversion.config.model.num_classes == 3
    assert conversion.class_names == ["cat", "dog", "bird"]


def test_losses_match_mmdet(converted):
    name, conversion, batch = converted
    with torch.no_grad():
        ours = conversion.model.loss(batch)
    golden = GOLDEN[name]["losses"]
    assert len(ours) == len(golden)
    for theirs, value in golden.items():
        assert float(ours[LOSS_NAMES[theirs]]) == pytest.approx(value, rel=1e-5, abs=1e-5), theirs


def side(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values


def match_detections(ours, theirs, score_tol=3e-5, box_atol=2e-3, box_rtol=1e-4) -> list[str]:
    """Pair every detection of ``ours`` with an unused one of ``theirs`` of the same label, score within
    ``score_tol`` and box coordinates within ``box_atol + box_rtol * |coordinate|``; returns what did not pair.

    Scores equal to within float rounding may come out of NMS in either order, so rows are paired rather than
    compared in order. The tolerances are float32 rounding: the frozen BatchNorm (``x * scale + shift``)
    rounds differently from BatchNorm's eval formula, which leaves the FPN maps ~2e-6 apart (relative), and
    ``exp(dw)`` scales that by the anchor size (up to ~800 px on P7). The tests run with the golden run's thread
    count (2), where the differences stay below 1e-5 (scores) and 1e-3 px + 1e-5 of the box's side; other thread
    counts or CPU kernels sum the convolutions in another order (scores then move by up to ~4e-5 and detections at
    the 100-per-image cut-off can swap), hence the margins here (3e-5; 2e-3 px + 1e-4 of the side)."""
    unused = torch.ones(len(theirs["scores"]), dtype=torch.bool)
    problems = []
    for box, score, label in zip(ours.boxes, ours.scores, ours.labels):
        fits = unused & (theirs["labels"] == label) & ((theirs["scores"] - score).abs() <= score_tol) \
            & ((theirs["boxes"] - box).abs().max(dim=1).values <= box_atol + box_rtol * side(theirs["boxes"]))
        if fits.any():
            unused[fits.nonzero()[0, 0]] = False
        else:
            nearest = (theirs["boxes"] - box).abs().max(dim=1).values.argmin()
            problems.append(f"{label.item()} {score.item():.6f} {box.tolist()} (nearest: "
                            f"{theirs['labels'][nearest].item()} {theirs['scores'][nearest].item():.6f} "
                            f"{theirs['boxes'][nearest].tolist()})")
    return problems


def test_detections_match_mmdet(converted):
    name, conversion, batch = converted
    dets = conversion.model.predict(batch, rescale=False)
    for i, (ours, theirs) in enumerate(zip(dets, GOLDEN[name]["detections"])):
        assert len(ours) == len(theirs["scores"]), f"image {i}"
        assert match_detections(ours, theirs) == [], f"image {i}"
    assert sum(len(d) for d in dets) > 50  # the comparison is not vacuous


def test_wrong_preset_names_the_keys_and_the_fitting_preset(tmp_path):
    path = mmdet_checkpoint("atss", tmp_path / "atss.pth")
    with pytest.raises(CheckpointError, match="gfl head; use --model atss_r50_fpn_mmdet"):
        convert_mmdet(path, preset="gfl_r50_fpn_mmdet")
    with pytest.raises(CheckpointError, match=r"does not fit the preset atss_r50_fpn_mmdet: different shapes.*"
                                              r"backbone\.layer1\.0\.conv1\.weight"):
        convert_mmdet(path, overrides=["backbone.name=resnet18"])


def test_missing_keys_are_named(tmp_path):
    g = GOLDEN["retinanet"]
    state = synthetic_state_dict(g["keys"], bias_means=g["bias_means"])
    del state["bbox_head.retina_reg.bias"]
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: head\.bbox_pred\.bias"):
        convert_mmdet(tmp_path / "broken.pth")


def test_not_a_detector_checkpoint(tmp_path):
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not an mmdetection checkpoint of a detector"):
        convert_mmdet(tmp_path / "x.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged or not a PyTorch checkpoint"):
        convert_mmdet(tmp_path / "bad.pth")
    torch.save({"state_dict": {}, "meta": {"hook": Path("x")}}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="pickles objects other than tensors.*pass --trusted"):
        convert_mmdet(tmp_path / "pickled.pth")
