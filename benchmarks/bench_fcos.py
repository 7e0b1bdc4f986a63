"""Speed of anchorfree's FCOS-R50-FPN vs torchvision's ``fcos_resnet50_fpn`` with identical weights.

Both models are built the way ``tests/test_torchvision_parity.py`` builds them: torchvision's
``fcos_resnet50_fpn(weights=None, weights_backbone=None)`` (BatchNorm backbone, GroupNorm head),
converted with :func:`anchorfree.interop.torchvision.load_torchvision_fcos` into the
``fcos_r50_fpn_torchvision`` preset with ``backbone.norm='bn'``. Same weights, same FLOPs.

Cases (all square S x S images so torchvision's resize is scale 1.0 with min_size = max_size = S):

* inference: torchvision ``model(list_of_float_images)`` (NCHW fp32, its normal path) vs
  anchorfree "exact" (the model as ``anchorfree predict`` runs it, ``models.fuse.inference_detector``:
  BatchNorm folded into the convs, channels_last, fp32, ``predict(uint8 batch)``) and anchorfree "fast"
  (the same with bf16 conv weights under ``anchorfree.runtime.autocast``: bf16 on CPUs with AVX512-BF16/AMX);
* training step (forward + loss + backward + SGD step): torchvision ``sum(model(images, targets).values())``
  vs anchorfree ``sum(model.loss(batch).values())`` in fp32 (channels_last, the engine default) and
  with bf16 autocast.

Untrained heads predict near-constant maps, so the output convs are re-drawn as in the parity test
and the classification bias is then shifted so that about ``--candidates`` (default 1000) points x
classes per image pass ``score_thresh`` (0.2, torchvision's default) — a trained-like NMS workload.
``--candidates 0`` keeps the parity test's spread (every level saturates its top-1000: worst case).
Besides the detection counts, the table is followed by the share of detections that match
torchvision's (same label; boxes within 0.1 px and scores within 0.001 for exact, 2 px and 0.01 for fast).

Timing: ``--warmup`` calls per variant, then the variants of a case are run round-robin
(interleaved, so background load hits all of them alike) and the median of the repeats is
reported. Repeats adapt to the cost of a case: at most ``--repeats``, at least ``--min-repeats``,
and about ``--budget`` seconds per case. ratio = torchvision time / anchorfree time (> 1: anchorfree
is faster). The machinery (timing, cases, profiles, flags) is shared with ``bench_retinanet.py`` in
``common.py``; this file only describes the model.

    python benchmarks/bench_fcos.py                      # full run (~9 min on 2 idle cores)
    python benchmarks/bench_fcos.py --quick              # ~1 min: 640 px, batch 1, train batch 2
    python benchmarks/bench_fcos.py --profile            # per-stage + per-op breakdown at 640 px, batch 1
    python benchmarks/bench_fcos.py --sizes 640 --batches 1 8 --train-batches 2 --json out.json
    python benchmarks/bench_fcos.py --device cuda        # both models on a GPU; "fast" is AMP (bf16) there
"""
from __future__ import annotations

import sys

import common  # first: it sets up the profiler's logging before torch is imported
from torchvision.models.detection import fcos_resnet50_fpn

from anchorfree.interop.torchvision import load_torchvision_fcos
from anchorfree.presets import fcos_r50_fpn_torchvision

SPREAD = (0.05, 0.0, 1.0)  # weight std, bias mean, bias std of the re-drawn output convs

FCOS = common.ModelSpec(
    name="FCOS R50-FPN",
    torchvision_builder=fcos_resnet50_fpn,
    preset=fcos_r50_fpn_torchvision,
    load=load_torchvision_fcos,
    spread={"head.classification_head.cls_logits": SPREAD, "head.regression_head.bbox_reg": SPREAD,
            "head.regression_head.bbox_ctrness": SPREAD},
    torchvision_loss=lambda model, targets, head_outputs, anchors, features: model.compute_loss(
        targets, head_outputs, anchors, [f.size(2) * f.size(3) for f in features]),
    score_thresh=0.2,
    prior="point",
)


def main(argv: list[str] | None = None) -> int:
    return common.run(FCOS, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
