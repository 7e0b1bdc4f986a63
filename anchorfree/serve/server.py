"""Run the application with uvicorn: :func:`serve` (what ``anchorfree serve`` calls).

With ``workers > 1`` uvicorn starts that many processes, each importing :func:`app_from_environment`,
which loads its own copy of the model from the settings the parent put in ``ANCHORFREE_SERVE_SETTINGS``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AnchorfreeError
from .extras import require_serve_extra

SETTINGS_ENV = "ANCHORFREE_SERVE_SETTINGS"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass
class ServeSettings:
    """What each server process needs to load the model and build the application."""

    model: str
    device: str = "auto"
    fast: bool | None = None
    threads: int = 0  # torch CPU threads per process; 0: torch's default
    max_image_pixels: int = 40_000_000
    max_body_bytes: int = 20 * 2**20
    batch_window_ms: float = 5.0
    max_batch: int = 8


def load_served_model(settings: ServeSettings, device: str | None = None) -> Any:
    """The model of ``settings`` (a run folder, ``.pt`` or exported file), on ``device`` if given."""
    from .info import load

    return load(settings.model, device=device or settings.device, fast=settings.fast)


def build_app(settings: ServeSettings) -> Any:
    """Load the model and create the application (one server process)."""
    if settings.threads > 0:
        os.environ["ANCHORFREE_RUNTIME_THREADS"] = str(settings.threads)  # an export's runtime (onnxruntime, OpenVINO)
        try:
            import torch

            torch.set_num_threads(settings.threads)
        except ImportError:  # an exported model served without PyTorch
            pass
    from .app import create_app

    return create_app(load_served_model(settings), max_image_pixels=settings.max_image_pixels,
                      max_body_bytes=settings.max_body_bytes, batch_window_ms=settings.batch_window_ms,
                      max_batch=settings.max_batch)


def app_from_environment() -> Any:
    """The application of a worker process, from the settings in ``ANCHORFREE_SERVE_SETTINGS``."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise AnchorfreeError(f"{SETTINGS_ENV} is not set; start the server with anchorfree serve RUN_OR_EXPORT")
    return build_app(ServeSettings(**json.loads(raw)))


def serve(run_or_export: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, *,
          device: str = "auto", fast: bool | None = None, threads: int = 0,
          max_image_pixels: int = 40_000_000, max_body_bytes: int = 20 * 2**20, batch_window_ms: float = 5.0,
          max_batch: int = 8, log_level: str = "info") -> None:
    """Serve a run folder, ``.pt`` checkpoint or exported model over HTTP until interrupted.

    ``workers`` uvicorn processes each load the model; with more than one and ``threads=0``, each gets
    ``cpu_count // workers`` torch threads so that they do not oversubscribe the cores. The other
    arguments are those of :func:`anchorfree.serve.create_app`.
    """
    require_serve_extra()
    import uvicorn

    if workers < 1:
        raise AnchorfreeError(f"--workers must be >= 1, got {workers}")
    if not 0 <= port <= 65535:
        raise AnchorfreeError(f"--port must be in 0..65535, got {port}")
    if log_level not in LOG_LEVELS:
        raise AnchorfreeError(f"log level '{log_level}' is not one of {', '.join(LOG_LEVELS)}")
    if workers > 1 and threads == 0:
        threads = max(1, (os.cpu_count() or 1) // workers)
    settings = ServeSettings(str(run_or_export), device, fast, threads, int(max_image_pixels), int(max_body_bytes),
                             float(batch_window_ms), int(max_batch))
    logging.basicConfig(level=logging.INFO if log_level in ("info", "debug", "trace") else logging.WARNING,
                        format="%(levelname)s:     %(message)s")
    if workers == 1:
        app = build_app(settings)
        what = app.state.description
        print(f"anchorfree: serving {what['name']} ({what['format']} on {what['device']}) at http://{host}:{port}/ "
              f"— web page /, POST /predict, GET /model, API docs /docs", file=sys.stderr, flush=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    from .info import describe_model

    # loaded once here (on the CPU) so that a wrong path fails with the loader's message, not in every worker
    name = describe_model(load_served_model(settings, device="cpu"))["name"]
    print(f"anchorfree: serving {name} with {workers} worker processes ({threads} torch threads each) at "
          f"http://{host}:{port}/ — web page /, POST /predict, GET /model, API docs /docs", file=sys.stderr, flush=True)
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run("anchorfree.serve.server:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)
