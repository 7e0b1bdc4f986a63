"""Config overrides (key=value), YAML save/load round trips and error messages."""
import dataclasses
from pathlib import Path

import pytest

from anchorfree.config import (Config, FCOSHeadConfig, TrainConfig, apply_overrides, from_dict, load_config,
                               save_config, to_dict)
from anchorfree.errors import ConfigError
from anchorfree.presets import PRESETS, get_preset


# ---- apply_overrides ------------------------------------------------------------------------

def test_dotted_override():
    cfg = get_preset("fcos_r50_fpn")
    assert cfg.model.head.center_sampling_radius == 1.5
    cfg = apply_overrides(cfg, ["model.head.center_sampling_radius=0", "train.lr=0.005"])
    assert cfg.model.head.center_sampling_radius == 0.0
    assert isinstance(cfg.model.head.center_sampling_radius, float)  # int 0 coerced to the field's float
    assert cfg.train.lr == 0.005
    # nothing else changed
    expected = get_preset("fcos_r50_fpn")
    expected.model.head.center_sampling_radius = 0.0
    expected.train.lr = 0.005
    assert cfg == expected


def test_dotted_suffix_key_is_resolved_when_unambiguous():
    # "head.center_sampling_radius" is the tail of exactly one path: model.head.center_sampling_radius
    cfg = Config()
    cfg = apply_overrides(cfg, ["head.center_sampling_radius=0", "input.min_size=160", "augment.hflip_prob=0"])
    assert cfg.model.head.center_sampling_radius == 0.0
    assert cfg.model.input.min_size == 160 and cfg.train.augment.hflip_prob == 0.0
    with pytest.raises(ConfigError, match=r"unknown config key 'head.center_sampling'.*center_sampling_radius"):
        apply_overrides(cfg, ["head.center_sampling=0"])
    cfg = apply_overrides(cfg, ["backbone.norm=gn"])
    assert cfg.model.backbone.norm == "gn" and cfg.model.head.norm == Config().model.head.norm


def test_shorthand_override():
    cfg = Config()
    cfg = apply_overrides(cfg, ["epochs=3", "center_sampling_radius=0", "lr=0.02"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.model.head.center_sampling_radius == 0.0
    assert cfg.train.lr == 0.02
    # whitespace around the key is ignored
    cfg = apply_overrides(cfg, [" epochs =5"])
    assert cfg.train.epochs == 5


def test_list_values():
    cfg = Config()
    cfg = apply_overrides(cfg, ["train.milestones=[2,3]", "train.augment.multiscale_min_sizes=[640, 672]"])
    assert cfg.train.milestones == [2, 3]
    assert cfg.train.augment.multiscale_min_sizes == [640, 672]
    # a scalar for a list field becomes a one-element list
    cfg = apply_overrides(cfg, ["train.milestones=7"])
    assert cfg.train.milestones == [7]
    cfg = apply_overrides(cfg, ["model.head.regress_ranges=[[-1, 100], [100, 100000000.0]]"])
    assert cfg.model.head.regress_ranges == [[-1, 100], [100, 1e8]]


def test_bool_parsing():
    cfg = Config()
    assert cfg.train.amp is True and cfg.train.ema is False
    cfg = apply_overrides(cfg, ["train.amp=false", "ema=true", "model.head.norm_on_bbox=False"])
    assert cfg.train.amp is False and cfg.train.ema is True and cfg.model.head.norm_on_bbox is False
    # a number is not a bool
    with pytest.raises(ConfigError, match="expects true or false"):
        apply_overrides(cfg, ["train.amp=1"])
    with pytest.raises(ConfigError, match="expects true or false"):
        apply_overrides(cfg, ["train.amp=maybe"])


def test_string_values():
    cfg = Config()
    cfg = apply_overrides(cfg, ["model.backbone.name=resnet18", "optimizer=adamw", "model.backbone.weights=/tmp/r18.pth"])
    assert cfg.model.backbone.name == "resnet18"
    assert cfg.train.optimizer == "adamw"
    assert cfg.model.backbone.weights == "/tmp/r18.pth"
    # value containing '=' is kept whole (split on the first '=' only)
    cfg = apply_overrides(cfg, ["model.name=a=b"])
    assert cfg.model.name == "a=b"


def test_scientific_notation_numbers():
    # learning rates and weight decays are commonly written 1e-3 / 5e-4; PyYAML (YAML 1.1) reads
    # "1e-3" as a *string*, so the override must still give the float 0.001
    cfg = Config()
    cfg = apply_overrides(cfg, ["train.lr=1e-3", "train.weight_decay=5e-4", "model.head.prior_prob=1.0e-2"])
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == 0.0005
    assert cfg.model.head.prior_prob == 0.01


def test_scientific_notation_inside_list_override():
    # list fields are not type-checked: "1e8" / "1.0e8" would be stored as strings inside the list
    cfg = Config()
    cfg = apply_overrides(cfg, ["model.head.regress_ranges=[[-1, 64], [64, 1e8]]", "train.milestones=[1.0e1, 11]"])
    assert cfg.model.head.regress_ranges == [[-1, 64], [64, 1e8]]
    assert cfg.train.milestones == [10.0, 11]


def test_scientific_notation_in_yaml_file(tmp_path):
    # a hand-written config file with `lr: 1e-3` must give the number 0.001, not the string '1e-3'
    path = tmp_path / "sci.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 5.0e-4\n")
    cfg = load_config(path)
    assert cfg.train.weight_decay == 0.0005  # "5.0e-4" is a YAML 1.1 float
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)


