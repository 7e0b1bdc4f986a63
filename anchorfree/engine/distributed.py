"""Multi-process training on torch.distributed: process group, devices, collectives, failures, launcher.

Processes are started by PyTorch's elastic launcher: ``torchrun ... -m anchorfree train ...`` or
``anchorfree train --nproc N`` (the same launcher, :mod:`torch.distributed.run`, started from the
CLI on this machine). A process reads its place from the variables torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``).

Failures: a process that fails prints ``error: rank R: message`` and writes the message to
torchrun's error file, the launcher then stops the other processes (a process blocked in a
collective with a dead peer also fails at once on gloo, or after ``train.dist_timeout``), and
:func:`launch` raises the failing rank's message.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import AnchorfreeError, ConfigError, TrainingError
from ..runtime import select_device

__all__ = ["DistContext", "launch", "launched_by_torchrun", "rank_failure", "root_cause", "setup"]

BACKENDS = ("auto", "nccl", "gloo")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def process_rank() -> int:
    """This process's rank from torchrun's ``RANK`` (0 when not launched by it)."""
    return _env_int("RANK", 0)


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun with more than one process in the job."""
    return _env_int("WORLD_SIZE", 1) > 1


@dataclass
class DistContext:
    """This process's place in the job; ``world_size == 1`` (the default) is plain training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None
    owns_group: bool = False  # the process group was created here (and is destroyed by :meth:`close`)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op on one)."""
        if self.enabled:
            dist.barrier()

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` averaged over the processes (a copy; the tensor itself on one process)."""
        if not self.enabled:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor.div_(self.world_size)

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in rank order (every process gets the list)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def _process_device(name: str, local_rank: int, local_world_size: int) -> torch.device:
    """The device of one of several processes: ``cuda:LOCAL_RANK`` with ``auto``/``cuda``, else the CPU."""
    if name.startswith("cuda:"):
        raise ConfigError(f"train.device={name} names one GPU, but {local_world_size} processes run on this "
                          "machine; use train.device=cuda (each process takes the GPU of its LOCAL_RANK) or "
                          "train.device=cpu")
    device = select_device(name)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_world_size > count:
        raise ConfigError(f"{local_world_size} processes run on this machine but it has {count} GPU(s); start at "
                          f"most {count} (--nproc / --nproc_per_node), or train on CPUs with train.device=cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(device_name: str = "auto", backend: str = "auto", timeout_s: float = 1800.0) -> tuple[DistContext, torch.device]:
    """This process's :class:`DistContext` and device; joins the process group when torchrun started
    several processes (NCCL on GPUs, gloo on CPUs unless ``backend`` says otherwise).

    A process group initialised beforehand (by the caller) is used as it is.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"train.dist_backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if not timeout_s > 0:
        raise ConfigError(f"train.dist_timeout must be a positive number of seconds, got {timeout_s}")
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0),
                          _env_int("LOCAL_WORLD_SIZE", 1), dist.get_backend())
        if not ctx.enabled:
            return ctx, select_device(device_name)
        return ctx, _process_device(device_name, ctx.local_rank, ctx.local_world_size)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext(), select_device(device_name)
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; train with one process")
    ctx = DistContext(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world))
    device = _process_device(device_name, ctx.local_rank, ctx.local_world_size)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("train.dist_backend=nccl needs GPUs (train.device=cuda); on CPUs use gloo (or auto)")
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)
    ctx.backend, ctx.owns_group = backend, True
    return ctx, device


# ---- failures ------------------------------------------------------------------------------------
PEER = "peer"  # a process that stopped because another one failed
CAUSE = "cause"  # a process that failed on its own


# what gloo and NCCL say when a peer process went away or stopped answering
PEER_MARKERS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "remote worker crash",
                "NCCL communicator was aborted", "Timed out", "timed out")


def is_peer_failure(exc: BaseException) -> bool:
    """True for errors of a collective whose peer went away (another process failed first) or that
    waited longer than the process group's timeout."""
    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in PEER_MARKERS))


def rank_failure(exc: BaseException, rank: int, clean: Callable[[str], str] = str) -> tuple[str, bool]:
    """The message ``rank R: ...`` for ``exc`` raised in process ``rank``, and whether it is the
    failure of a peer; written to torchrun's error file (``TORCHELASTIC_ERROR_FILE``) for the launcher.
    ``clean`` tidies the text of an :class:`~anchorfree.errors.AnchorfreeError` (e.g. one re-raised by a
    DataLoader worker)."""
    peer = is_peer_failure(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if peer:
        text = (f"stopped because the other processes stopped answering: one failed or was stopped (its message "
                f"comes first), or it hangs longer than train.dist_timeout ({type(exc).__name__}: {text})")
    elif isinstance(exc, AnchorfreeError):
        text = clean(str(exc))
    else:
        text = f"{type(exc).__name__}: {exc}"
    message = f"rank {rank}: {text}"
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        try:
            with open(path, "w") as f:  # the format torch.distributed.elastic reads ("message", "timestamp")
                json.dump({"message": message, "timestamp": int(time.time()), "anchorfree": PEER if peer else CAUSE}, f)
        except OSError:
            pass
    return message, peer


def root_cause(error: Any) -> str:
    """The message of the process that failed first, from torchrun's ``ChildFailedError``."""
    failures = error.failures
    causes = [(f.timestamp, rank, f) for rank, f in failures.items()
              if isinstance(f.error_file_data, dict) and f.error_file_data.get("anchorfree") == CAUSE]
    if causes:
        return min(causes, key=lambda c: (c[0], c[1]))[2].message
    peers = [f for f in failures.values() if isinstance(f.error_file_data, dict) and f.error_file_data.get("anchorfree")]
    if peers:
        return peers[0].message
    rank, failure = error.get_first_failure()
    return f"rank {rank} stopped with exit code {failure.exitcode} ({failure.message})"


def launch(nproc: int, module_args: Sequence[str]) -> None:
    """Run ``python -m anchorfree <module_args>`` in ``nproc`` processes on this machine with torchrun's
    launcher (``torch.distributed.run --standalone``); raise the failing rank's message if one fails."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores (torchrun alone would give each process one)
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    args = parse_args(["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0",
                       "--module", "anchorfree", *module_args])
    try:
        run(args)
    except ChildFailedError as e:
        raise TrainingError(f"training stopped on all {nproc} processes: {root_cause(e)}") from None
