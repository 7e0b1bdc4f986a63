"""``anchorfree demo``: the whole job in one command, on built-in data, within a time budget.

It writes a synthetic dataset (shapes on textured backgrounds, 400 training / 50 validation images of
160–192 px), trains the preset with the best AP per CPU-minute on such data (``gfl_shufflenetv2_pan_nano``
at 192 px) within ``minutes`` (``train.minutes``: the run's length is re-estimated as it goes and the schedule laid
over it, as ``bench compare`` does), evaluates it (the 12 COCO numbers), draws predictions on validation images and
writes ``report.html``; then prints where everything is and what to run next.
"""
from __future__ import annotations

import time
from pathlib import Path

from .api import load_model
from .config import apply_overrides
from .data import generate_synthetic_dataset, load_data_spec
from .errors import AnchorfreeError
from .evaluation import format_metrics_table
from .predict import collect_images, predict_to_folder
from .presets import get_preset
from .training import run_training, start_or_resume

DEMO_PRESET = "gfl_shufflenetv2_pan_nano"
PREDICT_MINUTES = 0.15  # drawing predictions on 8 images after training
DEMO_OVERRIDES = ["input.min_size=192", "input.max_size=192", "train.eval_interval=0", "train.warmup_iters=50"]


def run_demo(out: str | Path = "runs/demo", minutes: float = 3.0, progress: bool = True,
             num_train: int = 400, num_val: int = 50) -> dict:
    """Data → training for ~``minutes`` → evaluation → drawn predictions → report; returns what was written.
    Raises when a step fails (nothing is reported as written that was not)."""
    out = Path(out)
    start = time.perf_counter()
    data = out / "data"
    if not (data / "data.yaml").is_file():
        generate_synthetic_dataset(data, num_train=num_train, num_val=num_val, image_size=(160, 192), seed=0)
    spec = load_data_spec(data)
    run = out / "run"
    budget = max(0.5, minutes - (time.perf_counter() - start) / 60 - PREDICT_MINUTES)  # what is left for training
    cfg = apply_overrides(get_preset(DEMO_PRESET), [*DEMO_OVERRIDES, f"train.minutes={budget:.4f}"])
    cfg, resume = start_or_resume(cfg, run)  # a demo that was interrupted: finish its run
    trainer, result = run_training(cfg, spec, run, resume=resume, progress=progress)
    if result is None:
        raise AnchorfreeError(f"{run} had already finished training; remove {out} to run the demo again")
    predictions = run / "predictions"
    images = collect_images([str(spec.val_images)])[:8]
    drawn = predict_to_folder(load_model(run, fast=False), images, predictions, progress=progress)
    if drawn.unreadable:
        raise AnchorfreeError(drawn.skipped_message())
    return {"run": run, "data": data, "metrics": result, "report": trainer.report, "predictions": predictions,
            "epochs": round(trainer.iteration / trainer.iters_per_epoch, 1), "minutes": (time.perf_counter() - start) / 60}


def print_summary(done: dict) -> None:
    m = done["metrics"]["metrics"]
    print(format_metrics_table(done["metrics"]))
    print(f"\nanchorfree demo: {DEMO_PRESET} trained {done['epochs']} epochs in {done['minutes']:.1f} min in total; "
          f"AP {m['AP']:.3f}, AP50 {m['AP50']:.3f}")
    print(f"  report:      {done['report']}")
    print(f"  run folder:  {done['run']} (config.yaml, train.log, metrics.jsonl, best.pt, last.pt)")
    print(f"  predictions: {done['predictions']} (drawn images, results.json)")
    print("next:")
    print(f"  anchorfree eval {done['run']} --data {done['data']} --save-results")
    print(f"  anchorfree export {done['run']} --format onnx")
    print(f"  anchorfree serve {done['run']}            # a web page to try it: http://127.0.0.1:8000")
    print(f"  anchorfree train {DEMO_PRESET} --data YOUR_DATA --out runs/mine train.minutes=30   # COCO, YOLO or VOC")
    print(f"  anchorfree train {DEMO_PRESET} --data YOUR_DATA --out runs/mine_ft --weights PRETRAINED_RUN"
          "   # fine-tune a trained run")
