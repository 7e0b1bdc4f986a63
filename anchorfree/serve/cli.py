"""``anchorfree serve RUN_OR_EXPORT``: the subcommand's arguments and what it runs.

Importing this module needs neither FastAPI nor uvicorn; :func:`cmd_serve` says how to install them.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import AnchorfreeError

EXAMPLES = """examples:
  anchorfree serve runs/demo                              # http://127.0.0.1:8000/ : drop an image on the page
  anchorfree serve runs/demo/best.onnx --port 9000        # an export (onnxruntime)
  anchorfree serve runs/demo --host 0.0.0.0 --workers 2   # reachable from other machines, 2 processes

  curl -F image=@photo.jpg 'http://127.0.0.1:8000/predict?score_thresh=0.3'
  curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/predict

endpoints:
  GET  /         web page: choose or drop an image, boxes drawn over it, a score threshold slider
  POST /predict  an image (multipart field 'image' or 'file', or the raw bytes with Content-Type image/*)
                 -> {"detections": [{"box": [x1, y1, x2, y2], "score", "label", "class_name"}],
                     "image_size": [h, w], "model", "time_ms"};
                 query: score_thresh, max_detections, nms, nms_thresh
  GET  /model    preset name, head, class names, input size rule, format, device, limits
  GET  /health   {"status": "ok"}
  GET  /docs     OpenAPI documentation

Requests that arrive together (within --batch-window-ms, up to --max-batch images) share one model call.
Errors are JSON {"error": "..."}: 4xx for a bad request, 500 when the model fails on one image.
"""


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` that must be > 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the ``anchorfree`` command's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "serve", help="serve a model over HTTP: a JSON API and a web page",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Serve a trained model (a run folder or .pt file) or an exported one (.onnx, .pt2,\n"
                    ".torchscript) over HTTP with FastAPI and uvicorn: POST /predict answers detections as JSON,\n"
                    "/ is a web page to try the model. Needs the serve extra: pip install \"anchorfree[serve]\".")
    p.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, .pt checkpoint or exported .onnx/.xml/.pt2/.torchscript")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="server processes, each with its own copy of the model (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--fast", choices=["auto", "on", "off"], default="auto",
                   help="bf16/AMP inference of PyTorch checkpoints (default: on where the hardware supports it)")
    g = p.add_argument_group("batching and limits")
    g.add_argument("--max-batch", type=_positive(int), default=8, metavar="N",
                   help="the most images of one model call (default 8; 1 turns batching off)")
    g.add_argument("--batch-window-ms", type=float, default=5.0, metavar="MS",
                   help="how long a request waits for others to share its model call (default 5)")
    g.add_argument("--max-megapixels", type=_positive(float), default=40.0, metavar="MP",
                   help="larger images are refused with 413 (default 40)")
    g.add_argument("--max-body-mb", type=_positive(float), default=20.0, metavar="MB",
                   help="larger request bodies are refused with 413 (default 20 MiB)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads for torch per process (default: one per core, divided among --workers)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info: one line per request)")
    return p


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the server of ``anchorfree serve`` until interrupted."""
    from .extras import require_serve_extra

    require_serve_extra()
    if args.batch_window_ms < 0:
        raise AnchorfreeError(f"--batch-window-ms must be >= 0, got {args.batch_window_ms}")
    if args.threads < 0:
        raise AnchorfreeError(f"--threads must be a positive number of threads, got {args.threads}")
    from .server import serve

    serve(args.model, host=args.host, port=args.port, workers=args.workers, device=args.device,
          fast={"auto": None, "on": True, "off": False}[args.fast], threads=args.threads,
          max_image_pixels=int(args.max_megapixels * 1e6), max_body_bytes=int(args.max_body_mb * 2**20),
          batch_window_ms=args.batch_window_ms, max_batch=args.max_batch, log_level=args.log_level)
