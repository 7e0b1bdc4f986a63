"""Cost of the keypoint detectors (CenterNet, CornerNet): parameters, GFLOPs, forward vs decode time,
inference and training images/s.

For each preset the model is built as ``anchorfree predict`` runs it (``models.fuse.inference_detector``:
BatchNorm folded, channels_last, fp32) with COCO's 80 classes (the CPU presets keep the synthetic data's 5),
on random images of the preset's input size:

* ``forward``: backbone + neck + head convs (``detector(images)``);
* ``decode``: ``head.predict`` on those maps — CenterNet: 3×3 max-pool peaks, top-100, boxes, no NMS;
  CornerNet: top-100 corners per map, all 100 × 100 pairs at once, best 1000, Gaussian soft-NMS. Its maps
  are replaced by a worst case: random heatmaps on one class only and zero embeddings, so every pair whose
  BR corner lies below and right of its TL corner is valid and soft-NMS gets the full 1000 candidates in
  one class (1000 sequential selection steps);
* ``decode / forward`` — the issue's target for CenterNet-R18 at 512 px is below 5 %;
* training step images/s (forward + loss + backward + AdamW step, batch ``--train-batch``, fp32) for the
  CPU presets only.

Median of ``--repeats`` calls after one warm-up.

    python benchmarks/bench_keypoint.py                                  # the four presets
    python benchmarks/bench_keypoint.py --presets centernet_r18 --repeats 10
"""
from __future__ import annotations

import argparse
import json
import sys

import common  # first: it sets up the profiler's logging before torch is imported
from timing import median_time
import torch
from torch.utils.flop_counter import FlopCounterMode

from anchorfree.models.detector import Detector
from anchorfree.models.fuse import inference_detector
from anchorfree.presets import get_preset
from anchorfree.structures import Batch

CPU_PRESETS = {"centernet_r18_tiny", "cornernet_hg_tiny"}


def random_targets(batch: int, size: int, num_classes: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        xy = torch.rand(6, 2, generator=g) * size * 0.6
        wh = 8 + torch.rand(6, 2, generator=g) * size * 0.35
        out.append({"boxes": torch.cat([xy, xy + wh], dim=1).clamp(max=size - 1),
                    "labels": torch.randint(0, num_classes, (6,), generator=g)})
    return out


def measure(name: str, repeats: int, train_batch: int) -> dict:
    cfg = get_preset(name)
    cfg.model.num_classes = 5 if name in CPU_PRESETS else 80
    size = cfg.model.input.min_size
    model = Detector(cfg.model).eval()
    params = sum(p.numel() for p in model.parameters())
    images = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[size, size]])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images, sizes)
    row = {"preset": name, "input": size, "params_M": params / 1e6, "gflops": counter.get_total_flops() / 1e9}

    fused = inference_detector(model, fast=False)
    with torch.no_grad():
        maps = fused(images, sizes)
        if "tl_emb" in maps:  # CornerNet worst case: one class, every geometric pair valid
            g = torch.Generator().manual_seed(1)
            for key in ("tl_heat", "br_heat"):
                heat = torch.full_like(maps[key][-1], -20.0)
                heat[:, 0] = torch.randn(heat[:, 0].shape, generator=g) - 2
                maps[key] = [heat]
            for key in ("tl_emb", "br_emb"):
                maps[key] = [torch.zeros_like(maps[key][-1])]
        row["forward_s"] = median_time(lambda: fused(images, sizes), 1, repeats)
        row["decode_s"] = median_time(lambda: fused.head.predict(maps, sizes), 1, repeats)
        row["detections"] = len(fused.head.predict(maps, sizes)[0])
        batch = Batch(images, sizes)
        row["predict_s"] = median_time(lambda: fused.predict(batch), 1, repeats)
        row["candidates"] = int((fused.head.decode(maps, 100, 3, 0.5, 1000)[1] > -0.1).sum()) if "tl_emb" in maps \
            else row["detections"]
    row["decode_share"] = row["decode_s"] / row["forward_s"]
    row["infer_img_s"] = 1.0 / row["predict_s"]

    if name in CPU_PRESETS:
        model.train().to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        train_images = torch.randint(0, 256, (train_batch, 3, size, size), dtype=torch.uint8)
        batch = Batch(train_images, sizes.expand(train_batch, -1).clone(),
                      random_targets(train_batch, size, cfg.model.num_classes))

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            sum(model.loss(batch).values()).backward()
            opt.step()

        row["train_step_s"] = median_time(step, 1, max(3, repeats // 2))
        row["train_img_s"] = train_batch / row["train_step_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+",
                        default=["centernet_r18", "cornernet_hg104", "centernet_r18_tiny", "cornernet_hg_tiny"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    env = common.environment()
    print(json.dumps({k: env[k] for k in ("torch", "cpu", "cpu_count", "threads", "cpu_bf16")}))
    rows = []
    print(f"{'preset':20s} {'px':>4s} {'params M':>9s} {'GFLOPs':>7s} {'forward s':>10s} {'decode s':>9s} "
          f"{'decode/fwd':>10s} {'cand.':>5s} {'dets':>5s} {'infer img/s':>11s} {'train img/s':>11s}")
    for name in args.presets:
        r = measure(name, args.repeats, args.train_batch)
        rows.append(r)
        train = f"{r['train_img_s']:11.2f}" if "train_img_s" in r else f"{'-':>11s}"
        print(f"{r['preset']:20s} {r['input']:4d} {r['params_M']:9.2f} {r['gflops']:7.1f} {r['forward_s']:10.4f} "
              f"{r['decode_s']:9.4f} {100 * r['decode_share']:9.2f}% {r['candidates']:5d} {r['detections']:5d} "
              f"{r['infer_img_s']:11.2f} "
              f"{train}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
