"""``anchorfree demo`` end to end on a short budget: everything it reports as written is there, and a step that
fails makes it fail with a message instead of printing a summary."""
from __future__ import annotations

import json

from PIL import Image

from anchorfree.cli import main
from anchorfree.demo import print_summary, run_demo


def test_demo_writes_everything_it_reports_and_refuses_to_rerun_a_finished_run(tmp_path, capsys):
    out = tmp_path / "demo"
    done = run_demo(out, minutes=0.4, progress=False, num_train=48, num_val=8)
    print_summary(done)
    printed = capsys.readouterr().out
    assert done["report"] is not None and done["report"].is_file() and f"report:      {done['report']}" in printed
    assert "<html" in done["report"].read_text()[:200].lower()
    for name in ("config.yaml", "train.log", "metrics.jsonl", "metrics.json", "best.pt", "last.pt", "loss.png"):
        assert (done["run"] / name).is_file(), name
    metrics = json.loads((done["run"] / "metrics.json").read_text())["metrics"]
    assert metrics == done["metrics"]["metrics"] and 0 <= metrics["AP"] <= 1
    val_images = {p.stem: p for p in (done["data"] / "val" / "images").iterdir()}
    drawn = sorted(done["predictions"].glob("*.jpg"))
    assert len(drawn) == 8 and {p.stem for p in drawn} <= set(val_images)
    for image in drawn:  # drawn on the original image, at its size
        assert Image.open(image).size == Image.open(val_images[image.stem]).size
    results = json.loads((done["predictions"] / "results.json").read_text())
    assert {r["file_name"] for r in results} <= {str(p) for p in val_images.values()}
    assert all(len(r["bbox"]) == 4 and 0 <= r["score"] <= 1 for r in results)
    # run again on the finished run: a clear error, exit status 2, and no summary claiming files
    assert main(["demo", "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "had already finished training" in captured.err and "predictions:" not in captured.out
