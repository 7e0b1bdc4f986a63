"""The FastAPI application: ``POST /predict``, ``GET /health``, ``GET /model`` and the web page at ``GET /``.

    >>> from anchorfree import load_model
    >>> from anchorfree.serve import create_app
    >>> app = create_app(load_model("runs/demo"))      # any ASGI server runs it: uvicorn module:app

Every error is JSON ``{"error": "..."}`` with a message that says what to send instead; a failure inside
the model answers 500 for that request only.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from .extras import require_serve_extra

require_serve_extra()

from fastapi import Depends, FastAPI, Query, Request  # noqa: E402 - after the check that names the extra
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import AnchorfreeError  # noqa: E402
from .batching import BatchQueue  # noqa: E402
from .info import describe_model, input_key, load  # noqa: E402
from .inputs import RequestError, decode_image, image_bytes  # noqa: E402
from .schema import IMAGE_BODY, PREDICT_ERRORS, PredictAnswer  # noqa: E402

log = logging.getLogger("anchorfree.serve")

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_BODY_BYTES = 20 * 2**20
DEFAULT_BATCH_WINDOW_MS = 5.0
DEFAULT_MAX_BATCH = 8

NmsMode = Literal["classwise", "agnostic", "soft_gaussian", "soft_linear", "none"]
QUERY_PARAMETERS = ("score_thresh", "max_detections", "nms", "nms_thresh", "slice", "overlap", "full_image", "merge")
ENDPOINTS = "GET / (web page), GET /health, GET /model, POST /predict, GET /openapi.json"


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _reject_unknown_query(request: Request) -> None:
    unknown = [name for name in request.query_params if name not in QUERY_PARAMETERS]
    if unknown:
        raise RequestError(422, f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(repr(n) for n in unknown)}; POST /predict accepts "
                                f"{', '.join(QUERY_PARAMETERS)} (e.g. /predict?score_thresh=0.3&max_detections=50)")


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = f"query parameter '{loc[-1]}'" if loc and loc[0] == "query" else " ".join(loc) or "the request"
        value = err.get("input")
        problems.append(f"{where}{'' if value is None else f' = {value!r}'}: {err.get('msg', 'invalid')}")
    return ("; ".join(problems) + ". Valid: score_thresh and nms_thresh in [0, 1], max_detections >= 1, nms one of "
            "classwise, agnostic, soft_gaussian, soft_linear, none; slice >= 16 (px), overlap in [0, 1), full_image "
            "true or false, merge greedy_nmm or nms (e.g. /predict?score_thresh=0.3&slice=640)")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _json_error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json_error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code in (404, 405):
            message += f"; the endpoints are {ENDPOINTS}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error while answering %s %s", request.method, request.url.path)
        return _json_error(500, f"internal error ({type(exc).__name__}: {exc}); the server keeps running")


def _detections(prediction: Any) -> list[dict[str, Any]]:
    names = prediction.names
    return [{"box": [round(float(v), 2) for v in box], "score": round(float(score), 4), "label": int(label),
             "class_name": str(name)}
            for box, score, label, name in zip(prediction.boxes.tolist(), prediction.scores.tolist(),
                                               prediction.labels.tolist(), names)]


def _web_page() -> str:
    return resources.files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")


def create_app(model: Any, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS,
               max_batch: int = DEFAULT_MAX_BATCH) -> FastAPI:
    """The HTTP application serving ``model``.

    Args:
        model: an :class:`anchorfree.Model`, an exported-model predictor of :func:`anchorfree.load_model`,
            or a path (run folder, ``.pt``, ``.onnx``…) to load with it.
        max_image_pixels: larger images (width x height) are refused with 413.
        max_body_bytes: larger request bodies are refused with 413.
        batch_window_ms: how long a request waits for others to share its model call.
        max_batch: the most images of one model call (``1``: no batching).

    ``app.state.batcher`` is the :class:`~anchorfree.serve.batching.BatchQueue` (its ``stats`` count model
    calls and images); ``app.state.description`` is what ``GET /model`` answers.
    """
    if isinstance(model, (str, Path)):
        model = load(model)
    if max_image_pixels < 1 or max_body_bytes < 1:
        raise AnchorfreeError(f"max_image_pixels and max_body_bytes must be >= 1, got {max_image_pixels} and "
                              f"{max_body_bytes}")
    description = describe_model(model)
    batcher = BatchQueue(model, batch_window_ms, max_batch, input_key(description))
    limits = {"max_image_pixels": int(max_image_pixels), "max_body_bytes": int(max_body_bytes),
              "batch_window_ms": float(batch_window_ms), "max_batch": int(max_batch)}
    page = _web_page()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN and are blank offline; the schema is at
    # /openapi.json for any OpenAPI viewer, and the web page at / needs nothing from elsewhere
    app = FastAPI(title=f"anchorfree: {description['name']}", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Object detection over HTTP: POST an image to /predict; the web page is at /.")
    app.state.model, app.state.batcher, app.state.description = model, batcher, description
    _install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """``{"status": "ok"}`` while the server answers."""
        return {"status": "ok"}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        """The served model: name, head, classes, input size rule, format, device, default inference
        options, and this server's limits."""
        return {**description, "server": limits}

    @app.post("/predict", dependencies=[Depends(_reject_unknown_query)], response_model=PredictAnswer,
              responses=PREDICT_ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
    async def predict(
        request: Request,
        score_thresh: Annotated[float | None, Query(ge=0, le=1, description="minimum score (default: the "
                                                                            "model's)")] = None,
        max_detections: Annotated[int | None, Query(ge=1, description="detections kept")] = None,
        nms: Annotated[NmsMode | None, Query(description="suppression (default: the model's)")] = None,
        nms_thresh: Annotated[float | None, Query(ge=0, le=1, description="IoU of hard NMS")] = None,
        slice: Annotated[int | None, Query(ge=16, description="sliced inference: tiles of this many px (small objects "
                                                              "in large images; a checkpoint, not an export)")] = None,
        overlap: Annotated[float | None, Query(ge=0, lt=1, description="sliced: tile overlap (default 0.2)")] = None,
        full_image: Annotated[bool | None, Query(description="sliced: also the whole image")] = None,
        merge: Annotated[Literal["greedy_nmm", "nms"] | None, Query(description="sliced: merge across tiles")] = None,
    ) -> Any:
        """Detect objects in one image. Returns ``detections`` (``box`` ``[x1, y1, x2, y2]`` in the
        image's pixels, ``score``, ``label``, ``class_name``), ``image_size`` ``[h, w]``, ``model`` and
        ``time_ms`` (on the server, from the request to the answer)."""
        start = time.perf_counter()
        data = await image_bytes(request, max_body_bytes)
        image = await run_in_threadpool(decode_image, data, max_image_pixels)
        options = {"score_thresh": score_thresh, "max_detections": max_detections, "nms": nms,
                   "nms_thresh": nms_thresh}
        if slice is not None:
            options.update(slice_size=slice, overlap=overlap, full_image=full_image, merge=merge)
        elif overlap is not None or full_image is not None or merge is not None:
            raise RequestError(422, "overlap, full_image and merge apply to sliced inference: add slice=S (px), e.g. "
                                    "/predict?slice=640&overlap=0.2")
        try:
            prediction = await batcher.submit(image, options)
        except AnchorfreeError as e:  # a valid option this model cannot apply (e.g. an nms an export lacks)
            raise RequestError(422, str(e)) from None
        except Exception as e:  # this request fails, the server keeps serving
            log.exception("inference failed on a %dx%d image", image.shape[1], image.shape[0])
            return _json_error(500, f"inference failed ({type(e).__name__}: {str(e)[:300]}); the server keeps "
                                    "running: retry, or report the error with the image")
        return {"detections": _detections(prediction), "image_size": [int(image.shape[0]), int(image.shape[1])],
                "model": description["name"], "time_ms": round((time.perf_counter() - start) * 1000, 2)}

    return app
