"""``anchorfree`` command line: data, train, eval, predict, convert, models, bench.

Errors caused by input (files, fields, config values, checkpoints) are printed as one message
that says what to do, without a traceback; the exit status is 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import warnings
from pathlib import Path

EPILOG = """examples:
  anchorfree data synth data/synth
  anchorfree train fcos_r18_fpn_tiny --data data/synth --out runs/demo train.epochs=4
  anchorfree eval runs/demo --data data/synth
  anchorfree predict runs/demo/best.pt data/synth/val/images --limit 8 --out runs/demo/predictions
  anchorfree convert mmdet atss_r50_fpn_1x_coco.pth --out runs/atss
  anchorfree models
"""


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU threads for torch (default: one per core). On a machine shared with other jobs, "
                             "fewer threads than cores avoid oversubscription, which can slow each step several times")


def _add_inference_options(parser: argparse.ArgumentParser, score_default: float | None) -> None:
    """Inference options of the head, for this run only (defaults: the model's config)."""
    g = parser.add_argument_group("inference options (default: the model's config)")
    g.add_argument("--score-thresh", type=float, default=score_default, metavar="S",
                   help="minimum score of a detection" + (f" (default {score_default})" if score_default is not None
                                                          else ""))
    g.add_argument("--nms", choices=["classwise", "agnostic", "soft_gaussian", "soft_linear", "none"],
                   help="suppression: hard NMS per class or across classes, Gaussian/linear soft-NMS, or none")
    g.add_argument("--nms-thresh", type=float, metavar="IOU", help="IoU threshold of hard NMS / linear soft-NMS")
    g.add_argument("--max-det", type=int, metavar="N", help="detections kept per image")
    g.add_argument("--flip-test", action="store_true", default=None,
                   help="average the predictions of each image and its mirror image (CenterNet)")


def _inference_options(args: argparse.Namespace) -> dict:
    return {"score_thresh": args.score_thresh, "nms": args.nms, "nms_thresh": args.nms_thresh,
            "max_detections": args.max_det, "flip_test": args.flip_test}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anchorfree", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="One-stage object detection in pure PyTorch: train, evaluate and run FCOS and its family "
                    "on COCO-format datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="make, check or convert datasets",
                          description="Make, check or convert datasets (COCO JSON, YOLO txt or Pascal VOC XML).")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="write the built-in synthetic COCO dataset",
                                description="Write a synthetic COCO-format dataset (JPEG images + JSON) to OUT/train, "
                                            "OUT/val and OUT/data.yaml. Seeded. --style shapes: five flat shape "
                                            "classes on procedural backgrounds; --style photos: six classes (photo-"
                                            "textured shapes and faces) on natural photographs, with small objects, "
                                            "clutter and occlusion.")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--train", type=int, default=600, help="number of training images (default 600)")
    synth.add_argument("--val", type=int, default=100, help="number of validation images (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--style", choices=("shapes", "photos"), default="shapes",
                       help="shapes: flat shapes on procedural backgrounds (5 classes); photos: textured shapes and "
                            "faces on scikit-image's sample photographs with clutter and occlusion (6 classes; needs "
                            "pip install 'anchorfree[photos]') (default shapes)")
    synth.add_argument("--min-size", type=int, default=None,
                       help="smallest image side in pixels (default 256 for shapes, 192 for photos)")
    synth.add_argument("--max-size", type=int, default=320, help="largest image side in pixels (default 320)")
    check = data_sub.add_parser(
        "check", help="validate a dataset and print its statistics",
        description="Read DATA as training does and list every problem found, not only the first: errors "
                    "(training would stop on them: malformed entries, unknown ids, missing, corrupt or truncated "
                    "images, images whose size differs from the declared width/height) and warnings (clipped or "
                    "dropped boxes, unknown YAML keys). By default every image header is read (no decoding); "
                    "--images decodes every image, --no-images skips them. Exits with status 2 when there is "
                    "an error.")
    check.add_argument("data", help="dataset folder or dataset YAML (COCO, YOLO or Pascal VOC)")
    images = check.add_mutually_exclusive_group()
    images.add_argument("--headers", dest="images", action="store_const", const="headers", default="headers",
                        help="read every image file's header: format, size, end of file (the default)")
    images.add_argument("--images", dest="images", action="store_const", const=True,
                        help="decode every image file fully (slower; also finds damage inside files)")
    images.add_argument("--no-images", dest="images", action="store_const", const=False,
                        help="check the annotations only")
    check.add_argument("--show", type=int, default=0, metavar="N",
                       help="also write dataset_report.html: N images drawn with their ground-truth boxes, class "
                            "counts and box-size histograms (how label mistakes are found)")
    check.add_argument("--report-dir", metavar="DIR", help="folder for dataset_report.html (default: the dataset's)")
    convert = data_sub.add_parser(
        "convert", help="convert a dataset to COCO, YOLO or Pascal VOC",
        description="Read SRC (a dataset folder or YAML in any of the three formats, checked as for training) and "
                    "write its train and val splits to the new folder DST in the format --to, with a data.yaml. "
                    "Images are hard-linked where possible (no extra disk space; both datasets then share each "
                    "file), else copied. YOLO and VOC have no category ids: classes keep their order and names, "
                    "and read back as ids 1..K. YOLO has no ignore regions, so crowd/difficult boxes are left out; "
                    "VOC keeps them as difficult.")
    convert.add_argument("src", help="dataset folder or dataset YAML")
    convert.add_argument("dst", help="output folder (new or empty)")
    convert.add_argument("--to", required=True, choices=["coco", "yolo", "voc"], help="format to write")
    convert.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")

    demo = sub.add_parser(
        "demo", help="the whole job on built-in data in a few minutes",
        description="Write a synthetic dataset, train the light GFL preset (gfl_shufflenetv2_pan_nano, 192 px) "
                    "within --minutes (train.minutes), evaluate it, draw predictions and write report.html, then "
                    "print the COCO table, where the files are and the commands to run next. An interrupted demo "
                    "resumes where it stopped.")
    demo.add_argument("--out", default="runs/demo", help="folder for the data and the run (default runs/demo)")
    demo.add_argument("--minutes", type=float, default=3.0,
                      help="time budget of the whole demo (default 3): data, training, evaluation, report, drawing")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_threads(demo)

    train = sub.add_parser(
        "train", help="train a detector", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Train MODEL (a preset name from `anchorfree models` or a YAML config) on DATA. Settings are changed "
            "with key=value overrides, e.g. train.epochs=24 train.lr=0.005 head.center_sampling_radius=0 (a key "
            "without section works when unambiguous: epochs=24). train.minutes=M trains for M minutes instead of "
            "train.epochs: the whole run (set-up, steps, checkpoints, the final validation) is held to the budget, "
            "its length re-estimated from the measured time per step and the learning-rate schedule laid over "
            "it.", 100) + "\n\n" + textwrap.fill(
            "Several processes (DistributedDataParallel; NCCL on GPUs, one GPU per process, gloo on CPUs): "
            "--nproc N on this machine, or torchrun for several machines. train.batch_size is per process, as "
            "with torchrun: one optimizer step sees batch_size x processes x train.accumulate images, and "
            "train.lr is the learning rate of that effective batch (train.scale_lr=true scales it linearly from "
            "train.lr_reference_batch, default train.batch_size). Logging, progress, validation and checkpoints "
            "happen on rank 0; an error on one process stops all of them with that process's message.", 100),
        epilog=textwrap.dedent("""\
            The run folder gets config.yaml (what the run uses), train.log, metrics.jsonl, loss.png, map.png,
            metrics.json, last.pt and best.pt. last.pt is written after every epoch and, with
            train.checkpoint_interval=N, every N optimizer steps; --resume continues exactly where it was
            written, also inside an epoch.

            On --resume, key=value overrides of these fields are applied to the rest of the run: train.epochs,
            minutes, lr, schedule, milestones, gamma, min_lr_ratio, warmup_iters, warmup_ratio, weight_decay, momentum,
            grad_clip, amp, ema_decay, scale_lr, lr_reference_batch, eval_interval, log_interval,
            checkpoint_interval, workers, device, channels_last, sync_bn, dist_backend, dist_timeout,
            find_unused_parameters, batch_size and accumulate (keeping the effective batch), and the head's
            inference options; any other change is refused with the old and the new value.

            --weights W starts from trained weights (fine-tuning; not --resume: optimizer, epoch and schedule start
            fresh): a run folder, a .pt checkpoint or a run from `anchorfree convert`. Tensors that fit are
            loaded; the per-class layers are re-initialised when the classes differ, keeping the rows of class
            names both sides share; weights of another architecture are refused, naming the preset they fit.
            train.freeze=backbone (or neck: backbone and neck) trains only the rest;
            model.backbone.weights=imagenet starts the backbone from torchvision's ImageNet weights.

            examples:
              anchorfree train gfl_shufflenetv2_pan_nano --data my_data.yaml --out runs/mine --weights runs/big
              anchorfree train fcos_r18_fpn_tiny --data data/synth --out runs/a --nproc 2 train.accumulate=2
              anchorfree train fcos_r18_fpn_tiny --data data/synth --out runs/a --resume train.epochs=12 train.lr=0.001
              torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 \\
                  -m anchorfree train fcos_r50_fpn --data coco.yaml --out runs/r50"""))
    train.add_argument("model", help="preset name, path to a config YAML, or a run folder (its config.yaml)")
    train.add_argument("--data", required=True, help="dataset folder (from `data synth`) or dataset YAML")
    train.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last.pt (overrides: see below)")
    train.add_argument("--weights", metavar="W",
                       help="start from trained weights: a run folder, a .pt checkpoint or a converted run "
                            "(fine-tuning; the same as train.weights=W)")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train with N processes on this machine, started by torchrun's launcher "
                            "(torch.distributed.run); train.batch_size is per process (default 1: no processes "
                            "are started)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to train.log)")
    _add_threads(train)
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    ev = sub.add_parser("eval", help="COCO-evaluate a checkpoint",
                        description="Evaluate a run folder (its best.pt) or a checkpoint on DATA's validation "
                                    "split (COCO, YOLO or Pascal VOC): the 12 COCO metrics and per-class AP; writes "
                                    "metrics.json next to the checkpoint.")
    ev.add_argument("checkpoint", help="run folder or .pt file")
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
    _add_inference_options(ev, None)
    _add_threads(ev)

    pr = sub.add_parser("predict", help="detect objects in images and draw them",
                        description="Run a checkpoint on images or folders of images; writes results.json (COCO "
                                    "results format, original image pixels) and one drawn image per input to --out.")
    pr.add_argument("checkpoint", help="run folder, .pt file or an export (.onnx: run with onnxruntime; .pt2, "
                                        ".torchscript) from `anchorfree export`")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--limit", type=int, default=0, help="process at most this many images (default: all)")
    pr.add_argument("--annotations", metavar="ANN.json",
                    help="a COCO annotation file listing the images: results.json then uses its image ids (matched "
                         "by file name) and category ids, so it can be scored against that file")
    pr.add_argument("--fast", choices=["auto", "on", "off"], default="auto",
                    help="bf16/AMP inference (default: on where the hardware supports it)")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _add_inference_options(pr, 0.3)
    _add_threads(pr)

    conv = sub.add_parser(
        "convert", help="turn mmdetection or torchvision weights into a run folder",
        description="Convert a checkpoint trained with another library into an anchorfree run folder (best.pt, "
                    "config.yaml, conversion.json) that eval, predict, export and the Python API use like any other. "
                    "The detector is recognised from the checkpoint's keys and the class count read off its weights.")
    conv_sub = conv.add_subparsers(dest="library", required=True, metavar="LIBRARY")
    for library, what, default in (
            ("mmdet", "an mmdetection 3.x checkpoint (.pth) of FCOS, ATSS, GFL, RetinaNet, CenterNet or CornerNet",
             "the *_mmdet preset of its head, e.g. atss_r50_fpn_mmdet"),
            ("torchvision", "a torchvision fcos_resnet50_fpn / retinanet_resnet50_fpn(_v2) state dict",
             "fcos_r50_fpn_torchvision or retinanet_r50_fpn(_v2)_torchvision")):
        lp = conv_sub.add_parser(library, help=f"convert {what}", description=f"Convert {what} into a run folder; "
                                 "a checkpoint that does not fit the preset gets a message naming the first keys that "
                                 "differ and the preset that would fit.")
        lp.add_argument("checkpoint", help="the weights file")
        lp.add_argument("--out", required=True, help="run folder to create")
        lp.add_argument("--model", help=f"preset (default: {default})")
        if library == "mmdet":
            lp.add_argument("--trusted", action="store_true",
                            help="allow checkpoints that pickle non-tensor objects (runs the file's code: trusted "
                                 "files only)")
        lp.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides of the preset")

    ex = sub.add_parser(
        "export", help="export a model to ONNX, torch.export or TorchScript, checked against PyTorch",
        description="Write RUN's model (a run folder or .pt checkpoint) as one graph from uint8 images to boxes, "
                    "scores and labels: normalisation, decoding and NMS inside (ONNX NonMaxSuppression), or raw "
                    "candidates for a runtime that runs its own NMS. Right after writing, the file is run on a few "
                    "images (onnxruntime for ONNX) and its detections are compared with PyTorch's; the command "
                    "prints the check and fails when it does not hold. Formats: onnx for every model (CornerNet: "
                    "hard NMS in place of its Soft-NMS, with a note); pt2 and torchscript run the PyTorch "
                    "post-processing, Soft-NMS included, and need anchorfree to load.")
    ex.add_argument("checkpoint", metavar="RUN", help="run folder or .pt file")
    ex.add_argument("--format", choices=["onnx", "pt2", "torchscript"], default="onnx", help="default onnx")
    ex.add_argument("--out", help="file to write (default: next to the checkpoint, best.onnx / best.pt2 / ...)")
    ex.add_argument("--opset", type=int, help="ONNX opset (>= 18; default: the exporter's)")
    ex.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (onnx, pt2)")
    ex.add_argument("--nms", dest="nms", action="store_true", default=True,
                    help="NMS in the graph, the model's configured suppression (the default)")
    ex.add_argument("--no-nms", dest="nms", action="store_false",
                    help="raw candidates: every candidate above the score threshold, for a runtime's own NMS")
    ex.add_argument("--half", action="store_true", help="fp16 network (onnx only; decoding and NMS stay fp32)")
    ex.add_argument("--batch", type=int, default=1, help="images per run of a static export (default 1)")
    ex.add_argument("--input-size", type=int, nargs="+", metavar="PX",
                    help="static canvas H [W] (default: a square of model.input.max_size)")
    ex.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    ex.add_argument("--score-thresh", type=float, metavar="S", help="score threshold baked in (default: the config's)")
    ex.add_argument("--max-det", type=int, metavar="N", help="detections kept per image (default: the config's)")

    from .serve import add_serve_parser

    add_serve_parser(sub)

    sub.add_parser("models", help="list model presets", description="List the model presets that `train` accepts.")

    bench = sub.add_parser("bench", help="compare models on your data", description="Benchmarks on your own data.")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    cmp = bench_sub.add_parser(
        "compare", help="train several models under one time budget and tabulate them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Train each MODEL (preset or config YAML) on DATA within --minutes (train.minutes: the whole run, "
            "validation included, is held to the budget; the run's length is re-estimated from the measured time "
            "per step and the schedule spans it), evaluate it once at the end, "
            "and measure inference speed at batch 1. Writes OUT/compare.md (table: params, epochs, train and "
            "inference images/s, AP, AP50, AP75, APs, APm, APl), OUT/compare.json, OUT/compare.png (bar plot) "
            "and one run folder per model, OUT/<model>. Running the command again skips finished models and "
            "resumes an interrupted one.", 100),
        epilog="example:\n  anchorfree bench compare fcos_r10_fpn_tiny gfl_shufflenetv2_pan_nano --data data/synth "
               "--out runs/compare --minutes 5")
    cmp.add_argument("models", nargs="+", metavar="MODEL", help="preset names or config YAML files")
    cmp.add_argument("--data", required=True, help="dataset folder (from `data synth`) or dataset YAML")
    cmp.add_argument("--out", required=True, help="output folder")
    cmp.add_argument("--minutes", type=float, default=5.0, help="training time per model (default 5)")
    cmp.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="key=value",
                     help="overrides applied to every model, e.g. --set train.batch_size=16 input.min_size=256")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_threads(cmp)
    return parser


