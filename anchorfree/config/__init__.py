"""Configuration as plain dataclasses: dumped to / loaded from YAML, overridden by ``key=value``.

A preset name (see :mod:`anchorfree.presets`) gives a :class:`Config`; ``head.center_sampling_radius=0``
or ``train.lr=0.005`` override single fields (and give a new config: a config is input, never run state). A key
without a section (``epochs=3``) is accepted when exactly one section has a field of that name.

The package: :mod:`.schema` (the sections), :mod:`.heads` (one section per head type and the one table of head
types), :mod:`.io` (YAML, dicts, overrides).
"""
from __future__ import annotations

from ..errors import ConfigError
from .heads import (HEAD_CHOICES, HEAD_CONFIGS, LEGACY_HEAD_FIELDS, NMS_MODES, ATSSHeadConfig, CenterNetHeadConfig,
                    CornerNetHeadConfig, DenseHeadConfig, FCOSHeadConfig, GFLHeadConfig, GFLv2HeadConfig, HeadConfig,
                    KeypointHeadConfig, RetinaNetHeadConfig, check_head_choices, convert_head, head_fields)
from .io import apply_overrides, from_dict, load_config, parse_yaml, save_config, set_field, to_dict
from .schema import (BACKBONE_CONFIGS, RESUME_APPLIED, AugmentConfig, BackboneConfig, Config, CSPBackboneConfig,
                     HourglassBackboneConfig, InputConfig, ModelConfig, NeckConfig, TrainConfig, backbone_class,
                     convert_backbone)

__all__ = ["ATSSHeadConfig", "AugmentConfig", "BACKBONE_CONFIGS", "BackboneConfig", "CSPBackboneConfig",
           "HourglassBackboneConfig", "backbone_class", "convert_backbone", "CenterNetHeadConfig", "Config", "ConfigError",
           "CornerNetHeadConfig", "DenseHeadConfig", "FCOSHeadConfig", "GFLHeadConfig", "GFLv2HeadConfig", "HEAD_CHOICES",
           "HEAD_CONFIGS", "HeadConfig", "InputConfig", "KeypointHeadConfig", "LEGACY_HEAD_FIELDS", "ModelConfig",
           "NMS_MODES", "NeckConfig", "RESUME_APPLIED", "RetinaNetHeadConfig", "TrainConfig", "apply_overrides",
           "check_head_choices", "convert_head", "from_dict", "head_fields", "load_config", "parse_yaml",
           "save_config", "set_field", "to_dict"]
