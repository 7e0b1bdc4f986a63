"""``anchorfree models``: the model presets."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("models", help="list model presets", description="List the model presets that `train` accepts.")


def cmd_models(args: argparse.Namespace) -> None:
    from ..presets import describe_presets

    rows = describe_presets()
    width = max(len(name) for name, _ in rows)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}")
