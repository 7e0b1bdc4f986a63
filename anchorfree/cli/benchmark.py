"""``anchorfree benchmark``: one trained model in every deployable format and precision, certified side by side."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_threads

DEFAULT_TARGETS = ("onnx:fp32", "onnx:int8", "openvino:fp32", "openvino:fp16", "openvino:int8")
TARGETS = DEFAULT_TARGETS + ("onnx:fp16",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="export a model to every format and precision and certify each on your data",
        description="Export RUN (a run folder or .pt checkpoint) as each FORMAT:PRECISION, check each file against "
                    "PyTorch, then evaluate all of them and the PyTorch model on the whole validation split of DATA "
                    "with the COCO metric of `eval`: AP, AP50, APs, ΔAP vs PyTorch, images/s at batch 1 and at the "
                    "best batch the file runs (pre- and post-processing included), file size, and whether each "
                    "stays within --max-ap-drop. Writes OUT/benchmark.md and OUT/benchmark.json (default OUT: "
                    "RUN/benchmark) and the exported files there. A format whose runtime is not installed is "
                    "skipped with the reason.",
        epilog="example:\n  anchorfree benchmark runs/demo --data data/synth\n"
               "  anchorfree benchmark runs/demo --data data/synth --formats onnx:fp32 onnx:int8 --threads 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="RUN", help="run folder or .pt file")
    p.add_argument("--data", required=True, help="dataset folder or YAML (int8 calibration: train split; "
                                                 "certificate: validation split)")
    p.add_argument("--formats", nargs="+", default=list(DEFAULT_TARGETS), choices=TARGETS, metavar="FORMAT:PRECISION",
                   help=f"what to export (default: {' '.join(DEFAULT_TARGETS)}; also onnx:fp16, which onnxruntime's "
                        "CPU provider runs slowly)")
    p.add_argument("--out", help="folder for the files and the table (default RUN/benchmark)")
    p.add_argument("--calib", type=int, default=128, metavar="N", help="int8 calibration images (default 128)")
    p.add_argument("--max-ap-drop", type=float, metavar="X",
                   help="AP points each export may lose against PyTorch (default 1.0 int8, 0.3 fp16, 0.1 fp32)")
    add_threads(p)


def cmd_benchmark(args: argparse.Namespace) -> None:
    from ..errors import MissingRuntimeError
    from ..export.certificate import certify
    from ..export.exporter import output_path, export_model
    from ..inference.checkpoint import load_detector

    detector, _, ckpt = load_detector(args.checkpoint)
    out = Path(args.out) if args.out else Path(ckpt["path"]).parent / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = [], []
    for target in args.formats:
        fmt, precision = target.split(":")
        path = out / output_path(None, ckpt, fmt, precision).name  # the export's own default name, in OUT
        print(f"== {target}")
        try:
            export_model(args.checkpoint, fmt, path, half=precision == "fp16", int8=precision == "int8",
                         data=None if precision != "int8" else args.data, calib=args.calib,
                         certify_on_data=False, log=print)  # certified together below
        except MissingRuntimeError as e:
            skipped.append(f"{target}: skipped — {e}")
            print(skipped[-1])
            continue
        files.append(path)
    cert = certify(detector, files, args.data, args.max_ap_drop, threads=args.threads or None, log=print)
    table = cert.table() + "".join(f"\n{line}" for line in skipped)
    print(table)
    (out / "benchmark.md").write_text(table + "\n")
    cert.write(out / "benchmark.json")
    print(f"wrote {out / 'benchmark.md'}, {out / 'benchmark.json'} and the exported files in {out}\n"
          f"next: anchorfree predict {files[0] if files else out} IMAGES   |   anchorfree serve FILE   |   "
          f"anchorfree export {args.checkpoint} --format F [--int8] --data {args.data} (one file, certified)")
