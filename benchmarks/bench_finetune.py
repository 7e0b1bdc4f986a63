"""Fine-tuning from a pretrained light run against training from scratch, at equal fine-tuning time.

1. Pretrain PRESET on ``--pretrain-data`` for ``--pretrain-minutes`` (skipped when ``--pretrained RUN`` is given
   or the run already exists).
2. For each seed, side by side (two processes, 1 torch thread each, started together): train PRESET on
   ``--data`` for ``--minutes`` from scratch and with ``--weights`` the pretrained run (fine-tuning; the class
   rows are re-initialised where the class lists differ). Both take the recipe ``train.recipe=auto`` picks.
3. Score both on ``--data``'s validation split (``anchorfree eval``: pycocotools' COCOeval) and print the
   per-seed rows, the medians and the difference. Rows are appended to ``--work/results.jsonl`` as they finish.

    python benchmarks/small_data.py --out runs/small_data --datasets yell2
    anchorfree data synth runs/photos3k --style photos --train 3000 --val 300
    python benchmarks/bench_finetune.py --pretrain-data runs/photos3k --data runs/small_data/yell2 \\
        --work runs/finetune --pretrain-minutes 20 --minutes 10 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _train(preset: str, data: str, out: Path, minutes: float, seed: int, extra: list[str]) -> subprocess.Popen:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["anchorfree", "train", preset, "--data", data, "--out", str(out), "--threads", "1", "--no-progress",
           f"train.minutes={minutes}", f"train.seed={seed}", "train.eval_interval=0", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(out.parent / f"{out.name}.log", "w")
    print(time.strftime("%H:%M:%S"), " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _score(run: Path, data: str) -> dict:
    subprocess.run(["anchorfree", "eval", str(run), "--data", data, "--threads", "2"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    for line in (run / "train.log").read_text().splitlines():
        if "recipe" in line or "weights:" in line:
            print("  ", run.name, line.split(" ", 2)[-1][:160])
    return {"AP": metrics["AP"], "AP50": metrics["AP50"], "APs": metrics.get("APs")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="gfl_shufflenetv2_pan_nano")
    p.add_argument("--pretrain-data", help="dataset to pretrain on")
    p.add_argument("--pretrained", help="an existing run to fine-tune from (skips pretraining)")
    p.add_argument("--pretrain-minutes", type=float, default=20.0)
    p.add_argument("--data", required=True, help="the small dataset")
    p.add_argument("--work", required=True)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="overrides of both runs")
    args = p.parse_args(argv)
    work = Path(args.work)
    pretrained = Path(args.pretrained) if args.pretrained else work / "pretrain"
    if not (pretrained / "best.pt").exists():
        if not args.pretrain_data:
            p.error("--pretrain-data or --pretrained RUN is needed")
        proc = _train(args.preset, args.pretrain_data, pretrained, args.pretrain_minutes, 0,
                      ["train.recipe=preset", *args.set])
        if proc.wait():
            print(f"pretraining failed: see {pretrained}.log", file=sys.stderr)
            return 1
    rows = []
    for seed in args.seeds:
        runs = {"scratch": work / f"scratch_s{seed}", "finetuned": work / f"finetuned_s{seed}"}
        procs = {name: _train(args.preset, args.data, run, args.minutes, seed,
                              [*args.set, *([f"train.weights={pretrained}"] if name == "finetuned" else [])])
                 for name, run in runs.items() if not (run / "best.pt").exists()}
        for name, proc in procs.items():
            if proc.wait():
                print(f"{name} seed {seed} failed: see {runs[name]}.log", file=sys.stderr)
                return 1
        for name, run in runs.items():
            row = {"seed": seed, "start": name, "minutes": args.minutes, **_score(run, args.data)}
            rows.append(row)
            with open(work / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"seed {seed} {name:9s} AP {row['AP']:.3f} AP50 {row['AP50']:.3f}", flush=True)
    med = {name: statistics.median(r["AP"] for r in rows if r["start"] == name) for name in ("scratch", "finetuned")}
    print(f"median AP over {len(args.seeds)} seed(s): from scratch {med['scratch']:.3f}, fine-tuned "
          f"{med['finetuned']:.3f} ({med['finetuned'] - med['scratch']:+.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
