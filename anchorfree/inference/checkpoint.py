"""Checkpoints: written atomically (temp file + ``os.replace``), validated when loaded.

Every checkpoint carries a SHA-256 checksum of its weight tensors (``model`` and ``ema``), verified on load:
a damaged file stops with a message instead of evaluating with corrupted weights. (Files written before
checksums existed load with a warning.)"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import Config, from_dict, to_dict
from ..errors import CheckpointError
from ..files import atomic_write, export_format
from ..models.detector import Detector

FORMAT = "anchorfree-checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`~anchorfree.files.atomic_write`: a run killed while saving leaves the
    previous file intact."""
    atomic_write(path, lambda f: torch.save(obj, f))


CHECKSUMMED = ("model", "ema")  # the weight entries the checksum covers


def tensors_checksum(*states: dict[str, torch.Tensor] | None) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor of ``states`` (in key order)."""
    digest = hashlib.sha256()
    for state in states:
        for key, value in sorted((state or {}).items()):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            if tensor.numel():
                digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def verify_checksum(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` when the weights of ``ckpt`` do not match its stored checksum."""
    stored = ckpt.get("checksum")
    if stored is None:
        warnings.warn(f"{path} has no checksum (written by an older anchorfree); its weights cannot be verified")
        return
    if tensors_checksum(*(ckpt.get(k) for k in CHECKSUMMED)) != stored:
        raise CheckpointError(f"{path} is damaged: its weights do not match the checksum written with them (the "
                              "file was changed or corrupted after saving). Use another checkpoint of the run "
                              "(last.pt / best.pt) or retrain; do not evaluate these weights.")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and sanity-check an anchorfree checkpoint file."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} is a folder without best.pt or last.pt; pass a run folder or a .pt file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    fmt = export_format(path)
    if fmt is not None:
        raise CheckpointError(f"{path} is an exported model ({fmt}), not a training checkpoint: run it with "
                              f"anchorfree.load_model('{path}') (or anchorfree predict / serve), or pass the run's "
                              "best.pt / last.pt here")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated or foreign files all need the same advice
        raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); it is not a PyTorch "
                              "checkpoint torch.load can read (a truncated file, or another kind of file: exported "
                              "models run with anchorfree.load_model) — use last.pt/best.pt from a run "
                              "folder") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an anchorfree checkpoint (no '{FORMAT}' marker); torchvision weights "
                              "are loaded with anchorfree.interop.torchvision.load_torchvision_fcos")
    verify_checksum(ckpt, path)
    ckpt["path"] = str(path)
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> Config:
    return from_dict(Config, ckpt["config"])


def state_differences(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
                      ) -> tuple[list[str], list[str], list[str]]:
    """The keys of ``own`` missing from ``state``, those of ``state`` not in ``own``, and those of both whose
    shapes differ."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    return missing, unexpected, mismatched


def load_model_state(model: Detector, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights, turning shape/key mismatches into a message about model and class count."""
    own = model.state_dict()
    missing, unexpected, mismatched = state_differences(own, state)
    if mismatched or missing or unexpected:
        detail = []
        layers = tuple(f"head.{name}." for name in model.head.CLASS_LAYERS)
        per_class = [k for k in mismatched if k.startswith(layers) and k.endswith(".weight")]
        if per_class:
            detail.append(f"class count differs (checkpoint {state[per_class[0]].shape[0]}, model "
                          f"{own[per_class[0]].shape[0]}) in {per_class[0]}")
        if mismatched:
            detail.append(f"shape mismatch in {mismatched[:3]}")
        if missing or unexpected:
            detail.append(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        raise CheckpointError(f"{source} was saved from another model: {'; '.join(detail)}. Use the checkpoint's own "
                              "config (anchorfree eval/predict do) or train a new model for this dataset.")
    model.load_state_dict(state)


def load_detector(path: str | Path, use_ema: bool = True) -> tuple[Detector, Config, dict[str, Any]]:
    """Rebuild the model of a checkpoint (EMA weights when present) on the CPU, in eval mode."""
    ckpt = read_checkpoint(path)
    cfg = checkpoint_config(ckpt)
    cfg.model.backbone.weights = None  # the checkpoint already holds the backbone weights
    model = Detector(cfg.model)
    state = ckpt.get("ema") if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    load_model_state(model, state, ckpt["path"])
    return model.eval(), cfg, ckpt


def make_checkpoint(cfg: Config, model_state: dict, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of a run: format marker, config, weights (+ ``extra``: EMA, optimizer, ...) and the
    checksum of the weights."""
    ckpt = {"format": FORMAT, "version": VERSION, "config": to_dict(cfg), "model": model_state, **extra}
    ckpt["checksum"] = tensors_checksum(*(ckpt.get(k) for k in CHECKSUMMED))
    return ckpt
