"""``anchorfree convert mmdet|torchvision``: weights of other libraries into a run folder."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def cmd_convert(args: argparse.Namespace) -> None:
    from ..interop.run import write_run

    if args.library == "mmdet":
        from ..interop.mmdet import convert_mmdet

        conversion = convert_mmdet(args.checkpoint, args.model, args.overrides, trusted=args.trusted)
    else:
        from ..interop.torchvision import convert_torchvision

        conversion = convert_torchvision(args.checkpoint, args.model, args.overrides)
    out = write_run(conversion, args.out)
    print(conversion.summary())
    print(f"wrote {out / 'best.pt'}, {out / 'config.yaml'} and {out / 'conversion.json'}")
    print(f"next: anchorfree eval {out} --data DATA   |   anchorfree predict {out} IMAGES --out {out / 'predictions'}"
          f"   |   anchorfree export {out} --format onnx")
