"""Train several models on one dataset under one training-time budget and tabulate them.

``anchorfree bench compare`` reproduces, on the user's own data, the comparison that detection
papers report: for each model the 6 COCO AP numbers, training and inference speed, and size.

Budget: each model first runs a few calibration steps (:data:`CALIBRATION_STEPS` after
:data:`CALIBRATION_WARMUP`, data loading included) to measure its training images/s; its epoch count
is then set so that training takes about ``minutes``, and the schedule (warm-up, cosine or steps)
is laid out over those epochs, so every model gets a complete schedule of the same length in time.
Validation runs once, at the end. Inference speed is measured on validation images at batch 1 with
the model as ``predict`` runs it (BatchNorm folded, channels_last, fast mode where supported).
"""
from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..config import Config  # noqa: E402
from ..data import DataSpec, collate  # noqa: E402
from ..errors import ConfigError  # noqa: E402
from ..evaluation import save_metrics  # noqa: E402
from ..models.detector import Detector  # noqa: E402
from ..models.fuse import inference_detector  # noqa: E402
from ..runtime import autocast, mixed_precision_available  # noqa: E402
from .trainer import Trainer, resume_config  # noqa: E402

CALIBRATION_WARMUP = 2
CALIBRATION_STEPS = 6
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CompareResult:
    """One row of the comparison."""

    name: str
    run: str
    params: int
    epochs: int
    train_minutes: float
    train_images_per_s: float
    infer_images_per_s: float
    metrics: dict[str, float] = field(default_factory=dict)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_speed(trainer: Trainer, warmup: int = CALIBRATION_WARMUP, steps: int = CALIBRATION_STEPS) -> float:
    """Training images/s of ``trainer``'s model and loader (forward, loss, backward, optimiser step)."""
    trainer.model.train()
    seen, start = 0, 0.0
    for i, batch in enumerate(trainer.loader):
        if i == warmup:
            seen, start = 0, time.perf_counter()
        trainer.train_step(batch.to(trainer.device))
        seen += len(batch)
        if i + 1 == warmup + steps:
            break
    if start == 0.0:
        raise ConfigError(f"the training set has fewer than {warmup + 1} batches; add images or lower "
                          "train.batch_size for the comparison")
    return seen / (time.perf_counter() - start)


def calibrated_epochs(cfg: Config, data: DataSpec, scratch: Path, minutes: float) -> tuple[int, float]:
    """``(epochs, training images/s)``: :func:`training_speed` of ``cfg`` on ``data`` (in the throw-away folder
    ``scratch``), and the whole epochs that fit in ``minutes`` at that speed."""
    shutil.rmtree(scratch, ignore_errors=True)
    calibration = Trainer(cfg, data, scratch, progress=False)
    try:
        images_per_s = training_speed(calibration)
        return epochs_for_budget(images_per_s, len(calibration.train_set), minutes), images_per_s
    finally:
        del calibration
        shutil.rmtree(scratch, ignore_errors=True)


@torch.no_grad()
def inference_speed(model: Detector, dataset, images: int = 20, warmup: int = 2, fast: bool | None = None) -> float:
    """Images/s at batch 1 on the first ``images`` samples of ``dataset`` (decoding and resizing excluded);
    ``fast`` (default: where the hardware supports it) as in ``predict``."""
    fast = mixed_precision_available(model.device) if fast is None else fast
    runner = inference_detector(model, fast)
    batches = [collate([dataset[i]], model.cfg.input.size_divisor).to(model.device)
               for i in range(min(len(dataset), images + warmup))]
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        with autocast(model.device, enabled=fast):
            runner.predict(batch)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times) if times else float("nan")


def epochs_for_budget(images_per_s: float, train_images: int, minutes: float) -> int:
    """Whole epochs that fit in ``minutes`` at ``images_per_s`` (at least one)."""
    return max(1, round(minutes * 60 * images_per_s / train_images))


def compare(configs: dict[str, Config], data: DataSpec, out: str | Path, minutes: float,
            progress: bool = True) -> list[CompareResult]:
    """Train every config for about ``minutes`` into ``out/<name>`` and write ``out/compare.{json,md,png}``.

    A model whose run already finished in ``out`` is not trained again; an unfinished one is resumed.
    """
    if minutes <= 0:
        raise ConfigError(f"the training budget must be positive, got {minutes} minutes")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, cfg in configs.items():
        results.append(_train_one(name, cfg, data, out, minutes, progress))
        write_report(results, out)
    return results


