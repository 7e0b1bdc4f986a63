"""``anchorfree demo``: the whole job on built-in data in a few minutes."""
from __future__ import annotations

import argparse

from .common import add_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_threads(demo)


def cmd_demo(args: argparse.Namespace) -> None:
    from ..demo import print_summary, run_demo

    print_summary(run_demo(args.out, args.minutes, progress=not args.no_progress))
