"""Running a training as the applications do: the trainer with the standard hooks (curves, report, TensorBoard),
started or resumed. ``anchorfree train``, :func:`train` (``anchorfree.train``, its Python form), the demo and
``bench compare`` all go through :func:`run_training`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Config
from .data import DataSpec
from .engine import distributed
from .engine.resume import resume_config
from .engine.trainer import Trainer
from .errors import ConfigError
from .presets import model_config
from .report.hooks import standard_hooks


def run_training(cfg: Config, data: str | Path | DataSpec, out: str | Path, resume: bool = False,
                 progress: bool = True) -> tuple[Trainer, dict[str, Any] | None]:
    """Train ``cfg`` on ``data`` into run folder ``out`` (``resume``: continue it from its ``last.pt``) with the
    standard hooks; returns the (closed) trainer and the last validation result (``None`` when there was none,
    e.g. a run that had already finished)."""
    hooks = standard_hooks(cfg, out, main_process=distributed.process_rank() == 0)
    trainer = None
    try:
        trainer = Trainer(cfg, data, out, resume=resume, progress=progress, hooks=hooks)
        return trainer, trainer.fit()
    finally:
        if trainer is not None:
            trainer.close()
        else:
            for hook in hooks:
                hook.close()


def start_or_resume(cfg: Config, out: str | Path) -> tuple[Config, bool]:
    """``(cfg, False)`` for a new run in ``out``; ``(its own config, True)`` when ``out`` holds an unfinished run
    (its ``last.pt``): what the demo and ``bench compare`` do when run again after an interruption."""
    if (Path(out) / "last.pt").is_file():
        return resume_config(out), True
    return cfg, False


def train(model: str | Config, data: str | Path | DataSpec, out: str | Path, *, weights: str | Path | None = None,
          overrides: Sequence[str] = (), resume: bool = False, progress: bool = True) -> dict[str, Any] | None:
    """Train ``model`` (a preset name, a YAML file, a run folder or a :class:`Config`) on ``data`` into run folder
    ``out``; returns the last validation result.

    ``weights`` starts from trained weights (fine-tuning, see :mod:`anchorfree.engine.finetune`); ``resume``
    continues the run in ``out`` (``overrides`` then change what may change on resume)."""
    if weights is not None and resume:
        raise ConfigError("weights= starts a new run from trained weights and resume=True continues the run in out; "
                          "use one of them")
    extra = [f"train.weights={weights}"] if weights is not None else []
    cfg = model_config(resume_config(out), overrides) if resume else model_config(model, [*overrides, *extra])
    return run_training(cfg, data, out, resume=resume, progress=progress)[1]
