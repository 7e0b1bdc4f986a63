"""Reading images: the one decoder of every entry point (datasets, ``eval``, ``predict``, the Python API,
exported models and the server), so that a file gives the same pixels wherever it is read.

:func:`decode_image` decodes bytes with PIL to ``uint8 [H, W, 3]`` RGB; :func:`read_image` reads a file
and decodes it. ``orient`` decides the pixel grid:

* ``orient=True`` (predict, the API, exported models, the server): the image turned as its EXIF
  orientation tag says, as photo viewers and browsers show it; boxes are in that frame.
* ``orient=False`` (datasets, ``eval``, ``predict --annotations``): the pixels as stored, ignoring the tag,
  which is the grid COCO annotations refer to (their ``width``/``height`` are the stored ones, as
  pycocotools and torchvision's ``CocoDetection`` read them).

A file that cannot be read raises :class:`ImageReadError`, whose ``kind`` says why (``missing``,
``unreadable``, ``empty``, ``video``, ``too_large``, ``not_image``). Videos are recognised by their name
and their container's signature and named as such: video is not supported.

This module needs only numpy and PIL (exported models run without PyTorch).
"""
from __future__ import annotations

import math

import io
import struct
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import AnchorfreeError

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ImageReadError", "decode_image", "orient_image", "read_image",
           "video_container", "video_problem"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES: dict[str, str] = {
    ".mp4": "MP4", ".m4v": "MP4", ".mov": "QuickTime", ".qt": "QuickTime", ".3gp": "3GP", ".3g2": "3GP",
    ".avi": "AVI", ".mkv": "Matroska", ".webm": "WebM", ".wmv": "Windows Media", ".asf": "Windows Media",
    ".flv": "Flash video", ".mpg": "MPEG", ".mpeg": "MPEG", ".ts": "MPEG transport stream",
    ".mts": "MPEG transport stream", ".m2ts": "MPEG transport stream", ".ogv": "Ogg video"}
_ORIENTATION_TAG = 0x0112
# ISO base media files (ftyp box) whose brand is a still image (HEIF/AVIF/JPEG 2000), not a video
_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"jp2 ",
                 b"jpx ", b"jpm ", b"crx ")
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"pnot")
FRAMES_HINT = ("video is not supported: extract its frames first (e.g. ffmpeg -i video.mp4 -vf fps=5 "
               "frames/%06d.jpg) and run on the folder of frames")

Kind = Literal["missing", "unreadable", "empty", "video", "too_large", "not_image"]


class ImageReadError(AnchorfreeError):
    """An image that cannot be read. ``kind``: why (see the module docstring); ``problem``: what is wrong,
    as a phrase after the file's name (``"does not exist"``); ``reason``: the decoder's detail (may be
    empty); ``size``: ``(width, height)`` for ``too_large`` when known."""

    def __init__(self, source: str, kind: Kind, problem: str, reason: str = "",
                 size: tuple[int, int] | None = None) -> None:
        super().__init__(f"{source} {problem}" + (f" ({reason})" if reason else ""))
        self.source, self.kind, self.problem, self.reason, self.size = source, kind, problem, reason, size


def video_container(head: bytes) -> str | None:
    """The video container whose signature starts ``head`` (the first 512 bytes of a file are plenty):
    ``"MP4"``, ``"QuickTime"``, ``"AVI"``, ``"WebM"``…; ``None`` for anything else (images included)."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "QuickTime" if brand == b"qt  " else "3GP" if brand.startswith(b"3g") else "MP4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "QuickTime"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM" if b"webm" in head[:64] else "Matroska"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "Windows Media"
    if head[:3] == b"FLV":
        return "Flash video"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "MPEG"
    if len(head) > 188 and head[0] == head[188] == 0x47:
        return "MPEG transport stream"
    return None


def video_problem(container: str) -> str:
    """What is wrong with a video given where an image is expected, as a phrase after its name."""
    return f"is a video ({container}), not an image; {FRAMES_HINT}"


def orient_image(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says (itself when there is no tag or it says upright)."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: show the pixels as stored
        return image
    return ImageOps.exif_transpose(image) if orientation in range(2, 9) else image


def _to_rgb(image: Image.Image) -> np.ndarray:
    return np.array(image if image.mode == "RGB" else image.convert("RGB"))


def decode_image(data: bytes, source: str = "the image", *, orient: bool = True, name: str = "",
                 max_pixels: int | None = None) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of an encoded image (any format PIL reads).

    Args:
        data: the file's bytes.
        source: how messages name it (``"image file photo.jpg"``).
        orient: turn it as its EXIF orientation says (see the module docstring).
        name: its file name, if any: a video suffix (``.mp4``…) names a file that is no image as a video.
        max_pixels: refuse larger images (``kind="too_large"``) before decoding their pixels.

    Raises:
        ImageReadError: empty, a video, too many pixels, or not an image PIL can decode.
    """
    if not data:
        raise ImageReadError(source, "empty", "is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            if max_pixels is not None:  # the caller's limit replaces PIL's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageReadError(source, "too_large", f"has {width}x{height} pixels, over the limit of "
                                         f"{max_pixels}", size=(width, height))
                return _to_rgb(orient_image(im) if orient else im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(source, "too_large", "has more pixels than PIL decodes; downscale it",
                             str(e)[:160]) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        container = video_container(data[:512]) or VIDEO_SUFFIXES.get(Path(name).suffix.lower())
        if container is not None:
            raise ImageReadError(source, "video", video_problem(container)) from None
        reason = ("not a format PIL recognises" if isinstance(e, UnidentifiedImageError)
                  else f"{type(e).__name__}: {str(e)[:160]}")
        raise ImageReadError(source, "not_image", "is corrupt or not a supported image", reason) from None


def read_image(path: str | Path, *, orient: bool = True) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of an image file: :func:`decode_image` of its bytes (see there)."""
    path = Path(path)
    source = f"image file {path}"
    if not path.is_file():
        if path.is_dir():
            raise ImageReadError(source, "missing", "is a folder, not an image file")
        raise ImageReadError(source, "missing", "does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageReadError(source, "unreadable", "cannot be read", str(e)) from None
    return decode_image(data, source, orient=orient, name=path.name)


def resize_opencv(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W, C]`` → ``[h, w, C]`` by OpenCV's ``INTER_LINEAR``, as mmcv's ``imresize`` calls it
    (mmdetection's test pipeline; ``input.resize=mmdet``); ``size`` is ``(h, w)``."""
    try:
        import cv2
    except ImportError:
        raise AnchorfreeError("this model resizes images as mmdetection does (input.resize=mmdet), with OpenCV: "
                              "pip install 'anchorfree[mmdet]' (opencv-python-headless)") from None
    out = cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return out.reshape(size[0], size[1], -1)


def keep_ratio_size(height: int, width: int, min_size: int, max_size: int,
                    mode: str = "torchvision") -> tuple[int, int]:
    """Output ``(h, w)`` of the keep-ratio resize rule: ``scale = min(min_size / short_side, max_size /
    long_side)``; ``torchvision`` rounds the sizes down (``interpolate(scale_factor=scale,
    recompute_scale_factor=True)``), ``mmdet`` to the nearest (mmcv's ``rescale_size``: ``int(w * scale + 0.5)``,
    so 640×480 becomes 1067×800, not 1066×800). The one rule training, ``predict`` and exports resize by."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    if mode == "mmdet":
        return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
