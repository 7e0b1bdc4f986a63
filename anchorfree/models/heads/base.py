"""The interface every head implements, and all that :class:`~anchorfree.models.detector.Detector` knows of one.

* ``forward(features) → maps``: raw output maps, a dict of per-level (or per-stack) lists;
* ``loss(maps, targets, image_sizes) → {name: scalar}``;
* ``candidates(maps, image_sizes, opts) → Candidates``: the fixed-shape candidate stage (boxes, scores with
  ``-inf`` for "no detection", labels, whether the threshold was applied), the one step that differs between
  heads at inference; the eager path and every export call it;
* ``predict(maps, image_sizes, opts) → [Detections]`` in input pixels: candidates → suppression
  (:func:`~anchorfree.models.postprocess.suppress_candidates`).

Inference options (score threshold, number of detections, NMS kind and IoU, …) are resolved once, at the
edge, by :meth:`Head.inference_options` (the head's config with per-call overrides, checked) and passed down
as one ``opts`` object; each call builds its own, so one model can serve concurrent calls with different
options (nothing shared is mutated).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn, Tensor

from ...config import HeadConfig
from ...errors import ConfigError
from ...structures import Detections
from ..postprocess import Candidates, check_inference_options, suppress_candidates


class Head(nn.Module):
    """Base of all heads; ``cfg`` is the head's own config section."""

    cfg: HeadConfig
    # the modules (names under the head) whose outputs are per class: what differs when the class count does
    CLASS_LAYERS: tuple[str, ...] = ("cls_logits",)
    # parameters that some losses leave without gradient (DDP then needs find_unused_parameters)
    HAS_UNUSED_PARAMETERS: bool = False

    def forward(self, feats: list[Tensor]) -> dict[str, list[Tensor]]:
        raise NotImplementedError

    def loss(self, outputs: dict[str, list[Tensor]], targets: list[dict[str, Tensor]],
             image_sizes: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def candidates(self, outputs: dict[str, list[Tensor]], image_sizes: Tensor, opts: HeadConfig,
                   score_thresh: Tensor | float | None = None) -> Candidates:
        """Fixed-shape candidates before suppression (``score_thresh``: a tensor in exported graphs, else
        ``opts.score_thresh``)."""
        raise NotImplementedError

    def predict(self, outputs: dict[str, list[Tensor]], image_sizes: Tensor, opts: HeadConfig | None = None,
                **options: Any) -> list[Detections]:
        """Detections in input pixels (clipped to each image's valid size): :meth:`candidates` → suppression.
        ``opts`` are resolved options (:meth:`inference_options`); without them ``options`` override the
        config's inference fields for this call (``score_thresh``, ``topk``, ``nms``, ``nms_thresh``, …)."""
        opts = opts if opts is not None else self.inference_options(**options)
        return suppress_candidates(self.candidates(outputs, image_sizes, opts), opts)

    @classmethod
    def build(cls, cfg: HeadConfig, in_channels: int, num_classes: int, num_levels: int) -> "Head":
        """The head for ``num_levels`` maps of ``in_channels`` channels; refuses a number of maps it cannot use."""
        head = cls(cfg, in_channels, num_classes)
        head.check_levels(num_levels)
        return head

    def check_levels(self, num_levels: int) -> None:
        """Refuse a neck/backbone that gives a number of maps this head cannot use."""

    def merge_flipped(self, outputs: dict[str, list[Tensor]],
                      flipped: dict[str, list[Tensor]]) -> dict[str, list[Tensor]]:
        """Maps of an image and of its mirror image merged into one set (flip test-time augmentation)."""
        raise ConfigError(f"the {self.cfg.type} head has no flip test")

    def inference_options(self, **overrides: Any) -> HeadConfig:
        """A copy of the head's config with per-call inference ``overrides`` (``None`` values are ignored).

        Only the fields in ``cfg.INFERENCE_FIELDS`` may be overridden; anything else is an error that
        lists the valid names."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        allowed = type(self.cfg).INFERENCE_FIELDS
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ConfigError(f"the {self.cfg.type} head has no inference option '{unknown[0]}'; its options: "
                              f"{', '.join(allowed)}")
        options = dataclasses.replace(self.cfg, **overrides) if overrides else self.cfg
        check_inference_options(options)
        return options
