"""``anchorfree predict``: detect objects in images, drawn images and ``results.json`` in a folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_inference_options, add_slice_options, add_threads, inference_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="detect objects in images and draw them",
                        description="Run a checkpoint on images or folders of images; writes results.json (COCO "
                                    "results format, original image pixels) and one drawn image per input to --out.")
    pr.add_argument("checkpoint", help="run folder, .pt file or an export (.onnx: run with onnxruntime; .pt2, "
                                        ".torchscript) from `anchorfree export`")
    pr.add_argument("images", nargs="+", help="image files or folders; video files (mp4, avi, mov, mkv, webm), stream "
                                              "URLs (rtsp://, http://) or a webcam index (0) are predicted frame by "
                                              "frame (the video extra: PyAV)")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--limit", type=int, default=0, help="process at most this many images (default: all)")
    pr.add_argument("--annotations", metavar="ANN.json",
                    help="a COCO annotation file listing the images: results.json then uses its image ids (matched "
                         "by file name) and category ids, so it can be scored against that file")
    pr.add_argument("--fast", choices=["auto", "on", "off"], default="auto",
                    help="bf16/AMP inference (default: on where the hardware supports it)")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_inference_options(pr, 0.3)
    add_slice_options(pr)
    v = pr.add_argument_group("video: a drawn video, one JSON line per frame, and with --track a MOT-challenge .txt")
    v.add_argument("--frames", action="store_true", help="read the folders / globs given as the frames of one video")
    v.add_argument("--track", action="store_true", help="track objects across frames (ByteTrack, the trackers package)")
    v.add_argument("--vid-stride", type=int, default=1, metavar="N", help="predict every N-th frame (default 1)")
    v.add_argument("--max-frames", type=int, metavar="N", help="stop after N predicted frames")
    v.add_argument("--no-draw", action="store_true", help="no drawn video (JSON lines only)")
    add_threads(pr)


def cmd_predict(args: argparse.Namespace) -> None:
    from ..api import load_model
    from ..inference.video import is_video_source
    from ..predict import annotation_ids, collect_images, predict_to_folder

    from ..files import export_format

    exported = export_format(args.checkpoint) is not None
    fast = {"auto": None, "on": True, "off": False}[args.fast]
    model = load_model(args.checkpoint, device=args.device, fast=None if exported else fast,
                       threads=args.threads or None)
    videos = [i for i in args.images if args.frames or is_video_source(i)]
    if videos:
        _predict_videos(model, videos, args)
    images = [i for i in args.images if i not in videos]
    if not images:
        return
    paths = collect_images(images)
    if args.limit:
        paths = paths[: args.limit]
    image_ids, category_ids = None, None
    if args.annotations:
        image_ids, category_ids, paths = annotation_ids(args.annotations, paths, model.class_names)
    options = inference_options(args)
    if args.slice is not None:
        options.update(slice_size=args.slice, overlap=args.overlap, full_image=args.full_image, merge=args.merge)
    done = predict_to_folder(model, paths, args.out, options, image_ids, category_ids,
                             orient=not args.annotations)  # scored against annotations: their stored pixel grid
    print(f"{done.detections} detections on {done.images} images; drawn images and results.json in {done.out}")
    if done.unreadable:
        print(done.skipped_message(), file=sys.stderr)


def _predict_videos(model, sources: list[str], args: argparse.Namespace) -> None:
    """Each video source frame by frame into ``--out`` (:func:`anchorfree.inference.video.predict_video`)."""
    from ..inference.video import predict_video

    options = inference_options(args)
    for source in sources:
        done = predict_video(model, source, args.out, options, args.vid_stride, args.max_frames, args.track,
                             draw=not args.no_draw)
        rate = done.frames / max(done.seconds, 1e-9)
        tracks = f", {len(done.tracks)} tracks" if args.track else ""
        stopped = " (stopped with Ctrl-C; what was predicted is written)" if done.interrupted else ""
        files = ", ".join(str(f) for f in (done.video, done.jsonl, done.mot) if f is not None)
        print(f"{source}: {done.frames} frames, {done.detections} detections{tracks}, {rate:.1f} frames/s{stopped}; "
              f"wrote {files}")
