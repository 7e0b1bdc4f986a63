"""Rendering: the jinja2 environment of the report templates, and images embedded as data URIs."""
from __future__ import annotations

import base64
import datetime as _dt
import io
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from ..files import atomic_write_text
from .templates import CSS, TEMPLATES

_ENV = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)


def _is_numeric(value: Any) -> bool:
    """Whether a table cell holds a number (or ``n/a``), to align it right."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return True
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return value == "n/a"
    return True


_ENV.tests["numeric"] = _is_numeric


def render(template: str, **context: Any) -> str:
    """The HTML of ``template`` (a name in :data:`~anchorfree.report.templates.TEMPLATES`) with ``context``."""
    from anchorfree import __version__

    context.setdefault("version", __version__)
    context.setdefault("css", CSS)
    context.setdefault("written", _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return _ENV.get_template(template).render(**context)


def write_page(html: str, path: str | Path) -> Path:
    """Write ``html`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``)."""
    return atomic_write_text(path, html)


def figure_uri(fig: Figure, dpi: int = 100) -> str:
    """``fig`` as a ``data:image/png;base64,…`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_uri(image: Tensor | np.ndarray | Image.Image, quality: int = 85) -> str:
    """An RGB image (``uint8 [3, H, W]`` tensor, ``[H, W, 3]`` array or PIL image) as a JPEG data URI."""
    if isinstance(image, Tensor):
        image = image.permute(1, 2, 0).cpu().numpy()
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
