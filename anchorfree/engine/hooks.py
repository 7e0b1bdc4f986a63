"""The events of a training run, on which what is not training hangs (TensorBoard, training curves, the run's
report page: :mod:`anchorfree.report.hooks`), so that the engine imports none of them.

A hook is any object with some of these methods; the trainer calls them on the main process only, in order:

* ``on_row(trainer, row)``: a row was appended to ``metrics.jsonl`` (:mod:`anchorfree.runlog`);
* ``on_validation(trainer, result)``: a validation ended (``trainer.last_results`` holds its detections);
* ``on_epoch_end(trainer)``: an epoch ended and ``last.pt`` (and ``best.pt``) were written;
* ``on_fit_end(trainer, result)``: the run ended (``result``: the last validation, ``None`` if there was none);
* ``close()``: the trainer is closed.
"""
from __future__ import annotations

from typing import Any


class TrainerHook:
    """A hook that does nothing: subclass it and override the events you need."""

    def on_row(self, trainer: Any, row: dict[str, Any]) -> None:
        pass

    def on_validation(self, trainer: Any, result: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, trainer: Any) -> None:
        pass

    def on_fit_end(self, trainer: Any, result: dict[str, Any] | None) -> None:
        pass

    def close(self) -> None:
        pass
