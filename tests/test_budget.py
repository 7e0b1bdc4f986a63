"""``train.minutes``: the budget arithmetic (a fake clock, hand-computed), the schedule laid over the budgeted
length, and a real run that stops inside an epoch with its schedule complete, and resumes."""
from __future__ import annotations

import math

import pytest
from anchorfree.config import TrainConfig, apply_overrides
from anchorfree.data import load_data_spec
from anchorfree.engine import budget as budget_module
from anchorfree.engine.budget import REPORT_SECONDS, RESERVE_MARGIN, TimeBudget
from anchorfree.inference.checkpoint import read_checkpoint
from anchorfree.engine.optim import lr_factor
from anchorfree.engine.resume import resume_config
from anchorfree.engine.trainer import Trainer

from conftest import micro_config


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_budget_arithmetic_by_hand(monkeypatch):
    clock = FakeClock(1000.0)
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    budget = TimeBudget(100.0, elapsed=10.0)  # a resumed run that had used 10 s
    budget.set_reserve(0.1, 50)  # validation of 50 images at 0.1 s each
    assert budget.reserve == pytest.approx(RESERVE_MARGIN * 5.0 + REPORT_SECONDS)
    budget.begin(0)
    assert budget.seconds_per_step(0, window=50) is None
    clock.now = 1020.0  # 10 steps in 20 s
    per_step = budget.seconds_per_step(10, window=50)
    assert per_step == pytest.approx(2.0)
    # left: 100 - 30 - reserve; whole steps of 2 s after step 10
    assert budget.total_steps(10, per_step) == 10 + math.floor((100 - 30 - budget.reserve) / 2.0)
    clock.now = 1200.0  # past the budget: the run ends at the step it is at
    assert budget.total_steps(90, 2.0) == 90


def test_the_window_follows_a_machine_that_slows_down(monkeypatch):
    clock = FakeClock(0.0)
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    budget = TimeBudget(1000.0)
    budget.begin(0)
    for step in range(10, 101, 10):  # 1 s per step
        clock.now = float(step)
        budget.seconds_per_step(step, window=20)
    for step in range(110, 161, 10):  # then 3 s per step
        clock.now += 30.0
        per_step = budget.seconds_per_step(step, window=20)
    # the estimate covers the last 20+ steps only: 3 s each (a mean since the start would say ~1.7 s)
    assert per_step == pytest.approx(3.0)


def test_schedule_over_the_budgeted_length():
    cfg = TrainConfig(epochs=10, schedule="cosine", warmup_iters=0, min_lr_ratio=0.01)
    assert lr_factor(40, cfg, 100, total_steps=40) == pytest.approx(0.01)  # the end of a 40-step run
    assert lr_factor(20, cfg, 100, total_steps=40) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(500, cfg, 100) == pytest.approx(0.505)  # without a budget: epochs x steps per epoch


def test_budgeted_run_ends_inside_an_epoch_at_the_schedule_end(small_synth, tmp_path, monkeypatch):
    """A real run under a clock that counts 0.5 s per step (so the result does not depend on the machine's
    speed; the real budgets' accuracy is measured in BENCHMARKS.md): 12 s less a 1 s reserve is 22 steps."""
    current = {}
    monkeypatch.setattr(TimeBudget, "elapsed", lambda self: 0.5 * current["trainer"].iteration)
    monkeypatch.setattr(TimeBudget, "set_reserve", lambda self, seconds, images: setattr(self, "reserve", 1.0))
    cfg = micro_config()
    cfg.train.epochs, cfg.train.minutes, cfg.train.batch_size, cfg.train.eval_interval = 50, 0.2, 2, 0
    trainer = current["trainer"] = Trainer(cfg, load_data_spec(small_synth), tmp_path / "run", progress=False)
    result = trainer.fit()
    assert result is not None and trainer.iteration == trainer.total_steps == 22
    assert trainer.iters_per_epoch == 12 and trainer.planned_epochs == 2 and trainer.epoch == 2  # the 2nd is partial
    # the schedule reached its end: the cosine floor
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.base_lr * cfg.train.min_lr_ratio)
    # the plan is the trainer's, recorded in the checkpoint; config.yaml and the config given stay as asked
    assert cfg.train.epochs == 50 and "epochs: 50" in (tmp_path / "run" / "config.yaml").read_text()
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["total_steps"] == 22 and ckpt["planned_epochs"] == 2 and ckpt["budget_elapsed"] == pytest.approx(11.0)
    # a resumed run takes the run's length (and, test_budget_arithmetic_by_hand, its clock) from the checkpoint
    resumed = current["trainer"] = Trainer(resume_config(tmp_path / "run"), load_data_spec(small_synth),
                                           tmp_path / "run", resume=True, progress=False)
    assert resumed.total_steps == 22 and resumed.iteration == 22
    # resumed with the same budget, the finished run stays finished
    assert resumed.fit() is None and resumed.iteration == 22
    # with a larger one it trains on: 18 s less the 1 s reserve is 34 steps, a 3rd epoch of 12; the schedule
    # is laid over the new length and ends at its floor again
    cfg = apply_overrides(resume_config(tmp_path / "run"), ["train.minutes=0.3"])
    longer = current["trainer"] = Trainer(cfg, load_data_spec(small_synth), tmp_path / "run", resume=True,
                                          progress=False)
    assert longer.fit() is not None and longer.iteration == longer.total_steps == 34
    assert longer.planned_epochs == 3 and longer.epoch == 3
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(longer.base_lr * cfg.train.min_lr_ratio)
    assert read_checkpoint(tmp_path / "run" / "last.pt")["budget_elapsed"] == pytest.approx(17.0)
