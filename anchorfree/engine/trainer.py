"""The training loop: data → model → optimiser, with validation, checkpoints and exact resume.

A run folder holds ``config.yaml`` (the resolved config the run uses), ``train.log``,
``metrics.jsonl`` (one JSON object per logged step / validation), ``loss.png`` and ``map.png``,
``last.pt`` and ``best.pt`` (written atomically), ``previous.pt`` (the ``last.pt`` before, see
:mod:`anchorfree.engine.divergence`), ``metrics.json`` of the last validation and ``report.html``. ``train.log``
also gets the dataset's warnings and the dataset error that stops a run before its first step.

Several processes (``torchrun -m anchorfree train`` or ``anchorfree train --nproc N``) train one
model with DistributedDataParallel: ``train.batch_size`` images per process and micro-batch,
``train.accumulate`` micro-batches per optimizer step (DDP's ``no_sync`` on all but the last), so a
step sees the effective batch ``batch_size x processes x accumulate``. Rank 0 alone logs, shows
progress, validates and writes checkpoints; the others wait for it.

Reproducibility: the epoch's order comes from a seeded :class:`~torch.utils.data.DistributedSampler`
and every sample's augmentation from a seed of its own (:mod:`anchorfree.engine.sampler`), so an
epoch is the same on any number of processes and workers. Checkpoints (per epoch and every
``train.checkpoint_interval`` steps) carry model, optimiser, scheduler, scaler, EMA, epoch,
iteration, the sampler's position inside the epoch and every process's RNG states, so ``--resume``
continues exactly as an uninterrupted run would, also from the middle of an epoch. Whether
mosaic/affine augmentation is on depends on the epoch only (:func:`~anchorfree.data.mosaic_enabled`);
the flag is set before the epoch's workers start (``persistent_workers=False``), so they see it.

Exactness across batch layouts: the loss normalisers (number of positives, center-ness sums) are
averaged over processes (:func:`anchorfree.losses.reduce_mean`), so N processes with batch B give
the gradient of one process with batch N·B. Accumulated micro-batches are each normalised by their
own positives and their losses divided by the number of micro-batches: K micro-batches of B equal
one batch of K·B exactly when the micro-batches have the same normalisers, and approximately
otherwise (the average of per-micro-batch normalised losses instead of one normalisation over all).
BatchNorm statistics are per micro-batch and per process unless ``train.sync_bn`` (GPUs).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import runlog
from ..config import Config, save_config
from ..data import (CocoDetection, DataSpec, MosaicDetection, build_transforms,
                    load_data_spec, make_collate, mosaic_enabled, preflight)
from ..errors import ConfigError, DatasetError, TrainingError
from ..evaluation import format_metrics_table, save_metrics
from ..models.detector import Detector
from ..runtime import autocast, needs_grad_scaler
from ..structures import Batch
from ..inference.checkpoint import read_checkpoint
from ..inference.evaluate import predict_dataset, score_results
from . import distributed
from .budget import TimeBudget
from .divergence import PREVIOUS, next_step, rewind
from .finetune import freeze, freeze_prefixes, keep_frozen_norms, load_pretrained
from .hooks import TrainerHook
from .loading import build_train_data, check_train_settings, dataset_problems_logged, setup_logging
from .optim import ModelEMA, build_optimizer, build_scheduler, effective_lr
from .recipe import resolve_crop, resolve_recipe
from .planning import TrainerPlanning
from .resume import seed_everything
from .state import TrainerState
from .sampler import ResumableDistributedSampler, SeededSamples

log = logging.getLogger("anchorfree")

class LossModule(nn.Module):
    """``detector.loss(batch)`` as ``forward``: DistributedDataParallel prepares its gradient
    all-reduce in ``forward``, so the training computation has to go through it."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.detector.loss(batch)


