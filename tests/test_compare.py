"""``anchorfree bench compare``: the report, and an end-to-end run under a time budget that resumes."""
from __future__ import annotations

import json

from anchorfree.cli import main
from anchorfree.config import save_config
from anchorfree.compare import CompareResult, format_table, load_results, write_report
from anchorfree.models.detector import Detector

from conftest import micro_config


def result(name: str, ap: float) -> CompareResult:
    metrics = {"AP": ap, "AP50": 2 * ap, "AP75": ap / 2, "APs": 0.0, "APm": ap, "APl": 0.5}
    return CompareResult(name=name, run=f"runs/{name}", params=3_200_000, epochs=7, train_minutes=4.96,
                         train_images_per_s=12.34, infer_images_per_s=56.78, metrics=metrics)


def test_report_table_and_files(tmp_path):
    rows = [result("a", 0.25), result("b", 0.125)]
    table = format_table(rows).splitlines()
    assert table[0].split("|")[1:-1] == [" model ", " params (M) ", " epochs ", " run min ", " train img/s ",
                                         " infer img/s ", " AP ", " AP50 ", " AP75 ", " APs ", " APm ", " APl "]
    assert table[2] == "| a | 3.20 | 7 | 5.0 | 12.3 | 56.8 | 25.0 | 50.0 | 12.5 | 0.0 | 25.0 | 50.0 |"
    written = write_report(rows, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert load_results(tmp_path / "compare.json") == rows
    assert (tmp_path / "compare.md").read_text().splitlines() == table


def test_compare_end_to_end_and_skip_finished(small_synth, tmp_path, capsys):
    config = tmp_path / "micro.yaml"
    save_config(micro_config(), config)
    out = tmp_path / "cmp"
    args = ["bench", "compare", str(config), "--data", str(small_synth), "--out", str(out), "--minutes", "0.05",
            "--no-progress", "--set", "train.batch_size=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| micro |" in printed
    (row,) = load_results(out / "compare.json")
    assert row.name == "micro" and row.epochs > 0 and row.train_images_per_s > 0 and row.infer_images_per_s > 0
    model_cfg = micro_config().model
    model_cfg.num_classes = 5  # the synthetic dataset's classes
    assert row.params == sum(p.numel() for p in Detector(model_cfg).parameters())
    run = out / "micro"
    written = (run / "config.yaml").read_text()
    assert "batch_size: 2" in written and "minutes: 0.05" in written  # the budget is the run's train.minutes
    assert 0 < row.run_minutes and row.train_minutes <= row.run_minutes
    assert set(row.metrics) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    # a second call finds the finished run and trains nothing
    stamp = (run / "last.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (run / "last.pt").stat().st_mtime_ns == stamp
    assert load_results(out / "compare.json") == [row]


def test_compare_rejects_a_non_positive_budget(small_synth, tmp_path, capsys):
    assert main(["bench", "compare", "fcos_r10_fpn_tiny", "--data", str(small_synth), "--out", str(tmp_path),
                 "--minutes", "0"]) == 2
    assert "budget must be positive" in capsys.readouterr().err


def test_compare_unknown_model_is_a_clear_error(small_synth, tmp_path, capsys):
    assert main(["bench", "compare", "fcos_r9000", "--data", str(small_synth), "--out", str(tmp_path)]) == 2
    assert "fcos_r9000" in capsys.readouterr().err

