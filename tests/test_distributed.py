"""Training that scales out: DDP on gloo (CPU) against one process, a failing rank, gradient accumulation,
mid-epoch resume (with mosaic), changed fields on --resume, NaN messages.

The exactness tests use SGD without gradient clipping and without warm-up, so that a gradient of the
wrong size moves the weights by far more than the tolerance (AdamW's first step and clipping hide the
scale of the gradient), and a ResNet with GroupNorm: BatchNorm normalises each process's (or micro-
batch's) images by their own statistics, so it differs by design between 1 process x batch 2B and
2 processes x batch B (``train.sync_bn`` would share them, but PyTorch's SyncBatchNorm runs on GPUs only).
"""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DistributedSampler

from anchorfree.cli import main
from anchorfree.config import Config, apply_overrides, load_config, save_config
from anchorfree.data import CocoDetection, generate_synthetic_dataset, load_data_spec
from anchorfree.inference.checkpoint import read_checkpoint
from anchorfree.engine.optim import lr_factor
from anchorfree.engine.sampler import ResumableDistributedSampler
from anchorfree.engine.resume import resume_config
from anchorfree.engine.trainer import Trainer
from anchorfree.errors import ConfigError, TrainingError
from anchorfree.presets import get_preset
from anchorfree.runtime import BF16_ENV, autocast_dtype


@pytest.fixture(scope="module")
def synth8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 2 validation images of 64x64 px (one padded size for every batch layout)."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synth8"), num_train=8, num_val=2,
                                      image_size=(64, 64), seed=1)


def _config(**train: Any) -> Config:
    """``fcos_r10_fpn_tiny`` at 64 px with a GroupNorm body, SGD without clipping or warm-up, logging every step."""
    cfg = get_preset("fcos_r10_fpn_tiny")
    m, t = cfg.model, cfg.train
    m.input.min_size = m.input.max_size = 64
    m.backbone.norm = "gn"
    t.optimizer, t.lr, t.grad_clip, t.warmup_iters, t.weight_decay = "sgd", 0.01, 0.0, 0, 1e-4
    t.epochs, t.workers, t.log_interval, t.eval_interval, t.ema = 1, 0, 1, 0, False
    for key, value in train.items():
        setattr(t, key, value)
    return cfg


def _rows(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]


# Noise between two batch layouts of the same step (1 process x batch 2 vs 2 processes x batch 1; batch 2 vs 2 x
# batch 1 accumulated), measured on a 2-core AMD EPYC (AVX2): float32 weights 6e-8 apart, losses 1e-7; bf16
# (the default training path on CPUs with AVX512-BF16 or AMX; forced here with ANCHORFREE_CPU_BF16=1) weights
# 5.9e-5 and losses 1.1e-4 (relative). Tolerances: about 5x the bf16 noise, 150x the float32 one — and still
# far below the 1e-3 a step moves the weights, so a gradient of the wrong size fails either way.
TOLERANCES = {None: (1e-5, 1e-5), torch.bfloat16: (3e-4, 1e-3)}  # training dtype → (weights atol, loss rel)


def _tolerances() -> tuple[float, float]:
    """The tolerances of the precision this machine (or ANCHORFREE_CPU_BF16) trains in."""
    return TOLERANCES[autocast_dtype(torch.device("cpu"))]


def _assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    atol = _tolerances()[0]
    for key, value in a.items():
        torch.testing.assert_close(value.float(), b[key].float(), atol=atol, rtol=0,
                                   msg=lambda m, key=key: f"{key}: {m}")


