"""The light presets for CPUs: ShuffleNetV2 / MobileNetV3 / CSP / RegNet bodies, PAN necks, GFL heads."""
from __future__ import annotations

from ..config import Config, convert_backbone
from .fpn import atss_family, fcos_r18_fpn_tiny


def _light_pan(name: str, head_type: str, body: str, channels: int, act: str) -> Config:
    """Model settings shared by the ``*_pan_nano`` / ``*_pan_small`` presets, after nanodet-m: a light
    torchvision body (BatchNorm trained, nothing frozen; ImageNet weights via ``backbone.weights``),
    C3–C5 into a slim PAN of ``channels`` with depthwise-separable output blocks and no extra level
    (strides 8/16/32), a GFL/GFLv2 head of 2 depthwise-separable convs of ``channels`` with BN, one
    ``5 * stride`` anchor per location for ATSS assignment, reg_max 7, no per-level scale; 320 px input
    padded to 32. Training as ``fcos_r18_fpn_tiny`` (AdamW + cosine, 100 warm-up iterations, batch 8) but
    with lr 0.016, the best of 0.002..0.032 for ``gfl_shufflenetv2_pan_nano`` in 6 epochs on 400
    synthetic images (AP 0.08 at 0.002, 0.30 at 0.016, 0.16 at 0.032). ``train.recipe=auto``: YOLO's recipe on
    datasets of up to 1000 training images (:mod:`anchorfree.engine.recipe`)."""
    cfg = atss_family(fcos_r18_fpn_tiny(), name, head_type)
    m, h = cfg.model, cfg.model.head
    m.backbone = convert_backbone(m.backbone, body)  # csp: a section of its own
    m.backbone.norm, m.backbone.frozen_stages = "bn", 0
    m.neck.type, m.neck.out_channels, m.neck.num_extra_levels = "pan", channels, 0
    m.neck.block, m.neck.downsample, m.neck.activation = "dwconv", "interp", act
    h.strides = [8, 16, 32]
    h.num_convs, h.feat_channels, h.norm, h.tower_conv, h.activation = 2, channels, "bn", "dwconv", act
    h.octave_base_scale, h.reg_max, h.scale_per_level = 5.0, 7, False
    m.input.size_divisor = 32
    cfg.train.lr, cfg.train.recipe = 0.016, "auto"
    return cfg


def gfl_shufflenetv2_pan_nano() -> Config:
    """nanodet-m-like GFL for CPUs: ShuffleNetV2 1.0x, 96-ch PAN, 2 dwconv head, LeakyReLU, 320 px."""
    return _light_pan("gfl_shufflenetv2_pan_nano", "gfl", "shufflenet_v2_x1_0", 96, "leaky_relu")


def gflv2_mobilenetv3_pan_nano() -> Config:
    """Light GFLv2 (DGQP) for CPUs: MobileNetV3-Large, 96-ch PAN, 2 dwconv head, hardswish, 320 px."""
    return _light_pan("gflv2_mobilenetv3_pan_nano", "gflv2", "mobilenet_v3_large", 96, "hardswish")


def _csp_pan(name: str, head_type: str, widths: list[int], depths: list[int], channels: int) -> Config:
    """The ``*_csp_*`` presets: the light-preset recipe of :func:`_light_pan` on a body that trains fast on
    CPUs: the cross-stage-partial body of plain 3x3 convs (:mod:`anchorfree.models.backbones.csp`, widths
    ``widths``, C2f depths ``depths``), a CSP-PAN neck of ``channels`` (C2f merge blocks, strides 8/16/32)
    and a GFL/GFLv2 head of 2 plain 3x3 convs of ``channels`` with BN; SiLU everywhere."""
    cfg = _light_pan(name, head_type, "csp", channels, "silu")
    m, h = cfg.model, cfg.model.head
    m.backbone.csp_widths, m.backbone.csp_depths, m.backbone.csp_activation = widths, depths, "silu"
    m.neck.type = "csp_pan"
    h.tower_conv = "conv"
    return cfg


def gfl_csp_pan_n() -> Config:
    """GFL on the CSP body, ~1 M parameters: widths 16..192, one bottleneck per stage, 64-ch CSP-PAN."""
    return _csp_pan("gfl_csp_pan_n", "gfl", [16, 32, 64, 128, 192], [1, 1, 1, 1], 64)


def gfl_csp_pan_s() -> Config:
    """GFL on the CSP body, ~3 M parameters: widths 24..384, bottlenecks 1/2/2/1, 64-ch CSP-PAN."""
    return _csp_pan("gfl_csp_pan_s", "gfl", [24, 48, 96, 192, 384], [1, 2, 2, 1], 64)


def gfl_csp_pan_m() -> Config:
    """GFL on the CSP body, ~6 M parameters: widths 32..512, bottlenecks 1/2/2/1, 96-ch CSP-PAN."""
    return _csp_pan("gfl_csp_pan_m", "gfl", [32, 64, 128, 256, 512], [1, 2, 2, 1], 96)


def gflv2_csp_pan_s() -> Config:
    """GFLv2 (DGQP) on the CSP body of ``gfl_csp_pan_s``."""
    return _csp_pan("gflv2_csp_pan_s", "gflv2", [24, 48, 96, 192, 384], [1, 2, 2, 1], 64)


def gfl_regnetx400_pan_small() -> Config:
    """Larger light GFL: RegNetX-400MF, 128-ch PAN, 2 dwconv head, LeakyReLU, 320 px."""
    return _light_pan("gfl_regnetx400_pan_small", "gfl", "regnet_x_400mf", 128, "leaky_relu")
