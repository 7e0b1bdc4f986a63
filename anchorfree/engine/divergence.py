"""The checkpoints a diverging run can still resume from.

A run writes ``last.pt`` every ``train.checkpoint_interval`` steps and at the end of each epoch; the file it
replaces is kept as ``previous.pt`` (a hard link, so ``last.pt`` is never missing). Training stops when the loss
becomes NaN/inf, before that step changes the weights: the weights that produced the loss are those of the step
before. When ``last.pt`` holds exactly them (always with ``train.checkpoint_interval=1``), resuming from it would
stop again on the same batch whatever the new learning rate, so :func:`rewind` moves it to ``diverged.pt`` and
puts ``previous.pt`` back as ``last.pt`` when its weights are finite and older. A checkpoint whose weights are not
finite is never written (the trainer checks :func:`finite_weights` first).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import CheckpointError
from ..inference.checkpoint import atomic_save, read_checkpoint

LAST, PREVIOUS, DIVERGED = "last.pt", "previous.pt", "diverged.pt"


def finite_weights(*states: dict[str, torch.Tensor] | None) -> bool:
    """Whether every floating-point tensor of the state dicts ``states`` is finite (one device synchronisation)."""
    flags = [torch.isfinite(t).all() for state in states for t in (state or {}).values()
             if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def write_last(run: Path, state: dict[str, Any], keep_previous: bool) -> None:
    """Write ``run/last.pt`` atomically; with ``keep_previous`` the file it replaces becomes ``previous.pt``."""
    last = run / LAST
    if keep_previous and last.is_file():
        staged = run / f".{PREVIOUS}.tmp"
        staged.unlink(missing_ok=True)
        try:
            os.link(last, staged)
        except OSError:  # a file system without hard links
            shutil.copyfile(last, staged)
        os.replace(staged, run / PREVIOUS)
    atomic_save(state, last)


def rewind(run: Path, diverged_iteration: int) -> tuple[int, int] | None:
    """``run/last.pt`` holds the weights that diverged (iteration ``diverged_iteration``): move it to
    ``diverged.pt`` and make ``previous.pt`` the ``last.pt`` again if it is older and its weights are finite.
    Returns ``(epoch, iteration)`` of the ``last.pt`` left, or ``None`` when none is left."""
    last, previous = run / LAST, run / PREVIOUS
    if last.is_file():
        os.replace(last, run / DIVERGED)
    if not previous.is_file():
        return None
    try:
        ckpt = read_checkpoint(previous)
    except CheckpointError:
        return None
    if ckpt["iteration"] >= diverged_iteration or not finite_weights(ckpt.get("model"), ckpt.get("ema")):
        return None
    os.replace(previous, last)
    return ckpt["epoch"], ckpt["iteration"]


def advice(t: TrainConfig, fp16: bool) -> str:
    """What to change after a divergence, for the settings ``t`` of the run."""
    return (f"lower train.lr (e.g. train.lr={t.lr / 10:g})"
            + (", set train.grad_clip (e.g. train.grad_clip=10)" if t.grad_clip <= 0
               else f", lower train.grad_clip (now {t.grad_clip:g})")
            + (", turn off fp16 mixed precision (train.amp=false)" if fp16 else "")
            + " or check the dataset for broken boxes (anchorfree data check)")


def next_step(run: Path, t: TrainConfig, fp16: bool, checkpoint_at: tuple[int, int] | None,
              rewound_from: int | None = None) -> str:
    """The sentences saying where to go on from: ``last.pt`` (at ``checkpoint_at``) or a new start;
    ``rewound_from``: the iteration of the checkpoint :func:`rewind` moved to ``diverged.pt``."""
    todo = advice(t, fp16)
    moved = "" if rewound_from is None else (
        f"The checkpoint written after iteration {rewound_from} holds the weights that gave this loss (resuming from "
        f"it would stop the same way); it is now {run / DIVERGED}. ")
    if checkpoint_at is not None:
        epoch, iteration = checkpoint_at
        return (f"{moved}The last checkpoint {run / LAST} (epoch {epoch}, iteration {iteration}) is intact: {todo}, "
                "then continue it with --resume and the changed values as key=value (they are applied to the rest "
                "of the run).")
    if rewound_from is not None:
        return (f"{moved}No earlier checkpoint is left, so there is nothing to resume: {todo}, then start the run "
                "again (the same --out folder works).")
    first = f"after iteration {t.checkpoint_interval}" if t.checkpoint_interval > 0 else "at the end of epoch 1"
    return (f"No checkpoint has been written yet (the first comes {first}), so there is nothing to resume: {todo}, "
            "then start the run again (the same --out folder works).")
