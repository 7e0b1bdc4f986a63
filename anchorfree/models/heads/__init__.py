"""Heads: one file per method over two small bases (:mod:`.base` the interface, :mod:`.dense` the FPN heads'
shared towers/priors/decoding); :mod:`.keypoint` holds what CenterNet and CornerNet share."""
from __future__ import annotations

from .atss import ATSSHead
from .base import Head
from .centernet import CenterNetHead
from .cornernet import CornerNetHead
from .dense import DenseHead
from .fcos import FCOSHead
from .gfl import GFLHead, GFLv2Head
from .retinanet import RetinaNetHead

HEADS: dict[str, type[Head]] = {"fcos": FCOSHead, "retinanet": RetinaNetHead, "atss": ATSSHead, "gfl": GFLHead,
                                "gflv2": GFLv2Head, "centernet": CenterNetHead, "cornernet": CornerNetHead}

__all__ = ["HEADS", "Head", "DenseHead", "FCOSHead", "RetinaNetHead", "ATSSHead", "GFLHead", "GFLv2Head",
           "CenterNetHead", "CornerNetHead"]
