"""What several commands share: the ``--threads`` option, the inference options, and cleaning error messages."""
from __future__ import annotations

import argparse

from ..config import NMS_MODES


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU threads for torch (default: one per core). On a machine shared with other jobs, "
                             "fewer threads than cores avoid oversubscription, which can slow each step several times")


def add_inference_options(parser: argparse.ArgumentParser, score_default: float | None) -> None:
    """Inference options of the head, for this run only (defaults: the model's config)."""
    g = parser.add_argument_group("inference options (default: the model's config)")
    g.add_argument("--score-thresh", type=float, default=score_default, metavar="S",
                   help="minimum score of a detection" + (f" (default {score_default})" if score_default is not None
                                                          else ""))
    g.add_argument("--nms", choices=NMS_MODES,
                   help="suppression: hard NMS per class or across classes, Gaussian/linear soft-NMS, or none")
    g.add_argument("--nms-thresh", type=float, metavar="IOU", help="IoU threshold of hard NMS / linear soft-NMS")
    g.add_argument("--max-det", type=int, metavar="N", help="detections kept per image")
    g.add_argument("--flip-test", action="store_true", default=None,
                   help="average the predictions of each image and its mirror image (CenterNet)")


def inference_options(args: argparse.Namespace) -> dict:
    return {"score_thresh": args.score_thresh, "nms": args.nms, "nms_thresh": args.nms_thresh,
            "max_detections": args.max_det, "flip_test": args.flip_test}


def clean_message(message: str) -> str:
    """Errors raised in DataLoader workers arrive wrapped with the worker's traceback; keep the message."""
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message


def add_slice_options(parser: argparse.ArgumentParser) -> None:
    """Sliced inference (``predict``, ``eval``): small objects in large images, tiles merged as SAHI does."""
    g = parser.add_argument_group("sliced inference: small objects in large images (tiles merged as SAHI does)")
    g.add_argument("--slice", type=int, metavar="S", help="detect on tiles of S px, each at the model's input size")
    g.add_argument("--overlap", type=float, default=0.2, metavar="F",
                   help="fraction of a tile shared with its neighbour, in [0, 1) (default 0.2)")
    g.add_argument("--full-image", action="store_true", help="also detect on the whole image and merge it in")
    g.add_argument("--merge", choices=["nms", "greedy_nmm"], default="nms",
                   help="merge across tiles on intersection over the smaller box: NMS (default), or greedy "
                        "non-maximum merging (SAHI's default: union boxes; it fused neighbouring objects in dense "
                        "scenes)")
