"""The documented contract of ``POST /predict`` (``/openapi.json``): the request body, the answer and every
error status the server answers with, each with its ``{"error": "..."}`` body."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorAnswer(BaseModel):
    """Every error: what was wrong and what to send instead."""

    error: str = Field(description="what was wrong and what to send instead")


class Detection(BaseModel):
    """One detected object."""

    box: list[float] = Field(description="[x1, y1, x2, y2] in the pixels of the image sent", min_length=4,
                             max_length=4)
    score: float
    label: int
    class_name: str


class PredictAnswer(BaseModel):
    """The answer of ``POST /predict``: the detections of the image, sorted by score."""

    detections: list[Detection]
    image_size: list[int] = Field(description="[height, width] of the image as decoded (EXIF orientation applied)",
                                  min_length=2, max_length=2)
    model: str
    time_ms: float


def _error(description: str) -> dict[str, Any]:
    """An error status's entry of FastAPI's ``responses``: the :class:`ErrorAnswer` body and when it is sent."""
    return {"model": ErrorAnswer, "description": description}


PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("not an image, an empty body, or a form without a file field 'image'"),
    413: _error("the body or the image is over the server's limit (--max-body-mb, --max-megapixels)"),
    415: _error("a Content-Type other than multipart/form-data, image/* or application/octet-stream, or a video"),
    422: _error("an unknown or invalid query parameter, or an option this model cannot apply (e.g. an nms mode an "
                "export was not made with)"),
    500: _error("a failure inside the model; the server keeps serving"),
}
IMAGE_BODY: dict[str, Any] = {  # the body is read by hand (serve.inputs): its schema is written out here
    "required": True, "description": "the image: a multipart form field 'image' ('file' is accepted too), or the raw "
                                     "bytes with Content-Type image/* or application/octet-stream",
    "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "a JPEG, PNG, WebP, BMP, GIF or TIFF file"}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
