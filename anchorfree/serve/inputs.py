"""The image of a ``POST /predict`` request: read the body within its size limit, take the image from a
multipart form or from the raw body, decode it within the pixel limit.

Every problem raises :class:`RequestError`, whose message says what was wrong and what to send instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .. import images

IMAGE_FIELDS = ("image", "file")
RAW_TYPES = ("application/octet-stream",)  # besides image/*
HOW_TO_SEND = ("send a multipart form with the image in a field named 'image' (curl -F image=@photo.jpg URL) or the "
               "image bytes as the body with Content-Type image/jpeg, image/png… (curl --data-binary @photo.jpg "
               "-H 'Content-Type: image/jpeg' URL)")


class RequestError(Exception):
    """A request the server refuses: an HTTP ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``max_bytes``."""
    too_large = (f"the request body exceeds this server's limit of {_mib(max_bytes)}; send a smaller image (a JPEG "
                 "of a few MiB is plenty: the model resizes it anyway)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def image_bytes(request: Request, max_bytes: int) -> bytes:
    """The bytes of the uploaded image: the ``image`` (or ``file``) field of a multipart form, or the body
    of an ``image/*`` or ``application/octet-stream`` request."""
    kind = media_type(request)
    if kind != "multipart/form-data" and not kind.startswith("image/") and kind not in RAW_TYPES:
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        raise RequestError(415, f"POST /predict received {got}; {HOW_TO_SEND}")
    body = await read_body(request, max_bytes)
    if not body:
        raise RequestError(400, f"the request body is empty; {HOW_TO_SEND}")
    if kind != "multipart/form-data":
        return body
    return await _form_image(request, body)


async def _form_image(request: Request, body: bytes) -> bytes:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    except Exception as e:  # noqa: BLE001 - starlette raises several types for malformed forms
        detail = getattr(e, "detail", None) or getattr(e, "message", None) or str(e)
        raise RequestError(400, f"the multipart form cannot be parsed ({detail}); {HOW_TO_SEND}") from None
    try:
        fields = [name for name in IMAGE_FIELDS if name in form]
        if not fields:
            names = [repr(k) for k in form]
            got = f"the field{'s' if len(names) > 1 else ''} {', '.join(names)} but" if names else "no fields, so"
            raise RequestError(400, f"the multipart form has {got} no field 'image' (or 'file'); {HOW_TO_SEND}")
        value = form[fields[0]]
        if not isinstance(value, UploadFile):
            raise RequestError(400, f"the form field '{fields[0]}' is text, not a file; upload the image as a file "
                                    "(curl -F image=@photo.jpg URL, or FormData.append('image', file) in a browser)")
        return await value.read()
    finally:
        await form.close()


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of an uploaded image, read as ``anchorfree predict`` and the Python API read a file
    (:func:`anchorfree.images.decode_image`: turned as its EXIF orientation says, as browsers show it). Refused:
    not an image (400), a video (415), more than ``max_pixels`` pixels (413)."""
    try:
        return images.decode_image(data, "the uploaded image", orient=True, max_pixels=max_pixels)
    except images.ImageReadError as e:
        if e.kind == "empty":
            raise RequestError(400, f"the image is empty (0 bytes); {HOW_TO_SEND}") from None
        if e.kind == "too_large":
            raise RequestError(413, _too_many_pixels(*(e.size or (None, None)), max_pixels)) from None
        if e.kind == "video":
            raise RequestError(415, f"{e}; send one image (JPEG, PNG, WebP, BMP, GIF or TIFF) per request") from None
        what = "text" if data[:64].isascii() else "data"
        raise RequestError(400, f"the uploaded {what} ({_mib(len(data))}) is not an image that can be decoded "
                                f"({e.reason}); send a JPEG, PNG, WebP, BMP, GIF or TIFF file") from None


def _too_many_pixels(width: int | None, height: int | None, max_pixels: int) -> str:
    size = f"{width}x{height} = {width * height / 1e6:.1f} megapixels" if width else "more pixels than PIL allows"
    return (f"the image has {size}, over this server's limit of {max_pixels / 1e6:.1f} megapixels; send a "
            "downscaled image (the model resizes to its input size anyway)")
