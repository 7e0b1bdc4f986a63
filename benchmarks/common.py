"""What the side-by-side benchmarks (``bench_fcos.py``, ``bench_retinanet.py``) share: an anchorfree
model and the torchvision model it was converted from, with identical weights, timed case by case.

A benchmark script describes its model with a :class:`ModelSpec` (torchvision builder, anchorfree
preset and converter, how to spread the untrained head outputs, how torchvision computes its loss)
and calls :func:`run`; everything else lives here:

* models: :func:`build_models` (torchvision model with spread output convs → calibrated class
  bias → anchorfree model from its state dict);
* data: :func:`random_images`, :func:`random_targets`, :func:`make_batch`;
* timing: :mod:`timing` (:func:`run_interleaved`, :class:`CpuMonitor`, :func:`wait_for_idle`, :func:`summarize`);
* cases: :func:`bench_inference`, :func:`bench_training` and the breakdowns :func:`run_profile`,
  :func:`run_train_profile`;
* report: :func:`environment`, :func:`print_table`, :func:`detection_agreement`;
* command line: :func:`run` (the flags are the same for every model); ``--device cuda`` runs both
  models on a GPU (timings synchronise the device; "fast" is AMP there).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep torch.profiler's log lines out of the report

import torch  # noqa: E402
import torchvision  # noqa: E402

import anchorfree  # noqa: E402
from anchorfree.config import Config, ModelConfig  # noqa: E402
from anchorfree.models.detector import Detector  # noqa: E402
from anchorfree.models.fuse import inference_detector  # noqa: E402
from anchorfree.runtime import autocast, autocast_dtype, cpu_supports_bf16, mixed_precision_available  # noqa: E402
from anchorfree.structures import Batch, Detections  # noqa: E402
import timing  # noqa: E402
from timing import run_interleaved, summarize, wait_for_idle  # noqa: E402

NUM_CLASSES = 91  # torchvision's COCO heads
DEVICE = torch.device("cpu")  # set by --device


# (box coordinates in px, score): an anchorfree detection matches a torchvision one with the same
# label within these tolerances; "exact" (fp32) must match to rounding, "fast" (bf16) to a few px
AGREE_TOLERANCES = {"exact": (0.1, 1e-3), "fast": (2.0, 1e-2)}


@dataclass
class ModelSpec:
    """One model of the benchmark, on both sides.

    ``spread`` maps a torchvision head conv (submodule path) to ``(weight std, bias mean, bias std)``:
    the conv is re-drawn so that untrained outputs vary, in this order. ``torchvision_loss(model,
    targets, head_outputs, anchors, features)`` calls the model's ``compute_loss`` (its signature
    differs between torchvision's detectors).
    """

    name: str
    torchvision_builder: Callable[..., torch.nn.Module]
    preset: Callable[[], Config]
    load: Callable[[dict, ModelConfig], Detector]
    spread: dict[str, tuple[float, float, float]]
    torchvision_loss: Callable[..., dict[str, torch.Tensor]]
    score_thresh: float  # torchvision's default
    prior: str = "point"  # what a head output location is called: point (FCOS) or anchor (RetinaNet)


# ---------------------------------------------------------------------------------------------
# models and data
# ---------------------------------------------------------------------------------------------
def build_models(spec: ModelSpec, score_thresh: float, candidates: int, calib_size: int, seed: int = 0):
    """torchvision model (eval) and the anchorfree model converted from its state dict."""
    torch.manual_seed(seed)
    tv = spec.torchvision_builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                  min_size=calib_size, max_size=calib_size, score_thresh=score_thresh)
    with torch.no_grad():  # spread the outputs as the parity tests do
        for path, (weight_std, bias_mean, bias_std) in spec.spread.items():
            conv = tv.get_submodule(path)
            conv.weight.normal_(0, weight_std)
            conv.bias.normal_(bias_mean, bias_std)
    cfg = spec.preset().model
    cfg.backbone.norm = "bn"  # torchvision builds BatchNorm2d when weights_backbone=None
    cfg.backbone.frozen_stages = 0  # ... and trains all its layers
    cfg.head.score_thresh = score_thresh
    tv.eval()
    shift = 0.0
    if candidates > 0:
        shift = calibrate_cls_shift(spec, tv, cfg, score_thresh, candidates, calib_size)
        with torch.no_grad():
            tv.head.classification_head.cls_logits.bias += shift
    af = spec.load(tv.state_dict(), cfg).eval()
    return tv.to(DEVICE), af.to(DEVICE), shift


def calibrate_cls_shift(spec: ModelSpec, tv, cfg, score_thresh: float, candidates: int, size: int) -> float:
    """Offset of the class logits such that ~``candidates`` (prior, class) pairs score above the threshold."""
    af = spec.load(tv.state_dict(), copy.deepcopy(cfg)).eval()
    images = random_images(1, size, seed=123)
    with torch.no_grad():
        out = af(images, torch.tensor([[size, size]]))
        priors = af.head.priors(out)

        def count(delta: float) -> int:
            scores, _ = af.head.scores_and_boxes({**out, "cls": [m + delta for m in out["cls"]]}, priors)
            return int((scores > score_thresh).sum())

        lo, hi = -40.0, 40.0  # count() increases with delta
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if count(mid) < candidates else (lo, mid)
    return hi


def random_images(batch: int, size: int, seed: int) -> torch.Tensor:
    """uint8 [B, 3, S, S] uniform noise (content does not change the cost of dense convs)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    return noise


