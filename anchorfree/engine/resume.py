"""What a resumed run needs: its config and plan from ``last.pt``, which config changes it accepts, and the random
state of every generator (so that a killed run resumes exactly)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RESUME_APPLIED, Config, to_dict
from ..errors import ConfigError
from ..inference.checkpoint import checkpoint_config, read_checkpoint


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


def resume_config(run: str | Path) -> Config:
    """The config saved in ``run/last.pt`` (the starting point for ``--resume``)."""
    return checkpoint_config(read_checkpoint(Path(run) / "last.pt"))


def planned_epochs_on_resume(cfg: Config, ckpt: dict[str, Any]) -> int:
    """The epochs a resumed run plans: those its checkpoint recorded (a time budget's plan), unless the resume
    asks for another ``train.epochs`` without a budget."""
    before = checkpoint_config(ckpt).train.epochs
    recorded = ckpt.get("planned_epochs", before)
    if cfg.train.minutes > 0 or cfg.train.epochs == before:
        return recorded
    return cfg.train.epochs


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def resume_changes(old: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for every field ``new`` changes relative to the run's config ``old``.

    Fields that can change on resume (:data:`RESUME_APPLIED` and the head's inference options) are
    returned; any other change raises a :class:`ConfigError` naming the key and both values.
    """
    before, after = _flatten(to_dict(old)), _flatten(to_dict(new))
    inference = {f"model.head.{name}" for name in getattr(type(new.model.head), "INFERENCE_FIELDS", ())}
    changes = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        section, _, leaf = key.partition(".")
        if (section == "train" and leaf in RESUME_APPLIED) or key in inference:
            changes.append((key, a, b))
            continue
        raise ConfigError(
            f"'{key}' cannot change when resuming: the run was trained with {a!r} and the resumed config asks "
            f"for {b!r}. On --resume these can change: train.{', train.'.join(sorted(RESUME_APPLIED))} and the "
            "head's inference options; to train with another value start a new run (another --out folder)")
    return changes
