"""The graph every export format holds: raw pixels in, each image's detections out, in a padded layout.

Inputs:

* ``images``: ``uint8 [B, 3, H, W]`` RGB, each image in the top-left corner of the canvas, zero padded;
* ``image_sizes``: ``int64 [B, 2]``, the valid ``(h, w)`` of every image (``(H, W)`` when not padded);
* ``score_thresh``, ``nms_thresh``: ``float32`` scalars (ONNX: optional, the export's settings are the
  defaults).

Steps (what :meth:`Detector.predict` does, without its data-dependent branches):

1. :meth:`Detector.normalize`: ``x = (images / 255 - mean) / std`` with the config's ``model.input`` mean/std
   (and channel order), then 0 outside ``image_sizes``; fp16 exports cast ``x`` to fp16 here;
2. backbone → neck → head maps (and the mirrored image's maps, merged, for CenterNet's flip test);
3. candidates in fp32, clipped to ``image_sizes``: dense heads (RetinaNet, FCOS, ATSS, GFL, GFLv2) decode
   every prior (:meth:`DenseHead.scores_and_boxes`) and keep per level the top ``topk`` (prior, class)
   pairs, as :func:`~anchorfree.models.postprocess.select_detections` (center-ness multiplied in after the
   top-k with ``candidate_score=class``, ``min_box_size``); CenterNet and CornerNet decode their peaks /
   corner pairs (``decode``); candidates that cannot be detections (CornerNet's rejected pairs, boxes not
   above ``min_box_size``) get score ``-inf``;
4. suppression (:mod:`anchorfree.export.ops`) of the candidates with ``score > score_thresh`` (with
   ``candidate_score=class`` the threshold applies to the class score in step 3 instead, as PyTorch): hard
   NMS class-wise or agnostic, Soft-NMS (PyTorch formats only), or none;
5. per image the best ``M`` survivors by score (``M = max_detections``; all ``K`` candidates when the
   export keeps raw candidates).

Outputs (rows sorted by decreasing score; row ``j`` of image ``b`` is a detection iff
``j < num_detections[b]``, later rows are padding: boxes 0, score 0, label -1):

* ``boxes``: ``float32 [B, M, 4]`` ``xyxy`` in ``images`` pixels (divide by the resize scale for the
  original image);
* ``scores``: ``float32 [B, M]``; ``labels``: ``int64 [B, M]`` (0-based, class names in the metadata);
* ``num_detections``: ``int64 [B]``.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..boxes import clip_boxes
from ..config import HeadConfig
from ..models.detector import Detector
from ..models.heads import CenterNetHead, CornerNetHead, DenseHead
from .ops import HARD_MODES, SOFT_MODES

INPUT_NAMES = ["images", "image_sizes", "score_thresh", "nms_thresh"]
OUTPUT_NAMES = ["boxes", "scores", "labels", "num_detections"]


def _sym_min(a: int, b: Any) -> Any:
    """``min(a, b)`` for a size ``b``: symbolic for a dynamic size of ``torch.export``, else an int (a traced
    size becomes a constant of the TorchScript trace)."""
    return torch.sym_min(a, b) if isinstance(b, torch.SymInt) else min(a, int(b))


def dense_candidates(head: DenseHead, outputs: dict[str, list[Tensor]], image_sizes: Tensor, opts: HeadConfig,
                     score_thresh: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
    """The candidates of :func:`~anchorfree.models.postprocess.select_detections`: per level the top ``topk``
    (prior, class) pairs of :meth:`DenseHead.scores_and_boxes`, clipped to the image, as ``boxes [B, K, 4]``,
    ``scores [B, K]`` and ``labels [B, K]``; candidates that cannot be detections score ``-inf`` (a box not above
    ``min_box_size``; with :meth:`DenseHead.score_factors` (center-ness) a class score not above
    ``score_thresh``, the others then get ``class score × factor``). The flag tells whether the threshold was
    applied here (then suppression must not apply it again, as PyTorch)."""
    outputs, priors = head.float_outputs_and_priors(outputs)
    scores, boxes = head.scores_and_boxes(outputs, priors)
    factors = head.score_factors(outputs)
    num_images, num_classes = scores.shape[0], scores.shape[-1]
    cand_scores, cand_boxes, cand_labels = [], [], []
    level_factors = [None] * len(priors.num_per_level) if factors is None else factors.split(priors.num_per_level, 1)
    for level_scores, level_boxes, factor in zip(scores.split(priors.num_per_level, dim=1),
                                                 boxes.split(priors.num_per_level, dim=1), level_factors):
        flat = level_scores.reshape(num_images, -1)
        top, idx = flat.topk(_sym_min(opts.topk, flat.shape[1]), dim=1)
        prior = torch.div(idx, num_classes, rounding_mode="floor")
        if factor is not None:
            top = torch.where(top > score_thresh, top * factor.gather(1, prior), torch.full_like(top, float("-inf")))
        cand_scores.append(top)
        cand_labels.append(idx % num_classes)
        cand_boxes.append(level_boxes.gather(1, prior[..., None].expand(-1, -1, 4)))
    boxes = clip_boxes(torch.cat(cand_boxes, dim=1), image_sizes)
    scores = torch.cat(cand_scores, dim=1)
    if opts.min_box_size >= 0:
        big = (boxes[..., 2:] - boxes[..., :2] > opts.min_box_size).all(dim=-1)
        scores = torch.where(big, scores, torch.full_like(scores, float("-inf")))
    return boxes, scores, torch.cat(cand_labels, dim=1), factors is not None


def keypoint_candidates(head: CenterNetHead | CornerNetHead, outputs: dict[str, list[Tensor]], image_sizes: Tensor,
                        opts: HeadConfig) -> tuple[Tensor, Tensor, Tensor, bool]:
    """CenterNet's top peaks or CornerNet's best corner pairs (rejected pairs: score ``-inf``), as the heads'
    ``predict`` decodes them."""
    if isinstance(head, CornerNetHead):
        boxes, scores, labels = head.decode(outputs, opts.topk, opts.peak_kernel, opts.embedding_threshold,
                                            opts.num_candidates)
        scores = torch.where(scores > -0.1, scores, torch.full_like(scores, float("-inf")))  # rejected pairs: -1
    else:
        boxes, scores, labels = head.decode(outputs, opts.topk, opts.peak_kernel)
    if opts.clip_boxes:
        boxes = clip_boxes(boxes, image_sizes)
    return boxes, scores, labels, False


class DetectionGraph(nn.Module):
    """A detector as one graph from raw pixels to padded detections (see the module docstring).

    Args:
        detector: the model, in eval mode (it is copied; ``half`` converts the copy).
        opts: the head's inference settings (:meth:`Head.inference_options`).
        suppression: ``classwise``, ``agnostic``, ``soft_gaussian``, ``soft_linear`` or ``none``.
        raw: keep every candidate (``M = K``) instead of the best ``max_detections``.
        half: run the network in fp16 (candidates, suppression and outputs stay fp32).
    """

    def __init__(self, detector: Detector, opts: HeadConfig, suppression: str, raw: bool = False,
                 half: bool = False) -> None:
        super().__init__()
        detector = copy.deepcopy(detector).eval()
        if half:
            constants = {name: buf.clone() for name, buf in detector.named_buffers()
                         if name not in detector.state_dict()}  # mean/std, box-coder means/stds: stay fp32
            detector.half()
            for name, value in constants.items():
                module_name, _, attr = name.rpartition(".")
                setattr(detector.get_submodule(module_name), attr, value)
        self.detector = detector
        self.opts, self.suppression, self.raw, self.half = opts, suppression, raw, half
        self.num_classes = detector.cfg.num_classes
        self.flip = bool(getattr(opts, "flip_test", False))

    def normalize(self, images: Tensor, image_sizes: Tensor) -> Tensor:
        """:meth:`Detector.normalize` (mean/std, channel order), then 0 outside ``image_sizes`` — always
        multiplied, where PyTorch skips the multiplication by 1 of an unpadded batch."""
        x = self.detector.normalize(images)
        height, width = x.shape[-2:]
        rows = torch.arange(height, device=x.device)[None, :] < image_sizes[:, 0:1]
        cols = torch.arange(width, device=x.device)[None, :] < image_sizes[:, 1:2]
        x = x * (rows[:, None, :, None] & cols[:, None, None, :]).to(x.dtype)
        return x.half() if self.half else x

    def maps(self, x: Tensor) -> dict[str, list[Tensor]]:
        net = self.detector
        outputs = net.head(net.neck(net.backbone(x)))
        if self.flip:
            outputs = net.head.merge_flipped(outputs, net.head(net.neck(net.backbone(x.flip(-1)))))
        return outputs

    def candidates(self, images: Tensor, image_sizes: Tensor,
                   score_thresh: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
        """``boxes [B, K, 4]``, ``scores [B, K]`` (``-inf``: not a detection), ``labels [B, K]`` before
        suppression, and whether ``score_thresh`` was applied already."""
        outputs = self.maps(self.normalize(images, image_sizes))
        head = self.detector.head
        if isinstance(head, DenseHead):
            return dense_candidates(head, outputs, image_sizes, self.opts, score_thresh)
        return keypoint_candidates(head, outputs, image_sizes, self.opts)

    def forward(self, images: Tensor, image_sizes: Tensor, score_thresh: Tensor,
                nms_thresh: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        boxes, scores, labels, thresholded = self.candidates(images, image_sizes, score_thresh)
        if thresholded:  # as PyTorch: no later threshold (the scores are class score x center-ness)
            score_thresh = torch.full_like(score_thresh, float("-inf"))
        opts = self.opts
        if self.suppression in HARD_MODES or self.suppression in SOFT_MODES:
            kept = torch.ops.anchorfree.suppress(boxes, scores, labels, score_thresh, nms_thresh, self.suppression,
                                                 self.num_classes, opts.max_detections, opts.soft_nms_sigma,
                                                 opts.soft_nms_min_score)
        else:
            kept = torch.where(scores > score_thresh, scores, torch.full_like(scores, float("-inf")))
        count = kept.shape[1] if self.raw else _sym_min(opts.max_detections, kept.shape[1])
        top, index = kept.topk(count, dim=1)
        valid = top > float("-inf")
        boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4)) * valid[..., None].to(boxes.dtype)
        scores = torch.where(valid, top, torch.zeros_like(top))
        labels = torch.where(valid, labels.gather(1, index), torch.full_like(index, -1))
        return boxes, scores, labels, valid.sum(dim=1)
