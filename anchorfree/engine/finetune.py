"""Start a training from trained weights (``train.weights`` / ``anchorfree train --weights``): fine-tuning.

The source is a run folder, an anchorfree ``.pt`` checkpoint or a run written by ``anchorfree convert``. Every
tensor whose name and shape match the new model is loaded (the EMA weights when the source has them). The
per-class output layers (``Head.CLASS_LAYERS``: the classifier convs and their prior-probability bias) are
re-initialised when the class lists differ, keeping the rows of the class names both lists share (COCO's
``person`` → the dataset's ``person``); any other missing, unexpected or mismatched tensor refuses the load,
naming the first keys and the preset the weights fit. Unlike ``--resume``, optimizer state, epoch and schedule
start fresh.

``train.freeze`` stops gradients of the backbone (``backbone``) or of the backbone and neck (``neck``); their
BatchNorm layers stay in eval mode, as mmdetection's frozen stages (``norm_eval``) do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..config import Config
from ..errors import CheckpointError, ConfigError
from ..models.detector import Detector
from .recipe import get_path
from ..inference.checkpoint import checkpoint_config, read_checkpoint, state_differences

FREEZE_CHOICES = {"none": (), "backbone": ("backbone",), "neck": ("backbone", "neck")}
# model conventions that weights only make sense with: a differing value is worth a warning
_CONVENTIONS = ("input.mean", "input.std", "input.channel_order", "backbone.style")


@dataclass
class Transfer:
    """What :func:`load_pretrained` did, for train.log and the screen."""

    source: str
    preset: str
    loaded: int = 0
    reinitialised: list[str] = field(default_factory=list)
    kept_classes: list[str] = field(default_factory=list)
    source_classes: int = 0
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"weights: {self.loaded} tensors loaded from {self.source} (trained as {self.preset}); optimizer, "
               "epoch and schedule start fresh"]
        if self.reinitialised:
            why = (f"the class list differs ({self.source_classes} classes in the weights); rows kept for "
                   f"{len(self.kept_classes)} shared class name(s)"
                   + (f": {', '.join(self.kept_classes[:8])}{', …' if len(self.kept_classes) > 8 else ''}"
                      if self.kept_classes else ", the others start from the prior-probability initialisation"))
            out.append(f"weights: re-initialised {', '.join(self.reinitialised)} because {why}")
        return out + [f"weights: warning: {w}" for w in self.warnings]


def load_pretrained(model: Detector, cfg: Config, path: str | Path) -> Transfer:
    """Load the weights of ``path`` into ``model`` (built from ``cfg``, with the dataset's classes)."""
    ckpt = read_checkpoint(path)
    source_cfg = checkpoint_config(ckpt)
    state = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt["model"]
    source_names = list(ckpt.get("class_names") or source_cfg.model.class_names
                        or [str(i) for i in range(source_cfg.model.num_classes)])
    target_names = list(cfg.model.class_names or [str(i) for i in range(cfg.model.num_classes)])
    report = Transfer(ckpt["path"] + (" (EMA)" if ckpt.get("ema") is not None else ""), source_cfg.model.name,
                      source_classes=len(source_names))
    own = model.state_dict()
    class_prefixes = tuple(f"head.{name}." for name in model.head.CLASS_LAYERS)
    missing, unexpected, mismatched = state_differences(own, state)
    mismatched = [k for k in mismatched if not k.startswith(class_prefixes)]  # class layers: rows mapped below
    if missing or unexpected or mismatched:
        detail = "; ".join(part for part in (
            f"shapes differ in {', '.join(f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in mismatched[:3])}"
            if mismatched else "",
            f"missing from the weights: {', '.join(missing[:3])}" if missing else "",
            f"not in this model: {', '.join(unexpected[:3])}" if unexpected else "") if part)
        raise CheckpointError(
            f"--weights {path}: the weights were trained as {source_cfg.model.name} and do not fit "
            f"{cfg.model.name} ({detail}). Train the preset that fits: anchorfree train {source_cfg.model.name} "
            f"--weights {path} … (or pass the run's config.yaml), or start without --weights")
    new_state = dict(state)
    if source_names != target_names:
        rows = {name: i for i, name in enumerate(source_names)}
        report.kept_classes = [n for n in target_names if n in rows]
        for key in [k for k in own if k.startswith(class_prefixes)]:
            per_prior, rem = divmod(own[key].shape[0], len(target_names))
            if rem or state[key].shape[0] != per_prior * len(source_names) or state[key].shape[1:] != own[key].shape[1:]:
                raise CheckpointError(f"--weights {path}: {key} has shape {tuple(state[key].shape)}, which is not "
                                      f"{len(source_names)} classes of the layer {tuple(own[key].shape)} of this model")
            tensor = own[key].clone()
            for j, name in enumerate(target_names):
                if name in rows:
                    for a in range(per_prior):  # channel a * classes + class (the heads' anchor-major layout)
                        tensor[a * len(target_names) + j] = state[key][a * len(source_names) + rows[name]]
            new_state[key] = tensor
            report.reinitialised.append(key)
    model.load_state_dict(new_state)
    report.loaded = len(own) - len(report.reinitialised)
    for dotted in _CONVENTIONS:
        before, after = get_path(source_cfg.model, dotted), get_path(cfg.model, dotted)
        if before != after:
            report.warnings.append(f"the weights were trained with model.{dotted}={before!r}, this config has "
                                   f"{after!r}; fine-tune with the source run's config.yaml to keep its conventions")
    return report


def freeze_prefixes(value: str) -> tuple[str, ...]:
    """The module names ``train.freeze`` stops: ``none``, ``backbone`` or ``neck`` (backbone and neck)."""
    if value not in FREEZE_CHOICES:
        raise ConfigError(f"train.freeze={value!r}: choose none, backbone or neck (backbone and neck); to freeze the "
                          "first N backbone stages only, use model.backbone.frozen_stages=N")
    return FREEZE_CHOICES[value]


def freeze(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Stop the gradients of the parameters under ``prefixes``; returns how many tensors were frozen."""
    count = 0
    for name, p in model.named_parameters():
        if name.split(".")[0] in prefixes and p.requires_grad:
            p.requires_grad_(False)
            count += 1
    return count


def keep_frozen_norms(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Put the BatchNorm layers under ``prefixes`` in eval mode (call after ``model.train()``)."""
    for name in prefixes:
        for module in getattr(model, name).modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


__all__ = ["Transfer", "load_pretrained", "freeze_prefixes", "freeze", "keep_frozen_norms",
           "FREEZE_CHOICES"]
