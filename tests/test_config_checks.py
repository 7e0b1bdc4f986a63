"""Config values are checked by type and range before anything runs; every problem is listed with its key,
its value and what is allowed."""
import pytest

from anchorfree.config import apply_overrides
from anchorfree.config_checks import config_problems, validate_config
from anchorfree.errors import ConfigError
from anchorfree.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    assert config_problems(get_preset(name)) == []


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", "train.lr=-1.0: must be a number > 0"),
    ("train.lr=0", "train.lr=0.0: must be a number > 0"),
    ("train.batch_size=0", "train.batch_size=0: must be an integer >= 1"),
    ("train.workers=-2", "train.workers=-2: must be an integer >= 0"),
    ("train.momentum=1", "train.momentum=1.0: must be a number >= 0 and < 1"),
    ("train.augment.hflip_prob=1.5", "train.augment.hflip_prob=1.5: must be a number >= 0 and <= 1"),
    ("train.augment.mosaic_prob=-0.1", "train.augment.mosaic_prob=-0.1: must be a number >= 0 and <= 1"),
    ("input.min_size=8", "model.input.min_size=8: must be an integer >= 16"),
    ("input.std=[0.2,0.2,0]", "model.input.std=[0.2, 0.2, 0]: must be a list of 3 numbers > 0 (element 2 is 0)"),
    ("head.score_thresh=1.5", "model.head.score_thresh=1.5: must be a number >= 0 and <= 1"),
    ("head.strides=[8,0,32,64,128]", "model.head.strides=[8, 0, 32, 64, 128]: must be a list of integers >= 1"),
    ("head.prior_prob=1", "model.head.prior_prob=1.0: must be a number > 0 and < 1"),
    ("model.num_classes=0", "model.num_classes=0: must be an integer >= 1"),
    ("train.epochs=0", "train.epochs=0 would train nothing"),
])
def test_out_of_range_values_are_named(override, message):
    cfg = apply_overrides(get_preset("fcos_r10_fpn_tiny"), [override])
    problems = config_problems(cfg)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_every_problem_is_listed_at_once():
    cfg = apply_overrides(get_preset("atss_r18_fpn_tiny"), ["train.lr=-1", "train.batch_size=0", "head.atss_topk=0"])
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    text = str(e.value)
    assert "train.lr=-1.0" in text and "train.batch_size=0" in text and "model.head.atss_topk=0" in text


@pytest.mark.parametrize("overrides, message", [
    (["input.min_size=640", "input.max_size=320"], "model.input.min_size=640 is larger than model.input.max_size=320"),
    (["head.strides=[8,16]"], "regress_ranges has 5 [lo, hi] pairs but model.head.strides has 2 levels"),
    (["head.strides=[16,8,32,64,128]"], "model.head.strides=[16, 8, 32, 64, 128] must be increasing"),
    (["train.epochs=6"], "train.milestones=[8, 11] must be increasing epochs within train.epochs=6"),
])
def test_relations_between_fields(overrides, message):
    preset = "retinanet_r50_fpn" if "train.epochs=6" in overrides else "fcos_r10_fpn_tiny"
    cfg = apply_overrides(get_preset(preset), overrides)
    assert any(message in p for p in config_problems(cfg)), config_problems(cfg)


def test_a_field_of_another_head_is_not_checked():
    # the keypoint heads have no strides list: nothing to check, no error
    assert config_problems(get_preset("centernet_r18_tiny")) == []


def test_choices_are_checked_from_one_table_and_listed_together():
    """A value outside a field's choices (CHOICES, next to RULES) is reported with the others, naming the choices;
    modules built without a whole config give the same message from the same table."""
    from anchorfree.config_checks import CHOICES
    from anchorfree.models.detector import Detector

    cfg = apply_overrides(get_preset("fcos_r10_fpn_tiny"), ["train.optimizer=lion", "model.input.resize=cv2",
                                                              "train.freeze=head"])
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    message = str(error.value)
    assert "train.optimizer='lion': must be one of sgd, adamw, adam" in message
    assert "model.input.resize='cv2': must be one of torchvision, mmdet" in message
    assert "train.freeze='head': must be one of none, backbone, neck" in message
    assert CHOICES["model.head.nms"] == ("classwise", "agnostic", "soft_gaussian", "soft_linear", "none")
    with pytest.raises(ConfigError, match="input.resize must be one of torchvision, mmdet, got 'cv2'"):
        Detector(cfg.model)
