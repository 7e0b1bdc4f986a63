"""onnxruntime (CPU) vs anchorfree in PyTorch on the same model, weights and input batch, side by side.

For each model a static ONNX export (:func:`anchorfree.export.export_model`, checked against PyTorch when
written) per batch size is timed against the PyTorch detector as ``anchorfree predict`` runs it
(:func:`anchorfree.models.fuse.inference_detector`): "exact" (BatchNorm folded, channels_last, fp32) and
"fast" (the same under :func:`anchorfree.runtime.autocast` with bf16 conv weights — a no-op on CPUs
without native bf16, where it equals exact). Every variant gets the same padded ``uint8`` batch and runs
the whole graph: network, decoding, NMS; preprocessing (resize, padding) is not timed.

Models (random weights; the classification convs are re-drawn so that about ``--candidates`` (prior,
class) pairs per image pass ``score_thresh``, a trained-like NMS workload):

* ``gfl_shufflenetv2_pan_nano`` at 320 × 320 (its input size);
* ``fcos_r50_fpn`` at 800 × 1333 (padded to 896 × 1408, its size divisor 128).

Timing as the other benchmarks (``common.run_interleaved``): warm-up, then the variants round-robin,
median of the repeats; images/s = batch / median time; ratio = onnxruntime images/s / PyTorch images/s
(> 1: onnxruntime faster). Threads: ``--threads`` for both (default: all cores); onnxruntime's threads
do not spin between runs (``session.intra_op.allow_spinning=0``), so that they do not slow down the
PyTorch variant that runs next. The background load (cores used by other processes meanwhile) is
printed per row.

    python benchmarks/bench_onnx.py                        # both models, batch 1 and 8 (~10 min on 2 cores)
    python benchmarks/bench_onnx.py --models gfl_shufflenetv2_pan_nano --batches 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import common  # first: it sets up the profiler's logging before torch is imported
from timing import cpu_flags, cpu_name
import numpy as np
import onnxruntime as ort
import torch

from anchorfree.export import export_model
from anchorfree.models.detector import Detector
from anchorfree.models.fuse import inference_detector
from anchorfree.presets import get_preset
from anchorfree.runtime import autocast, autocast_dtype, mixed_precision_available
from anchorfree.structures import Batch

SIZES = {"gfl_shufflenetv2_pan_nano": (320, 320), "fcos_r50_fpn": (800, 1333)}


def build(preset: str, candidates: int, seed: int = 0) -> Detector:
    """Random weights; the classification conv rescaled to unit-variance logits across locations, its bias
    then shifted so that about ``candidates`` (prior, class) pairs per image score above the threshold."""
    torch.manual_seed(seed)
    cfg = get_preset(preset).model
    cfg.backbone.weights = None
    det = Detector(cfg).eval()
    conv = det.head.cls_logits
    images = common.random_images(1, min(cfg.input.min_size, 512), seed)
    responses = []
    hook = conv.register_forward_hook(lambda m, i, out: responses.append(out - m.bias[None, :, None, None]))
    with torch.no_grad():
        det(images)
        hook.remove()
        std = torch.cat([r.flatten(2) for r in responses], dim=2).std(dim=(0, 2)).clamp(min=1e-6)
        conv.weight.div_(std[:, None, None, None])
        conv.bias.zero_()
        outputs, priors = det.head.float_outputs_and_priors(det(images))
        scores = det.head.scores_and_boxes(outputs, priors)[0].flatten()
        k = min(candidates, scores.numel() - 1)
        target = torch.logit(torch.tensor(det.head.cfg.score_thresh))
        kth = torch.logit(scores.sort(descending=True).values[k].clamp(1e-6, 1 - 1e-6))
        conv.bias.fill_(float(target - kth))  # shifts every logit: the k-th best lands on the threshold
    return det


def padded(size: tuple[int, int], divisor: int) -> tuple[int, int]:
    return tuple(-(-s // divisor) * divisor for s in size)


def bench_case(preset: str, det: Detector, batch: int, args, workdir: Path) -> dict:
    cfg = det.cfg
    size = SIZES[preset]
    canvas = padded(size, cfg.input.size_divisor)
    report = export_model(det, "onnx", workdir / f"{preset}_b{batch}.onnx", batch=batch, input_size=canvas,
                          check=not args.no_check)
    print(f"  {report.summary()}", flush=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3
    # onnxruntime's threads busy-wait after each run by default, which would take the cores from the PyTorch
    # variant timed next; without spinning each variant has the cores to itself
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    images = common.random_images(batch, max(size), seed=1)[:, :, : size[0], : size[1]]
    canvas_images = torch.zeros(batch, 3, *canvas, dtype=torch.uint8)
    canvas_images[:, :, : size[0], : size[1]] = images
    sizes = torch.tensor([list(size)] * batch)
    feed = {"images": canvas_images.numpy(), "image_sizes": sizes.numpy()}
    pt_batch = Batch(canvas_images, sizes)
    exact, fast = inference_detector(det, fast=False), inference_detector(det, fast=True)
    device = torch.device("cpu")

    def run_exact():
        with torch.inference_mode():
            return exact.predict(pt_batch)

    def run_fast():
        with torch.inference_mode(), autocast(device, enabled=True):
            return fast.predict(pt_batch)

    fns = {"onnxruntime": lambda: session.run(None, feed), "exact": run_exact, "fast": run_fast}
    times, background = common.run_interleaved(fns, args.warmup, args.min_repeats, args.repeats, args.budget)
    num = session.run(None, feed)[3]
    return {"model": preset, "input": f"{size[0]}x{size[1]} (padded {canvas[0]}x{canvas[1]})", "batch": batch,
            **{name: batch / statistics.median(t) for name, t in times.items()},
            "times_s": times, "background_cores": background,
            "detections_per_image": {"onnxruntime": float(np.mean(num)),
                                     "exact": float(np.mean([len(d) for d in run_exact()]))}}


def print_table(rows: list[dict]) -> None:
    head = (f"{'model':26s} | {'input':28s} | {'batch':>5s} | {'onnxruntime img/s':>17s} | {'exact img/s':>11s} | "
            f"{'ratio':>6s} | {'fast img/s':>10s} | {'ratio':>6s} | {'dets/img ort/pt':>15s} | {'bg load':>7s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        d = r["detections_per_image"]
        bg = r["background_cores"]
        bg = "?" if bg is None else f"{bg:.2f}" + ("*" if bg > 0.2 else " ")
        dets = f"{d['onnxruntime']:.0f}/{d['exact']:.0f}"
        print(f"{r['model']:26s} | {r['input']:28s} | {r['batch']:5d} | {r['onnxruntime']:17.2f} | {r['exact']:11.2f} | "
              f"{r['onnxruntime'] / r['exact']:5.2f}x | {r['fast']:10.2f} | {r['onnxruntime'] / r['fast']:5.2f}x | "
              f"{dets:>15s} | {bg:>7s}")
    fast = f"{autocast_dtype(torch.device('cpu'))}" if mixed_precision_available(torch.device("cpu")) else \
        "a no-op here: this CPU has no native bf16, so fast = exact"
    print("ratio = onnxruntime img/s / PyTorch img/s (> 1: onnxruntime faster). exact = BatchNorm folded, "
          f"channels_last, fp32; fast = the same under anchorfree.runtime.autocast ({fast}). bg load: cores used "
          "by other processes meanwhile; * = over 0.2: that row is inflated, rerun it on a quiet machine.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-repeats", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of timed rounds per case (about)")
    parser.add_argument("--no-check", action="store_true", help="skip the check of each export against PyTorch")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = {**common.environment(), "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
           "cpu_name": cpu_name(), "cpu_flags": cpu_flags(), "threads": args.threads}
    print(json.dumps(env, indent=1), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.models:
            print(f"{preset}:", flush=True)
            det = build(preset, args.candidates)
            for batch in args.batches:
                rows.append(bench_case(preset, det, batch, args, Path(tmp)))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
