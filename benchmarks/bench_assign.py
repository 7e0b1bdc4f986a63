"""Cost of target assignment: FCOS (points × boxes) and ATSS (anchors × boxes) for 1–1000 boxes
on a 1333×800 input (P3–P7, ~20k priors), batch 1, CPU.

    python benchmarks/bench_assign.py [--boxes 1 10 100 300 1000] [--repeats 3]

Prints the median time per call and the time per box; time should grow no worse than linearly
in the number of boxes.
"""
from __future__ import annotations

import argparse

import torch

from anchorfree.config import HeadConfig
from anchorfree.models.heads.atss import atss_assign
from anchorfree.models.heads.fcos import fcos_assign
from anchorfree.models.priors import anchor_priors, grid_priors, level_anchor_shapes
from timing import median_time  # one warm-up call, then the median of the repeats


def random_boxes(n: int, width: int, height: int, generator: torch.Generator) -> torch.Tensor:
    wh = torch.exp(torch.empty(n, 2).uniform_(2.0, 6.0, generator=generator))  # 7..400 px
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([width, height])
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=1)
    return torch.minimum(boxes.clamp(min=0), torch.tensor([width, height, width, height], dtype=torch.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[1, 10, 100, 300, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width, height, strides = 1344, 800, [8, 16, 32, 64, 128]
    shapes = [(-(-height // s), -(-width // s)) for s in strides]
    cfg = HeadConfig(octave_base_scale=8, scales_per_octave=1, anchor_ratios=[1.0])
    points = grid_priors(shapes, strides, 0.5, torch.device("cpu"))
    anchors = anchor_priors(grid_priors(shapes, strides, 0.0, torch.device("cpu")), level_anchor_shapes(cfg))
    ranges = torch.tensor(cfg.regress_ranges, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {len(points.points)} priors")
    print(f"{'boxes':>6} {'FCOS s':>9} {'FCOS ms/box':>12} {'ATSS s':>9} {'ATSS ms/box':>12}")
    for n in args.boxes:
        boxes = random_boxes(n, width, height, g)[None]
        valid = torch.ones(1, n, dtype=torch.bool)
        t_fcos = median_time(lambda: fcos_assign(points, boxes, valid, ranges, 1.5), 1, args.repeats)
        t_atss = median_time(lambda: atss_assign(anchors, boxes, valid, 9), 1, args.repeats)
        print(f"{n:>6} {t_fcos:>9.4f} {1000 * t_fcos / n:>12.3f} {t_atss:>9.4f} {1000 * t_atss / n:>12.3f}")


if __name__ == "__main__":
    main()
