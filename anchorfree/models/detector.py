"""``Detector``: image → backbone → neck → head → losses (with targets) or detections.

Input images are ``uint8 [B, 3, H, W]`` (0..255), zero padded; normalisation happens inside the
model (so exported models and the Python API take raw pixels), and the padded area is zeroed
after normalisation, as torchvision and mmdetection do.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn, Tensor

from ..config import HeadConfig, ModelConfig
from ..config_checks import check_choice
from ..errors import ConfigError
from ..structures import Batch, Detections
from .backbones import build_backbone
from .heads import HEADS, Head
from .necks import build_neck


class Detector(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone)
        self.neck = build_neck(self.backbone.out_channels, cfg.neck)
        if cfg.head.type not in HEADS:
            raise ConfigError(f"unknown head.type '{cfg.head.type}'; available: {', '.join(HEADS)}")
        self.head: Head = HEADS[cfg.head.type].build(cfg.head, self.neck.out_channels, cfg.num_classes,
                                                      self.neck.num_levels)
        stride = getattr(cfg.head, "stride", None)  # the keypoint heads predict on maps of one stride
        if stride is not None:
            strides = [s // getattr(self.neck, "upsampling", 1) for s in self.backbone.out_strides[-self.neck.num_levels:]]
            if any(s != stride for s in strides):
                raise ConfigError(f"the {cfg.head.type} head expects maps of stride head.stride={stride} but the "
                                  f"backbone and neck give stride {strides[-1]}; with neck.type=upconv the stride is "
                                  "that of the last backbone.out_levels entry divided by 2 per "
                                  "neck.upconv_channels entry")
        for name in ("channel_order", "resize", "normalize_on"):
            check_choice(f"model.input.{name}", getattr(cfg.input, name))
        self.bgr = cfg.input.channel_order == "bgr"
        self.normalize_on_bytes = cfg.input.normalize_on == "byte"
        mean = torch.tensor(cfg.input.mean, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(cfg.input.std, dtype=torch.float64).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean.float(), persistent=False)  # on 0..1 pixels
        self.register_buffer("pixel_std", std.float(), persistent=False)
        # on 0..255 pixels, from float64 so that e.g. 0.485 * 255 is the float32 of 123.675 (mmdetection's mean)
        self.register_buffer("pixel_mean_255", (mean * 255).float(), persistent=False)
        self.register_buffer("pixel_std_255", (std * 255).float(), persistent=False)
        self.input_dtype = torch.float32  # what the network computes in (fp16 exports set float16)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, images: Tensor, image_sizes: Tensor | None = None) -> Tensor:
        """``(x / 255 - mean) / std`` (or ``(x - 255 mean) / (255 std)``, ``input.normalize_on=byte``) on RGB
        input (reordered to BGR with ``input.channel_order=bgr``); padding outside ``image_sizes`` becomes 0."""
        if self.bgr:
            images = images.flip(1)
        if self.normalize_on_bytes:
            x = (images.float() - self.pixel_mean_255) / self.pixel_std_255
        else:
            x = (images.float() / 255.0 - self.pixel_mean) / self.pixel_std
        if image_sizes is not None:
            h, w = x.shape[-2:]
            rows = torch.arange(h, device=x.device)[None, :] < image_sizes[:, 0:1]
            cols = torch.arange(w, device=x.device)[None, :] < image_sizes[:, 1:2]
            x = x * (rows[:, None, :, None] & cols[:, None, None, :]).to(x.dtype)  # no data-dependent branch
        if self.cfg_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def cfg_channels_last(self) -> bool:
        return getattr(self, "_channels_last", False)

    def set_channels_last(self, enabled: bool = True) -> "Detector":
        """Run every conv in NHWC layout (faster on CPUs with oneDNN and on tensor cores)."""
        self._channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def forward(self, images: Tensor, image_sizes: Tensor | None = None, flip: bool = False) -> dict[str, list[Tensor]]:
        """Raw head maps per level for a batch of uint8/float 0..255 images; ``flip`` runs the network on
        the mirrored (normalised, padded) batch, for flip test-time augmentation. The network runs in
        ``input_dtype`` (float16 in fp16 exports; under autocast the autocast dtypes apply)."""
        x = self.normalize(images, image_sizes)
        if flip:
            x = x.flip(-1)
        return self.head(self.neck(self.backbone(x.to(self.input_dtype))))

    def maps(self, images: Tensor, image_sizes: Tensor | None = None, flip_test: bool = False) -> dict[str, list[Tensor]]:
        """The maps inference reads: :meth:`forward`, merged with the mirrored image's with ``flip_test``
        (the eager path and every export run this)."""
        outputs = self(images, image_sizes)
        if flip_test:
            outputs = self.head.merge_flipped(outputs, self(images, image_sizes, flip=True))
        return outputs

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        outputs = self(batch.images, batch.image_sizes)
        return self.head.loss(outputs, batch.targets, batch.image_sizes)

    @torch.no_grad()
    def predict(self, batch: Batch, rescale: bool = True, opts: HeadConfig | None = None,
                **options: Any) -> list[Detections]:
        """Detections per image; with ``rescale`` boxes are mapped to the original image pixels. ``opts``:
        options resolved once by ``head.inference_options``; without them ``options`` override the head's
        inference settings for this call (``score_thresh=0.3``, ``nms="agnostic"``…)."""
        opts = opts if opts is not None else self.head.inference_options(**options)
        outputs = self.maps(batch.images, batch.image_sizes, bool(getattr(opts, "flip_test", False)))
        detections = self.head.predict(outputs, batch.image_sizes, opts)
        if rescale and batch.orig_sizes is not None:
            ratios = (batch.orig_sizes.float() / batch.image_sizes.float()).to(self.device)  # (ry, rx)
            for det, (ry, rx) in zip(detections, ratios):
                det.boxes = det.boxes * torch.stack((rx, ry, rx, ry))
        return detections


def build_detector(cfg: ModelConfig) -> Detector:
    return Detector(cfg)
