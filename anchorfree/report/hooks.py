"""What a training run writes besides its weights, hung on the trainer's events (:mod:`anchorfree.engine.hooks`):
TensorBoard event files (``train.tensorboard=true``), the training curves ``loss.png`` / ``map.png`` after every
epoch, and ``report.html`` at the end. :func:`standard_hooks` is what ``anchorfree train``, ``anchorfree.train``,
the demo and ``bench compare`` attach."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..config import Config
from ..engine.hooks import TrainerHook
from .plots import plot_run
from .run import write_run_report


class CurvesHook(TrainerHook):
    """``loss.png`` and ``map.png`` from ``metrics.jsonl`` after every epoch."""

    def on_epoch_end(self, trainer: Any) -> None:
        plot_run(trainer.run)


class ReportHook(TrainerHook):
    """``report.html`` of the finished run (when it was validated); what goes wrong with it is logged and
    shown, never raised: the run itself is complete and saved. Sets ``trainer.report``."""

    def on_fit_end(self, trainer: Any, result: dict[str, Any] | None) -> None:
        if result is None:
            return
        try:
            with warnings.catch_warnings(record=True) as caught:
                path = write_run_report(trainer.run, dataset=trainer.val_set, results=trainer.last_results,
                                        metrics=result)
        except Exception as e:  # noqa: BLE001 - the training is done and saved; only its page is missing
            trainer.warn(f"report.html could not be written ({type(e).__name__}: {e}); the run itself is complete. "
                         f"Write the page again with `anchorfree eval {trainer.run} --data DATA`.")
            return
        for w in caught:
            trainer.warn(f"report.html: {w.message}")
        trainer.log(f"report: {path}")
        trainer.report = Path(path)


class TensorBoardHook(TrainerHook):
    """The scalars of every ``metrics.jsonl`` row and, at each validation, a few images with their detections."""

    def __init__(self, run: str | Path) -> None:
        from .tensorboard import TensorBoardLogger

        self.logger = TensorBoardLogger(run)

    def on_row(self, trainer: Any, row: dict[str, Any]) -> None:
        self.logger.scalars(row)

    def on_validation(self, trainer: Any, result: dict[str, Any]) -> None:
        self.logger.predictions(trainer.val_set, trainer.last_results, trainer.iteration)

    def close(self) -> None:
        self.logger.close()


def standard_hooks(cfg: Config, run: str | Path, main_process: bool = True) -> list[TrainerHook]:
    """Curves and report, and TensorBoard with ``train.tensorboard=true`` (none on the other processes of a
    distributed run: they write nothing)."""
    if not main_process:
        return []
    hooks: list[TrainerHook] = [CurvesHook(), ReportHook()]
    if cfg.train.tensorboard:
        hooks.append(TensorBoardHook(run))
    return hooks
