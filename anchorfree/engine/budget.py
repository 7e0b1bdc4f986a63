"""``train.minutes``: a run that ends on time, with a complete schedule.

The whole run counts, from the trainer's creation: optimiser steps, data loading, checkpoints and
plots at the end of each epoch, and the final validation and report. After :data:`FIRST_ESTIMATE`
steps and then every :data:`REESTIMATE_EVERY` steps the trainer measures the seconds per step over the last epoch or :data:`MIN_WINDOW` steps,
whichever is longer (all overheads included), and sets the run's length to the steps that fit in what
is left of the budget, less the time the final validation is expected to take (:meth:`TimeBudget.set_reserve`, measured on a few validation images). The
learning-rate schedule (warm-up, cosine or steps) is laid over that length, and the run stops at it,
inside an epoch if need be, so the last epoch may be partial. ``train.epochs`` is kept equal to the
epochs started (it is what ``close_mosaic`` and the progress bar read).

This is ultralytics' ``time=`` idea carried to steps: its epochs are re-estimated after each one, so a
short run with long epochs can end far from the budget; here the error is at most a few steps plus the
error of the validation estimate.
"""
from __future__ import annotations

import math
import time

REESTIMATE_EVERY = 10  # optimiser steps between estimates (all processes estimate at the same steps)
FIRST_ESTIMATE = 3  # steps after the start (or resume) of the first estimate, for budgets of a few steps
MIN_WINDOW = 50  # steps the seconds per step are measured over (and at least one epoch)
REPORT_SECONDS = 2.0  # writing report.html after the final validation (figures, gallery), on a CPU
RESERVE_MARGIN = 1.15  # the final validation's estimate is scaled by this (its data loading, COCOeval)


class TimeBudget:
    """Seconds for the whole run; ``elapsed`` (of a resumed run) counts as already spent."""

    def __init__(self, seconds: float, elapsed: float = 0.0) -> None:
        self.seconds = float(seconds)
        self.start = time.perf_counter() - float(elapsed)
        self.reserve = REPORT_SECONDS
        self.marks: list[tuple[int, float]] = []  # (iteration, elapsed) at the estimates of this process
        self.begun_at = -1

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def set_reserve(self, seconds_per_image: float, images: int) -> None:
        """Keep time for the final validation of ``images`` at ``seconds_per_image`` (and the report)."""
        self.reserve = RESERVE_MARGIN * seconds_per_image * images + REPORT_SECONDS

    def begin(self, iteration: int) -> None:
        """Start measuring the seconds per step at ``iteration`` (the first step this process runs)."""
        self.begun_at = iteration
        self.marks = [(iteration, self.elapsed())]

    def due(self, iteration: int) -> bool:
        """Whether to estimate after ``iteration``: :data:`FIRST_ESTIMATE` steps after :meth:`begin`, then every
        :data:`REESTIMATE_EVERY` steps (the same steps in every process)."""
        return bool(self.marks) and (iteration == self.begun_at + FIRST_ESTIMATE or iteration % REESTIMATE_EVERY == 0)

    def seconds_per_step(self, iteration: int, window: int) -> float | None:
        """Seconds per step over about the last ``window`` steps (at least one epoch, so that its checkpoint
        and loader start are in it): a machine that gets busier or freer is followed within a window."""
        if not self.marks or iteration <= self.marks[0][0]:
            return None
        now = self.elapsed()
        self.marks.append((iteration, now))
        while len(self.marks) > 2 and iteration - self.marks[1][0] >= window:
            self.marks.pop(0)
        first, at = self.marks[0]
        return (now - at) / (iteration - first)

    def total_steps(self, iteration: int, seconds_per_step: float) -> int:
        """The run's length in optimiser steps: ``iteration`` plus the whole steps that fit in the time left."""
        left = self.seconds - self.elapsed() - self.reserve
        return iteration + max(0, math.floor(left / seconds_per_step))
