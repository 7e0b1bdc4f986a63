"""Checkpoints carry a checksum of their weights, verified on load: damaged files stop with a message."""
import pytest
import torch

from anchorfree import Detector, get_preset
from anchorfree.inference.checkpoint import atomic_save, load_detector, make_checkpoint, read_checkpoint
from anchorfree.errors import CheckpointError

MARK = 1234.5677490234375  # a float32 value whose bytes are easy to find in the file


@pytest.fixture
def checkpoint(tmp_path):
    cfg = get_preset("fcos_r10_fpn_tiny")
    cfg.model.num_classes = 2
    model = Detector(cfg.model)
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(MARK)
    path = tmp_path / "best.pt"
    atomic_save(make_checkpoint(cfg, model.state_dict()), path)
    return path


def test_intact_checkpoint_loads(checkpoint):
    model, _, _ = load_detector(checkpoint)
    assert torch.all(model.head.cls_logits.bias == MARK)


def test_changed_weights_are_refused(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt["model"]["head.bbox_pred.weight"][0, 0, 0, 0] += 1e-3
    torch.save(ckpt, checkpoint)
    with pytest.raises(CheckpointError, match="is damaged: its weights do not match the checksum"):
        load_detector(checkpoint)


def test_flipped_byte_in_the_file_is_refused(checkpoint):
    data = bytearray(checkpoint.read_bytes())
    at = data.find(torch.tensor([MARK] * 2).numpy().tobytes())
    assert at > 0
    data[at + 1] ^= 0x40  # one bit of the first bias value, as a disk or transfer error would
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(checkpoint)


def test_checkpoint_without_checksum_warns(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=False)
    del ckpt["checksum"]
    torch.save(ckpt, checkpoint)
    with pytest.warns(UserWarning, match="has no checksum"):
        load_detector(checkpoint)


def test_checksum_covers_ema_weights(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=False)
    ema = {k: v.clone() for k, v in ckpt["model"].items()}
    good = make_checkpoint(get_preset("fcos_r10_fpn_tiny"), ckpt["model"], ema=ema)
    ema["head.cls_logits.bias"][0] = 0.0
    torch.save(good, checkpoint)
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(checkpoint)
