"""Inference speed of two versions of anchorfree side by side: the same models, weights, images and settings, each
version in its own process, the two alternating round after round so that both see the same machine load.

    git worktree add /tmp/af_before <commit>
    python benchmarks/bench_versions.py --before /tmp/af_before --after . --rounds 5

Per model and batch size: the median seconds of ``Detector.predict`` (BatchNorm folded, channels_last, as ``eval``
and ``Model`` run it; fp32) over the rounds of each version, and the ratio after / before (below 1: faster now).
The models: the light presets at 320 px and FCOS R50-FPN at 512 px (``bench_fcos.py``'s model). Run it on an
idle machine; the CPU's flags are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from timing import cpu_flags

CASES = [("gfl_shufflenetv2_pan_nano", 320, 1), ("gfl_shufflenetv2_pan_nano", 320, 8), ("gfl_csp_pan_n", 320, 1),
         ("fcos_r10_fpn_tiny", 320, 1), ("fcos_r50_fpn", 512, 1)]

# what each process runs: times every case once per call (after a warm-up) and prints JSON
SNIPPET = r"""
import json, sys, time, torch
from anchorfree.data import collate
from anchorfree.models.detector import Detector
from anchorfree.models.fuse import inference_detector
from anchorfree.presets import get_preset
torch.manual_seed(0)
out = {}
for name, size, batch in json.loads(sys.argv[1]):
    cfg = get_preset(name).model
    cfg.num_classes = 80
    cfg.backbone.weights = None
    cfg.input.min_size = cfg.input.max_size = size
    torch.manual_seed(0)
    det = inference_detector(Detector(cfg).eval(), fast=False)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    samples = [(img, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "image_id": i,
                      "orig_size": torch.tensor([size, size]), "scale": torch.ones(2)}) for i, img in enumerate(images)]
    batch_ = collate(samples, cfg.input.size_divisor)
    with torch.no_grad():
        for _ in range(2):
            det.predict(batch_, score_thresh=0.0)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            det.predict(batch_, score_thresh=0.0)
            times.append(time.perf_counter() - start)
    times.sort()
    out[f"{name} {size}px b{batch}"] = times[len(times) // 2]
print(json.dumps(out))
"""


def run_version(tree: Path, threads: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", SNIPPET, json.dumps(CASES)], env=env, capture_output=True, text=True,
                          cwd="/tmp")
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="source tree of the earlier version (holds anchorfree/)")
    parser.add_argument("--after", default=".", help="source tree of the later version (default: this one)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per version (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    before, after = Path(args.before), Path(args.after)
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    print(f"CPU flags: {cpu_flags()}; {args.threads} thread(s); {args.rounds} rounds, alternating", flush=True)
    for r in range(args.rounds):
        for label, tree in (("before", before), ("after", after)) if r % 2 == 0 else (("after", after), ("before", before)):
            for case, seconds in run_version(tree, args.threads).items():
                results[label].setdefault(case, []).append(seconds)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    print("\n| case | before ms | after ms | after / before |\n|---|---|---|---|")
    for case in results["before"]:
        b, a = statistics.median(results["before"][case]), statistics.median(results["after"][case])
        print(f"| {case} | {b * 1000:.1f} | {a * 1000:.1f} | {a / b:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
