"""CenterNet's up-convolution neck (Zhou et al. 2019, Sec. 4 "ResNet"; mmdetection ``CTResNetNeck``).

The last backbone map (C5, stride 32) goes through ``len(channels)`` stages of
``3×3 conv → BN → ReLU → 4×4 transposed conv (stride 2) → BN → ReLU``, each doubling the resolution:
three stages of 256, 128, 64 channels end at stride 4. The paper and mmdetection's reference use a
deformable 3×3 conv; anchorfree uses a plain one (``use_dcn=False`` in mmdetection, 29.5 AP for R18 with
SGD vs 31.3 with DCNv2 on COCO according to its model zoo); the transposed convs start as bilinear
upsampling, as in both references.
"""
from __future__ import annotations

import math

import torch
from torch import nn, Tensor

from ...config import NeckConfig
from ...errors import ConfigError
from ..layers import ConvBN


def bilinear_kernel_(weight: Tensor) -> None:
    """Fill a ``[C, C, k, k]`` transposed-conv weight (in place) with a bilinear upsampling kernel in every
    ``[c, 0]`` slice, as mmdetection's ``CTResNetNeck.init_weights`` (other entries keep their init)."""
    k = weight.shape[2]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - (torch.arange(k, dtype=torch.float64) / f - c).abs()
    weight[:, 0] = (ramp[:, None] * ramp[None, :]).to(weight)


class UpConvNeck(nn.Module):
    def __init__(self, in_channels: list[int], cfg: NeckConfig) -> None:
        super().__init__()
        if not cfg.upconv_channels or len(cfg.upconv_channels) != len(cfg.upconv_kernels):
            raise ConfigError("neck.upconv_channels and neck.upconv_kernels need one entry per up-convolution stage, "
                              f"got {cfg.upconv_channels} and {cfg.upconv_kernels}")
        layers: list[nn.Module] = []
        cin = in_channels[-1]
        for channels, kernel in zip(cfg.upconv_channels, cfg.upconv_kernels):
            if kernel not in (2, 3, 4):
                raise ConfigError(f"neck.upconv_kernels must be 2, 3 or 4 (stride-2 upsampling), got {kernel}")
            padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[kernel]
            layers.append(ConvBN(cin, channels, 3))
            up = ConvBN(channels, channels, kernel, stride=2, padding=padding, transposed=True)
            up.conv.output_padding = (output_padding, output_padding)
            layers.append(up)
            cin = channels
        self.deconv_layers = nn.Sequential(*layers)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.ConvTranspose2d):
                    bilinear_kernel_(m.weight)
        self.out_channels = cin
        self.num_levels = 1
        self.upsampling = 2 ** len(cfg.upconv_channels)  # resolution gained over the input map

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return [self.deconv_layers(feats[-1])]
