"""``train.tensorboard=true``: the logged scalars and a few validation images with their detections, read back
from the event files."""
import builtins

import pytest

from anchorfree.data import CocoDetection, load_data_spec
from anchorfree.report.tensorboard import TensorBoardLogger
from anchorfree.errors import ConfigError

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason='the tensorboard package is not installed: pip install "anchorfree[tensorboard]"')


def test_scalars_and_prediction_images(small_synth, tmp_path):
    spec = load_data_spec(small_synth)
    dataset = CocoDetection(spec.val_ann, spec.val_images, class_names=spec.class_names)
    logger = TensorBoardLogger(tmp_path, images=2)
    logger.scalars({"type": "train", "epoch": 1, "iteration": 5, "lr": 0.01, "loss": 1.5, "loss_cls": 0.75})
    logger.scalars({"type": "val", "epoch": 1, "iteration": 9, "AP": 0.25})
    first = dataset.get_image_info(0)
    cat = dataset.label_to_cat_id[1]
    results = [{"image_id": first["id"], "category_id": cat, "bbox": [2.0, 3.0, 20.0, 10.0], "score": 0.9}]
    logger.predictions(dataset, results, step=9)
    logger.close()

    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 10})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/lr", "train/loss", "train/loss_cls", "val/AP"} <= set(scalars)
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(5, 1.5)]
    assert events.Scalars("val/AP")[0].value == pytest.approx(0.25)
    images = events.Tags()["images"]
    assert len(images) == 2 and f"val/{first['file_name']}" in images
    image = events.Images(f"val/{first['file_name']}")[0]
    assert (image.height, image.width) == (first["height"], first["width"])


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match=r'pip install "anchorfree\[tensorboard\]"'):
        TensorBoardLogger(tmp_path)
