"""The training loop: data → model → optimiser, with validation, checkpoints and exact resume.

A run folder holds ``config.yaml`` (the resolved config), ``train.log``, ``metrics.jsonl`` (one
JSON object per logged step / validation), ``loss.png`` and ``map.png``, ``last.pt`` and
``best.pt`` (written atomically), and ``metrics.json`` of the last validation.

Reproducibility: each epoch's shuffling, worker seeds and augmentations are drawn from seeds
derived from ``(train.seed, epoch)``, and checkpoints carry model, optimiser, scheduler, scaler,
EMA, epoch/iteration and RNG states, so ``--resume`` after an epoch continues exactly as an
uninterrupted run would. Whether mosaic/affine augmentation is on depends on the epoch only
(:func:`~anchorfree.data.mosaic_enabled`); the flag is set before the epoch's workers start
(``persistent_workers=False``), so they see it.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..config import AugmentConfig, Config, save_config
from ..data import CocoDetection, DataSpec, MosaicDetection, build_transforms, make_collate, mosaic_enabled
from ..errors import ConfigError, DatasetError, TrainingError
from ..evaluation import format_metrics_table, save_metrics
from ..models.detector import Detector
from ..runtime import autocast, needs_grad_scaler, select_device
from ..structures import Batch
from .checkpoint import atomic_save, checkpoint_config, load_model_state, make_checkpoint, read_checkpoint
from .evaluate import evaluate_dataset
from .optim import ModelEMA, build_optimizer, build_scheduler
from .plots import plot_run

log = logging.getLogger("anchorfree")


class EpochSampler(Sampler[int]):
    """A permutation drawn from ``(seed, epoch)``; ``start`` skips samples already trained on."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch, self.start = size, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g)[self.start:].tolist())

    def __len__(self) -> int:
        return self.size - self.start


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_train_data(dataset: CocoDetection, augment: AugmentConfig, size: int) -> Dataset:
    """``dataset`` wrapped in :class:`~anchorfree.data.MosaicDetection` when mosaic or affine is on."""
    a = augment
    if a.mosaic_prob == 0 and not a.affine:
        return dataset
    if not 0 <= a.mosaic_prob <= 1:
        raise ConfigError(f"train.augment.mosaic_prob must be in [0, 1], got {a.mosaic_prob}")
    if len(a.affine_scale) != 2 or not 0 < a.affine_scale[0] <= a.affine_scale[1]:
        raise ConfigError(f"train.augment.affine_scale must be [low, high] with 0 < low <= high, got {a.affine_scale}")
    return MosaicDetection(dataset, size, a.mosaic_prob, a.affine, a.affine_scale, a.affine_translate,
                           a.affine_degrees, a.affine_shear, a.min_area_ratio, a.hflip_prob, a.color_jitter)


