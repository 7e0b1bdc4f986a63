"""Writing files so that a run killed mid-write leaves the previous file intact; telling exported models by name."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "pt2", ".torchscript": "torchscript"}  # exported models' file names


def export_format(path: str | Path) -> str | None:
    """``onnx``, ``pt2`` or ``torchscript`` from a file name; ``None`` for anything else (a checkpoint...)."""
    return SUFFIX_FORMATS.get(Path(path).suffix.lower())


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``; the file
    gets the usual permissions (0644, not the temporary file's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
