"""Device selection and the mixed-precision context used by training and inference."""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

from .errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not a valid torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was requested but CUDA is not available; use device=cpu")
    return device


BF16_ENV = "ANCHORFREE_CPU_BF16"  # 1: run the CPU's bf16 paths even where bf16 is emulated (slow); 0: never


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX), where bf16 convs are fast.

    ``ANCHORFREE_CPU_BF16=1`` forces the bf16 paths (fast inference, bf16 training) on any CPU — PyTorch
    emulates bf16 where the CPU lacks it, slowly but with bf16's rounding — so that they can be tested on
    every machine; ``ANCHORFREE_CPU_BF16=0`` keeps float32 everywhere."""
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"{BF16_ENV}={forced!r}: use 1 (force the bf16 paths), 0 (float32 only) or leave it unset")
    return _cpu_has_bf16()


def mixed_precision_available(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype :func:`autocast` computes in on ``device``; ``None`` where it is a no-op."""
    if not mixed_precision_available(device):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPUs with native bf16; fp16/bf16 AMP on CUDA; a no-op otherwise."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device, enabled: bool) -> bool:
    """fp16 AMP (CUDA without bf16) needs loss scaling; bf16 does not."""
    return enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()


SIMD_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx_vnni")


def cpu_flags() -> str:
    """The SIMD flags that decide which kernels run (fp32 / bf16 / int8), those of :data:`SIMD_FLAGS` the CPU has
    (from /proc/cpuinfo on Linux): what every benchmark and certificate names beside its figures."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    present = set(line.split(":", 1)[1].split())
    return " ".join(f for f in SIMD_FLAGS if f in present) or "no AVX2"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        return next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                    if x.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"
