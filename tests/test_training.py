"""The training engine: exact resume, NaN handling, atomic checkpoints, run folder contents."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anchorfree.data import load_data_spec
from anchorfree.engine.checkpoint import atomic_save, load_detector, read_checkpoint
from anchorfree.engine.trainer import Trainer, resume_config
from anchorfree.errors import CheckpointError, TrainingError

from conftest import micro_config


def _train(data: Path, out: Path, epochs: int, resume: bool = False, ema: bool = True) -> Trainer:
    cfg = resume_config(out) if resume else micro_config()
    cfg.train.epochs = epochs
    cfg.train.ema = ema
    cfg.train.eval_interval = 0
    trainer = Trainer(cfg, load_data_spec(data), out, resume=resume, progress=False)
    trainer.fit()
    return trainer


def test_resume_continues_exactly(small_synth, tmp_path):
    straight = _train(small_synth, tmp_path / "straight", epochs=2)
    # the same run killed after its first epoch, then resumed
    cfg = micro_config()
    cfg.train.ema, cfg.train.eval_interval = True, 0
    killed = Trainer(cfg, load_data_spec(small_synth), tmp_path / "resumed", progress=False)
    real_epoch = killed.train_epoch

    def die_in_second_epoch():
        if killed.epoch == 1:
            raise KeyboardInterrupt
        real_epoch()

    killed.train_epoch = die_in_second_epoch
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    resumed = _train(small_synth, tmp_path / "resumed", epochs=2, resume=True)
    assert resumed.iteration == straight.iteration == 2 * 6
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    for a, b in zip(straight.ema.module.state_dict().values(), resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    # the weights really changed during the second epoch (the comparison is not vacuous)
    first = read_checkpoint(tmp_path / "straight" / "best.pt")
    assert first["epoch"] == 2


def test_run_folder_contents(small_synth, tmp_path):
    cfg = micro_config()
    cfg.train.epochs = 1
    Trainer(cfg, load_data_spec(small_synth), tmp_path / "run", progress=False).fit()
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
    with pytest.raises(TrainingError, match=r"loss became nan.*last\.pt.*intact"):
        trainer.fit()
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
    from anchorfree.engine.checkpoint import load_model_state
    from anchorfree.models.detector import Detector

    with pytest.raises(CheckpointError, match=r"class count differs \(checkpoint 5, model 3\)"):
        load_model_state(Detector(cfg.model), ckpt["model"], ckpt["path"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_detector(tmp_path / "junk.pt")
