"""``anchorfree eval``: COCO evaluation of a checkpoint or export, with its report page."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_inference_options, add_slice_options, add_threads, inference_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="COCO-evaluate a checkpoint or an exported model",
                        description="Evaluate a run folder (its best.pt), a checkpoint or an exported model "
                                    "(.onnx, .xml, .pt2, .torchscript: its own runtime and inference settings) on "
                                    "DATA's validation split (COCO, YOLO or Pascal VOC): the 12 COCO metrics and "
                                    "per-class AP; writes metrics.json next to the checkpoint (for an export "
                                    "<file>.metrics.json).")
    ev.add_argument("checkpoint", metavar="RUN_OR_EXPORT", help="run folder, .pt file or exported model")
    ev.add_argument("--data", required=True, help="dataset folder or dataset YAML")
    ev.add_argument("--save-results", action="store_true",
                    help="also write the detections as results.json (COCO results format, with each image's "
                         "file_name) next to metrics.json; for YOLO and VOC data also ground_truth.json, the COCO "
                         "view whose image ids results.json uses")
    ev.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    ev.add_argument("--workers", type=int, default=2, help="data loading processes (default 2)")
    ev.add_argument("--fast", action="store_true", help="bf16 autocast on CPUs with bf16 / AMP on CUDA")
    ev.add_argument("--backend", choices=["faster", "pycocotools"], default="faster",
                    help="COCO metrics implementation (identical numbers; faster-coco-eval is quicker)")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_inference_options(ev, None)
    add_slice_options(ev)
    add_threads(ev)


def cmd_eval(args: argparse.Namespace) -> None:
    import torch

    from ..data import load_data_spec
    from ..inference.checkpoint import load_detector
    from ..inference.evaluate import add_file_names, make_eval_dataset, predict_dataset, score_results
    from ..inference.slicing import SliceOptions
    from ..errors import DatasetError
    from ..evaluation import format_metrics_table, save_metrics
    from ..models.fuse import inference_detector
    from ..runtime import select_device

    from ..files import export_format

    spec = load_data_spec(args.data)
    if export_format(args.checkpoint) is not None:
        return _eval_export(args, spec)
    model, cfg, ckpt = load_detector(args.checkpoint)
    dataset = make_eval_dataset(model, spec.val_ann, spec.val_images)
    if dataset.num_classes != cfg.model.num_classes:
        raise DatasetError(f"{dataset.source} has {dataset.num_classes} categories but the checkpoint "
                           f"{ckpt['path']} was trained for {cfg.model.num_classes}; evaluate on the dataset it "
                           "was trained for")
    model = inference_detector(model.to(select_device(args.device)), args.fast)
    with torch.inference_mode():
        slicing = None if args.slice is None else SliceOptions(args.slice, args.overlap, args.full_image, args.merge)
        results = predict_dataset(model, dataset, args.batch_size, args.workers, fast=args.fast, slicing=slicing,
                                  **inference_options(args))
    result = score_results(dataset, results, backend=args.backend)
    print(format_metrics_table(result))
    folder = Path(ckpt["path"]).parent
    save_metrics(result, folder / "metrics.json")
    written = [folder / "metrics.json"]
    if args.save_results:
        (folder / "results.json").write_text(json.dumps(add_file_names(dataset, results)))
        written.append(folder / "results.json")
        if isinstance(dataset.coco_gt, dict):  # YOLO / VOC: the COCO view that the image ids refer to
            (folder / "ground_truth.json").write_text(json.dumps(dataset.coco_gt))
            written.append(folder / "ground_truth.json")
    from ..report import write_run_report

    written.append(write_run_report(folder, dataset=dataset, results=results, metrics=result, data=args.data,
                                    backend=args.backend))
    print(f"wrote {', '.join(map(str, written))}")


def _eval_export(args: argparse.Namespace, spec) -> None:
    """``eval`` of an exported file: the certificate's evaluation (:func:`anchorfree.export.certificate.evaluate_export`)."""
    from ..api import load_model
    from ..data import CocoDetection
    from ..evaluation import format_metrics_table, save_metrics
    from ..export.certificate import evaluate_export
    from ..inference.slicing import SliceOptions

    slicing = None if args.slice is None else SliceOptions(args.slice, args.overlap, args.full_image, args.merge)
    model = load_model(args.checkpoint, device=args.device, threads=args.threads or None)
    dataset = CocoDetection(spec.val_ann, spec.val_images, None, class_names=spec.class_names, train=False)
    result, results = evaluate_export(model, dataset, progress=True, slicing=slicing, **inference_options(args))
    print(format_metrics_table(result))
    path = Path(args.checkpoint)
    written = [path.with_name(f"{path.name}.metrics.json")]
    save_metrics(result, written[0])
    if args.save_results:
        written.append(path.with_name(f"{path.name}.results.json"))
        written[-1].write_text(json.dumps(results))
    print(f"wrote {', '.join(map(str, written))}")
