"""Timing utilities of the benchmarks: a clock that waits for the device, interleaved repeats of the variants of
one case, the median of repeats, and the cores other processes use meanwhile."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

DEVICE = torch.device("cpu")  # set by common's --device (timings then synchronise it)


def clock() -> float:
    """``time.perf_counter()`` after the GPU has finished its queued work (CUDA runs asynchronously)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return time.perf_counter()



class CpuMonitor:
    """Average number of cores used by *other* processes between ``start()`` and ``stop()``.

    Read from /proc/stat (all processes) minus this process's own CPU time; the machine is shared,
    so every case reports how much background load it ran under (0 on Linux-less systems).
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _read(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # minus idle and iowait
        own = sum(os.times()[:2])
        return busy / self.tick, own, time.perf_counter()

    def start(self) -> "CpuMonitor":
        self.t0 = self._read()
        return self

    def stop(self) -> float | None:
        t1 = self._read()
        if self.t0 is None or t1 is None or t1[2] <= self.t0[2]:
            return None
        return max(0.0, ((t1[0] - self.t0[0]) - (t1[1] - self.t0[1])) / (t1[2] - self.t0[2]))


def wait_for_idle(max_wait_s: float, busy_cores: float = 0.3) -> float:
    """Sleep (up to ``max_wait_s``) until other processes use less than ``busy_cores``; returns seconds waited."""
    waited = 0.0
    while waited < max_wait_s:
        mon = CpuMonitor().start()
        time.sleep(1.0)
        waited += 1.0
        load = mon.stop()
        if load is None or load < busy_cores:
            break
    return waited


def run_interleaved(fns: dict[str, Callable[[], object]], warmup: int, min_repeats: int, max_repeats: int,
                    budget_s: float, log=print) -> tuple[dict[str, list[float]], float | None]:
    """Warm every fn up, then time them round-robin; the repeat count adapts to ``budget_s``.

    Warm-up stops after the first round when that round took longer than ``budget_s / 3`` (big
    batches: the first call already creates the oneDNN primitives). Returns the times and the
    average number of cores other processes used during the timed rounds.
    """
    for w in range(max(warmup, 1)):
        t0 = clock()
        for fn in fns.values():
            fn()
        per_round = clock() - t0
        if per_round > budget_s / 3:
            break
    repeats = int(max(min_repeats, min(max_repeats, budget_s // max(per_round, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    mon = CpuMonitor().start()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    background = mon.stop()
    bg = "?" if background is None else f"{background:.2f}"
    log(f"    ({repeats} repeats, background load {bg} cores; "
        + ", ".join(f"{n} {statistics.median(t):.3f}s" for n, t in times.items()) + ")", flush=True)
    return times, background


def median_time(fn: Callable[[], object], warmup: int = 1, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def summarize(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


# the CPU description every benchmark prints beside its figures: the library's (its certificates print it too)
from anchorfree.runtime import SIMD_FLAGS, cpu_flags, cpu_name  # noqa: E402,F401
