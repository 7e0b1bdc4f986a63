"""The sections of a :class:`Config`: model (backbone, neck, head, input) and training (augmentation included)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .heads import FCOSHeadConfig, HeadConfig, field_names


@dataclass
class BackboneConfig:
    """A torchvision body (ResNet, ShuffleNetV2, MobileNetV3, RegNet, EfficientNet), and what every body reads.
    ``weights``: ImageNet weights, ``imagenet`` (torchvision's default weights of the body, through its weights API
    and torch.hub's cache), a torchvision weights name (``IMAGENET1K_V1``) or a local state-dict path.

    One section per kind of body, as for heads: ``name=hourglass`` gives :class:`HourglassBackboneConfig`,
    ``name=csp`` :class:`CSPBackboneConfig`; a section holds only the fields its body reads."""

    name: str = "resnet50"  # resnet10 | resnet18 | resnet34 | resnet50 | resnet101 | shufflenet_v2_x0_5 |
    #                         shufflenet_v2_x1_0 | mobilenet_v3_large | mobilenet_v3_small | regnet_x_400mf |
    #                         regnet_y_400mf | efficientnet_b0 | hourglass | csp
    norm: str = "frozen_bn"  # frozen_bn | bn | gn (gn: ResNet only)
    weights: str | None = None
    frozen_stages: int = 1  # 0: nothing frozen, 1: stem + layer1 (as in the references), ... 4
    out_levels: list[int] = field(default_factory=lambda: [3, 4, 5])  # C3..C5 (stride 8..32)
    # conventions of weights trained elsewhere
    style: str = "pytorch"  # ResNet bottlenecks: pytorch (stride on the 3x3 conv) | caffe (on the first 1x1 conv,
    #                         the Detectron / mmdetection "caffe" ResNets of the FCOS reference checkpoints)
    norm_eps: float | None = None  # eps of every BatchNorm in the body; None keeps the body's own (1e-5 for ResNet,
    #                                 as mmdetection; 1e-3 for torchvision's MobileNetV3 / EfficientNet)

    def __setattr__(self, name: str, value: Any) -> None:
        # a backbone section holds only the fields its body reads: setting another one is a mistake
        if name not in field_names(type(self)):
            raise ConfigError(backbone_unread_message(self.name, name))
        if name == "name" and "name" in self.__dict__ and backbone_class(value) is not type(self):
            raise ConfigError(f"a {self.name} backbone section cannot become a {value} one in place; use "
                              f"convert_backbone(section, '{value}') or the override model.backbone.name={value}")
        object.__setattr__(self, name, value)


@dataclass
class HourglassBackboneConfig(BackboneConfig):
    """``name=hourglass`` (CornerNet's HG-104 by default): stacks of recursive hourglass modules, one map each."""

    name: str = "hourglass"
    hourglass_stacks: int = 2
    hourglass_depth: int = 5  # down-samplings inside one hourglass module
    hourglass_channels: list[int] = field(default_factory=lambda: [256, 256, 384, 384, 384, 512])
    hourglass_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2, 4])
    hourglass_feat_channels: int = 256


@dataclass
class CSPBackboneConfig(BackboneConfig):
    """``name=csp``: a cross-stage-partial body of plain 3x3 convs (:mod:`anchorfree.models.backbones.csp`)."""

    name: str = "csp"
    csp_widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # stem, C2..C5 channels
    csp_depths: list[int] = field(default_factory=lambda: [1, 2, 2, 1])  # bottlenecks per C2f block, C2..C5
    csp_activation: str = "silu"  # relu | leaky_relu | hardswish | silu


# the bodies with a section of their own; any other name is a torchvision body (BackboneConfig)
BACKBONE_CONFIGS: dict[str, type[BackboneConfig]] = {"hourglass": HourglassBackboneConfig, "csp": CSPBackboneConfig}


def backbone_class(name: str) -> type[BackboneConfig]:
    """The section class of the body ``name``."""
    return BACKBONE_CONFIGS.get(str(name), BackboneConfig)


def backbone_unread_message(body: str, key: str) -> str:
    fields = sorted(field_names(backbone_class(body)))
    readers = [n for n, cls in BACKBONE_CONFIGS.items() if key in field_names(cls)]
    where = f" ('{key}' is read by backbone.name={' or '.join(readers)})" if readers else ""
    return f"the {body} backbone does not read 'backbone.{key}'{where}. Fields of the {body} backbone: {', '.join(fields)}"