def random_targets(batch: int, size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """3-8 boxes per image, sides log-uniform in [16, 0.8 S], labels in 1..90."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(3, 9, (1,), generator=g))
        wh = torch.exp(torch.empty(n, 2).uniform_(0, 1, generator=g) * (torch.log(torch.tensor(0.8 * size / 16))))
        wh = wh * 16
        xy = torch.rand(n, 2, generator=g) * (size - wh)
        boxes = torch.cat((xy, xy + wh), dim=1)
        labels = torch.randint(1, NUM_CLASSES, (n,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
    return targets


def set_tv_size(tv, size: int) -> None:
    tv.transform.min_size = (size,)
    tv.transform.max_size = size


def make_batch(images: torch.Tensor, targets=None) -> Batch:
    b, _, h, w = images.shape
    sizes = torch.tensor([[h, w]] * b)
    return Batch(images, sizes, targets or [], orig_sizes=sizes.clone()).to(DEVICE)


def torchvision_inputs(images: torch.Tensor, targets=None):
    """torchvision's API: a list of float 0..1 images (and target dicts) on the device."""
    tv_images = [img.to(DEVICE).float() / 255.0 for img in images]
    if targets is None:
        return tv_images
    return tv_images, [{k: v.to(DEVICE) for k, v in t.items()} for t in targets]


def detection_agreement(expected: dict[str, torch.Tensor], got: Detections, px: float, score: float) -> float:
    """Share of detections (of the longer list) that have a twin on the other side: same label, every
    box coordinate within ``px`` and the score within ``score``; 1.0 for identical lists. (Coordinates,
    not IoU: boxes clipped at the border may have zero area.)"""
    n = max(len(expected["boxes"]), len(got))
    if n == 0:
        return 1.0
    if len(expected["boxes"]) == 0 or len(got) == 0:
        return 0.0
    twin = (((expected["boxes"][:, None] - got.boxes[None]).abs().amax(dim=-1) <= px)
            & (expected["labels"][:, None] == got.labels[None])
            & ((expected["scores"][:, None] - got.scores[None]).abs() <= score))
    return float(twin.any(dim=1).sum()) / n


# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------
def bench_inference(tv, af, size: int, batch: int, args) -> dict:
    images = random_images(batch, size, seed=size * 100 + batch)
    tv_images = torchvision_inputs(images)
    af_batch = make_batch(images)
    set_tv_size(tv, size)
    af.set_channels_last(True)
    # as `anchorfree predict` and the API run it: BatchNorm folded, channels_last, bf16 weights in fast mode
    af_exact, af_fast = inference_detector(af, fast=False), inference_detector(af, fast=True)
    last = {}  # each variant's latest detections

    def tv_fn():
        with torch.no_grad():
            last["tv"] = tv(tv_images)

    def exact_fn():
        with torch.no_grad():
            last["exact"] = af_exact.predict(af_batch)

    def fast_fn():
        with torch.no_grad(), autocast(DEVICE, enabled=True):
            last["fast"] = af_fast.predict(af_batch)

    wait_for_idle(args.wait_idle)
    times, background = run_interleaved({"torchvision": tv_fn, "exact": exact_fn, "fast": fast_fn}, args.warmup,
                                        args.min_repeats, args.repeats, args.budget)
    counts = {k: [len(d["boxes"]) if isinstance(d, dict) else len(d) for d in v] for k, v in last.items()}
    agreement = {k: statistics.mean(detection_agreement(e, d, *tol) for e, d in zip(last["tv"], last[k]))
                 for k, tol in AGREE_TOLERANCES.items()}
    with torch.no_grad():  # pre-NMS candidates: the head's own candidate stage, above the threshold
        opts = af.head.inference_options()
        found = af.head.candidates(af(af_batch.images, af_batch.image_sizes), af_batch.image_sizes, opts)
        above = found.scores > (float("-inf") if found.thresholded else opts.score_thresh)
        cand = int(above.sum())
    return {
        "case": f"infer {size}px b{batch}", "kind": "inference", "size": size, "batch": batch,
        "torchvision": summarize(times["torchvision"]), "exact": summarize(times["exact"]),
        "fast": summarize(times["fast"]),
        "detections_per_image": {k: statistics.mean(v) for k, v in counts.items()},
        "agreement_with_torchvision": agreement,
        "pre_nms_candidates_per_image": cand / batch, "background_cores": background,
    }


def bench_training(tv_eval, af_eval, size: int, batch: int, args) -> dict:
    tv = copy.deepcopy(tv_eval).train()
    set_tv_size(tv, size)
    af_exact = copy.deepcopy(af_eval).set_channels_last(True).train()
    af_fast = copy.deepcopy(af_eval).set_channels_last(True).train()
    # small lr: the weights are random and must not blow up to inf/NaN during the repeats
    opt = {name: sgd(m) for name, m in (("torchvision", tv), ("exact", af_exact), ("fast", af_fast))}
    images = random_images(batch, size, seed=7 + batch)
    targets = random_targets(batch, size, seed=11 + batch)
    tv_images, tv_targets = torchvision_inputs(images, targets)
    af_batch = make_batch(images, targets)
    losses = {}

    def tv_fn():
        opt["torchvision"].zero_grad(set_to_none=True)
        loss = sum(tv(tv_images, [dict(t) for t in tv_targets]).values())
        loss.backward()
        opt["torchvision"].step()
        losses.setdefault("torchvision", loss.item())

    def af_step(model, name, fast):
        opt[name].zero_grad(set_to_none=True)
        with autocast(DEVICE, enabled=fast):
            loss = sum(model.loss(af_batch).values())
        loss.backward()
        opt[name].step()
        losses.setdefault(name, loss.item())

    wait_for_idle(args.wait_idle)
    times, background = run_interleaved({"torchvision": tv_fn, "exact": lambda: af_step(af_exact, "exact", False),
                                         "fast": lambda: af_step(af_fast, "fast", True)},
                                        args.warmup, args.min_repeats, args.train_repeats, args.budget)
    return {
        "case": f"train {size}px b{batch}", "kind": "training", "size": size, "batch": batch,
        "torchvision": summarize(times["torchvision"]), "exact": summarize(times["exact"]),
        "fast": summarize(times["fast"]), "first_loss": losses, "background_cores": background,
    }


def sgd(model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9,
                           weight_decay=1e-4)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def environment() -> dict:
    return {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "anchorfree": getattr(anchorfree, "__version__", "?"), "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "cpu_bf16": cpu_supports_bf16(),
        "bf16_autocast_active": mixed_precision_available(DEVICE),
        "mkldnn": torch.backends.mkldnn.is_available(), "device": str(DEVICE),
        "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
        "fast_dtype": str(autocast_dtype(DEVICE)),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def print_table(rows: list[dict]) -> None:
    head = f"{'case':18s} | {'torchvision s':>13s} | {'anchorfree exact s':>18s} | {'ratio':>6s} | " \
           f"{'anchorfree fast s':>17s} | {'ratio':>6s} | {'dets/img tv/af':>14s} | {'bg load':>7s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        tv, ex, fa = r["torchvision"]["median_s"], r["exact"]["median_s"], r["fast"]["median_s"]
        dets = ""
        if "detections_per_image" in r:
            d = r["detections_per_image"]
            dets = f"{d['tv']:.0f}/{d['exact']:.0f}"
        bg = r.get("background_cores")
        bg = "?" if bg is None else f"{bg:.2f}" + ("*" if bg > 0.2 else " ")
        print(f"{r['case']:18s} | {tv:13.3f} | {ex:18.3f} | {tv / ex:5.2f}x | {fa:17.3f} | {tv / fa:5.2f}x | "
              f"{dets:>14s} | {bg:>7s}")
    print("best-of-repeats ratios (less sensitive to background load): " + "; ".join(
        f"{r['case']}: exact {r['torchvision']['min_s'] / r['exact']['min_s']:.2f}x, "
        f"fast {r['torchvision']['min_s'] / r['fast']['min_s']:.2f}x" for r in rows))
    print("times: median of the repeats. bg load: cores used by other processes meanwhile (of "
          f"{os.cpu_count()}); * = over 0.2: that row's times are inflated, rerun it on a quiet machine.")
    fast = f" ({autocast_dtype(DEVICE)})" if mixed_precision_available(DEVICE) else " (no-op: no native bf16 on this CPU)"
    print("ratio = torchvision / anchorfree (> 1: anchorfree faster). exact = channels_last fp32; "
          "fast = channels_last + anchorfree.runtime.autocast" + fast)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def parse_args(spec: ModelSpec, doc: str, argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[640, 800], help="square input sizes (multiples of 32)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="inference batch sizes")
    p.add_argument("--train-batches", type=int, nargs="*", default=[2, 4], help="training batch sizes (0 values: skip)")
    p.add_argument("--train-size", type=int, default=640)
    p.add_argument("--repeats", type=int, default=10, help="max timed repeats per inference case")
    p.add_argument("--train-repeats", type=int, default=5, help="max timed repeats per training case")
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget", type=float, default=30.0, help="~seconds of timed repeats per case (all variants)")
    p.add_argument("--score-thresh", type=float, default=spec.score_thresh)
    p.add_argument("--candidates", type=int, default=1000,
                   help=f"pre-NMS ({spec.prior}, class) pairs above the threshold per image; 0: parity-test spread")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each case wait up to S seconds for other processes to go idle (shared machines)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave default)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where both models run")
    p.add_argument("--quick", action="store_true",
                   help="640 px, batch 1, train batch 2, 1 warm-up, 3 (inference) / 2 (training) repeats")
    p.add_argument("--no-infer", action="store_true")
    p.add_argument("--profile", action="store_true", help="also print the per-stage / per-op breakdown")
    p.add_argument("--profile-only", action="store_true",
                   help="only the profile(s): --profile (default) and/or --profile-train")
    p.add_argument("--profile-size", type=int, default=640)
    p.add_argument("--profile-repeats", type=int, default=5)
    p.add_argument("--profile-train", action="store_true",
                   help="also break a training step (--train-size, --profile-train-batch) into forward/loss/backward/SGD")
    p.add_argument("--profile-train-batch", type=int, default=2)
    p.add_argument("--top-ops", type=int, default=15, help="rows of the per-op profile (0: skip it)")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.train_batches = [640], [1], [2]
        args.warmup, args.repeats, args.train_repeats, args.min_repeats = 1, 3, 2, 2
    if args.profile_only:
        args.no_infer, args.train_batches = True, []
        args.profile = args.profile or not args.profile_train
    for s in args.sizes + [args.train_size, args.profile_size]:
        if s % 32:
            p.error(f"size {s} is not a multiple of 32 (torchvision would pad it, anchorfree too)")
    return args


def run(spec: ModelSpec, doc: str, argv: list[str] | None = None) -> int:
    """The whole benchmark of one model: arguments, environment, cases, table, profiles, JSON."""
    global DEVICE
    args = parse_args(spec, doc, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    DEVICE = timing.DEVICE = torch.device(args.device)  # the clock synchronises it
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to torch")
    env = environment()
    print(f"torch {env['torch']}  torchvision {env['torchvision']}  python {env['python']}  "
          f"threads {env['threads']} (cpus {env['cpu_count']})  mkldnn {env['mkldnn']}")
    where = f"GPU {env['gpu']}" if env["gpu"] else f"CPU bf16 (AVX512-BF16/AMX): {env['cpu_bf16']}"
    print(f"device {env['device']}  {where}  -> 'fast' uses "
          f"{env['fast_dtype'] + ' autocast' if env['bf16_autocast_active'] else 'fp32 (autocast is a no-op)'}  "
          f"loadavg {env['loadavg_start']}")
    t_start = time.perf_counter()
    tv, af, shift = build_models(spec, args.score_thresh, args.candidates, args.sizes[0] if args.sizes else 640)
    print(f"models: {spec.name}, {NUM_CLASSES} classes, {sum(p.numel() for p in af.parameters()) / 1e6:.1f}M params, "
          f"score_thresh {args.score_thresh}, cls bias shift {shift:+.2f} (target {args.candidates} candidates/img)")
    results = {"env": env, "args": vars(args), "cls_bias_shift": shift, "rows": []}

    if not args.no_infer:
        for size in args.sizes:
            for batch in args.batches:
                print(f"  inference {size}px batch {batch} ...", flush=True)
                results["rows"].append(bench_inference(tv, af, size, batch, args))
    for batch in args.train_batches:
        print(f"  training step {args.train_size}px batch {batch} ...", flush=True)
        results["rows"].append(bench_training(tv, af, args.train_size, batch, args))

    if results["rows"]:
        print()
        print_table(results["rows"])
        infer = [r for r in results["rows"] if r["kind"] == "inference"]
        if infer:
            print("pre-NMS candidates/img: " + ", ".join(f"{r['case']}: {r['pre_nms_candidates_per_image']:.0f}"
                                                          for r in infer))
            (ex_px, ex_score), (fa_px, fa_score) = AGREE_TOLERANCES["exact"], AGREE_TOLERANCES["fast"]
            print(f"detections matching torchvision's (same label; boxes within {ex_px:g} px and scores within "
                  f"{ex_score:g} for exact, {fa_px:g} px and {fa_score:g} for fast), exact / fast: " + ", ".join(
                      f"{r['case']}: {100 * r['agreement_with_torchvision']['exact']:.1f}% / "
                      f"{100 * r['agreement_with_torchvision']['fast']:.1f}%" for r in infer))
        train = [r for r in results["rows"] if r["kind"] == "training"]
        if train:
            print("first-step loss (same weights; fast is bf16): " + "; ".join(
                f"{r['case']}: " + ", ".join(f"{k} {v:.4f}" for k, v in r["first_loss"].items()) for r in train))
    if args.profile or args.profile_train:
        import profiles  # the breakdowns (they use this module's models and data)

        if args.profile:
            results["profile"] = profiles.run_profile(tv, af, args)
        if args.profile_train:
            results["train_profile"] = profiles.run_train_profile(spec, tv, af, args)
    results["env"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["total_s"] = time.perf_counter() - t_start
    print(f"\ntotal {results['total_s']:.0f} s; loadavg at end {results['env']['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    return 0
