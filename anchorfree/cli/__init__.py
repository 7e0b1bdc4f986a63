"""``anchorfree`` command line: data, demo, train, eval, predict, convert, export, benchmark, serve, models, bench — one module
per command (its parser and its ``cmd_*`` function), assembled here.

Errors caused by input (files, fields, config values, checkpoints) are printed as one message
that says what to do, without a traceback; the exit status is 2.
"""
from __future__ import annotations

import argparse
import sys

from . import bench, benchmark, convert, data, demo, evaluate, export, models, predict, train
from .common import clean_message

EPILOG = """examples:
  anchorfree data synth data/synth
  anchorfree train fcos_r18_fpn_tiny --data data/synth --out runs/demo train.epochs=4
  anchorfree eval runs/demo --data data/synth
  anchorfree predict runs/demo/best.pt data/synth/val/images --limit 8 --out runs/demo/predictions
  anchorfree export runs/demo --format onnx --int8 --data data/synth
  anchorfree benchmark runs/demo --data data/synth
  anchorfree convert mmdet atss_r50_fpn_1x_coco.pth --out runs/atss
  anchorfree models
"""


COMMANDS = {"data": data, "demo": demo, "train": train, "eval": evaluate, "predict": predict, "convert": convert,
            "export": export, "benchmark": benchmark, "models": models, "bench": bench}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anchorfree", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="One-stage object detection in pure PyTorch: train, evaluate and run FCOS and its family "
                    "on COCO-format datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ("data", "demo", "train", "eval", "predict", "convert", "export", "benchmark"):
        COMMANDS[name].add_parser(sub)
    from ..serve import add_serve_parser

    add_serve_parser(sub)
    models.add_parser(sub)
    bench.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import AnchorfreeError
    from ..serve import cmd_serve

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may come after the options
        if args.command not in ("train", "convert") or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    handlers = {name: getattr(module, f"cmd_{name}") for name, module in COMMANDS.items()}
    handlers["serve"] = cmd_serve
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
        print(f"error: {clean_message(str(e))}", file=sys.stderr)
        return 2
    finally:
        if restore_threads is not None:
            torch.set_num_threads(restore_threads)
    return 0


__all__ = ["build_parser", "main"]
