"""The trainer's plan under a time budget (``train.minutes``): start the clock, re-estimate the run's length from the
measured time per step, extend a finished run given more time. A part of
:class:`~anchorfree.engine.trainer.Trainer`, kept in its own file."""
from __future__ import annotations

import math
import time

import torch

from ..data import collate
from ..inference.checkpoint import checkpoint_config
from .budget import MIN_WINDOW, TimeBudget


class TrainerPlanning:
    """Time-budget methods of the trainer (they read and set its attributes)."""

    # ---- time budget (train.minutes) ---------------------------------------------------------
    def start_budget(self) -> None:
        """Start the clock of ``train.minutes`` (a resumed run continues its own) and keep time for the final
        validation, measured on one batch of validation images."""
        t = self.cfg.train
        elapsed = (self.resume_state or {}).get("budget_elapsed")
        self.budget = TimeBudget(t.minutes * 60, time.perf_counter() - self.created if elapsed is None else elapsed)
        if len(self.val_set):
            model, k = self.eval_model(), min(len(self.val_set), t.batch_size)
            samples = [self.val_set[i] for i in range(k)]
            divisor = self.cfg.model.input.size_divisor
            batch = collate(samples, divisor).to(self.device)
            was_training = model.training
            model.eval()
            with torch.no_grad():
                model.predict(collate(samples[:1], divisor).to(self.device))  # the first call is slower
                start = time.perf_counter()
                model.predict(batch)
            model.train(was_training)
            self.budget.set_reserve((time.perf_counter() - start) / k, len(self.val_set))

    def _extend_finished_budget(self) -> None:
        """A finished budgeted run resumed with a larger ``train.minutes`` trains on: its length is
        re-estimated for the new budget and the schedule laid over it (as a larger ``train.epochs`` extends
        an epoch-set run). With the same budget it stays finished."""
        t, ckpt = self.cfg.train, self.resume_state
        if ckpt is None or self.total_steps is None or self.iteration < self.total_steps or \
                self.epoch < self.planned_epochs:
            return
        before = checkpoint_config(ckpt).train.minutes
        if t.minutes <= before:
            return
        self.log(f"train.minutes {before:g} -> {t.minutes:g}: the finished run ({self.budget.elapsed() / 60:.2f} "
                  "minutes spent) trains on, over a schedule laid on its new length")
        self.total_steps = None  # until the first estimate, a few steps in
        self.planned_epochs = self.epoch + 1

    def _reestimate(self) -> None:
        """Set the run's length to the steps that fit in the budget (every process gets the same)."""
        per_step = self.budget.seconds_per_step(self.iteration, max(MIN_WINDOW, self.iters_per_epoch))
        if per_step is None:
            return
        total = self.budget.total_steps(self.iteration, per_step)
        self.total_steps = int(round(float(self.dist.mean(torch.tensor([float(total)]))[0])))
        self.planned_epochs = max(self.epoch + 1, math.ceil(self.total_steps / self.iters_per_epoch))

    def describe(self) -> str:
        """One line on the effective batch and the learning rate stated for it."""
        t = self.cfg.train
        batch = (f"effective batch {self.effective_batch} = {t.batch_size} per process x {self.world} "
                 f"process(es) x {t.accumulate} accumulated micro-batch(es)")
        if t.scale_lr:
            reference = t.lr_reference_batch or t.batch_size
            lr = (f"lr {self.base_lr:.4g} for it (train.lr {t.lr:g} x {self.effective_batch} / reference batch "
                  f"{reference}, linear scaling rule)")
        else:
            lr = f"lr {self.base_lr:.4g} for it (train.lr as given; train.scale_lr=true scales it linearly)"
        return f"{batch}; {lr}"