def test_typo_suggests_key():
    cfg = Config()
    with pytest.raises(ConfigError, match="Did you mean: epochs"):
        apply_overrides(cfg, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="Did you mean: epochs"):
        apply_overrides(cfg, ["epoch=3"])
    with pytest.raises(ConfigError, match="Did you mean: center_sampling_radius"):
        apply_overrides(cfg, ["model.head.center_sampling_radiu=0"])
    with pytest.raises(ConfigError, match="Did you mean: model"):
        apply_overrides(cfg, ["modle.head.num_convs=2"])
    assert cfg == Config()  # failed overrides changed nothing


def test_ambiguous_shorthand():
    cfg = Config()
    # 'norm' is both model.backbone.norm and model.head.norm
    with pytest.raises(ConfigError, match="ambiguous") as err:
        apply_overrides(cfg, ["norm=gn"])
    assert "model.backbone.norm" in str(err.value) and "model.head.norm" in str(err.value)
    with pytest.raises(ConfigError, match="ambiguous"):
        apply_overrides(cfg, ["name=x"])  # model.name / model.backbone.name
    assert cfg == Config()


def test_type_errors():
    cfg = Config()
    with pytest.raises(ConfigError, match="expects a number"):
        apply_overrides(cfg, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="expects a number"):
        apply_overrides(cfg, ["epochs=true"])  # bool is not a number
    with pytest.raises(ConfigError, match="expects a number"):
        apply_overrides(cfg, ["train.epochs=[1, 2]"])
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(cfg, ["model.head=3"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["train.lr"])
    assert cfg == Config()


# ---- from_dict / YAML -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_yaml_round_trip(name, tmp_path):
    cfg = get_preset(name)
    path = tmp_path / f"{name}.yaml"
    save_config(cfg, path)
    loaded = load_config(path)
    assert loaded == cfg
    assert dataclasses.is_dataclass(loaded.model.head) and isinstance(loaded.train.augment, type(cfg.train.augment))
    assert to_dict(loaded) == to_dict(cfg)


def test_round_trip_after_overrides(tmp_path):
    cfg = apply_overrides(get_preset("fcos_r18_fpn_tiny"),
                          ["train.milestones=[2,3]", "model.head.regress_ranges=[[0, 64], [64, .inf]]",
                           "model.class_names=[cat, dog]", "train.lr=0.00001"])
    save_config(cfg, tmp_path / "c.yaml")
    loaded = load_config(tmp_path / "c.yaml")
    assert loaded == cfg
    assert loaded.model.head.regress_ranges[1][1] == float("inf")
    assert loaded.train.lr == 1e-5


def test_partial_yaml_takes_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("train:\n  epochs: 3\nmodel:\n  head:\n    num_convs: 2\n")
    cfg = load_config(path)
    expected = Config()
    expected.train.epochs = 3
    expected.model.head.num_convs = 2
    assert cfg == expected
    # an empty file is the default config
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == Config()


def test_from_dict_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch'.*Did you mean: epochs"):
        from_dict(Config, {"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        from_dict(Config, {"train": [1, 2]})
    head = from_dict(FCOSHeadConfig, {"num_convs": 1, "strides": [8]})
    assert head == FCOSHeadConfig(num_convs=1, strides=[8])
    assert from_dict(TrainConfig, {}) == TrainConfig()


def test_load_invalid_yaml_mentions_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  milestones: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_load_missing_or_non_mapping_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_config(missing)
    assert str(missing) in str(err.value)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(lst)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  hed:\n    num_convs: 2\n")
    with pytest.raises(ConfigError, match="Did you mean: head"):
        load_config(typo)


# ---- per-head sections ------------------------------------------------------------------------
def test_a_field_the_head_does_not_read_is_an_error_naming_the_head():
    cfg = get_preset("gfl_shufflenetv2_pan_nano")
    for override in ("head.center_sampling_radius=0", "model.head.center_sampling_radius=0",
                     "center_sampling_radius=0"):
        with pytest.raises(ConfigError) as err:
            apply_overrides(cfg, [override])
        message = str(err.value)
        assert "gfl head does not read 'head.center_sampling_radius'" in message
        assert "read by: fcos" in message and "reg_max" in message  # who reads it, and the valid fields
    with pytest.raises(ConfigError, match="gfl head does not read 'head.focal_alpha'"):
        cfg.model.head.focal_alpha = 0.5  # also in Python: a section holds only its head's fields


def test_head_type_override_switches_to_that_heads_section():
    cfg = apply_overrides(get_preset("fcos_r18_fpn_tiny"), ["head.type=gfl", "head.reg_max=7"])
    head = cfg.model.head
    assert type(head).__name__ == "GFLHeadConfig" and head.reg_max == 7
    assert head.feat_channels == 64 and head.num_convs == 2  # the preset's changed towers carry over
    assert head.bbox_weight == 2.0 and head.prior_offset == 0.0  # the rest takes GFL's defaults
    assert not hasattr(head, "center_sampling_radius")
    with pytest.raises(ConfigError, match="cannot become a fcos one in place"):
        head.type = "fcos"


def test_head_section_yaml_round_trip(tmp_path):
    for name in ("cornernet_hg_tiny", "centernet_r18_tiny", "retinanet_r18_fpn_tiny"):
        cfg = get_preset(name)
        save_config(cfg, tmp_path / f"{name}.yaml")
        assert load_config(tmp_path / f"{name}.yaml") == cfg


def test_config_yaml_of_the_flat_head_section_still_loads():
    """A run folder's config.yaml written before the per-head sections holds all ~50 head fields; it loads as
    the head's own section (the fields that head never read are dropped)."""
    loaded = load_config(Path(__file__).parent / "fixtures" / "legacy_flat_head_config.yaml")
    preset = get_preset("gfl_shufflenetv2_pan_nano")
    # the file predates train.recipe: it loads as what its run trained with, the preset's own recipe
    assert loaded.train.recipe == "preset" and preset.train.recipe == "auto"
    preset.train.recipe = "preset"
    assert loaded == preset


def test_a_user_yaml_with_a_field_of_another_head_is_refused(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  head:\n    type: centernet\n    reg_max: 7\n")
    with pytest.raises(ConfigError, match="centernet head does not read 'head.reg_max'"):
        load_config(path)
    path.write_text("model:\n  head:\n    type: centernet\n    nms: hard\n")
    with pytest.raises(ConfigError, match="head.nms must be one of classwise"):
        load_config(path)


def test_every_head_type_has_its_config_its_head_and_a_preset():
    """The head types' tables agree: a config section, a head class built from it, and at least one preset."""
    from anchorfree.config import HEAD_CONFIGS
    from anchorfree.models.detector import build_detector
    from anchorfree.models.heads import HEADS
    from anchorfree.presets import PRESETS

    assert set(HEADS) == set(HEAD_CONFIGS)
    preset_types = {}
    for name in PRESETS:
        preset_types.setdefault(get_preset(name).model.head.type, name)
    assert set(preset_types) == set(HEADS)
    for head_type, cls in HEAD_CONFIGS.items():
        assert cls().type == head_type
        cfg = get_preset(preset_types[head_type])
        assert isinstance(cfg.model.head, cls)
    small = get_preset("gfl_shufflenetv2_pan_nano").model
    assert type(build_detector(small).head) is HEADS["gfl"]


def test_backbone_sections_hold_what_their_body_reads_and_old_flat_sections_still_load(tmp_path):
    """One backbone section per kind of body, as for heads: a ShuffleNet run's config.yaml lists no hourglass_* or
    csp_* field, a field of another body is refused naming the body that reads it, ``backbone.name=csp`` switches
    the section, and a config.yaml written with the old flat section loads."""
    import yaml

    from anchorfree.config import CSPBackboneConfig, HourglassBackboneConfig, save_config

    nano = get_preset("gfl_shufflenetv2_pan_nano")
    path = tmp_path / "nano.yaml"
    save_config(nano, path)
    backbone = yaml.safe_load(path.read_text())["model"]["backbone"]
    assert backbone["name"] == "shufflenet_v2_x1_0" and not any(k.startswith(("hourglass_", "csp_")) for k in backbone)
    with pytest.raises(ConfigError, match=r"the shufflenet_v2_x1_0 backbone does not read 'backbone.csp_widths' "
                                          r"\('csp_widths' is read by backbone.name=csp\)"):
        apply_overrides(nano, ["model.backbone.csp_widths=[8, 16, 32, 64, 128]"])
    with pytest.raises(ConfigError, match="does not read 'backbone.hourglass_stacks'"):
        apply_overrides(nano, ["hourglass_stacks=3"])
    csp = apply_overrides(nano, ["model.backbone.name=csp", "model.backbone.csp_depths=[1, 1, 1, 1]"])
    assert isinstance(csp.model.backbone, CSPBackboneConfig) and csp.model.backbone.csp_depths == [1, 1, 1, 1]
    assert (csp.model.backbone.norm, csp.model.backbone.frozen_stages) == ("bn", 0)  # kept from the section
    assert isinstance(get_preset("cornernet_hg_tiny").model.backbone, HourglassBackboneConfig)
    # the old flat section: every field of every body, whatever the name
    flat = {**backbone, "hourglass_stacks": 2, "hourglass_depth": 5, "hourglass_channels": [256] * 6,
            "hourglass_blocks": [2] * 6, "hourglass_feat_channels": 256, "csp_widths": [16, 32, 64, 128, 256],
            "csp_depths": [1, 2, 2, 1], "csp_activation": "silu"}
    data = yaml.safe_load(path.read_text())
    data["model"]["backbone"] = flat
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    assert load_config(old).model.backbone == nano.model.backbone
    data["model"]["backbone"] = {**backbone, "csp_widths": [16, 32, 64, 128, 256]}  # a user's mistake, not old
    old.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="does not read 'backbone.csp_widths'"):
        load_config(old)
