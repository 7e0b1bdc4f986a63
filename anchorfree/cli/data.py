"""``anchorfree data synth|check|convert``: make, check or convert datasets."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    synth.add_argument("--video", action="store_true",
                       help="write a video with tracking ground truth instead: OUT/video.mp4 (moving, crossing, "
                            "occluding shapes) and OUT/gt.txt (MOT challenge); needs the video extra")
    synth.add_argument("--frames", type=int, default=60, help="--video: number of frames (default 60, 10 fps)")
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
    check.add_argument("--input-size", type=int, default=320, metavar="N",
                       help="report the objects' sizes at a network input of N px (default 320, the light presets'): "
                            "where they would vanish, it says to train on windows and predict with --slice")
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


def cmd_data(args: argparse.Namespace) -> None:
    from ..data import check_dataset, convert_dataset, generate_photo_dataset, generate_synthetic_dataset
    from ..errors import DatasetError

    if args.data_command == "synth" and args.video:
        from ..data.synth_video import generate_video

        out = generate_video(args.out, frames=args.frames, size=(args.min_size or 240, args.max_size), seed=args.seed)
        print(f"wrote {args.frames} frames to {out / 'video.mp4'} and their tracks to {out / 'gt.txt'} (MOT challenge)")
        return
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
    report = check_dataset(args.data, images=args.images, input_size=args.input_size)
    print(report.format_text())
    if args.show:
        from ..report import write_dataset_report

        out = Path(args.report_dir) if args.report_dir else Path(args.data if Path(args.data).is_dir()
                                                                  else Path(args.data).parent)
        print(f"dataset report with {args.show} drawn images: {write_dataset_report(args.data, out, show=args.show)}")
    if not report.ok:
        raise DatasetError(report.error_message())
