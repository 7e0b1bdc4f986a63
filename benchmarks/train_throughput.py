"""Training throughput per FLOP, anchorfree presets and ultralytics YOLOv8n side by side.

For each model, on the same data, size, batch and thread count:

* ``step img/s``: forward, loss, backward and optimiser step on one batch held in memory, as each
  library's training loop runs them (anchorfree: one optimiser step per batch; ultralytics: forward,
  loss and backward per batch and, with its nominal batch of 64, one optimiser step and EMA update every
  ``64 / batch`` batches, counted here at that rate);
* ``loop img/s``: the same with each library's own training data loader (augmentation included) feeding
  the steps;
* ``GFLOPs``: of one forward pass at the training size, counted by ``torch.utils.flop_counter`` for both
  (2 FLOPs per multiply-add, convolutions and matrix products);
* ``img/s x GFLOPs``: the useful work per second, the figure to compare across sizes of models;
* a profile of the step: the share of CPU time in convolutions (forward and backward) and in the rest.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from anchorfree.config import apply_overrides
from anchorfree.engine.trainer import Trainer
from anchorfree.presets import get_preset
from anchorfree.runtime import autocast


def _gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _time_steps(step, batches, warmup: int, steps: int) -> float:
    """Images/s of ``step(batch)`` over ``steps`` batches after ``warmup`` (``batches``: an iterator)."""
    seen, start = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            seen, start = 0, time.perf_counter()
        batch = next(batches)
        seen += step(batch)
    return seen / (time.perf_counter() - start)


def _profile(step, batch, steps: int = 4) -> dict[str, float]:
    """Shares of the step's CPU self time: convolution forward/backward, BatchNorm, activations, the rest."""
    from torch.profiler import ProfilerActivity, profile

    step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(batch)
    groups = {"conv fwd": 0.0, "conv bwd": 0.0, "batchnorm": 0.0, "activation": 0.0, "other": 0.0}
    others: dict[str, float] = {}
    for event in prof.key_averages():
        t = event.self_cpu_time_total
        name = event.key
        if "convolution_backward" in name or "conv" in name and "backward" in name:
            groups["conv bwd"] += t
        elif "conv" in name:
            groups["conv fwd"] += t
        elif "batch_norm" in name:
            groups["batchnorm"] += t
        elif any(a in name for a in ("silu", "leaky_relu", "relu", "hardswish", "threshold")):
            groups["activation"] += t
        else:
            groups["other"] += t
            others[name] = others.get(name, 0.0) + t
    total = sum(groups.values())
    shares = {k: v / total for k, v in groups.items()}
    shares["top other"] = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(others.items(), key=lambda x: -x[1])[:5])
    return shares


def anchorfree_throughput(preset: str, overrides: list[str], spec, work: Path, warmup: int = 3,
                          steps: int = 12, fast: bool = False) -> dict:
    """The figures above for an anchorfree preset (``fast``: bf16 autocast on the CPU)."""
    cfg = apply_overrides(get_preset(preset), [*overrides, "train.eval_interval=0", f"train.amp={fast}"])
    trainer = Trainer(cfg, spec, work / f"throughput-{preset}", progress=False)
    trainer.model.train()
    loader = iter(trainer.loader)
    held = next(loader).to(trainer.device)

    def step(batch) -> int:
        trainer.train_step(batch)
        return len(batch)

    def batches():
        while True:
            yield held

    step_rate = _time_steps(step, batches(), warmup, steps)
    loop_rate = _time_steps(step, (b.to(trainer.device) for b in _cycle(trainer.loader)), warmup, steps)
    profile = _profile(step, held)
    one = held.images[:1]
    model = trainer.model.eval()
    with torch.no_grad(), autocast(trainer.device, enabled=fast):
        gflops = _gflops(lambda: model(one))
    size = held.images.shape[-2:]
    return {"name": f"anchorfree {preset}" + (" (bf16)" if fast else ""), "size": list(size),
            "batch": len(held), "params": sum(p.numel() for p in model.parameters()),
            "step_images_per_s": step_rate, "loop_images_per_s": loop_rate, "gflops": gflops, "profile": profile}


def _cycle(loader):
    while True:
        yield from loader


def yolov8_throughput(data_yaml: Path, work: Path, imgsz: int, batch: int, workers: int, warmup: int = 3,
                      steps: int = 12) -> dict:
    """The figures above for ultralytics YOLOv8n built from ``yolov8n.yaml`` with its default training
    settings (its own trainer's model, loss, optimiser and loader)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer(overrides=dict(model="yolov8n.yaml", data=str(data_yaml), imgsz=imgsz, batch=batch,
                                              workers=workers, device="cpu", pretrained=False, amp=False,
                                              plots=False, val=False, project=str(work.resolve()),
                                              name="throughput-yolov8n", exist_ok=True, verbose=False))
    trainer._setup_train()
    model = trainer.model
    model.train()
    accumulate = max(round(trainer.args.nbs / batch), 1)
    loader = iter(trainer.train_loader)
    held = trainer.preprocess_batch(next(loader))
    count = {"n": 0}

    def step(b) -> int:
        loss, _ = model(b)
        loss.sum().backward()
        count["n"] += 1
        if count["n"] % accumulate == 0:
            trainer.optimizer_step()
        return b["img"].shape[0]

    def batches():
        while True:
            yield held

    steps = accumulate * math.ceil(steps / accumulate)  # whole optimiser cycles
    step_rate = _time_steps(step, batches(), warmup, steps)
    loop_rate = _time_steps(step, (trainer.preprocess_batch(b) for b in _cycle(trainer.train_loader)), warmup, steps)
    profile = _profile(step, held, steps=accumulate)
    model.eval()
    with torch.no_grad():
        gflops = _gflops(lambda: model(held["img"][:1]))
    return {"name": "yolov8n (ultralytics)", "size": list(held["img"].shape[-2:]), "batch": held["img"].shape[0],
            "params": sum(p.numel() for p in model.parameters()), "step_images_per_s": step_rate,
            "loop_images_per_s": loop_rate, "gflops": gflops, "profile": profile,
            "optimizer_every": accumulate}


def format_throughput(rows: list[dict]) -> str:
    head = ["model", "params (M)", "input", "GFLOPs", "step img/s", "loop img/s", "step img/s x GFLOPs",
            "conv fwd", "conv bwd", "BN", "act", "other", "largest other ops"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        p = r["profile"]
        lines.append("| " + " | ".join([
            r["name"], f"{r['params'] / 1e6:.2f}", "x".join(map(str, r["size"])) + f" b{r['batch']}",
            f"{r['gflops']:.3f}", f"{r['step_images_per_s']:.1f}", f"{r['loop_images_per_s']:.1f}",
            f"{r['step_images_per_s'] * r['gflops']:.1f}",
            *(f"{p[k]:.0%}" for k in ("conv fwd", "conv bwd", "batchnorm", "activation", "other")),
            p["top other"]]) + " |")
    return "\n".join(lines)


__all__ = ["anchorfree_throughput", "format_throughput", "yolov8_throughput"]
