"""``anchorfree bench compare``: several models on one dataset under one time budget."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from .common import add_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_threads(cmp)


def cmd_bench(args: argparse.Namespace) -> None:
    from ..data import load_data_spec
    from ..compare import compare, format_table
    from ..presets import model_config

    configs = {Path(m).stem: model_config(m, args.overrides) for m in args.models}
    results = compare(configs, load_data_spec(args.data), args.out, args.minutes, progress=not args.no_progress)
    print(format_table(results))
    from ..report import write_compare_report

    report = write_compare_report(args.out, results, data=args.data)
    print(f"wrote {Path(args.out) / 'compare.md'}, compare.json, compare.png and {report}")
