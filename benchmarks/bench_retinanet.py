"""Speed of anchorfree's RetinaNet-R50-FPN vs torchvision's ``retinanet_resnet50_fpn`` (v1) with identical weights.

Both models are built the way ``tests/test_retinanet_parity.py`` builds them: torchvision's
``retinanet_resnet50_fpn(weights=None, weights_backbone=None)`` (BatchNorm backbone, head without
norm, 9 anchors x 91 classes per location), converted with
:func:`anchorfree.interop.torchvision.load_torchvision_retinanet` into the
``retinanet_r50_fpn_torchvision`` preset with ``backbone.norm='bn'``. Same weights, same FLOPs.

Cases, timing and flags are those of ``bench_fcos.py`` (shared in ``common.py``; this file only
describes the model): square S x S images (torchvision's resize is scale 1.0), inference with
torchvision ``model(list_of_float_images)`` (NCHW fp32) vs anchorfree "exact" (as ``anchorfree predict``
runs it: BatchNorm folded, channels_last, fp32, ``predict(uint8 batch)``) and "fast" (the same with bf16
conv weights under ``anchorfree.runtime.autocast``), and a
training step (forward + loss + backward + SGD step) in fp32 and with bf16 autocast.
ratio = torchvision time / anchorfree time (> 1: anchorfree is faster).

Untrained heads predict near-constant maps, so the output convs are re-drawn as in the parity
test and the classification bias is then shifted so that about ``--candidates`` (default 1000)
anchors x classes per image score above ``score_thresh`` (0.05, torchvision's default) — a
trained-like NMS workload (torchvision keeps up to 300 detections per image, and so does the
preset). ``--candidates 0`` keeps the parity test's spread. After the table, the share of
detections that match torchvision's (same label; boxes within 0.1 px and scores within 0.001 for
exact, 2 px and 0.01 for fast): for exact 100% where the anchors are the same. At sizes that are
not multiples of 128 (800) they are not on P6/P7: torchvision spaces anchors by ``padded size //
feature size`` (61 and 114 px at 800) where anchorfree uses the nominal strides 64 and 128, so
detections from those levels differ.

    python benchmarks/bench_retinanet.py                 # full run (est. ~15 min on 2 idle cores; 52 min shared)
    python benchmarks/bench_retinanet.py --quick         # 640 px, batch 1, train batch 2 (est. ~2 min idle)
    python benchmarks/bench_retinanet.py --profile       # per-stage + per-op breakdown at 640 px, batch 1
    python benchmarks/bench_retinanet.py --profile-only --profile-train   # only the breakdowns
    python benchmarks/bench_retinanet.py --device cuda   # both models on a GPU; "fast" is AMP (bf16) there
"""
from __future__ import annotations

import sys

import common  # first: it sets up the profiler's logging before torch is imported
from torchvision.models.detection import retinanet_resnet50_fpn

from anchorfree.interop.torchvision import load_torchvision_retinanet
from anchorfree.presets import retinanet_r50_fpn_torchvision

RETINANET = common.ModelSpec(
    name="RetinaNet R50-FPN (torchvision v1)",
    torchvision_builder=retinanet_resnet50_fpn,
    preset=retinanet_r50_fpn_torchvision,
    load=lambda state, cfg: load_torchvision_retinanet(state, cfg, version="v1"),
    # weight std, bias mean, bias std: the spread of tests/test_retinanet_parity.py (no saturated, tied scores)
    spread={"head.classification_head.cls_logits": (0.02, -2.0, 0.5),
            "head.regression_head.bbox_reg": (0.01, 0.0, 0.2)},
    torchvision_loss=lambda model, targets, head_outputs, anchors, features: model.compute_loss(
        targets, head_outputs, anchors),
    score_thresh=0.05,
    prior="anchor",
)


def main(argv: list[str] | None = None) -> int:
    return common.run(RETINANET, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
