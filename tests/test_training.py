"""The training engine: exact resume, NaN handling, atomic checkpoints, run folder contents."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from anchorfree.config import AugmentConfig
from anchorfree.data import load_data_spec
from anchorfree.report.hooks import standard_hooks
from anchorfree.inference.checkpoint import atomic_save, load_detector, read_checkpoint
from anchorfree.engine.resume import resume_config
from anchorfree.engine.trainer import Trainer
from anchorfree.errors import CheckpointError, TrainingError

from conftest import micro_config


def _trainer(data: Path, out: Path, epochs: int, resume: bool = False, ema: bool = True,
             **train: Any) -> Trainer:
    """A trainer of ``micro_config()`` (``train`` overrides ``cfg.train`` fields), or resuming ``out``."""
    if resume:
        cfg = resume_config(out)
    else:
        cfg = micro_config()
        cfg.train.ema, cfg.train.eval_interval = ema, 0
        for key, value in train.items():
            setattr(cfg.train, key, value)
    cfg.train.epochs = epochs
    return Trainer(cfg, load_data_spec(data), out, resume=resume, progress=False)


def _train(data: Path, out: Path, epochs: int, resume: bool = False, ema: bool = True, **train: Any) -> Trainer:
    trainer = _trainer(data, out, epochs, resume, ema, **train)
    trainer.fit()
    return trainer


def _kill_at(trainer: Trainer, epoch: int) -> None:
    """Fit ``trainer`` but kill it when 0-based ``epoch`` begins (after saving the previous one)."""
    real_epoch = trainer.train_epoch

    def die_in_epoch():
        if trainer.epoch == epoch:
            raise KeyboardInterrupt
        real_epoch()

    trainer.train_epoch = die_in_epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert read_checkpoint(trainer.run / "last.pt")["epoch"] == epoch


def _assert_same_state(straight: Trainer, resumed: Trainer) -> None:
    assert resumed.iteration == straight.iteration
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    for a, b in zip(straight.ema.module.state_dict().values(), resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]


def test_resume_continues_exactly(small_synth, tmp_path):
    straight = _train(small_synth, tmp_path / "straight", epochs=2)
    # the same run killed after its first epoch, then resumed
    _kill_at(_trainer(small_synth, tmp_path / "resumed", epochs=2), epoch=1)
    resumed = _train(small_synth, tmp_path / "resumed", epochs=2, resume=True)
    assert resumed.iteration == 2 * 6
    _assert_same_state(straight, resumed)
    # the weights really changed during the second epoch (the comparison is not vacuous)
    first = read_checkpoint(tmp_path / "straight" / "best.pt")
    assert first["epoch"] == 2


def test_resume_with_mosaic_is_exact(small_synth, tmp_path):
    """Mosaic (half the samples), affine on the others, close_mosaic=1 of 3 epochs, no workers: killed
    after epoch 1, resumed with mosaic on, killed after epoch 2, resumed inside the close-mosaic phase."""
    augment = AugmentConfig(mosaic_prob=0.5, affine=True, close_mosaic=1, color_jitter=0.2)
    straight = _train(small_synth, tmp_path / "straight", epochs=3, augment=augment, batch_size=8)
    out = tmp_path / "killed"
    _kill_at(_trainer(small_synth, out, epochs=3, augment=augment, batch_size=8), epoch=1)
    _kill_at(_trainer(small_synth, out, epochs=3, resume=True), epoch=2)
    resumed = _train(small_synth, out, epochs=3, resume=True)
    assert straight.train_data.enabled is resumed.train_data.enabled is False  # epoch 3 ran without mosaic
    _assert_same_state(straight, resumed)
    assert "epoch 3: mosaic/affine augmentation off" in (out / "train.log").read_text()


def test_run_folder_contents(small_synth, tmp_path):
    cfg = micro_config()
    cfg.train.epochs = 1
    Trainer(cfg, load_data_spec(small_synth), tmp_path / "run", progress=False,
            hooks=standard_hooks(cfg, tmp_path / "run")).fit()  # curves and report hang on the trainer's events
    run = tmp_path / "run"
    for name in ("config.yaml", "train.log", "metrics.jsonl", "metrics.json", "loss.png", "map.png", "last.pt",
                 "best.pt"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["type"] for r in rows} == {"train", "val"}
    assert all(r["loss"] > 0 for r in rows if r["type"] == "train")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["metrics"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"}
    assert [c["class"] for c in metrics["per_class"]] == ["circle", "square", "triangle", "star", "cross"]
    # a second run into the same folder is refused instead of overwriting it
    with pytest.raises(Exception, match="--resume"):
        Trainer(cfg, load_data_spec(small_synth), run, progress=False)


def test_nan_loss_stops_and_keeps_last_checkpoint(small_synth, tmp_path):
    out = tmp_path / "run"
    _train(small_synth, out, epochs=1, ema=False)
    before = (out / "last.pt").read_bytes()
    cfg = resume_config(out)
    cfg.train.epochs = 2
    trainer = Trainer(cfg, load_data_spec(small_synth), out, resume=True, progress=False)
    real_loss = trainer.model.loss
    calls = []

    def exploding_loss(batch):
        losses = real_loss(batch)
        calls.append(1)
        if len(calls) == 3:
            losses["loss_bbox"] = losses["loss_bbox"] * float("nan")
        return losses

    trainer.model.loss = exploding_loss
    with pytest.raises(TrainingError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith("the loss became nan in iteration 9 (epoch 2; ")
    assert f"The last checkpoint {out / 'last.pt'} (epoch 1, iteration 6) is intact: lower train.lr" in message
    assert "continue it with --resume and the changed values as key=value" in message
    assert message in (out / "train.log").read_text()  # the failure is also in the run's log
    assert (out / "last.pt").read_bytes() == before


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.load(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_checkpoint_from_other_class_count_is_rejected(small_synth, tmp_path):
    out = tmp_path / "run"
    _train(small_synth, out, epochs=1, ema=False)
    model, cfg, ckpt = load_detector(out)
    cfg.model.num_classes = 3
    from anchorfree.inference.checkpoint import load_model_state
    from anchorfree.models.detector import Detector

    with pytest.raises(CheckpointError, match=r"class count differs \(checkpoint 5, model 3\)"):
        load_model_state(Detector(cfg.model), ckpt["model"], ckpt["path"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_detector(tmp_path / "junk.pt")
