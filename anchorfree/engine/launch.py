"""``anchorfree.train``: the Python form of ``anchorfree train`` (one process)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..data import DataSpec
from ..errors import ConfigError
from ..presets import model_config
from .trainer import Trainer, resume_config


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
    trainer = Trainer(cfg, data, out, resume=resume, progress=progress)
    try:
        return trainer.fit()
    finally:
        trainer.close()