def _max_change(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


def test_sampler_splits_an_epoch_like_one_process_and_resumes_inside_it() -> None:
    """Step s of N processes with batch B covers the images of step s of one process with batch N*B;
    starting at a consumed count continues the same order (also on another number of processes)."""
    one = list(ResumableDistributedSampler(range(12), 1, 0, seed=3))
    assert sorted(one) == list(range(12)) and one != list(range(12))
    assert one == list(DistributedSampler(range(12), num_replicas=1, rank=0, seed=3))
    for world in (2, 3):
        shards = [list(ResumableDistributedSampler(range(12), world, r, seed=3)) for r in range(world)]
        batch = 2  # per process
        for step in range(12 // (world * batch)):
            images = {i for shard in shards for i in shard[step * batch:(step + 1) * batch]}
            assert images == set(one[step * world * batch:(step + 1) * world * batch])
        sampler = ResumableDistributedSampler(range(12), world, world - 1, seed=3)
        sampler.set_epoch(0, consumed=world * batch)
        assert list(sampler) == shards[-1][batch:] and len(sampler) == len(shards[-1]) - batch


def test_two_processes_equal_one_and_resume_exactly_after_a_rank_fails(synth8, tmp_path, capfd, monkeypatch):
    """2 gloo processes x batch 1 x accumulate 2 (DDP no_sync on the first micro-batch) against 1 process x
    batch 2 x accumulate 2: each micro-batch holds the same 2 images with the same augmentation (affine,
    flip), so losses and weights agree. Then rank 1 meets a corrupt image in step 2: both processes stop
    with rank 1's message, last.pt of step 1 matches; with the image restored, --resume finishes with the
    weights of the uninterrupted run and metrics.jsonl holds each iteration once."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "data"
    shutil.copytree(synth8, data)
    cfg = _config(batch_size=2, accumulate=2, checkpoint_interval=1)
    cfg.train.augment.affine = True
    cfg.train.check_images = False  # the header pass would find the image corrupted below before training starts
    # one process
    one = Trainer(copy.deepcopy(cfg), load_data_spec(data), tmp_path / "one", progress=False)
    weights = {0: copy.deepcopy(one.model.state_dict())}
    real_state = one._state

    def recording_state():
        state = real_state()
        weights[state["iteration"]] = copy.deepcopy(state["model"])
        return state

    one._state = recording_state
    one.fit()
    assert sorted(weights) == [0, 1, 2]
    assert _max_change(weights[0], weights[1]) > 1e-3  # a step moves the weights far more than the tolerance
    # the image rank 1 loads first in step 2 (its third sample) becomes unreadable
    spec = load_data_spec(data)
    shard = list(DistributedSampler(range(8), num_replicas=2, rank=1, seed=cfg.train.seed))
    name = CocoDetection(spec.train_ann, spec.train_images).get_image_info(shard[2])["file_name"]
    image = data / "train" / "images" / name
    good = image.read_bytes()
    image.write_bytes(b"not a jpeg")
    config = tmp_path / "config.yaml"
    save_config(cfg, config)
    run = tmp_path / "two"
    argv = ["train", str(config), "--data", str(data), "--out", str(run), "--no-progress", "--threads", "1"]
    assert main([*argv, "--nproc", "2", "train.batch_size=1"]) == 2
    err = capfd.readouterr().err
    assert re.search(rf"^error: rank 1: .*{re.escape(str(image))}", err, re.MULTILINE), err  # the failing process
    assert re.search(rf"^error: training stopped on all 2 processes: rank 1: .*{re.escape(str(image))}", err, re.MULTILINE)
    first = read_checkpoint(run / "last.pt")
    assert (first["iteration"], first["world_size"], first["sampler"]) == (1, 2, {"epoch": 0, "consumed": 4})
    _assert_weights_close(first["model"], weights[1])
    # resumed on two processes with the image restored
    image.write_bytes(good)
    assert main([*argv, "--nproc", "2", "--resume"]) == 0
    _assert_weights_close(read_checkpoint(run / "last.pt")["model"], weights[2])
    rows, expected = _rows(run), _rows(tmp_path / "one")
    assert [r["iteration"] for r in rows] == [1, 2]
    for got, want in zip(rows, expected):
        for key in ("loss", "loss_cls", "loss_bbox", "loss_ctr", "lr"):
            assert got[key] == pytest.approx(want[key], rel=_tolerances()[1]), key


def _mirrored_pair(root: Path) -> Path:
    """A dataset of one synthetic image and its mirror image: every loss normaliser (positives, center-ness
    sums) is the same for both, so per-micro-batch normalisation equals one normalisation over the two."""
    generate_synthetic_dataset(root, num_train=1, num_val=1, image_size=(64, 64), seed=5)
    ann_file = root / "train" / "annotations.json"
    ann = json.loads(ann_file.read_text())
    info = ann["images"][0]
    ImageOps.mirror(Image.open(root / "train" / "images" / info["file_name"])).save(
        root / "train" / "images" / "mirror.png")
    ann["images"].append({**info, "id": 2, "file_name": "mirror.png"})
    for a in list(ann["annotations"]):
        x, y, w, h = a["bbox"]
        ann["annotations"].append({**a, "id": a["id"] + 1000, "image_id": 2, "bbox": [info["width"] - x - w, y, w, h]})
    ann_file.write_text(json.dumps(ann))
    return root


@pytest.mark.parametrize("bf16", ["0", "1"], ids=["float32", "bf16"])
def test_accumulation_equals_a_larger_batch(tmp_path, monkeypatch, bf16):
    """accumulate=2 of batch 1 against batch 2 for 2 steps (losses scaled by 1/2, the schedule stepped
    once per optimizer step): the same losses and weights, in float32 and in bf16 autocast (forced where the
    CPU emulates it) within the measured noise of each."""
    monkeypatch.setenv(BF16_ENV, bf16)
    data = load_data_spec(_mirrored_pair(tmp_path / "pair"))
    runs = {}
    for name, batch, accumulate in (("big", 2, 1), ("accumulated", 1, 2)):
        cfg = _config(batch_size=batch, accumulate=accumulate, epochs=2, warmup_iters=2, eval_interval=0)
        cfg.train.augment.hflip_prob = 0.0
        trainer = Trainer(cfg, data, tmp_path / name, progress=False)
        initial = copy.deepcopy(trainer.model.state_dict())
        trainer.fit()
        assert trainer.iteration == 2
        runs[name] = trainer
    big, accumulated = runs["big"], runs["accumulated"]
    assert _max_change(initial, big.model.state_dict()) > 1e-3
    _assert_weights_close(big.model.state_dict(), accumulated.model.state_dict())
    for got, want in zip(_rows(tmp_path / "accumulated"), _rows(tmp_path / "big"), strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=_tolerances()[1]) and got["lr"] == want["lr"]
    assert "effective batch 2 = 1 per process x 1 process(es) x 2 accumulated" in (
        tmp_path / "accumulated" / "train.log").read_text()


def test_mid_epoch_resume_with_mosaic_is_exact(synth8, tmp_path):
    """Mosaic (half the samples) and affine, accumulate 2 x batch 1, checkpoints every 2 of the 4 steps:
    killed in step 4 (after logging step 3), resumed with a DataLoader worker, it ends with the weights of
    the uninterrupted run (no workers) and metrics.jsonl holds steps 1-4 once each."""
    data = load_data_spec(synth8)

    def config(workers: int) -> Config:
        cfg = _config(batch_size=1, accumulate=2, checkpoint_interval=2, optimizer="adamw", lr=2e-3, warmup_iters=3,
                      workers=workers, ema=True)
        cfg.train.augment.mosaic_prob, cfg.train.augment.affine = 0.5, True
        return cfg

    straight = Trainer(config(0), data, tmp_path / "straight", progress=False)
    straight.fit()
    out = tmp_path / "killed"
    killed = Trainer(config(1), data, out, progress=False)
    real_loss, calls = killed.model.loss, []

    def dying_loss(batch):
        calls.append(1)
        if len(calls) == 7:  # the first micro-batch of step 4
            raise KeyboardInterrupt
        return real_loss(batch)

    killed.model.loss = dying_loss
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    ckpt = read_checkpoint(out / "last.pt")
    assert (ckpt["epoch"], ckpt["iteration"], ckpt["sampler"]["consumed"]) == (0, 2, 4)
    assert [r["iteration"] for r in _rows(out)] == [1, 2, 3]
    resumed = Trainer(resume_config(out), data, out, resume=True, progress=False)
    resumed.fit()
    assert resumed.iteration == straight.iteration == 4
    for (key, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{key} differs after the resume"
    for a, b in zip(straight.ema.module.state_dict().values(), resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    assert _rows(out) == _rows(tmp_path / "straight")  # steps 1-4 once, step 3 logged again with the same values
    assert len(_rows(out, "val")) == 1
    assert "metrics.jsonl: dropped 1 row(s) logged after the checkpoint" in (out / "train.log").read_text()


@pytest.fixture(scope="module")
def one_step_run(synth8, tmp_path_factory) -> Path:
    """A run of one epoch of one step (batch 8)."""
    run = tmp_path_factory.mktemp("one_step") / "run"
    cfg = _config(batch_size=8, optimizer="adamw", lr=0.002)
    Trainer(cfg, load_data_spec(synth8), run, progress=False).fit()
    return run


def test_changed_fields_on_resume_are_applied_or_refused(synth8, one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_step_run, run)
    data = load_data_spec(synth8)
    # refused: the seed would change the data order of the run; config.yaml keeps what the run uses
    argv = ["train", "fcos_r10_fpn_tiny", "--data", str(synth8), "--out", str(run), "--no-progress", "--resume"]
    assert main([*argv, "train.seed=5"]) == 2
    assert "'train.seed' cannot change when resuming: the run was trained with 0 and the resumed config asks for 5" \
        in capsys.readouterr().err
    assert load_config(run / "config.yaml").train.seed == 0
    # refused: another effective batch; accepted: the same one split into micro-batches
    with pytest.raises(ConfigError, match=r"effective batch of 8 images per step .* = 4 would change"):
        Trainer(apply_overrides(resume_config(run), ["train.batch_size=4"]), data, run, resume=True, progress=False)
    Trainer(apply_overrides(resume_config(run), ["train.batch_size=4", "train.accumulate=2"]), data, run, resume=True,
            progress=False)
    # applied: a new lr (and more epochs) for the remaining schedule, written to config.yaml and train.log
    cfg = apply_overrides(resume_config(run), ["train.lr=0.0005", "train.epochs=3"])
    trainer = Trainer(cfg, data, run, resume=True, progress=False)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0005 * lr_factor(1, cfg.train, 1))
    trainer.scheduler.step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0005 * lr_factor(2, cfg.train, 1))
    saved = load_config(run / "config.yaml").train
    assert (saved.lr, saved.epochs) == (0.0005, 3)
    log = (run / "train.log").read_text()
    assert "resume: train.lr 0.002 -> 0.0005 (applied from iteration 2)" in log
    assert "resume: train.epochs 1 -> 3" in log


def test_nan_loss_without_a_checkpoint_says_so(synth8, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(_config(batch_size=4, grad_clip=10.0), load_data_spec(synth8), run, progress=False)
    real_loss = trainer.model.loss

    def exploding_loss(batch):
        losses = real_loss(batch)
        losses["loss_cls"] = losses["loss_cls"] * float("inf")
        return losses

    trainer.model.loss = exploding_loss
    with pytest.raises(TrainingError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith("the loss became inf in iteration 1 (epoch 1; loss_cls=inf")
    assert "No checkpoint has been written yet (the first comes at the end of epoch 1), so there is nothing to " \
           "resume: lower train.lr (e.g. train.lr=0.001), lower train.grad_clip (now 10)" in message
    assert "start the run again" in message and "--resume" not in message
    assert not (run / "last.pt").exists()
    assert message in (run / "train.log").read_text()
