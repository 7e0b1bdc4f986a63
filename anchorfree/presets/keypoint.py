"""The keypoint presets: CenterNet and CornerNet."""
from __future__ import annotations

from ..config import Config, convert_backbone
from .fpn import fcos_r18_fpn_tiny, set_head


def _centernet(name: str, body: str) -> Config:
    """CenterNet as mmdetection's ``centernet_r18_8xb16-crop512-140e_coco`` with a plain 3×3 conv in the neck
    (``use_dcn=False``): a torchvision ResNet (BatchNorm trained, nothing frozen) whose C5 goes through the
    up-convolution neck (256, 128, 64 channels, 4×4 transposed convs, stride 4), branches of 64 channels;
    Gaussian radius as mmdetection (corrected formula, min overlap 0.3); 512×512 input padded to 32; top 100
    peaks, no NMS.

    Training follows the paper's recipe (Sec. 5: Adam 5e-4 at batch 128, 140 epochs, lr ÷10 at 90 and 120,
    random flip, random scale 0.6–1.3 with crop, colour jitter): Adam (no weight decay) with the learning
    rate scaled linearly to batch 32 (1.25e-4), random affine zoom 0.6–1.3 with translation as the crop,
    colour jitter 0.4, gradient clipping at 35 as mmdetection. mmdetection's own recipe (SGD 0.02 at
    batch 128, 28×5 epochs) reached 29.5 AP for R18 without DCN; set ``train.optimizer=sgd train.lr=…``
    for it."""
    cfg = Config()
    m, t = cfg.model, cfg.train
    m.name = name
    m.backbone.name, m.backbone.norm, m.backbone.frozen_stages, m.backbone.out_levels = body, "bn", 0, [5]
    m.neck.type, m.neck.upconv_channels, m.neck.upconv_kernels = "upconv", [256, 128, 64], [4, 4, 4]
    set_head(cfg, "centernet")
    m.input.min_size, m.input.max_size, m.input.size_divisor = 512, 512, 32
    t.optimizer, t.lr, t.weight_decay, t.batch_size = "adam", 5e-4 * 32 / 128, 0.0, 32
    t.epochs, t.schedule, t.milestones, t.gamma = 140, "step", [90, 120], 0.1
    t.warmup_iters, t.warmup_ratio, t.grad_clip = 500, 0.001, 35.0
    a = t.augment
    a.affine, a.affine_scale, a.affine_translate, a.color_jitter, a.hflip_prob = True, [0.6, 1.3], 0.2, 0.4, 0.5
    return cfg


def centernet_r18() -> Config:
    """CenterNet ResNet-18 + up-convolutions, 512 px, the paper's Adam recipe (mmdetection without DCN: 29.5 AP)."""
    return _centernet("centernet_r18", "resnet18")


def centernet_r50() -> Config:
    """CenterNet ResNet-50 + up-convolutions (C5 of 2048 channels), 512 px, otherwise as centernet_r18."""
    return _centernet("centernet_r50", "resnet50")


def centernet_r18_tiny() -> Config:
    """A small CenterNet for CPUs: ResNet-18 up to C4 (stride 16; layer4 is not built), two up-convolutions
    of 128 and 64 channels to stride 4, 64-channel branches, 320 px input (80×80 map), BatchNorm from
    scratch, AdamW + cosine as fcos_r18_fpn_tiny. Starting from C4 instead of the paper's C5 keeps more
    resolution on small inputs (at 128 px C5 is a 4×4 map: AP50 0.039 after 8 epochs on the test data,
    against 0.056 after 5 from C4 with a ResNet-10) and drops most of the parameters."""
    cfg = _centernet("centernet_r18_tiny", "resnet18")
    tiny = fcos_r18_fpn_tiny()
    cfg.train, m = tiny.train, cfg.model
    m.backbone.out_levels = [4]
    m.neck.upconv_channels, m.neck.upconv_kernels = [128, 64], [4, 4]
    m.input.min_size, m.input.max_size = 320, 320
    cfg.train.lr = 2e-3
    return cfg


def cornernet_hg104() -> Config:
    """CornerNet Hourglass-104 as mmdetection's ``cornernet_hourglass104_8xb6-210e-mstest_coco`` (paper
    40.6 AP single-scale): two hourglass stacks of depth 5 (256, 256, 384, 384, 384, 512 channels; 2, 2, 2,
    2, 2, 4 blocks), both supervised; corner pooling with 128 channels, branches of 256; pull/push 0.1,
    smooth-L1 offsets; test: top 100 corners per map, embedding distance 0.5, best 1000 pairs, Gaussian
    soft-NMS (σ 0.5), 100 per image. Input 511 in the references; 512 here (padded to 128).

    Training as mmdetection: Adam 5e-4 at batch 48 (scaled linearly to batch 16 here), 210 epochs with a
    step at 180, 500 warm-up iterations from 1/3, gradient clipping at 35; random flip, colour jitter and
    random scale 0.6–1.3 with crop (mmdetection's ``RandomCenterCropPad``; a random affine zoom here)."""
    cfg = Config()
    m, t = cfg.model, cfg.train
    m.name = "cornernet_hg104"
    m.backbone = convert_backbone(m.backbone, "hourglass")
    m.backbone.norm, m.backbone.frozen_stages = "bn", 0
    m.neck.type = "none"
    set_head(cfg, "cornernet")
    m.input.min_size, m.input.max_size, m.input.size_divisor = 512, 512, 128
    t.optimizer, t.lr, t.weight_decay, t.batch_size = "adam", 5e-4 * 16 / 48, 0.0, 16
    t.epochs, t.schedule, t.milestones, t.gamma = 210, "step", [180], 0.1
    t.warmup_iters, t.warmup_ratio, t.grad_clip = 500, 1.0 / 3.0, 35.0
    a = t.augment
    a.affine, a.affine_scale, a.affine_translate, a.color_jitter, a.hflip_prob = True, [0.6, 1.3], 0.2, 0.4, 0.5
    return cfg


def cornernet_hg_tiny() -> Config:
    """A small CornerNet for CPUs: two hourglass stacks of depth 3 (48, 64, 80, 96 channels, one block per
    level), 48-channel maps, corner pooling of 32 and branches of 48 channels, 256 px input (64×64 maps),
    BatchNorm from scratch, AdamW + cosine as fcos_r18_fpn_tiny; soft-NMS decoding as cornernet_hg104."""
    cfg = cornernet_hg104()
    tiny = fcos_r18_fpn_tiny()
    m, h = cfg.model, cfg.model.head
    m.name = "cornernet_hg_tiny"
    b = m.backbone
    b.hourglass_stacks, b.hourglass_depth = 2, 3
    b.hourglass_channels, b.hourglass_blocks, b.hourglass_feat_channels = [48, 64, 80, 96], [1, 1, 1, 1], 48
    h.feat_channels, h.pool_channels = 48, 32
    m.input.min_size, m.input.max_size, m.input.size_divisor = 256, 256, 32
    cfg.train = tiny.train
    cfg.train.lr = 2e-3
    return cfg