def _train_one(name: str, cfg: Config, data: DataSpec, out: Path, minutes: float, progress: bool) -> CompareResult:
    run = out / name
    record = run / "compare.json"
    if record.is_file():
        return CompareResult(**json.loads(record.read_text()))
    resume = (run / "last.pt").is_file()
    if resume:
        cfg = resume_config(run)
        images_per_s = json.loads((run / "calibration.json").read_text())["train_images_per_s"]
    else:
        cfg.train.eval_interval = 0
        cfg.train.epochs, images_per_s = calibrated_epochs(cfg, data, out / f".calibrate-{name}", minutes)
        run.mkdir(parents=True, exist_ok=True)
        (run / "calibration.json").write_text(json.dumps({"train_images_per_s": images_per_s,
                                                          "epochs": cfg.train.epochs}))
    trainer = Trainer(cfg, data, run, resume=resume, progress=progress)
    start = time.perf_counter()
    result = trainer.fit() or json.loads((run / "metrics.json").read_text())  # None: it had already finished
    train_minutes = (time.perf_counter() - start - trainer.eval_seconds) / 60
    model = trainer.eval_model().eval()
    entry = CompareResult(name=name, run=str(run), params=count_parameters(model), epochs=cfg.train.epochs,
                          train_minutes=round(train_minutes, 2), train_images_per_s=round(images_per_s, 2),
                          infer_images_per_s=round(inference_speed(model, trainer.val_set), 2),
                          metrics={k: round(float(result["metrics"][k]), 4) for k in METRICS})
    save_metrics(asdict(entry), record)
    return entry


def format_table(results: list[CompareResult]) -> str:
    """A Markdown table: model, size, schedule, speed and the 6 COCO AP numbers (in %)."""
    head = ["model", "params (M)", "epochs", "train min", "train img/s", "infer img/s", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        cells = [r.name, f"{r.params / 1e6:.2f}", str(r.epochs), f"{r.train_minutes:.1f}",
                 f"{r.train_images_per_s:.1f}", f"{r.infer_images_per_s:.1f}",
                 *(f"{100 * r.metrics[k]:.1f}" for k in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(results: list[CompareResult], out: str | Path) -> list[Path]:
    """``compare.json`` (every number), ``compare.md`` (the table) and ``compare.png`` (bar plot)."""
    out = Path(out)
    save_metrics([asdict(r) for r in results], out / "compare.json")
    (out / "compare.md").write_text(format_table(results) + "\n")
    fig, (ax_ap, ax_speed) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r.name for r in results]
    width = 0.8 / len(METRICS)
    for i, key in enumerate(METRICS):
        ax_ap.bar([x + i * width for x in range(len(results))], [100 * r.metrics[key] for r in results], width,
                  label=key)
    ax_ap.set_xticks([x + 0.4 - width / 2 for x in range(len(results))], names, rotation=20, ha="right")
    ax_ap.set_ylabel("COCO AP (%)")
    ax_ap.legend(ncol=6, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    for i, (key, label) in enumerate((("train_images_per_s", "train"), ("infer_images_per_s", "inference"))):
        ax_speed.bar([x + i * 0.4 for x in range(len(results))], [getattr(r, key) for r in results], 0.4,
                     label=label)
    ax_speed.set_xticks([x + 0.2 for x in range(len(results))], names, rotation=20, ha="right")
    ax_speed.set_ylabel("images / s")
    ax_speed.legend()
    for ax in (ax_ap, ax_speed):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=100)
    plt.close(fig)
    return [out / "compare.json", out / "compare.md", out / "compare.png"]


def load_results(path: str | Path) -> list[CompareResult]:
    return [CompareResult(**row) for row in json.loads(Path(path).read_text())]


__all__ = ["CompareResult", "calibrated_epochs", "compare", "count_parameters", "epochs_for_budget", "format_table", "inference_speed",
           "load_results", "training_speed", "write_report"]
