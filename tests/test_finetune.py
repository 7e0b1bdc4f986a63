"""Fine-tuning from trained weights (train.weights / --weights), train.freeze and ImageNet backbones from
torch.hub's cache."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torchvision

from anchorfree.cli import main
from anchorfree.config import BackboneConfig
from anchorfree.data import load_data_spec
from anchorfree.data.synth import SYNTH_CLASSES
from anchorfree.inference.checkpoint import atomic_save, make_checkpoint
from anchorfree.engine.finetune import load_pretrained
from anchorfree.engine.trainer import Trainer
from anchorfree.errors import CheckpointError, ConfigError
from anchorfree.models.backbones import build_backbone
from anchorfree.models.detector import Detector
from anchorfree.presets import get_preset

from conftest import micro_config


def _source(path: Path, names: list[str], cfg=None, seed: int = 1) -> dict[str, torch.Tensor]:
    """A checkpoint of a randomly initialised ``cfg`` (micro FCOS) with classes ``names``; returns its weights."""
    cfg = cfg or micro_config()
    cfg.model.num_classes, cfg.model.class_names = len(names), list(names)
    torch.manual_seed(seed)
    model = Detector(cfg.model)
    with torch.no_grad():  # distinct values everywhere, biases included, so that every copied row is recognisable
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    atomic_save(make_checkpoint(cfg, state, class_names=list(names)), path)
    return state


def _finetuner(data: Path, out: Path, weights: Path, **train) -> Trainer:
    cfg = micro_config()
    cfg.train.weights, cfg.train.epochs, cfg.train.eval_interval = str(weights), 1, 0
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return Trainer(cfg, load_data_spec(data), out, progress=False)


def test_finetune_across_class_counts_keeps_shared_rows(small_synth, tmp_path):
    # the source knows 3 classes, two of them (in another order) are the dataset's SYNTH_CLASSES[2] and [0]
    names = [SYNTH_CLASSES[2], "person", SYNTH_CLASSES[0]]
    source = _source(tmp_path / "src.pt", names)
    trainer = _finetuner(small_synth, tmp_path / "run", tmp_path / "src.pt")
    state = trainer.model.state_dict()
    for key, value in source.items():  # step 0: everything but the classifier is the source's
        if not key.startswith("head.cls_logits."):
            assert torch.equal(state[key], value), key
    weight, bias = state["head.cls_logits.weight"], state["head.cls_logits.bias"]
    assert weight.shape[0] == len(SYNTH_CLASSES) == 5
    assert torch.equal(weight[2], source["head.cls_logits.weight"][0])  # SYNTH_CLASSES[2] <- source row 0
    assert torch.equal(weight[0], source["head.cls_logits.weight"][2])  # SYNTH_CLASSES[0] <- source row 2
    prior = -math.log((1 - 0.01) / 0.01)  # the other classes start from the prior-probability bias (Focal loss)
    assert torch.allclose(bias[[1, 3, 4]], torch.full((3,), prior))
    assert bias[2] == source["head.cls_logits.bias"][0] and bias[0] == source["head.cls_logits.bias"][2]
    trainer.fit()
    log = (trainer.run / "train.log").read_text()
    assert "re-initialised head.cls_logits.weight, head.cls_logits.bias" in log
    assert f"rows kept for 2 shared class name(s): {SYNTH_CLASSES[0]}, {SYNTH_CLASSES[2]}" in log
    rows = [json.loads(line) for line in (trainer.run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    assert trainer.epoch == 1 and trainer.iteration == trainer.iters_per_epoch  # a fresh schedule, not a resume


def test_same_classes_load_every_tensor(small_synth, tmp_path):
    source = _source(tmp_path / "src.pt", list(SYNTH_CLASSES))
    trainer = _finetuner(small_synth, tmp_path / "run", tmp_path / "src.pt")
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in source.items())


def test_class_rows_follow_the_anchor_major_layout(tmp_path):
    """RetinaNet's classifier has 9 anchors x classes channels: the rows move per anchor."""
    cfg = get_preset("retinanet_r18_fpn_tiny")
    cfg.model.backbone.name, cfg.model.neck.out_channels, cfg.model.head.feat_channels = "resnet10", 16, 16
    cfg.model.head.num_convs, cfg.model.head.gn_groups = 1, 4
    source = _source(tmp_path / "src.pt", ["a", "b", "c"], cfg)
    cfg.model.num_classes, cfg.model.class_names = 2, ["c", "z"]
    model = Detector(cfg.model)
    report = load_pretrained(model, cfg, tmp_path / "src.pt")
    weight, src = model.state_dict()["head.cls_logits.weight"], source["head.cls_logits.weight"]
    assert weight.shape[0] == 9 * 2 and src.shape[0] == 9 * 3
    for a in range(9):
        assert torch.equal(weight[a * 2 + 0], src[a * 3 + 2])  # "c" of anchor a
        assert not torch.equal(weight[a * 2 + 1], src[a * 3 + 1])
    assert report.kept_classes == ["c"] and report.reinitialised == ["head.cls_logits.weight", "head.cls_logits.bias"]


