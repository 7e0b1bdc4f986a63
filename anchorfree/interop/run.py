"""A converted model as a run folder that ``eval``, ``predict``, ``export`` and :class:`anchorfree.Model` read."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import Config, save_config
from ..inference.checkpoint import atomic_save, make_checkpoint
from ..errors import CheckpointError
from ..models.detector import Detector


@dataclass
class Conversion:
    """A converted model with its config and where it came from."""

    model: Detector
    config: Config
    source: str
    library: str  # mmdetection | torchvision
    head: str
    class_names: list[str]
    label_to_cat_id: dict[int, int]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        params = sum(p.numel() for p in self.model.parameters()) / 1e6
        return (f"{self.library} {self.head} → preset {self.config.model.name} ({params:.1f} M parameters, "
                f"{len(self.class_names)} classes: {', '.join(self.class_names[:5])}"
                f"{', …' if len(self.class_names) > 5 else ''}); " + "; ".join(self.notes))


def check_class_count(overrides: Sequence[str], found: int, source: str) -> None:
    """Refuse a ``num_classes`` override that differs from the class count of the converted weights: conversion
    keeps every tensor, so it cannot change the count (fine-tune the converted run on data with the new classes)."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip().split(".")[-1] == "num_classes" and value.strip() != str(found):
            raise CheckpointError(f"{item}: the checkpoint's classifier has {found} classes and conversion keeps its "
                                  f"weights as they are, so the class count cannot be changed here; drop the override "
                                  f"(the converted run has {found} classes) and fine-tune it on data with your classes")


def write_run(conversion: Conversion, out: str | Path) -> Path:
    """Write ``out/best.pt`` (an anchorfree checkpoint, written atomically), ``out/config.yaml`` and
    ``out/conversion.json``; refuses a folder that already holds a checkpoint."""
    out = Path(out)
    if (out / "best.pt").exists() or (out / "last.pt").exists():
        raise CheckpointError(f"{out} already holds a checkpoint; choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = conversion.config
    state = make_checkpoint(cfg, conversion.model.state_dict(), class_names=conversion.class_names,
                            label_to_cat_id=conversion.label_to_cat_id,
                            converted_from={"library": conversion.library, "source": conversion.source})
    atomic_save(state, out / "best.pt")
    save_config(cfg, out / "config.yaml")
    (out / "conversion.json").write_text(json.dumps({
        "library": conversion.library, "source": conversion.source, "head": conversion.head,
        "preset": cfg.model.name, "num_classes": cfg.model.num_classes, "class_names": conversion.class_names,
        "label_to_cat_id": conversion.label_to_cat_id, "notes": conversion.notes}, indent=2))
    return out
