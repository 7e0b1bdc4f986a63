"""Configs in and out: YAML files, nested dicts, and ``key=value`` overrides (which give a new config)."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..errors import ConfigError
from .heads import (HEAD_CONFIGS, HeadConfig, _head_from_dict, _unread_message, check_head_choices, convert_head,
                    field_names, head_fields)
from .schema import (BACKBONE_CONFIGS, BackboneConfig, Config, backbone_class, backbone_unread_message,
                     convert_backbone)


class _Loader(yaml.SafeLoader):
    """YAML loader that also reads ``1e-3`` and ``1e8`` as floats (YAML 1.2), not as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where or cls.__name__}' must be a mapping, got {type(data).__name__}")
    if issubclass(cls, HeadConfig):
        return _head_from_dict({"type": cls.type, **data}, where)
    if issubclass(cls, BackboneConfig):
        return _backbone_from_dict({"name": cls.name, **data}, where)
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(_unknown_key_message(f"{where}{key}", key, names))
        sub = hints[key]
        if isinstance(sub, type) and issubclass(sub, HeadConfig):
            kwargs[key] = _head_from_dict(value or {}, f"{where}{key}.")
        elif isinstance(sub, type) and issubclass(sub, BackboneConfig):
            kwargs[key] = _backbone_from_dict(value or {}, f"{where}{key}.")
        elif dataclasses.is_dataclass(sub):
            kwargs[key] = from_dict(sub, value or {}, f"{where}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


_HOURGLASS_FIELDS = frozenset(f for f in field_names(BACKBONE_CONFIGS["hourglass"]) if f.startswith("hourglass_"))


def _backbone_from_dict(data: dict, where: str) -> BackboneConfig:
    """The section of the body ``data["name"]``. A ``config.yaml`` written when the backbone was one flat section
    (it lists every ``hourglass_*`` field whatever the body) loads by dropping the fields its body does not read."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where.rstrip('.')}' must be a mapping, got {type(data).__name__}")
    name = data.get("name", "resnet50")
    cls = backbone_class(name)
    names = field_names(cls)
    flat = _HOURGLASS_FIELDS <= set(data) and (name != "hourglass" or any(k.startswith("csp_") for k in data))
    if flat:
        data = {k: v for k, v in data.items() if k in names}
    for key in data:
        if key not in names:
            raise ConfigError(backbone_unread_message(name, key))
    return cls(**data)


def _unknown_key_message(full: str, key: str, names: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(sorted(names))}."
    return f"unknown config key '{full}'.{hint}"


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(path: str | Path) -> Config:
    """Load a YAML config written by :func:`save_config` (missing fields take defaults)."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    return from_dict(Config, data or {})


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """A new config: ``cfg`` with ``key=value`` strings applied (``cfg`` is left as it was); values are parsed
    as YAML (``0.01``, ``[8, 11]``, ``true``)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. train.lr=0.005")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError:
            value = raw
        set_field(cfg, _resolve_key(cfg, key.strip()), value)
    return cfg


def _resolve_key(cfg: Config, key: str) -> str:
    """Full dotted path of ``key``: given in full (``model.head.topk``) or as an unambiguous suffix
    (``head.topk``, ``topk``)."""
    sections = {f.name for f in dataclasses.fields(cfg)}
    head = key.split(".", 1)[0]
    if head in sections or ("." in key and difflib.get_close_matches(head, sorted(sections), n=1)):
        return key  # a full path, perhaps with a typo that set_field names
    found = [path for path in _all_field_paths(cfg) if path == key or path.endswith("." + key)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(f"override key '{key}' is ambiguous: write one of {', '.join(found)}")
    leaf = key.rsplit(".", 1)[-1]
    head = getattr(getattr(cfg, "model", None), "head", None)
    if isinstance(head, HeadConfig) and any(leaf in head_fields(c) for c in HEAD_CONFIGS.values()):
        raise ConfigError(_unread_message(head.type, leaf))
    backbone = getattr(getattr(cfg, "model", None), "backbone", None)
    if isinstance(backbone, BackboneConfig) and any(leaf in field_names(c) for c in BACKBONE_CONFIGS.values()):
        raise ConfigError(backbone_unread_message(backbone.name, leaf))
    leaves = {p.rsplit(".", 1)[-1] for p in _all_field_paths(cfg)}
    raise ConfigError(_unknown_key_message(key, leaf, leaves))


def _all_field_paths(obj: Any, prefix: str = "") -> list[str]:
    paths = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            paths += _all_field_paths(value, f"{prefix}{f.name}.")
        else:
            paths.append(prefix + f.name)
    return paths


def set_field(cfg: Any, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` on nested dataclasses, checking the key exists and the type is plausible."""
    *parents, leaf = dotted.split(".")
    obj, parent, walked = cfg, None, ""
    for part in parents:
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            names = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
            raise ConfigError(_unknown_key_message(walked + part, part, names))
        parent, obj, walked = obj, getattr(obj, part), f"{walked}{part}."
    names = {f.name for f in dataclasses.fields(obj)}
    if leaf not in names:
        if isinstance(obj, HeadConfig):
            raise ConfigError(_unread_message(obj.type, leaf))
        if isinstance(obj, BackboneConfig):
            raise ConfigError(backbone_unread_message(obj.name, leaf))
        raise ConfigError(_unknown_key_message(dotted, leaf, names))
    if isinstance(obj, HeadConfig) and leaf == "type":  # another head: a section of its own fields
        setattr(parent, parents[-1], convert_head(obj, str(value)))
        return
    if isinstance(obj, BackboneConfig) and leaf == "name" and backbone_class(value) is not type(obj):
        setattr(parent, parents[-1], convert_backbone(obj, str(value)))  # another kind of body: its own section
        return
    current = getattr(obj, leaf)
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"'{dotted}' is a section; set one of its fields, e.g. {dotted}.{next(iter(vars(current)))}=...")
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"'{dotted}' expects true or false, got {value!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"'{dotted}' expects a number, got {value!r}")
        value = float(value) if isinstance(current, float) else value
    if isinstance(current, list) and not isinstance(value, list):
        value = [value]
    setattr(obj, leaf, value)
    if isinstance(obj, HeadConfig):
        check_head_choices(obj)
