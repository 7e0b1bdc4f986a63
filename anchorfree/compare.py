"""Train several models on one dataset under one training-time budget and tabulate them.

``anchorfree bench compare`` reproduces, on the user's own data, the comparison that detection
papers report: for each model the 6 COCO AP numbers, training and inference speed, and size.

Budget: each model trains with ``train.minutes`` set to ``minutes`` (:mod:`anchorfree.engine.budget`): the
run's length in steps is re-estimated as it goes from the measured time per step, epoch overheads
included, less the time its one validation at the end will take, and the schedule (warm-up, cosine or
steps) is laid over it, so every model gets a complete schedule of the same length in time and its run
(set-up, training, validation, report) ends within a few steps of the budget. Inference speed is then
measured on validation images at batch 1 with the model as ``predict`` runs it (BatchNorm folded,
channels_last, fast mode where supported).
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .config import Config, apply_overrides  # noqa: E402
from .data import DataSpec, collate  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .evaluation import save_metrics  # noqa: E402
from .models.detector import Detector  # noqa: E402
from .models.fuse import inference_detector  # noqa: E402
from .runtime import autocast, mixed_precision_available  # noqa: E402
from .training import run_training, start_or_resume  # noqa: E402

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CompareResult:
    """One row of the comparison."""

    name: str
    run: str
    params: int
    epochs: float  # epochs trained (the last one may be partial under a time budget)
    train_minutes: float  # training without the validation
    train_images_per_s: float
    infer_images_per_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    run_minutes: float = 0.0  # the whole budgeted run: set-up, training, checkpoints, validation, report


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    cfg, resume = start_or_resume(apply_overrides(cfg, ["train.eval_interval=0", f"train.minutes={minutes}"]), run)
    start = time.perf_counter()
    trainer, result = run_training(cfg, data, run, resume=resume, progress=progress)
    result = result or json.loads((run / "metrics.json").read_text())  # None: it had already finished
    run_minutes = (time.perf_counter() - start) / 60
    train_seconds = run_minutes * 60 - trainer.eval_seconds
    model = trainer.eval_model().eval()
    images = trainer.iteration * trainer.effective_batch
    entry = CompareResult(name=name, run=str(run), params=count_parameters(model),
                          epochs=round(trainer.iteration / trainer.iters_per_epoch, 2),
                          train_minutes=round(train_seconds / 60, 2),
                          train_images_per_s=round(images / max(train_seconds, 1e-9), 2),
                          infer_images_per_s=round(inference_speed(model, trainer.val_set), 2),
                          metrics={k: round(float(result["metrics"][k]), 4) for k in METRICS},
                          run_minutes=round(run_minutes, 2))
    save_metrics(asdict(entry), record)
    return entry


def format_table(results: list[CompareResult]) -> str:
    """A Markdown table: model, size, schedule, speed and the 6 COCO AP numbers (in %)."""
    head = ["model", "params (M)", "epochs", "run min", "train img/s", "infer img/s", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        cells = [r.name, f"{r.params / 1e6:.2f}", f"{r.epochs:g}", f"{r.run_minutes or r.train_minutes:.1f}",
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


__all__ = ["CompareResult", "compare", "count_parameters", "format_table", "inference_speed", "load_results",
           "write_report"]