def convert_backbone(section: BackboneConfig, name: str) -> BackboneConfig:
    """``section`` as the section of body ``name`` (what ``model.backbone.name=csp`` does): a field both read keeps
    its value where it was changed from the old section's default; every other field takes the new default."""
    target = backbone_class(name)
    source_default = type(section)()
    shared = (field_names(target) & field_names(type(section))) - {"name"}
    changed = {k for k in shared if getattr(section, k) != getattr(source_default, k)}
    return target(name=name, **{k: copy.deepcopy(getattr(section, k)) for k in changed})


@dataclass
class NeckConfig:
    """FPN producing P3..P7 (Lin et al. 2017; RetinaNet/FCOS add P6, P7 by stride-2 convs), or a slim
    PAN (Liu et al. 2018) with an extra bottom-up path, as nanodet's, for the light presets."""

    type: str = "fpn"  # fpn | pan | csp_pan (C2f merge blocks, see necks/csp_pan.py) | upconv (CenterNet: one stride-4 map) | none (the backbone's maps: Hourglass)
    out_channels: int = 256
    num_extra_levels: int = 2  # P6, P7 (PAN: stride-2 blocks on its last output)
    extra_from: str = "p5"  # FPN: p5 (FCOS, torchvision) | c5 (RetinaNet paper)
    relu_before_extra: bool = True  # FPN: ReLU between P6 and P7 conv
    block: str = "dwconv"  # PAN block per output: dwconv (dw 3x3-BN-act, pw 1x1-BN-act) | conv (3x3-BN-act) | none
    downsample: str = "interp"  # PAN bottom-up: interp (bilinear, nanodet) | conv (stride-2 block, PANet)
    activation: str = "leaky_relu"  # PAN: relu | leaky_relu (slope 0.1) | hardswish | silu
    csp_depth: int = 1  # csp_pan: bottlenecks per C2f merge block
    upconv_channels: list[int] = field(default_factory=lambda: [256, 128, 64])  # upconv: channels per stage
    upconv_kernels: list[int] = field(default_factory=lambda: [4, 4, 4])  # upconv: transposed-conv kernel per stage


@dataclass
class InputConfig:
    """Network input: resize rule (torchvision's min/max size), normalisation, padding."""

    min_size: int = 800
    max_size: int = 1333
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # on 0..1 pixels
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    size_divisor: int = 128
    normalize_on: str = "unit"  # unit: (x / 255 - mean) / std (torchvision) | byte: (x - 255 mean) / (255 std)
    #                             (mmdetection): the same values up to float rounding, kept for exact parity
    channel_order: str = "rgb"  # rgb | bgr: the order the network sees (mean and std are given in that order;
    #                             the caffe-style ResNets of mmdetection's FCOS checkpoints read BGR)
    resize: str = "torchvision"  # torchvision: sizes rounded down, torchvision's bilinear | mmdet: sizes rounded
    #                              (640x480 -> 1067x800), OpenCV's bilinear (the `mmdet` extra), as mmdetection's
    #                              test pipeline, so that converted models see its pixels


@dataclass
class ModelConfig:
    name: str = "fcos_r50_fpn"
    num_classes: int = 80
    class_names: list[str] | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=FCOSHeadConfig)
    input: InputConfig = field(default_factory=InputConfig)


@dataclass
class AugmentConfig:
    """Training augmentation. Mosaic (Bochkovskiy et al. 2020, YOLOv4) and random affine are off by
    default; see :mod:`anchorfree.data.mosaic`."""

    hflip_prob: float = 0.5
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter; 0 disables
    hsv_h: float = 0.0  # RandomHSV (YOLOv5/v8's hsv_h/s/v; they use 0.015, 0.7, 0.4): hue rotation up to this
    hsv_s: float = 0.0  # fraction of a turn, saturation and value gains within 1 -/+ these; all 0 disables
    hsv_v: float = 0.0
    multiscale_min_sizes: list[int] = field(default_factory=list)  # e.g. [640, 672, 704]; empty: off
    mosaic_prob: float = 0.0  # probability that a sample is a 4-image mosaic (square, input.min_size); 0: off
    affine: bool = False  # random affine on the samples that are not mosaics (mosaics always get one)
    affine_scale: list[float] = field(default_factory=lambda: [0.5, 1.5])  # zoom range
    affine_translate: float = 0.1  # max shift, as a fraction of the output size
    affine_degrees: float = 0.0  # max rotation (degrees)
    affine_shear: float = 0.0  # max shear (degrees)
    min_area_ratio: float = 0.1  # after mosaic/affine, drop boxes keeping less of their area inside the image
    close_mosaic: int = 0  # the last N epochs train without mosaic and affine (YOLOv8's close_mosaic)
    crop_size: int = -1  # large images: train on random windows of this many px at the image's resolution
    #                       (data/crops.py); 0: whole images; -1: auto (input.max_size when the training images'
    #                       median long side is >= 2x input.max_size, else 0)