def test_foreign_weights_are_refused_naming_keys_and_preset(small_synth, tmp_path):
    other = micro_config()
    other.model.backbone.name, other.model.name = "resnet18", "fcos_r18_other"
    _source(tmp_path / "src.pt", list(SYNTH_CLASSES), other)
    with pytest.raises(CheckpointError) as info:
        _finetuner(small_synth, tmp_path / "run", tmp_path / "src.pt")
    message = str(info.value)
    assert "trained as fcos_r18_other" in message and "anchorfree train fcos_r18_other" in message
    assert "backbone.layer1.1." in message  # resnet18 has a second block per stage, resnet10 has not
    with pytest.raises(ConfigError, match="no such file"):
        _finetuner(small_synth, tmp_path / "run2", tmp_path / "missing.pt")


def test_freeze_backbone_keeps_it_and_its_norm_statistics(small_synth, tmp_path):
    source = _source(tmp_path / "src.pt", list(SYNTH_CLASSES))
    trainer = _finetuner(small_synth, tmp_path / "run", tmp_path / "src.pt", freeze="backbone")
    trainer.fit()
    state = trainer.model.state_dict()
    backbone = [k for k in source if k.startswith("backbone.")]
    assert backbone and all(torch.equal(state[k], source[k]) for k in backbone)  # weights and BN running stats
    assert any(not torch.equal(state[k], source[k]) for k in source if k.startswith("neck."))
    with pytest.raises(ConfigError, match="train.freeze='everything'"):
        _finetuner(small_synth, tmp_path / "run2", tmp_path / "src.pt", freeze="everything")


def test_cli_weights_and_resume_are_exclusive(small_synth, tmp_path, capsys):
    assert main(["train", "fcos_r18_fpn_tiny", "--data", str(small_synth), "--out", str(tmp_path / "r"),
                 "--weights", str(tmp_path), "--resume"]) != 0
    assert "use one of them" in capsys.readouterr().err


# ---- ImageNet weights through torchvision's weights API and torch.hub's cache -----------------------------------
@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch.hub cache, offline: nothing is ever downloaded by these tests."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ANCHORFREE_OFFLINE", "1")
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("choice", ["imagenet", "IMAGENET1K_V1"])
def test_imagenet_weights_from_a_seeded_hub_cache(hub, choice):
    torch.manual_seed(0)
    reference = torchvision.models.shufflenet_v2_x1_0()
    name = torchvision.models.ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    torch.save(reference.state_dict(), hub / name)
    body = build_backbone(BackboneConfig(name="shufflenet_v2_x1_0", norm="bn", weights=choice, frozen_stages=0))
    ours = body.state_dict()
    assert ours and all(torch.equal(v, reference.state_dict()[k]) for k, v in ours.items())


def test_imagenet_weights_offline_without_the_file_say_where_to_put_it(hub):
    with pytest.raises(CheckpointError) as info:
        build_backbone(BackboneConfig(name="resnet18", weights="imagenet"))
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(hub) in message and "download.pytorch.org" in message
    assert not any(hub.iterdir())


@pytest.mark.parametrize("name, expected", [
    ("resnet10", "torchvision publishes no ImageNet weights for resnet10"),
    ("csp", "the csp body has no published ImageNet weights"),
    ("hourglass", "the Hourglass has no published ImageNet weights"),
])
def test_bodies_without_published_weights_say_so(hub, name, expected):
    with pytest.raises(ConfigError, match=expected):
        build_backbone(BackboneConfig(name=name, weights="imagenet"))


def test_unknown_weights_name_lists_the_bodys_weights(hub):
    with pytest.raises(ConfigError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        build_backbone(BackboneConfig(name="resnet50", weights="IMAGENET1K_V9"))
