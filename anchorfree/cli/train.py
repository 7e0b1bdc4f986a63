"""``anchorfree train``: train a preset, a YAML config or a run folder's config (one or several processes)."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from ..config import RESUME_APPLIED
from .common import add_threads, clean_message

# generated from the one list of what --resume may change (config.RESUME_APPLIED)
RESUME_HELP = textwrap.fill(
    "On --resume, key=value overrides of these train fields are applied to the rest of the run: "
    + ", ".join(sorted(RESUME_APPLIED - {"batch_size", "accumulate"}))
    + ", batch_size and accumulate (keeping the effective batch), and the head's inference options; any other "
    "change is refused with the old and the new value.", 100)


def add_parser(sub: argparse._SubParsersAction) -> None:
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

{resume}

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
                  -m anchorfree train fcos_r50_fpn --data coco.yaml --out runs/r50""").format(resume=RESUME_HELP))
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
    add_threads(train)
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


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

    from ..engine import distributed
    from ..errors import AnchorfreeError, ConfigError

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

    from ..config import apply_overrides
    from ..engine.resume import resume_config
    from ..evaluation import format_metrics_table
    from ..presets import model_config
    from ..training import run_training

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
        message, _ = distributed.rank_failure(e, rank, clean_message)
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