# ``train.*`` fields that may change on ``--resume``: they are applied to the rest of the run.
# batch_size and accumulate may change while the effective batch (x processes) stays the same.
RESUME_APPLIED = frozenset({
    "epochs", "minutes", "eval_interval", "log_interval", "checkpoint_interval", "workers", "device", "grad_clip", "amp",
    "channels_last", "lr", "schedule", "milestones", "gamma", "min_lr_ratio", "warmup_iters", "warmup_ratio",
    "weight_decay", "momentum", "ema_decay", "scale_lr", "lr_reference_batch", "batch_size", "accumulate",
    "sync_bn", "dist_backend", "dist_timeout", "find_unused_parameters", "tensorboard", "check_images",
})


@dataclass
class TrainConfig:
    """Training settings. With several processes (torchrun, ``anchorfree train --nproc N``) ``batch_size``
    is per process, as in PyTorch's DistributedDataParallel: one optimizer step sees the effective batch
    ``batch_size x processes x accumulate`` images, and ``lr`` is the learning rate of that batch."""

    epochs: int = 12
    weights: str | None = None  # start from trained weights (a run folder, a .pt checkpoint or a converted run):
    #                            fine-tuning; tensors that fit are loaded, per-class layers re-initialised when the
    #                            classes differ (shared class names kept). Not --resume: optimizer and schedule fresh
    freeze: str = "none"  # none | backbone | neck (backbone and neck): no gradients there, BatchNorm in eval mode
    recipe: str = "preset"  # preset | small (YOLO's: mosaic, HSV, EMA, close_mosaic, an epoch floor) | auto (small up
    #                        to 1000 training images; the light presets' default); see anchorfree/engine/recipe.py
    minutes: float = 0.0  # > 0: a time budget for the whole run (steps, checkpoints, final validation): the run's
    #                      length is re-estimated as it goes and the schedule laid over it (engine/budget.py);
    #                      epochs is then only the first estimate. 0: train.epochs epochs
    batch_size: int = 16  # images per process and micro-batch
    workers: int = 2
    optimizer: str = "sgd"  # sgd | adamw | adam
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    norm_bias_decay: bool = False  # apply weight decay to norm weights and biases
    schedule: str = "step"  # step | cosine
    milestones: list[float] = field(default_factory=lambda: [8, 11])  # epochs (step schedule)
    gamma: float = 0.1
    min_lr_ratio: float = 0.01  # cosine floor, relative to lr
    warmup_iters: int = 500
    warmup_ratio: float = 0.001  # lr at iteration 0, relative to lr
    grad_clip: float = 0.0  # max grad norm; 0 disables
    amp: bool = True  # mixed precision: AMP on CUDA, bf16 autocast on CPUs with AVX512-BF16 or AMX; no-op elsewhere
    ema: bool = False
    ema_decay: float = 0.9998
    eval_interval: int = 1  # epochs between validations; 0: only at the end
    log_interval: int = 20
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = True
    # gradient accumulation and the learning rate of the effective batch
    accumulate: int = 1  # micro-batches per optimizer step (gradients summed, no DDP all-reduce until the last)
    scale_lr: bool = False  # linear scaling rule: lr x effective batch / lr_reference_batch
    lr_reference_batch: int = 0  # the batch train.lr is stated for with scale_lr; 0: train.batch_size
    # checkpoints
    checkpoint_interval: int = 0  # also write last.pt every N optimizer steps; 0: at the end of each epoch only
    # several processes (torchrun / --nproc)
    sync_bn: bool = False  # BatchNorm statistics over all processes (SyncBatchNorm; GPUs only)
    dist_backend: str = "auto"  # auto (nccl on GPUs, gloo on CPUs) | nccl | gloo
    dist_timeout: float = 1800.0  # seconds a process waits in a collective (e.g. for rank 0's validation)
    check_images: bool = True  # read every image header before the first step (false: skip it, e.g. for a huge
    #                           dataset on slow storage; a bad image then stops the run when it is loaded)
    tensorboard: bool = False  # also log scalars and a few validation images to RUN/tensorboard (tensorboard extra)
    find_unused_parameters: bool | None = None  # DDP's flag; None: on for heads whose loss can skip parameters
    #                                             (cornernet's embeddings on images without objects)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
