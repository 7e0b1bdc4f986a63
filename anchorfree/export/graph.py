"""The graph every export format holds: raw pixels in, each image's detections out, in a padded layout.

Inputs:

* ``images``: ``uint8 [B, 3, H, W]`` RGB, each image in the top-left corner of the canvas, zero padded;
* ``image_sizes``: ``int64 [B, 2]``, the valid ``(h, w)`` of every image (``(H, W)`` when not padded);
* ``score_thresh``, ``nms_thresh``: ``float32`` scalars (ONNX: optional, the export's settings are the
  defaults).

Steps (what :meth:`Detector.predict` does, without its data-dependent branches):

1. :meth:`Detector.maps`, the eager path's own: normalisation (``x = (images / 255 - mean) / std`` with the
   config's ``model.input`` mean/std and channel order, then 0 outside ``image_sizes``; fp16 exports run the
   network in fp16 from here), backbone → neck → head maps (and the mirrored image's maps, merged, for
   CenterNet's flip test);
2. the head's candidate stage, :meth:`Head.candidates`, the one ``predict`` runs: fixed-shape candidates in
   fp32 clipped to ``image_sizes`` (dense heads: per level the top ``topk`` (prior, class) pairs, center-ness
   multiplied in after the top-k with ``candidate_score=class``; CenterNet's peaks; CornerNet's corner
   pairs), ``-inf`` for candidates that cannot be detections;
3. suppression (:mod:`anchorfree.export.ops`) of the candidates with ``score > score_thresh`` (with
   ``candidate_score=class`` the threshold applies to the class score in step 2 instead, as PyTorch): hard
   NMS class-wise or agnostic, Soft-NMS (PyTorch formats only), or none;
4. per image the best ``M`` survivors by score (``M = max_detections``; all ``K`` candidates when the
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

import torch
from torch import Tensor, nn

from ..config import HeadConfig
from ..models.detector import Detector
from ..models.postprocess import Candidates, sym_min
from .ops import HARD_MODES, SOFT_MODES

INPUT_NAMES = ["images", "image_sizes", "score_thresh", "nms_thresh"]
OUTPUT_NAMES = ["boxes", "scores", "labels", "num_detections"]


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
            detector.input_dtype = torch.float16
        self.detector = detector
        self.opts, self.suppression, self.raw, self.half = opts, suppression, raw, half
        self.num_classes = detector.cfg.num_classes
        self.flip = bool(getattr(opts, "flip_test", False))

    def candidates(self, images: Tensor, image_sizes: Tensor, score_thresh: Tensor) -> Candidates:
        """The head's own candidate stage (:meth:`Head.candidates`) on :meth:`Detector.maps`."""
        outputs = self.detector.maps(images, image_sizes, self.flip)
        return self.detector.head.candidates(outputs, image_sizes, self.opts, score_thresh)

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
        count = kept.shape[1] if self.raw else sym_min(opts.max_detections, kept.shape[1])
        top, index = kept.topk(count, dim=1)
        valid = top > float("-inf")
        boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4)) * valid[..., None].to(boxes.dtype)
        scores = torch.where(valid, top, torch.zeros_like(top))
        labels = torch.where(valid, labels.gather(1, index), torch.full_like(index, -1))
        return boxes, scores, labels, valid.sum(dim=1)
