"""The optional packages that serving needs (``pip install "anchorfree[serve]"``)."""
from __future__ import annotations

import importlib.util

from ..errors import AnchorfreeError

INSTALL_HINT = 'pip install "anchorfree[serve]"'
# module name -> the package that provides it
SERVE_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def missing_serve_packages() -> list[str]:
    """The packages of the ``serve`` extra that cannot be imported (an empty list when all are there)."""
    missing = []
    for module, package in SERVE_MODULES.items():
        found = importlib.util.find_spec(module) is not None
        if not found and module == "python_multipart":  # releases before 0.0.13 install the module 'multipart'
            found = importlib.util.find_spec("multipart") is not None
        if not found:
            missing.append(package)
    return missing


def require_serve_extra() -> None:
    """Raise an :class:`~anchorfree.errors.AnchorfreeError` naming the install command when a package of
    the ``serve`` extra is missing."""
    missing = missing_serve_packages()
    if missing:
        raise AnchorfreeError(f"serving a model over HTTP needs {', '.join(missing)}, which "
                              f"{'is' if len(missing) == 1 else 'are'} not installed; install the serve extra: "
                              f"{INSTALL_HINT}")