def cmd_data(args: argparse.Namespace) -> None:
    from .data import check_dataset, convert_dataset, generate_photo_dataset, generate_synthetic_dataset
    from .errors import DatasetError

    if args.data_command == "synth":
        make = generate_photo_dataset if args.style == "photos" else generate_synthetic_dataset
        min_size = args.min_size if args.min_size is not None else (192 if args.style == "photos" else 256)
        out = make(args.out, num_train=args.train, num_val=args.val, image_size=(min_size, args.max_size),
                   seed=args.seed)
        print(f"wrote {args.train} training and {args.val} validation images to {out} (spec: {out / 'data.yaml'})")
        return
    if args.data_command == "convert":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = convert_dataset(args.src, args.dst, args.to, link=not args.copy)
        for w in caught:
            print(f"warning: {w.message}")
        for split, counts in summary["splits"].items():
            print(f"{split}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        print(f"wrote {summary['from']} dataset {args.src} as {args.to} to {args.dst} (spec: {summary['spec']})")
        return
    report = check_dataset(args.data, images=args.images)
    print(report.format_text())
    if args.show:
        from .report import write_dataset_report

        out = Path(args.report_dir) if args.report_dir else Path(args.data if Path(args.data).is_dir()
                                                                  else Path(args.data).parent)
        print(f"dataset report with {args.show} drawn images: {write_dataset_report(args.data, out, show=args.show)}")
    if not report.ok:
        raise DatasetError(report.error_message())


def _train_worker_args(args: argparse.Namespace) -> list[str]:
    """The ``anchorfree train`` arguments of ``args`` without ``--nproc`` (what each process runs)."""
    argv = ["train", args.model, "--data", args.data, "--out", args.out]
    argv += ["--resume"] * args.resume + ["--no-progress"] * args.no_progress
    if args.weights:
        argv += ["--weights", args.weights]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return argv + list(args.overrides)


def cmd_train(args: argparse.Namespace) -> None:
    import os

    from .engine import distributed
    from .errors import AnchorfreeError, ConfigError

    model = args.model
    again = f"anchorfree train {model} --data {args.data} --out {args.out} --resume"
    if args.nproc != 1:
        if distributed.launched_by_torchrun():
            raise ConfigError("--nproc starts its own processes; under torchrun leave it out (torchrun's "
                              "--nproc_per_node sets the number of processes)")
        from torch.distributed.elastic.multiprocessing.api import SignalException

        try:
            distributed.launch(args.nproc, _train_worker_args(args))
        except (KeyboardInterrupt, SignalException):
            print(f"\ninterrupted; continue with: {again} --nproc {args.nproc}", file=sys.stderr)
            raise SystemExit(130) from None
        return

    from .config import apply_overrides
    from .engine.trainer import resume_config
    from .evaluation import format_metrics_table
    from .presets import model_config
    from .training import run_training

    if args.weights and args.resume:
        raise ConfigError("--weights starts a new run from trained weights and --resume continues the run in --out "
                          "from its own last.pt; use one of them")
    rank = int(os.environ.get("RANK", "0")) if distributed.launched_by_torchrun() else None
    try:
        if args.resume:
            cfg = apply_overrides(resume_config(args.out), args.overrides)
        else:
            cfg = model_config(model, args.overrides + ([f"train.weights={args.weights}"] if args.weights else []))
        # dataset problems also go to train.log
        trainer, result = run_training(cfg, args.data, args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        if rank is None:
            print(f"\ninterrupted; continue with: {again}", file=sys.stderr)
        elif rank == 0:
            print(f"\nrank 0: interrupted; continue with the same launch command and --resume (run folder {args.out})",
                  file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:
        if rank is None:
            raise
        # one of several processes: say which one failed, for the launcher too, and stop
        if not isinstance(e, AnchorfreeError) and not distributed.is_peer_failure(e):
            import traceback

            traceback.print_exc()
        message, _ = distributed.rank_failure(e, rank, _clean_message)
        if rank == 0 or not (getattr(e, "same_on_all_ranks", False) or isinstance(e, ConfigError)):
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    if trainer.is_main:
        if result is not None:
            print(format_metrics_table(result))
            print(f"\nbest AP {max(trainer.best_ap, result['metrics']['AP']):.4f} (epoch {result['epoch']}: AP "
                  f"{result['metrics']['AP']:.4f}, AP50 {result['metrics']['AP50']:.4f})")
        print(f"run folder: {args.out} (config.yaml, train.log, best.pt, last.pt, metrics.jsonl, loss.png, map.png)")
        if trainer.report is not None:
            print(f"report: {trainer.report}")
        print(f"next: anchorfree eval {args.out} --data {args.data}   |   anchorfree predict {args.out} IMAGES --out "
              f"{Path(args.out) / 'predictions'}   |   anchorfree export {args.out} --format onnx")


def cmd_eval(args: argparse.Namespace) -> None:
    import torch

    from .data import load_data_spec
    from .inference.checkpoint import load_detector
    from .inference.evaluate import add_file_names, make_eval_dataset, predict_dataset, score_results
    from .errors import DatasetError
    from .evaluation import format_metrics_table, save_metrics
    from .models.fuse import inference_detector
    from .runtime import select_device

    model, cfg, ckpt = load_detector(args.checkpoint)
    spec = load_data_spec(args.data)
    dataset = make_eval_dataset(model, spec.val_ann, spec.val_images)
    if dataset.num_classes != cfg.model.num_classes:
        raise DatasetError(f"{dataset.source} has {dataset.num_classes} categories but the checkpoint "
                           f"{ckpt['path']} was trained for {cfg.model.num_classes}; evaluate on the dataset it "
                           "was trained for")
    model = inference_detector(model.to(select_device(args.device)), args.fast)
    with torch.inference_mode():
        results = predict_dataset(model, dataset, args.batch_size, args.workers, fast=args.fast,
                                  **_inference_options(args))
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
    from .report import write_run_report

    written.append(write_run_report(folder, dataset=dataset, results=results, metrics=result, data=args.data,
                                    backend=args.backend))
    print(f"wrote {', '.join(map(str, written))}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .api import load_model
    from .predict import annotation_ids, collect_images, predict_to_folder

    fast = {"auto": None, "on": True, "off": False}[args.fast]
    model = load_model(args.checkpoint, device=args.device, fast=None if Path(args.checkpoint).suffix in
                       (".onnx", ".pt2", ".torchscript") else fast)
    paths = collect_images(args.images)
    if args.limit:
        paths = paths[: args.limit]
    image_ids, category_ids = None, None
    if args.annotations:
        image_ids, category_ids, paths = annotation_ids(args.annotations, paths, model.class_names)
    done = predict_to_folder(model, paths, args.out, _inference_options(args), image_ids, category_ids,
                             orient=not args.annotations)  # scored against annotations: their stored pixel grid
    print(f"{done.detections} detections on {done.images} images; drawn images and results.json in {done.out}")
    if done.unreadable:
        print(done.skipped_message(), file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> None:
    from .data import load_data_spec
    from .compare import compare, format_table
    from .presets import model_config

    configs = {Path(m).stem: model_config(m, args.overrides) for m in args.models}
    results = compare(configs, load_data_spec(args.data), args.out, args.minutes, progress=not args.no_progress)
    print(format_table(results))
    from .report import write_compare_report

    report = write_compare_report(args.out, results, data=args.data)
    print(f"wrote {Path(args.out) / 'compare.md'}, compare.json, compare.png and {report}")


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_model

    size = None if not args.input_size else (tuple(args.input_size) if len(args.input_size) == 2 else args.input_size[0])
    options = {k: v for k, v in (("score_thresh", args.score_thresh), ("max_detections", args.max_det)) if v is not None}
    report = export_model(args.checkpoint, args.format, args.out, opset=args.opset, dynamic=args.dynamic,
                          nms=args.nms, half=args.half, batch=args.batch, input_size=size, options=options or None,
                          check=not args.no_check, log=print)  # progress, then the report's summary
    if args.format == "onnx":
        print(f"next: anchorfree predict {report.path} IMAGES --out predictions   |   "
              f"anchorfree serve {report.path}   |   Python without PyTorch: "
              f"anchorfree.load_model('{report.path}')(image)")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import print_summary, run_demo

    print_summary(run_demo(args.out, args.minutes, progress=not args.no_progress))


def cmd_convert(args: argparse.Namespace) -> None:
    from .interop.run import write_run

    if args.library == "mmdet":
        from .interop.mmdet import convert_mmdet

        conversion = convert_mmdet(args.checkpoint, args.model, args.overrides, trusted=args.trusted)
    else:
        from .interop.torchvision import convert_torchvision

        conversion = convert_torchvision(args.checkpoint, args.model, args.overrides)
    out = write_run(conversion, args.out)
    print(conversion.summary())
    print(f"wrote {out / 'best.pt'}, {out / 'config.yaml'} and {out / 'conversion.json'}")
    print(f"next: anchorfree eval {out} --data DATA   |   anchorfree predict {out} IMAGES --out {out / 'predictions'}"
          f"   |   anchorfree export {out} --format onnx")


def cmd_models(args: argparse.Namespace) -> None:
    from .presets import describe_presets

    rows = describe_presets()
    width = max(len(name) for name, _ in rows)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}")


def _clean_message(message: str) -> str:
    """Errors raised in DataLoader workers arrive wrapped with the worker's traceback; keep the message."""
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message


def main(argv: list[str] | None = None) -> int:
    from .errors import AnchorfreeError
    from .serve import cmd_serve

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may come after the options
        if args.command not in ("train", "convert") or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    handlers = {"data": cmd_data, "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "models": cmd_models,
                "bench": cmd_bench, "convert": cmd_convert,
                "serve": cmd_serve, "export": cmd_export, "demo": cmd_demo}
    restore_threads = None
    try:
        threads = getattr(args, "threads", 0)
        if threads < 0:
            raise AnchorfreeError(f"--threads must be a positive number of threads, got {threads}")
        if threads:
            import torch

            restore_threads = torch.get_num_threads()  # main() called from Python leaves the process as it was
            torch.set_num_threads(threads)
        handlers[args.command](args)
    except AnchorfreeError as e:
        print(f"error: {_clean_message(str(e))}", file=sys.stderr)
        return 2
    finally:
        if restore_threads is not None:
            torch.set_num_threads(restore_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
