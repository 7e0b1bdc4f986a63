"""Writing files so that a run killed mid-write leaves the previous file intact; telling exported models by name."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

SUFFIX_FORMATS = {".onnx": "onnx", ".xml": "openvino", ".pt2": "pt2", ".torchscript": "torchscript"}  # exported models' file names


def export_format(path: str | Path) -> str | None:
    """``onnx``, ``openvino`` (``.xml``), ``pt2`` or ``torchscript`` from a file name; ``None`` for anything else (a checkpoint...)."""
    return SUFFIX_FORMATS.get(Path(path).suffix.lower())


def export_files(path: str | Path) -> list[Path]:
    """The files of an exported model: the file itself and, for OpenVINO's ``.xml``, its weights ``.bin``."""
    path = Path(path)
    return [path, path.with_suffix(".bin")] if export_format(path) == "openvino" else [path]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file in ``path``'s folder, fsync, then ``os.replace`` it over
    ``path``: a run killed mid-write leaves the previous file intact. The file gets the usual permissions
    (0644, not the temporary file's 0600). The one atomic writer: text, JSON, checkpoints and pages use it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
