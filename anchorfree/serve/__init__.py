"""Serve a detector over HTTP: a JSON API (``POST /predict``) and a web page, on FastAPI and uvicorn.

    >>> from anchorfree.serve import serve
    >>> serve("runs/demo", port=8000)                    # or: anchorfree serve runs/demo

    >>> from anchorfree import load_model
    >>> from anchorfree.serve import create_app
    >>> app = create_app(load_model("runs/demo/best.onnx"), max_batch=16)   # an ASGI app for any server

Needs the ``serve`` extra (``pip install "anchorfree[serve]"``). :func:`add_serve_parser` and
:func:`cmd_serve` import without it, so that the command line can list the subcommand and say what
to install.
"""
from __future__ import annotations

import importlib
from typing import Any

from .cli import add_serve_parser, cmd_serve

_LAZY = {"create_app": "app", "serve": "server", "BatchQueue": "batching", "describe_model": "info"}
__all__ = ["BatchQueue", "add_serve_parser", "cmd_serve", "create_app", "describe_model", "serve"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'anchorfree.serve' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