class Trainer(TrainerState, TrainerPlanning):
    """Train ``cfg`` on ``data`` (a :class:`~anchorfree.data.DataSpec`, or a dataset path, read once ``train.log``
    is open so that its problems are logged) into run folder ``out``.

    ``resume`` continues from ``out/last.pt``; pass the run's own config then (see
    :func:`resume_config`), changed only where intended: :func:`resume_changes` lists what may change
    (e.g. more epochs, another lr for the remaining schedule) and refuses the rest.

    Inside a torchrun job the trainer joins the process group (see
    :func:`anchorfree.engine.distributed.setup`); call :meth:`close` at the end to leave it.
    """


    def __init__(self, cfg: Config, data: DataSpec | str | Path, out: str | Path, resume: bool = False,
                 progress: bool = True, hooks: Sequence[TrainerHook] = ()) -> None:
        self.created = time.perf_counter()  # a time budget counts the set-up too
        cfg = copy.deepcopy(cfg)  # the caller's config is input: nothing here changes it
        self.run = Path(out)
        t, m = cfg.train, cfg.model
        check_train_settings(cfg)
        self.dist, self.device = distributed.setup(t.device, t.dist_backend, t.dist_timeout)
        self.is_main = self.dist.is_main
        self.progress = progress and self.is_main
        self.resume_state = None
        if resume:
            self.resume_state = read_checkpoint(self.run / "last.pt")
        elif (self.run / "last.pt").exists():
            raise ConfigError(f"{self.run} already holds a run (last.pt); pass --resume to continue it "
                              "or choose another --out folder")
        self.cfg = cfg
        if t.sync_bn and self.dist.enabled and self.device.type != "cuda":
            raise ConfigError("train.sync_bn=true needs GPUs: PyTorch's SyncBatchNorm runs on CUDA only. On CPUs "
                              "use train.sync_bn=false (each process normalises its own images) or a model "
                              "without batch statistics (model.backbone.norm=gn or frozen_bn)")
        self.world = self.dist.world_size
        self.effective_batch = t.batch_size * self.world * t.accumulate
        changes: list[tuple[str, Any, Any]] = []
        if self.resume_state is not None:
            changes = self._check_resume(self.resume_state)
        self.run.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            setup_logging(self.run)
            if self.resume_state is None:  # files of an attempt that left no checkpoint
                for name in ("metrics.jsonl", PREVIOUS):
                    (self.run / name).unlink(missing_ok=True)
        if t.sync_bn and not self.dist.enabled:
            self.log("train.sync_bn=true has no effect with one process (BatchNorm sees the whole batch)")
        for key, before, after in changes:
            self.log(f"resume: {key} {before!r} -> {after!r} (applied from iteration "
                      f"{self.resume_state['iteration'] + 1})")
        seed_everything(t.seed)

        eval_tf = build_transforms(False, m.input.min_size, m.input.max_size, resize=m.input.resize)
        with dataset_problems_logged(self.log):
            data = data if isinstance(data, DataSpec) else load_data_spec(data)
            if data.train_ann is None:
                raise DatasetError(f"the dataset {data.source} has no train split; add 'train:' to its YAML")
            self.train_set = CocoDetection(data.train_ann, data.train_images, None, data.class_names, train=True)
            self.val_set = CocoDetection(data.val_ann, data.val_images, eval_tf, self.train_set.class_names)
            if self.is_main and t.check_images:  # missing, corrupt or mis-sized images stop here, not mid-epoch
                preflight(self.train_set, self.val_set).raise_if_errors()
        # the recipe for this dataset's size (engine/recipe.py): a resolved copy of the config, saved as config.yaml
        batches = math.ceil(len(self.train_set) / self.effective_batch)
        cfg, recipe_lines = resolve_recipe(cfg, len(self.train_set), batches)
        cfg, crop_lines = resolve_crop(cfg, self.train_set.arrays()["sizes"])
        self.cfg, t, m = cfg, cfg.train, cfg.model
        for line in recipe_lines + crop_lines:
            self._say(line)
        self.train_set.crop_size = t.augment.crop_size
        a = t.augment
        self.train_set.transforms = build_transforms(True, tuple(a.multiscale_min_sizes) or m.input.min_size,
                                                     m.input.max_size, a.hflip_prob, a.color_jitter,
                                                     (a.hsv_h, a.hsv_s, a.hsv_v), m.input.resize)
        if self.resume_state is None:
            m.num_classes, m.class_names = self.train_set.num_classes, list(self.train_set.class_names)
        elif m.num_classes != self.train_set.num_classes:
            raise ConfigError(f"the run in {self.run} was trained with {m.num_classes} classes but the dataset "
                              f"has {self.train_set.num_classes}; resume with the same dataset")
        if self.is_main:
            save_config(cfg, self.run / "config.yaml")

        self.train_data = build_train_data(self.train_set, t.augment, m.input.min_size)

        self.frozen = freeze_prefixes(t.freeze)
        starts_trained = bool(t.weights) or self.resume_state is not None  # no ImageNet load to overwrite
        self.model = Detector(dataclasses.replace(m, backbone=dataclasses.replace(m.backbone, weights=None))
                              if starts_trained and m.backbone.weights else m).to(self.device)
        if t.weights and self.resume_state is None:
            for line in load_pretrained(self.model, cfg, t.weights).lines():
                self._say(line)
        if self.frozen:
            count = freeze(self.model, self.frozen)
            self._say(f"train.freeze={t.freeze}: {count} parameter tensors of the {' and '.join(self.frozen)} get no "
                      "gradients; their BatchNorm layers stay in eval mode")
        if t.channels_last:
            self.model.set_channels_last(True)
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema and self.is_main else None
        self.train_module: nn.Module = LossModule(self.model)
        if self.dist.enabled:
            if t.sync_bn:
                nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            find_unused = t.find_unused_parameters
            if find_unused is None:
                find_unused = type(self.model.head).HAS_UNUSED_PARAMETERS
            self.train_module = DistributedDataParallel(
                self.train_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused)
        self.sampler = ResumableDistributedSampler(self.train_data, self.world, self.dist.rank, t.seed)
        self.loader = DataLoader(SeededSamples(self.train_data, t.seed), batch_size=t.batch_size,
                                 sampler=self.sampler, num_workers=t.workers,
                                 collate_fn=make_collate(m.input.size_divisor),
                                 pin_memory=self.device.type == "cuda", persistent_workers=False)
        self.micro_per_epoch = math.ceil(self.sampler.num_samples / t.batch_size)  # per process
        self.iters_per_epoch = math.ceil(self.micro_per_epoch / t.accumulate)  # optimizer steps
        self.base_lr = effective_lr(t, self.effective_batch)
        self.optimizer = build_optimizer(self.model, t, self.base_lr)
        # the run's plan, owned here (config.yaml stays what was asked for; the checkpoint records the plan):
        self.total_steps: int | None = None  # its length in optimiser steps when train.minutes sets it
        self.planned_epochs = t.epochs  # epochs it runs: train.epochs, or what fits in train.minutes
        self.budget: TimeBudget | None = None
        self.scheduler = build_scheduler(self.optimizer, t, self.iters_per_epoch,
                                         lambda: self.total_steps or self.planned_epochs * self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.device, t.amp))
        self.epoch, self.iteration, self.best_ap = 0, 0, -1.0
        self.consumed = 0  # samples of the current epoch trained on, all processes together
        self.checkpoint_at: tuple[int, int] | None = None  # (epoch, iteration) of the last.pt on disk
        self.eval_seconds = 0.0  # time spent in validation by this process
        self.last_results: list[dict] = []  # the detections of the last validation (for report.html)
        self.hooks: list[TrainerHook] = list(hooks) if self.is_main else []  # events: anchorfree.engine.hooks
        self.report: Path | None = None  # the run's report page, when a hook wrote one
        if self.resume_state is not None:
            self._load_state(self.resume_state)

    def log(self, message: str, level: int = logging.INFO) -> None:
        if self.is_main:
            log.log(level, message)

    def _say(self, message: str) -> None:
        """Log to train.log and print on the screen (rank 0)."""
        self.log(message)
        if self.progress:
            tqdm.write(message)

    def _log_row(self, row: dict[str, Any]) -> None:
        runlog.append_row(self.run, row)
        self._emit("on_row", row)

    def _emit(self, event: str, *args: Any) -> None:
        """Call ``event`` on every hook that has it (see :mod:`anchorfree.engine.hooks`)."""
        for hook in self.hooks:
            method = getattr(hook, event, None)
            if method is not None:
                method(self, *args)

    def close(self) -> None:
        """Leave the process group this trainer joined (nothing on one process); close TensorBoard's files."""
        for hook in self.hooks:
            if hasattr(hook, "close"):
                hook.close()
        self.dist.close()

    # ---- loop ------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any] | None:
        """Train until ``train.epochs``; returns the last validation result (on rank 0)."""
        t = self.cfg.train
        where = f"{self.device}" + (f" x {self.world} processes ({self.dist.backend})" if self.dist.enabled else "")
        self.log(f"training {self.cfg.model.name} on {len(self.train_set)} images ({self.cfg.model.num_classes} "
                  f"classes) for {self.planned_epochs} epochs on {where}")
        self.log(self.describe())
        if self.progress:
            tqdm.write(self.describe())
        result = None
        if t.minutes > 0:
            self.start_budget()
            self._extend_finished_budget()
        else:  # a budgeted run resumed with train.minutes=0 trains to train.epochs
            self.total_steps = None
        while self.epoch < self.planned_epochs:
            self.train_epoch()
            self.epoch += 1
            self.consumed = 0
            last = self.epoch == self.planned_epochs
            if self.is_main and (last or (t.eval_interval > 0 and self.epoch % t.eval_interval == 0)):
                result = self.validate()
            state = self._state()  # the other processes wait here while rank 0 validates
            if state is not None:
                self._save_last(state)
                if result is not None and result.get("epoch") == self.epoch and result["metrics"]["AP"] > self.best_ap:
                    self.best_ap = result["metrics"]["AP"]
                    state["best_ap"] = self.best_ap
                    self.save("best.pt", state)
                    self._save_last(state)
                self._emit("on_epoch_end")
            self.checkpoint_at = (self.epoch, self.iteration)
            self.dist.barrier()
        if self.is_main and not (self.run / "best.pt").exists() and (self.run / "last.pt").exists():
            self.save("best.pt", read_checkpoint(self.run / "last.pt"))
        if self.is_main:
            self._emit("on_fit_end", result)
        self.dist.barrier()
        if self.budget is not None:
            self.log(f"time budget: {self.budget.elapsed() / 60:.2f} of {t.minutes:g} minutes used, "
                      f"{self.iteration} steps ({self.iteration / self.iters_per_epoch:.2f} epochs)")
        return result

    def train_epoch(self) -> None:
        """The optimizer steps left in the current epoch (all of them unless resumed inside it)."""
        t = self.cfg.train
        if self.consumed == 0:  # this process's own stream (augmentations are seeded per sample)
            seed_everything(t.seed * 1000 + self.epoch + 1_000_003 * self.dist.rank)
        self._switch_mosaic()
        self.loader.dataset.epoch = self.epoch
        self.sampler.set_epoch(self.epoch, self.consumed)
        self.loader.generator = torch.Generator().manual_seed(t.seed * 1000 + self.epoch)  # worker seeds
        self.model.train()
        keep_frozen_norms(self.model, self.frozen)
        per_step = t.batch_size * t.accumulate
        first = -(-self.sampler.start // per_step)
        bar = tqdm(total=self.iters_per_epoch, initial=first, desc=f"epoch {self.epoch + 1}/{self.planned_epochs}", unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        batches = iter(self.loader)
        start, seen = time.perf_counter(), 0
        for step in range(first, self.iters_per_epoch):
            micro = min(t.accumulate, self.micro_per_epoch - step * t.accumulate)
            values = None
            self.optimizer.zero_grad(set_to_none=True)
            for j in range(micro):
                batch = next(batches).to(self.device, non_blocking=True)
                step_values = self._forward_backward(batch, 1.0 / micro, sync=j == micro - 1)
                values = step_values / micro if values is None else values + step_values / micro
                seen += len(batch) * self.world
            self._optimizer_step()
            self.consumed = min((step + 1) * per_step, self.sampler.num_samples) * self.world
            losses = dict(zip(self._loss_names, values.tolist()))
            loss = sum(losses.values())
            lr = self.optimizer.param_groups[0]["lr"]
            elapsed = time.perf_counter() - start
            left = (self.planned_epochs - self.epoch - 1) * self.iters_per_epoch + self.iters_per_epoch - step - 1
            bar.set_postfix(loss=f"{loss:.3f}", **{k.replace("loss_", ""): f"{v:.3f}" for k, v in losses.items()},
                            lr=f"{lr:.2e}", img_s=f"{seen / elapsed:.1f}",
                            run_eta=tqdm.format_interval(left * elapsed / (step + 1 - first)), refresh=False)
            bar.update(1)
            if self.is_main and (self.iteration % t.log_interval == 0 or self.iteration == 1):
                row = {"type": "train", "epoch": self.epoch + 1, "iteration": self.iteration, "lr": lr,
                       "loss": loss, **losses}
                self._log_row(row)
                log.info(json.dumps(row))
            if t.checkpoint_interval > 0 and self.iteration % t.checkpoint_interval == 0:
                self._checkpoint()
            if self.budget is not None and not self.budget.marks:
                self.budget.begin(self.iteration)  # after this process's first step (its warm-up)
            elif self.budget is not None and self.budget.due(self.iteration):
                self._reestimate()
                bar.total = self.iters_per_epoch if self.epoch + 1 < self.planned_epochs else \
                    self.total_steps - self.epoch * self.iters_per_epoch
            if self.total_steps is not None and self.iteration >= self.total_steps:
                break  # the budget ends inside this epoch
        bar.close()
        del batches

    def _switch_mosaic(self) -> None:
        """Turn mosaic/affine off for the last ``close_mosaic`` epochs (logged when it changes)."""
        if isinstance(self.train_data, MosaicDetection):
            t = self.cfg.train
            enabled = mosaic_enabled(self.epoch, self.planned_epochs, t.augment.close_mosaic)
            if enabled != self.train_data.enabled:
                self.train_data.enabled = enabled
                self.log(f"epoch {self.epoch + 1}: mosaic/affine augmentation {'on' if enabled else 'off'} "
                          f"(close_mosaic={t.augment.close_mosaic})")

    def _forward_backward(self, batch: Batch, scale: float, sync: bool = True) -> torch.Tensor:
        """Forward, loss, NaN check and backward of ``loss * scale`` for one micro-batch; returns the loss
        terms averaged over processes. ``sync=False`` keeps DDP from all-reducing the gradients yet."""
        t = self.cfg.train
        ddp = isinstance(self.train_module, DistributedDataParallel)
        with self.train_module.no_sync() if ddp and not sync else contextlib.nullcontext():
            with autocast(self.device, enabled=t.amp):
                losses = self.train_module(batch)
            self._loss_names = list(losses)
            values = self.dist.mean(torch.stack([v.detach().float() for v in losses.values()]))
            if not bool(torch.isfinite(values).all()):
                self._stop_non_finite(dict(zip(self._loss_names, values.tolist())))
            self.scaler.scale(sum(losses.values()) * scale).backward()
        return values

    def _optimizer_step(self) -> None:
        """Clip, step, update the scaler, the schedule and the EMA: one iteration done."""
        t = self.cfg.train
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iteration += 1

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimizer step on ``batch`` (forward, loss, NaN check, backward, clipping, step, schedule,
        EMA); returns the loss terms averaged over processes."""
        self.optimizer.zero_grad(set_to_none=True)
        values = self._forward_backward(batch, 1.0)
        self._optimizer_step()
        return dict(zip(self._loss_names, values))

    def _stop_non_finite(self, terms: dict[str, float]) -> None:
        """Raise (and log) the error of a NaN/inf loss, with advice that is true for this run."""
        detail = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        self._stop_diverged(f"the loss became {sum(terms.values())} in iteration {self.iteration + 1} (epoch "
                            f"{self.epoch + 1}; {detail}). Training stopped before this step changed the weights. ",
                            loss_of_current_weights=True)

    def _stop_diverged(self, what: str, loss_of_current_weights: bool = False) -> NoReturn:
        """Raise (and log) ``what`` went wrong, offering only a checkpoint written before the divergence: a
        ``last.pt`` holding the weights whose loss is not finite is moved aside (:func:`.divergence.rewind`)."""
        at, rewound_from = self.checkpoint_at, None
        if loss_of_current_weights and at is not None and at[1] == self.iteration:
            rewound_from = self.iteration
            at = self.dist.gather(rewind(self.run, self.iteration) if self.is_main else None)[0]
            self.checkpoint_at = at
        if not (self.run / "last.pt").is_file():
            at = None
        message = what + next_step(self.run, self.cfg.train, self.scaler.is_enabled(), at, rewound_from)
        self.log(message, logging.ERROR)
        error = TrainingError(message)
        error.same_on_all_ranks = True  # every process sees the averaged loss and stops with this message
        raise error

    def warn(self, message: str) -> None:
        """A warning in ``train.log`` and on the screen (rank 0)."""
        if self.is_main:
            log.warning(message)
            tqdm.write(f"warning: {message}", file=sys.stderr)

    def eval_model(self) -> Detector:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.last_results = predict_dataset(self.eval_model(), self.val_set, batch_size=self.cfg.train.batch_size,
                                            workers=self.cfg.train.workers, progress=self.progress)
        result = score_results(self.val_set, self.last_results)
        result["epoch"] = self.epoch
        self.eval_seconds += time.perf_counter() - start
        row = {"type": "val", "epoch": self.epoch, "iteration": self.iteration, **result["metrics"]}
        self._log_row(row)
        save_metrics(result, self.run / "metrics.json")
        log.info("validation after epoch %d:\n%s", self.epoch, format_metrics_table(result))
        if self.progress:
            tqdm.write(f"epoch {self.epoch}: AP {result['metrics']['AP']:.4f}  AP50 {result['metrics']['AP50']:.4f}")
        self._emit("on_validation", result)
        return result
