"""Named model + training settings. Each preset is a plain function returning a :class:`Config`.

``*_r50_fpn`` presets follow the reference 1x COCO schedules; ``*_tiny`` presets are small
enough to train in minutes on a laptop CPU and are what the demo and the tests use.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from ..config import Config, ConfigError, apply_overrides, load_config
from .fpn import (fcos_resnet, fcos_r50_fpn, fcos_r50_fpn_torchvision, fcos_r18_fpn_tiny, retinanet_r50_fpn,
                  retinanet_r50_fpn_torchvision, retinanet_r50_fpn_v2_torchvision, retinanet_r18_fpn_tiny,
                  atss_r50_fpn, gfl_r50_fpn, gflv2_r50_fpn, atss_r18_fpn_tiny, gfl_r18_fpn_tiny, gflv2_r18_fpn_tiny,
                  fcos_r10_fpn_tiny)
from .light import (gfl_shufflenetv2_pan_nano, gflv2_mobilenetv3_pan_nano, gfl_csp_pan_n, gfl_csp_pan_s,
                    gfl_csp_pan_m, gflv2_csp_pan_s, gfl_regnetx400_pan_small)
from .keypoint import (centernet_r18, centernet_r50, centernet_r18_tiny, cornernet_hg104, cornernet_hg_tiny)
from .mmdet import (fcos_r50_fpn_mmdet, fcos_r50_fpn_plain_mmdet, retinanet_r50_fpn_mmdet, atss_r50_fpn_mmdet,
                    gfl_r50_fpn_mmdet, centernet_r18_mmdet, cornernet_hg104_mmdet)


PRESETS: dict[str, Callable[[], Config]] = {
    "fcos_r50_fpn": fcos_r50_fpn,
    "fcos_r18_fpn": fcos_resnet(18),
    "fcos_r34_fpn": fcos_resnet(34),
    "fcos_r101_fpn": fcos_resnet(101),
    "fcos_r50_fpn_torchvision": fcos_r50_fpn_torchvision,
    "fcos_r18_fpn_tiny": fcos_r18_fpn_tiny,
    "fcos_r10_fpn_tiny": fcos_r10_fpn_tiny,
    "retinanet_r50_fpn": retinanet_r50_fpn,
    "retinanet_r50_fpn_torchvision": retinanet_r50_fpn_torchvision,
    "retinanet_r50_fpn_v2_torchvision": retinanet_r50_fpn_v2_torchvision,
    "retinanet_r18_fpn_tiny": retinanet_r18_fpn_tiny,
    "atss_r50_fpn": atss_r50_fpn,
    "gfl_r50_fpn": gfl_r50_fpn,
    "gflv2_r50_fpn": gflv2_r50_fpn,
    "atss_r18_fpn_tiny": atss_r18_fpn_tiny,
    "gfl_r18_fpn_tiny": gfl_r18_fpn_tiny,
    "gflv2_r18_fpn_tiny": gflv2_r18_fpn_tiny,
    "gfl_shufflenetv2_pan_nano": gfl_shufflenetv2_pan_nano,
    "gflv2_mobilenetv3_pan_nano": gflv2_mobilenetv3_pan_nano,
    "gfl_csp_pan_n": gfl_csp_pan_n,
    "gfl_csp_pan_s": gfl_csp_pan_s,
    "gfl_csp_pan_m": gfl_csp_pan_m,
    "gflv2_csp_pan_s": gflv2_csp_pan_s,
    "gfl_regnetx400_pan_small": gfl_regnetx400_pan_small,
    "centernet_r18": centernet_r18,
    "centernet_r50": centernet_r50,
    "centernet_r18_tiny": centernet_r18_tiny,
    "cornernet_hg104": cornernet_hg104,
    "cornernet_hg_tiny": cornernet_hg_tiny,
    "fcos_r50_fpn_mmdet": fcos_r50_fpn_mmdet,
    "fcos_r50_fpn_plain_mmdet": fcos_r50_fpn_plain_mmdet,
    "retinanet_r50_fpn_mmdet": retinanet_r50_fpn_mmdet,
    "atss_r50_fpn_mmdet": atss_r50_fpn_mmdet,
    "gfl_r50_fpn_mmdet": gfl_r50_fpn_mmdet,
    "centernet_r18_mmdet": centernet_r18_mmdet,
    "cornernet_hg104_mmdet": cornernet_hg104_mmdet,
}


def get_preset(name: str) -> Config:
    """Config of preset ``name`` (a fresh object each call)."""
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model preset '{name}'.{hint} Run `anchorfree models` for the list.")
    return PRESETS[name]()


def describe_presets() -> list[tuple[str, str]]:
    """``(name, first docstring line)`` for every preset."""
    def first_sentence(doc: str) -> str:
        text = " ".join(doc.split())
        return text.split(". ")[0].rstrip(".") + "."

    return [(name, first_sentence(fn.__doc__ or "")) for name, fn in PRESETS.items()]


def model_config(model: str | Config, overrides: Sequence[str] = ()) -> Config:
    """The config of a preset name, a YAML file or a run folder (its ``config.yaml``), with ``key=value``
    ``overrides`` applied."""
    if isinstance(model, Config):
        cfg = copy.deepcopy(model)
    else:
        if model not in PRESETS and (Path(model) / "config.yaml").is_file():
            model = str(Path(model) / "config.yaml")
        cfg = get_preset(model) if model in PRESETS or not model.endswith((".yaml", ".yml")) else load_config(model)
    return apply_overrides(cfg, list(overrides))
