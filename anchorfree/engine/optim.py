"""Optimiser, learning-rate schedule and EMA of weights."""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float, norm_bias_decay: bool) -> list[dict]:
    """Two groups: conv/linear weights with decay; norm weights, biases and scalars without
    (unless ``norm_bias_decay``)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if (p.ndim <= 1 and not norm_bias_decay) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def effective_lr(cfg: TrainConfig, effective_batch: int) -> float:
    """The base learning rate for ``effective_batch`` images per optimizer step.

    ``train.lr`` as given, or with ``train.scale_lr`` the linear scaling rule (Goyal et al. 2017):
    ``lr * effective_batch / reference``, ``reference`` being ``train.lr_reference_batch`` or, when that
    is 0, ``train.batch_size`` (the lr stated for one process without accumulation).
    """
    if not cfg.scale_lr:
        return cfg.lr
    if cfg.lr_reference_batch < 0:
        raise ConfigError(f"train.lr_reference_batch must be 0 (train.batch_size) or a batch size, got "
                          f"{cfg.lr_reference_batch}")
    reference = cfg.lr_reference_batch or cfg.batch_size
    return cfg.lr * effective_batch / reference


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over :func:`param_groups`; ``lr`` defaults to ``cfg.lr`` (see :func:`effective_lr`)."""
    lr = cfg.lr if lr is None else lr
    groups = param_groups(model, cfg.weight_decay, cfg.norm_bias_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if cfg.optimizer == "adam":  # L2 weight decay in the gradient (CenterNet, CornerNet: Adam, no decay)
        return torch.optim.Adam(groups, lr=lr)
    raise ConfigError(f"train.optimizer must be sgd, adamw or adam, got '{cfg.optimizer}'")


def lr_factor(iteration: int, cfg: TrainConfig, iters_per_epoch: int, total_steps: int | None = None) -> float:
    """Multiplier of ``cfg.lr`` at ``iteration``: linear warmup × (step or cosine) decay over ``total_steps``
    (default ``epochs * iters_per_epoch``; a time budget sets it, see :mod:`anchorfree.engine.budget`)."""
    total = max(total_steps or cfg.epochs * iters_per_epoch, 1)
    if cfg.schedule == "step":
        factor = cfg.gamma ** sum(iteration >= m * iters_per_epoch for m in cfg.milestones)
    elif cfg.schedule == "cosine":
        progress = min(iteration / total, 1.0)
        factor = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        raise ConfigError(f"train.schedule must be step or cosine, got '{cfg.schedule}'")
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        factor *= cfg.warmup_ratio * (1 - alpha) + alpha
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, iters_per_epoch: int,
                    total_steps: Callable[[], int | None] = lambda: None):
    """:func:`lr_factor` per optimizer step, read from ``cfg`` (and ``total_steps()``) at every step, so a
    schedule field changed on resume, or a run length re-estimated for a time budget, applies to the
    remaining steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             lambda it: lr_factor(it, cfg, iters_per_epoch, total_steps()))


class ModelEMA:
    """Exponential moving average of weights and buffers with a warm-up ramp of the decay,
    ``decay * (1 - exp(-updates / 2000))`` (as in YOLOv5/8 and nanodet)."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.ramp))
        own = self.module.state_dict()
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                own[key].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                own[key].copy_(value)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
