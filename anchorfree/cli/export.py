"""``anchorfree export``: ONNX, OpenVINO, torch.export or TorchScript; fp32, fp16 or int8; checked against PyTorch
and, with ``--data``, certified on the validation split."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export", help="export a model to ONNX, OpenVINO, torch.export or TorchScript (fp32, fp16, int8), checked "
                       "against PyTorch and certified on your data",
        description="Write RUN's model (a run folder or .pt checkpoint) as one graph from uint8 images to boxes, "
                    "scores and labels: normalisation, decoding and NMS inside (ONNX NonMaxSuppression), or raw "
                    "candidates for a runtime that runs its own NMS. Right after writing, the file is run on a few "
                    "images (onnxruntime for ONNX, OpenVINO for .xml) and its detections are compared with "
                    "PyTorch's; the command prints the check and fails when it does not hold. With --data, the "
                    "export is certified: evaluated on the validation split with the COCO metric of `eval`, next "
                    "to the PyTorch model (AP, AP50, APs, ΔAP, images/s, size), printed and written as "
                    "<file>.certificate.json; an export losing more than --max-ap-drop AP points is deleted and "
                    "the command fails. --int8 calibrates on --calib training images of --data. Formats: onnx for "
                    "every model (CornerNet: hard NMS in place of its Soft-NMS, with a note); openvino (.xml + "
                    ".bin, pip install 'anchorfree[openvino]'); pt2 and torchscript run the PyTorch "
                    "post-processing, Soft-NMS included, and need anchorfree to load.",
        epilog="examples:\n  anchorfree export runs/demo --format onnx --int8 --data data/synth\n"
               "  anchorfree export runs/demo --format openvino --half --data data/synth --max-ap-drop 0.5\n"
               "  anchorfree benchmark runs/demo --data data/synth     # every format and precision in one table",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("checkpoint", metavar="RUN", help="run folder or .pt file")
    ex.add_argument("--format", choices=["onnx", "openvino", "pt2", "torchscript"], default="onnx", help="default onnx")
    ex.add_argument("--out", help="file to write (default: next to the checkpoint, best.onnx / best_int8.onnx / "
                                  "best.xml / best.pt2 / ...)")
    ex.add_argument("--opset", type=int, help="ONNX opset (>= 18; default: the exporter's)")
    ex.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (onnx, openvino, pt2)")
    ex.add_argument("--nms", dest="nms", action="store_true", default=True,
                    help="NMS in the graph, the model's configured suppression (the default)")
    ex.add_argument("--no-nms", dest="nms", action="store_false",
                    help="raw candidates: every candidate above the score threshold, for a runtime's own NMS")
    precision = ex.add_mutually_exclusive_group()
    precision.add_argument("--half", action="store_true",
                           help="fp16 network (onnx; openvino: fp16 weights); decoding and NMS stay fp32")
    precision.add_argument("--int8", action="store_true",
                           help="int8 convolutions (onnx, openvino), calibrated on training images of --data "
                                "(required); the output convolutions and post-processing stay in float")
    ex.add_argument("--data", help="dataset folder or YAML: int8 calibration (train split) and the certificate "
                                   "(validation split)")
    ex.add_argument("--calib", type=int, default=128, metavar="N", help="int8 calibration images (default 128)")
    ex.add_argument("--max-ap-drop", type=float, metavar="X",
                    help="AP points the export may lose against PyTorch on --data (default 1.0 int8, 0.3 fp16, "
                         "0.1 fp32); above it the file is deleted and the command fails")
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
                          nms=args.nms, half=args.half, int8=args.int8, data=args.data, calib=args.calib,
                          max_ap_drop=args.max_ap_drop, batch=args.batch, input_size=size,
                          options=options or None, check=not args.no_check, log=print)  # progress, then the summary
    if args.format in ("onnx", "openvino"):
        more = "" if args.data else f"   |   certify it: anchorfree benchmark {args.checkpoint} --data DATA"
        print(f"next: anchorfree predict {report.path} IMAGES --out predictions   |   "
              f"anchorfree serve {report.path}   |   Python without PyTorch: "
              f"anchorfree.load_model('{report.path}')(image){more}")
