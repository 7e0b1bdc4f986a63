"""``anchorfree serve`` under load: latency and throughput of ``POST /predict`` with and without batching.

A server process (uvicorn, one worker) serves an untrained light preset (default
``gfl_shufflenetv2_pan_nano``); this process runs ``--clients`` concurrent HTTP clients, each sending
``--requests`` images one after the other (a PNG of the preset's input size, so no resize is needed),
first with dynamic batching (``--max-batch``, ``--window-ms``), then with ``max_batch=1`` (one model
call per request). Printed per mode: p50/p90/p99 latency as the clients see it, requests/s, and
the server's model calls and mean batch size. The clients share the machine with the server: on a
small CPU their HTTP work is part of what is measured.

    python benchmarks/bench_serve.py                             # 8 clients x 25 requests, ~1 min on 2 cores
    python benchmarks/bench_serve.py --clients 16 --requests 50 --threads 2 --json serve.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def test_image(size: int) -> bytes:
    """A PNG of shapes on a gradient, ``size`` x ``size``."""
    ramp = np.linspace(60, 200, size, dtype=np.uint8)
    im = Image.fromarray(np.stack([np.tile(ramp, (size, 1))] * 3, axis=2))
    draw = ImageDraw.Draw(im)
    s = size / 320
    draw.ellipse((30 * s, 40 * s, 130 * s, 140 * s), fill=(220, 40, 40))
    draw.rectangle((160 * s, 150 * s, 290 * s, 290 * s), fill=(40, 120, 220))
    draw.polygon([(220 * s, 20 * s), (280 * s, 110 * s), (160 * s, 110 * s)], fill=(30, 160, 60))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ---- the server process --------------------------------------------------------------------------------
def run_server(args: argparse.Namespace) -> None:
    """The child process: an untrained preset saved as a run folder, served on ``args.port``."""
    import torch
    import uvicorn

    from anchorfree import Model
    from anchorfree.inference.checkpoint import atomic_save, make_checkpoint
    from anchorfree.models.detector import Detector
    from anchorfree.presets import get_preset
    from anchorfree.serve import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    torch.manual_seed(0)
    run = Path(tempfile.mkdtemp(prefix="bench_serve_")) / "run"
    atomic_save(make_checkpoint(cfg, Detector(cfg.model).eval().state_dict()), run / "best.pt")
    model = Model(run, device=args.device, fast=None if args.fast == "auto" else args.fast == "on")
    app = create_app(model, batch_window_ms=args.window_ms, max_batch=args.max_batch)
    stats = app.state.batcher.stats

    @app.get("/bench/stats", include_in_schema=False)
    async def batch_stats() -> dict:
        return {"calls": stats.calls, "images": stats.images, "largest": stats.largest,
                "torch_threads": torch.get_num_threads(), "fast": bool(model.fast)}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def start_server(args: argparse.Namespace, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--max-batch", str(max_batch),
           "--window-ms", str(args.window_ms), "--preset", args.preset, "--threads", str(args.threads),
           "--device", args.device, "--fast", args.fast]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 120 s")


# ---- the clients ---------------------------------------------------------------------------------------
def load(url: str, data: bytes, clients: int, requests: int) -> dict:
    """``clients`` threads x ``requests`` sequential POSTs; latencies, throughput, failures."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    detections: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(requests):
                t0 = time.perf_counter()
                r = c.post("/predict", content=data, headers={"Content-Type": "image/png"})
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code == 200:
                        detections.append(len(r.json()["detections"]))
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "failures": len(failures), "first_failure": failures[0] if failures else None,
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "requests_per_s": round(len(latencies) / elapsed, 2),
            "detections_per_image": round(float(np.mean(detections)), 1) if detections else 0.0,
            "seconds": round(elapsed, 1)}


def bench_mode(args: argparse.Namespace, name: str, max_batch: int, data: bytes) -> dict:
    import httpx

    proc, url = start_server(args, max_batch)
    try:
        load(url, data, args.clients, 2)  # warm-up: allocator, oneDNN kernels for the batch sizes that occur
        before = httpx.get(url + "/bench/stats").json()
        load_before = os.getloadavg()[0]
        result = load(url, data, args.clients, args.requests)
        after = httpx.get(url + "/bench/stats").json()
        calls, images = after["calls"] - before["calls"], after["images"] - before["images"]
        result.update(mode=name, max_batch=max_batch, model_calls=calls, mean_batch=round(images / max(calls, 1), 2),
                      largest_batch=after["largest"], torch_threads=after["torch_threads"], fast=after["fast"],
                      load_average_before=round(load_before, 2), load_average_after=round(os.getloadavg()[0], 2))
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gfl_shufflenetv2_pan_nano", help="model preset (untrained)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=25, help="requests per client (default 25)")
    p.add_argument("--max-batch", type=int, default=8, help="max_batch of the batched mode (default 8)")
    p.add_argument("--window-ms", type=float, default=5.0, help="batch window of the batched mode (default 5 ms)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the server (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda…")
    p.add_argument("--fast", choices=["auto", "on", "off"], default="auto", help="bf16/AMP (default: where supported)")
    p.add_argument("--image-size", type=int, default=0, help="side of the square test image (default: the preset's "
                                                             "input size)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_server(args)
        return
    from anchorfree.presets import get_preset

    size = args.image_size or get_preset(args.preset).model.input.min_size
    data = test_image(size)
    print(f"{args.preset} untrained, {size}x{size} PNG, {args.clients} clients x {args.requests} requests; "
          f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    results = [bench_mode(args, f"batched (max_batch={args.max_batch}, window {args.window_ms:g} ms)", args.max_batch,
                          data),
               bench_mode(args, "unbatched (max_batch=1)", 1, data)]
    header = f"{'mode':<40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>7} {'calls':>6} {'batch':>6} {'errors':>6}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(f"{r['mode']:<40} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['p99_ms']:>8} {r['requests_per_s']:>7} "
              f"{r['model_calls']:>6} {r['mean_batch']:>6} {r['failures']:>6}")
    print(f"torch threads {results[0]['torch_threads']}, fast={results[0]['fast']}, "
          f"{results[0]['detections_per_image']} detections per image; load average during the runs: "
          + ", ".join(f"{r['load_average_before']}→{r['load_average_after']}" for r in results))
    if args.json:
        env = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(), "preset": args.preset,
               "image_size": size, "clients": args.clients, "requests_per_client": args.requests}
        Path(args.json).write_text(json.dumps({"environment": env, "results": results}, indent=2))
    if any(r["failures"] for r in results):
        raise SystemExit("some requests failed: " + "; ".join(r["first_failure"] for r in results if r["failures"]))


if __name__ == "__main__":
    main()
