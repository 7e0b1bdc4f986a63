"""The trainer's state on disk: what a resume checks and restores, and the checkpoints it writes (``last.pt``,
``best.pt``). A part of :class:`~anchorfree.engine.trainer.Trainer`, kept in its own file."""
from __future__ import annotations

from typing import Any

from .. import runlog
from ..errors import ConfigError
from ..inference.checkpoint import atomic_save, checkpoint_config, load_model_state, make_checkpoint
from .divergence import finite_weights, write_last
from .optim import lr_factor
from .resume import planned_epochs_on_resume, resume_changes, rng_state, set_rng_state


class TrainerState:
    """Resume and checkpoint methods of the trainer (they read and set its attributes)."""

    # ---- resume ----------------------------------------------------------------------------
    def _check_resume(self, ckpt: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """The changes of the config relative to the checkpoint's (refusing those that cannot apply)."""
        old = checkpoint_config(ckpt)
        changes = resume_changes(old, self.cfg)
        t, o = self.cfg.train, old.train
        world = ckpt.get("world_size", 1)
        before = ckpt.get("effective_batch", o.batch_size * o.accumulate * world)
        if before != self.effective_batch:
            raise ConfigError(
                f"the run was trained with an effective batch of {before} images per step (train.batch_size "
                f"{o.batch_size} x {world} process(es) x train.accumulate {o.accumulate}); resuming with "
                f"train.batch_size {t.batch_size} x {self.world} process(es) x train.accumulate {t.accumulate} = "
                f"{self.effective_batch} would change the samples of each step and the schedule. Keep the effective "
                f"batch (e.g. train.batch_size={max(1, before // (self.world * t.accumulate))} on {self.world} "
                "process(es)) or start a new run in another --out folder")
        if planned_epochs_on_resume(self.cfg, ckpt) < ckpt["epoch"]:
            raise ConfigError(f"train.epochs={t.epochs} is below the {ckpt['epoch']} epochs the run in {self.run} has "
                              "already trained; resume with at least that many")
        return changes

    def _apply_schedule(self) -> None:
        """Set the optimiser's learning rates (and decay, momentum) from the config at the current
        iteration: what an uninterrupted run has, and a changed lr / schedule for the remaining steps."""
        t = self.cfg.train
        factor = lr_factor(self.iteration, t, self.iters_per_epoch,
                           self.total_steps or self.planned_epochs * self.iters_per_epoch)
        self.scheduler.base_lrs = [self.base_lr for _ in self.optimizer.param_groups]
        for i, group in enumerate(self.optimizer.param_groups):
            group["initial_lr"] = self.base_lr
            group["lr"] = self.base_lr * factor
            if i == 0:
                group["weight_decay"] = t.weight_decay
            if "momentum" in group and t.optimizer == "sgd":
                group["momentum"] = t.momentum
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        load_model_state(self.model, ckpt["model"], ckpt["path"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict({"module": ckpt["ema"], "updates": ckpt["ema_updates"]})
        self.epoch, self.iteration, self.best_ap = ckpt["epoch"], ckpt["iteration"], ckpt["best_ap"]
        self.total_steps = ckpt.get("total_steps")
        self.planned_epochs = planned_epochs_on_resume(self.cfg, ckpt)
        sampler = ckpt.get("sampler") or {}
        self.consumed = sampler.get("consumed", 0) if sampler.get("epoch", self.epoch) == self.epoch else 0
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if self.dist.rank < len(ranks):
            set_rng_state(ranks[self.dist.rank])
        self._apply_schedule()
        self.checkpoint_at = (self.epoch, self.iteration)
        if self.is_main:
            self._truncate_metrics()
        where = (f"in epoch {self.epoch + 1} after {self.consumed} of its samples" if self.consumed
                 else f"after epoch {self.epoch}")
        self.log(f"resumed from {ckpt['path']} at iteration {self.iteration}, {where}")

    def _truncate_metrics(self) -> None:
        """Drop the rows of ``metrics.jsonl`` logged after the checkpoint (they are logged again)."""
        dropped = runlog.truncate_after(self.run, self.iteration, self.epoch)
        if dropped:
            self.log(f"metrics.jsonl: dropped {dropped} row(s) logged after the checkpoint")

    # ---- state -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any] | None:
        """The checkpoint (on rank 0; ``None`` elsewhere). Collective: every process calls it. Weights that are
        not finite stop the run instead (no checkpoint holds them)."""
        ema = None if self.ema is None else self.ema.module.state_dict()
        gathered = self.dist.gather((rng_state(), finite_weights(self.model.state_dict(), ema)))
        rng_ranks = [rng for rng, _ in gathered]
        if not all(finite for _, finite in gathered):
            epoch = self.epoch + 1 if self.consumed else self.epoch
            self._stop_diverged(f"the weights became NaN or infinite in the optimizer step of iteration "
                                f"{self.iteration} (epoch {epoch}; the loss before it was finite). They were not "
                                "written to a checkpoint. ")
        if not self.is_main:
            return None
        return make_checkpoint(
            self.cfg, self.model.state_dict(),
            ema=None if self.ema is None else self.ema.module.state_dict(),
            ema_updates=None if self.ema is None else self.ema.updates,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), epoch=self.epoch, iteration=self.iteration,
            best_ap=self.best_ap, rng=rng_ranks[0], rng_ranks=rng_ranks,
            sampler={"epoch": self.epoch, "consumed": self.consumed},
            total_steps=self.total_steps, planned_epochs=self.planned_epochs, budget_elapsed=None if self.budget is None else self.budget.elapsed(),
            world_size=self.world, effective_batch=self.effective_batch,
            class_names=self.cfg.model.class_names, label_to_cat_id=self.train_set.label_to_cat_id,
        )

    def save(self, name: str, state: dict[str, Any] | None = None) -> None:
        atomic_save(state or self._state(), self.run / name)

    def _save_last(self, state: dict[str, Any]) -> None:
        """Write ``last.pt`` (rank 0); the one it replaces, of an earlier iteration, is kept as ``previous.pt``."""
        write_last(self.run, state, self.checkpoint_at is not None and self.checkpoint_at[1] != self.iteration)
        self.checkpoint_at = (self.epoch, self.iteration)

    def _checkpoint(self) -> dict[str, Any] | None:
        """Write ``last.pt`` on rank 0 (the others wait); returns the state on rank 0."""
        state = self._state()
        if state is not None:
            self._save_last(state)
        self.checkpoint_at = (self.epoch, self.iteration)
        self.dist.barrier()
        return state