def setup_logging(run: Path) -> None:
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        if isinstance(handler, logging.FileHandler):
            log.removeHandler(handler)
    handler = logging.FileHandler(run / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


def resume_config(run: str | Path) -> Config:
    """The config saved in ``run/last.pt`` (the starting point for ``--resume``)."""
    return checkpoint_config(read_checkpoint(Path(run) / "last.pt"))


class Trainer:
    """Train ``cfg`` on ``data`` into run folder ``out``.

    ``resume`` continues from ``out/last.pt``; pass the run's own config then (see
    :func:`resume_config`), changed only where intended (e.g. more epochs).
    """

    def __init__(self, cfg: Config, data: DataSpec, out: str | Path, resume: bool = False,
                 progress: bool = True) -> None:
        self.run = Path(out)
        self.progress = progress
        self.resume_state = None
        if resume:
            self.resume_state = read_checkpoint(self.run / "last.pt")
        elif (self.run / "last.pt").exists():
            raise ConfigError(f"{self.run} already holds a run (last.pt); pass --resume to continue it "
                              "or choose another --out folder")
        self.cfg = cfg
        if data.train_ann is None:
            raise DatasetError(f"the dataset {data.root} has no train split; add 'train:' to its YAML")
        self.run.mkdir(parents=True, exist_ok=True)
        setup_logging(self.run)
        t, m = cfg.train, cfg.model
        self.device = select_device(t.device)
        seed_everything(t.seed)

        sizes = tuple(t.augment.multiscale_min_sizes) or m.input.min_size
        train_tf = build_transforms(True, sizes, m.input.max_size, t.augment.hflip_prob, t.augment.color_jitter)
        self.train_set = CocoDetection(data.train_ann, data.train_images, train_tf, data.class_names, train=True)
        eval_tf = build_transforms(False, m.input.min_size, m.input.max_size)
        self.val_set = CocoDetection(data.val_ann, data.val_images, eval_tf, self.train_set.class_names)
        if self.resume_state is None:
            m.num_classes, m.class_names = self.train_set.num_classes, list(self.train_set.class_names)
        elif m.num_classes != self.train_set.num_classes:
            raise ConfigError(f"the run in {self.run} was trained with {m.num_classes} classes but the dataset "
                              f"has {self.train_set.num_classes}; resume with the same dataset")
        save_config(cfg, self.run / "config.yaml")

        self.train_data = build_train_data(self.train_set, t.augment, m.input.min_size)

        self.model = Detector(m).to(self.device)
        if t.channels_last:
            self.model.set_channels_last(True)
        self.sampler = EpochSampler(len(self.train_set), t.seed)
        self.loader = DataLoader(self.train_data, batch_size=t.batch_size, sampler=self.sampler,
                                 num_workers=t.workers, collate_fn=make_collate(m.input.size_divisor),
                                 pin_memory=self.device.type == "cuda", persistent_workers=False)
        self.iters_per_epoch = math.ceil(len(self.train_set) / t.batch_size)
        self.optimizer = build_optimizer(self.model, t)
        self.scheduler = build_scheduler(self.optimizer, t, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.device, t.amp))
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema else None
        self.epoch, self.iteration, self.best_ap = 0, 0, -1.0
        self.eval_seconds = 0.0  # time spent in validation by this process
        if self.resume_state is not None:
            self._load_state(self.resume_state)

    # ---- state ---------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return make_checkpoint(
            self.cfg, self.model.state_dict(),
            ema=None if self.ema is None else self.ema.module.state_dict(),
            ema_updates=None if self.ema is None else self.ema.updates,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), epoch=self.epoch, iteration=self.iteration,
            best_ap=self.best_ap, rng=rng_state(), class_names=self.cfg.model.class_names,
            label_to_cat_id=self.train_set.label_to_cat_id,
        )

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        load_model_state(self.model, ckpt["model"], ckpt["path"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict({"module": ckpt["ema"], "updates": ckpt["ema_updates"]})
        self.epoch, self.iteration, self.best_ap = ckpt["epoch"], ckpt["iteration"], ckpt["best_ap"]
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s at epoch %d, iteration %d", ckpt["path"], self.epoch, self.iteration)

    def save(self, name: str, state: dict[str, Any] | None = None) -> None:
        atomic_save(state or self._state(), self.run / name)

    def _log_row(self, row: dict[str, Any]) -> None:
        with open(self.run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    # ---- loop ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any] | None:
        """Train until ``train.epochs``; returns the last validation result."""
        t = self.cfg.train
        log.info("training %s on %d images (%d classes) for %d epochs on %s", self.cfg.model.name,
                 len(self.train_set), self.cfg.model.num_classes, t.epochs, self.device)
        result = None
        while self.epoch < t.epochs:
            self.train_epoch()
            self.epoch += 1
            last = self.epoch == t.epochs
            if last or (t.eval_interval > 0 and self.epoch % t.eval_interval == 0):
                result = self.validate()
            state = self._state()
            self.save("last.pt", state)
            if result is not None and result.get("epoch") == self.epoch and result["metrics"]["AP"] > self.best_ap:
                self.best_ap = result["metrics"]["AP"]
                state["best_ap"] = self.best_ap
                self.save("best.pt", state)
                self.save("last.pt", state)
            plot_run(self.run)
        if not (self.run / "best.pt").exists() and (self.run / "last.pt").exists():
            self.save("best.pt", read_checkpoint(self.run / "last.pt"))
        return result

    def train_epoch(self) -> None:
        t = self.cfg.train
        seed_everything(t.seed * 1000 + self.epoch)  # augmentations in the main process
        self._switch_mosaic()
        self.sampler.set_epoch(self.epoch)
        self.loader.generator = torch.Generator().manual_seed(t.seed * 1000 + self.epoch)  # worker seeds
        self.model.train()
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="it", disable=not self.progress,
                   dynamic_ncols=True)
        start, seen = time.perf_counter(), 0
        for batch in bar:
            batch = batch.to(self.device, non_blocking=True)
            losses = self.train_step(batch)
            loss = sum(losses.values())
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.iteration += 1
            seen += len(batch)
            values = {k: float(v.detach()) for k, v in losses.items()}
            lr = self.optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **{k.replace("loss_", ""): f"{v:.3f}" for k, v in values.items()},
                            lr=f"{lr:.2e}", img_s=f"{seen / (time.perf_counter() - start):.1f}")
            if self.iteration % t.log_interval == 0 or self.iteration == 1:
                row = {"type": "train", "epoch": self.epoch + 1, "iteration": self.iteration, "lr": lr,
                       "loss": float(loss.detach()), **values}
                self._log_row(row)
                log.info(json.dumps(row))

    def _switch_mosaic(self) -> None:
        """Turn mosaic/affine off for the last ``close_mosaic`` epochs (logged when it changes)."""
        if isinstance(self.train_data, MosaicDetection):
            t = self.cfg.train
            enabled = mosaic_enabled(self.epoch, t.epochs, t.augment.close_mosaic)
            if enabled != self.train_data.enabled:
                self.train_data.enabled = enabled
                log.info("epoch %d: mosaic/affine augmentation %s (close_mosaic=%d)", self.epoch + 1,
                         "on" if enabled else "off", t.augment.close_mosaic)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Forward, loss, NaN check, backward, clipping and one optimiser step; returns the loss terms."""
        t = self.cfg.train
        with autocast(self.device, enabled=t.amp):
            losses = self.model.loss(batch)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise TrainingError(
                f"the loss became {loss.item()} at epoch {self.epoch + 1}, iteration {self.iteration} ({terms}). "
                f"Training stopped; the last good checkpoint {self.run / 'last.pt'} is intact. Lower train.lr, "
                "set train.grad_clip, or check the dataset for broken boxes, then run again with --resume.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses

    def eval_model(self) -> Detector:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict[str, Any]:
        start = time.perf_counter()
        result = evaluate_dataset(self.eval_model(), self.val_set, batch_size=self.cfg.train.batch_size,
                                  workers=self.cfg.train.workers, progress=self.progress)
        result["epoch"] = self.epoch
        self.eval_seconds += time.perf_counter() - start
        row = {"type": "val", "epoch": self.epoch, "iteration": self.iteration, **result["metrics"]}
        self._log_row(row)
        save_metrics(result, self.run / "metrics.json")
        log.info("validation after epoch %d:\n%s", self.epoch, format_metrics_table(result))
        if self.progress:
            tqdm.write(f"epoch {self.epoch}: AP {result['metrics']['AP']:.4f}  AP50 {result['metrics']['AP50']:.4f}")
        return result
