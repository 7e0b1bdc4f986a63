"""``anchorfree export``: ONNX, torch.export or TorchScript, checked against PyTorch."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def cmd_export(args: argparse.Namespace) -> None:
    from ..export import export_model

    size = None if not args.input_size else (tuple(args.input_size) if len(args.input_size) == 2 else args.input_size[0])
    options = {k: v for k, v in (("score_thresh", args.score_thresh), ("max_detections", args.max_det)) if v is not None}
    report = export_model(args.checkpoint, args.format, args.out, opset=args.opset, dynamic=args.dynamic,
                          nms=args.nms, half=args.half, batch=args.batch, input_size=size, options=options or None,
                          check=not args.no_check, log=print)  # progress, then the report's summary
    if args.format == "onnx":
        print(f"next: anchorfree predict {report.path} IMAGES --out predictions   |   "
              f"anchorfree serve {report.path}   |   Python without PyTorch: "
              f"anchorfree.load_model('{report.path}')(image)")
