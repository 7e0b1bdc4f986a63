"""What a run leaves when it goes wrong: the checkpoint offered after a divergence, dataset problems in
train.log, a report that cannot be written."""
from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

from anchorfree.cli import main
from anchorfree.data import generate_synthetic_dataset, load_data_spec
from anchorfree.inference.checkpoint import read_checkpoint
from anchorfree.engine.divergence import finite_weights
from anchorfree.engine.resume import resume_config
from anchorfree.engine.trainer import Trainer
from anchorfree.errors import TrainingError

from conftest import micro_config


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 2 validation images of 64 px: 2 steps per epoch at batch 2."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("tiny"), num_train=4, num_val=2, image_size=(64, 64),
                                      seed=1, max_objects=2)


def tiny_config(**train):
    cfg = micro_config()
    cfg.model.input.min_size = cfg.model.input.max_size = 64
    t = cfg.train
    t.batch_size, t.epochs, t.warmup_iters, t.ema, t.grad_clip = 2, 1, 0, False, 0.0
    for key, value in train.items():
        setattr(t, key, value)
    return cfg


def fit(cfg, data: Path, out: Path, resume: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(cfg, load_data_spec(data), out, resume=resume, progress=False).fit()


# ---- divergence: only a checkpoint written before it is offered -----------------------------------


def test_an_absurd_lr_offers_only_a_checkpoint_written_before_the_divergence(tiny_synth, tmp_path):
    """With a checkpoint after every step, the one written after the last step holds the weights whose loss is
    NaN: resuming from it would stop the same way. The message offers the one before it, whose weights are
    finite, and resuming from it with the lr advised trains on."""
    out = tmp_path / "run"
    fit(tiny_config(checkpoint_interval=1), tiny_synth, out)  # 2 good steps: last.pt at iteration 2
    cfg = resume_config(out)
    cfg.train.epochs, cfg.train.lr = 3, 1e5  # diverges in the first step after the resume
    with pytest.raises(TrainingError) as caught:
        fit(cfg, tiny_synth, out, resume=True)
    message = str(caught.value)
    assert f"The last checkpoint {out / 'last.pt'} (epoch 1, iteration 2) is intact: lower train.lr (e.g. " \
           "train.lr=10000)" in message and "--resume" in message
    assert message in (out / "train.log").read_text()
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["iteration"] == 2 and finite_weights(ckpt["model"])
    if (out / "diverged.pt").exists():  # the weights of step 3 were finite, their loss was not
        assert read_checkpoint(out / "diverged.pt")["iteration"] == 3
        assert "The checkpoint written after iteration 3 holds the weights that gave this loss" in message
    else:  # the weights of step 3 were not finite: never written
        assert "the weights became NaN or infinite in the optimizer step of iteration 3" in message

    cfg = resume_config(out)
    cfg.train.epochs = 2
    trainer = Trainer(cfg, load_data_spec(tiny_synth), out, resume=True, progress=False)
    trainer.train_epoch()  # the offered checkpoint trains on: steps 3 and 4 with finite losses
    assert trainer.iteration == 4 and finite_weights(trainer.model.state_dict())


def test_an_absurd_lr_from_the_start_leaves_nothing_to_resume(tiny_synth, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as caught:
        fit(tiny_config(checkpoint_interval=1, lr=1e5), tiny_synth, out)
    message = str(caught.value)
    assert "--resume" not in message and "start the run again (the same --out folder works)" in message
    assert not (out / "last.pt").exists()
    Trainer(tiny_config(), load_data_spec(tiny_synth), out, progress=False)  # the same --out folder is accepted


# ---- train.log ----------------------------------------------------------------------------------


def test_dataset_problems_found_before_training_are_in_train_log(tiny_synth, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data)
    ann = data / "train" / "annotations.json"
    coco = json.loads(ann.read_text())
    coco["annotations"].append(dict(coco["annotations"][0], id=999, bbox=[30, 20, -10, 12]))
    ann.write_text(json.dumps(coco))
    missing = data / "val" / "images" / coco_file_name(data / "val" / "annotations.json")
    missing.unlink()
    out = tmp_path / "run"
    assert main(["train", "fcos_r18_fpn_tiny", "--data", str(data), "--out", str(out), "--no-progress",
                 "train.workers=0"]) == 2
    error = capsys.readouterr().err
    assert str(missing) in error
    log = (out / "train.log").read_text()
    assert re.search(r"dataset warning: .*train/annotations\.json: dropped 1 boxes with zero or negative size", log)
    assert "dataset error, training did not start: " in log and f"Image file {missing} does not exist" in log

    shutil.rmtree(data / "train")  # a dataset that cannot be read at all: the YAML names a missing split
    assert main(["train", "fcos_r18_fpn_tiny", "--data", str(data), "--out", str(out), "--no-progress"]) == 2
    assert re.search(r"dataset error, training did not start: .*data\.yaml: 'train\.annotations' points to .*, which "
                     "is not an existing file", (out / "train.log").read_text())


def coco_file_name(ann: Path) -> str:
    return json.loads(ann.read_text())["images"][0]["file_name"]


def test_a_report_that_cannot_be_written_does_not_fail_the_finished_training(tiny_synth, tmp_path, monkeypatch,
                                                                             capsys):
    from anchorfree.report import hooks as hooks_module

    def broken(*args, **kwargs):
        raise ValueError("no page today")

    monkeypatch.setattr(hooks_module, "write_run_report", broken)
    out = tmp_path / "run"
    cfg = tiny_config()
    trainer = Trainer(cfg, load_data_spec(tiny_synth), out, progress=False, hooks=hooks_module.standard_hooks(cfg, out))
    assert trainer.fit()["epoch"] == 1 and trainer.report is None
    assert (out / "best.pt").is_file() and (out / "metrics.json").is_file()
    expected = "report.html could not be written (ValueError: no page today); the run itself is complete"
    assert expected in (out / "train.log").read_text()
    assert f"warning: {expected}" in capsys.readouterr().err
