"""The command line: every command end to end on tiny data, and bad input giving clear messages."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from anchorfree.cli import main
from anchorfree.config import save_config

from conftest import micro_config


@pytest.fixture(scope="module")
def trained_run(small_synth, tmp_path_factory):
    """A run trained for one epoch through the CLI from a YAML config with overrides."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "micro.yaml"
    save_config(micro_config(), config)
    run = root / "run"
    rc = main(["train", str(config), "--data", str(small_synth), "--out", str(run), "--no-progress",
               "train.epochs=1", "eval_interval=1", "train.tensorboard=true"])
    assert rc == 0
    return run


def test_train_eval_predict(trained_run, small_synth, tmp_path, capsys):
    assert (trained_run / "best.pt").is_file()
    assert "epochs: 1" in (trained_run / "config.yaml").read_text()
    assert main(["eval", str(trained_run), "--data", str(small_synth), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and "circle" in out
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert len(metrics["metrics"]) == 12
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))  # train.tensorboard=true
    report = (trained_run / "report.html").read_text()
    assert "<title>" in report and "Precision" in report and "data:image/png;base64," in report

    pred_dir = tmp_path / "pred"
    threads = torch.get_num_threads()
    assert main(["predict", str(trained_run / "best.pt"), str(small_synth / "val" / "images"), "--limit", "3",
                 "--out", str(pred_dir), "--score-thresh", "0.0", "--fast", "off", "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # --threads applies to that call only
    drawn = sorted(p.name for p in pred_dir.glob("*.jpg"))
    assert len(drawn) == 3
    results = json.loads((pred_dir / "results.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    assert {r["category_id"] for r in results} <= {1, 2, 3, 5, 7}  # mapped back to the dataset's ids


def test_models_lists_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fcos_r50_fpn " in out and "fcos_r18_fpn_tiny" in out
    assert "centernet_r18 " in out and "cornernet_hg104 " in out and "cornernet_hg_tiny" in out


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_bad_override_and_preset(small_synth, tmp_path, capsys):
    assert main(["train", "fcos_r18_fpn_tiny", "--data", str(small_synth), "--out", str(tmp_path / "r"),
                 "train.lrr=0.1"]) == 2
    assert "Did you mean: lr" in _error(capsys)
    assert main(["train", "fcos_r18_fpn_tinyy", "--data", str(small_synth), "--out", str(tmp_path / "r")]) == 2
    assert "fcos_r18_fpn_tiny" in _error(capsys)


def test_missing_checkpoint_and_missing_images(tmp_path, small_synth, capsys):
    assert main(["eval", str(tmp_path / "nope.pt"), "--data", str(small_synth)]) == 2
    assert "nope.pt" in _error(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "ck.pt").write_bytes(b"")
    assert main(["predict", str(tmp_path / "ck.pt"), str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "ck.pt" in _error(capsys)


def test_corrupt_image_during_training_names_the_file(small_synth, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(small_synth, data)
    victim = sorted((data / "train" / "images").iterdir())[5]
    victim.write_bytes(b"\xff\xd8 this is not a jpeg")
    config = tmp_path / "micro.yaml"
    save_config(micro_config(), config)
    for workers in ("0", "1"):
        rc = main(["train", str(config), "--data", str(data), "--out", str(tmp_path / f"run{workers}"),
                   "--no-progress", f"train.workers={workers}"])
        assert rc == 2
        err = _error(capsys)
        assert victim.name in err and "corrupt" in err


def test_eval_on_dataset_with_other_classes(trained_run, tmp_path, capsys):
    data = tmp_path / "data"
    from anchorfree.data import generate_synthetic_dataset

    generate_synthetic_dataset(data, num_train=2, num_val=2, image_size=(64, 64))
    val = json.loads((data / "val" / "annotations.json").read_text())
    val["categories"] = val["categories"][:3]
    val["annotations"] = [a for a in val["annotations"] if a["category_id"] in {c["id"] for c in val["categories"]}]
    (data / "val" / "annotations.json").write_text(json.dumps(val))
    assert main(["eval", str(trained_run), "--data", str(data)]) == 2
    assert "3 categories" in _error(capsys)


def test_inference_options_are_per_call_and_thread_safe(trained_run, small_synth):
    """Options travel as arguments: concurrent calls with different options each get their own result, and
    the model's config is not changed."""
    from concurrent.futures import ThreadPoolExecutor

    from anchorfree import Model

    model = Model(trained_run, fast=False)
    images = sorted((small_synth / "val" / "images").iterdir())[:2]
    settings = [{"score_thresh": 0.0}, {"score_thresh": 0.2, "nms": "agnostic"}, {"nms": "soft_gaussian"},
                {"max_detections": 3}]
    expected = [[len(p) for p in model(images, **s)] for s in settings]
    assert expected[0] != expected[3] and max(expected[3]) <= 3
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda s: [len(p) for p in model(images, **s)], settings * 3))
    assert found == expected * 3
    assert model.detector.head.cfg.score_thresh == model.config.model.head.score_thresh == 0.05
    with pytest.raises(Exception, match="no inference option 'flip_test'"):
        model(images, flip_test=True)  # FCOS has no flip test


def test_eval_and_predict_take_inference_options(trained_run, small_synth, tmp_path, capsys):
    assert main(["eval", str(trained_run), "--data", str(small_synth), "--workers", "0", "--nms", "soft_linear",
                 "--max-det", "20"]) == 0
    assert "AP50" in capsys.readouterr().out
    assert main(["predict", str(trained_run), str(small_synth / "val" / "images"), "--limit", "1", "--out",
                 str(tmp_path / "p"), "--flip-test"]) == 2
    assert "fcos head has no inference option 'flip_test'" in capsys.readouterr().err


def test_keypoint_models_train_eval_predict_through_the_cli(small_synth, tmp_path, capsys):
    """A (very small) CenterNet and CornerNet through train → eval (flip test / soft-NMS options) → predict."""
    from anchorfree.presets import get_preset

    small = ["model.input.min_size=128", "model.input.max_size=128", "train.epochs=1", "train.workers=0",
             "train.batch_size=4", "train.warmup_iters=2"]
    centernet = ["backbone.name=resnet10", "neck.upconv_channels=[16,16]", "neck.upconv_kernels=[4,4]",
                 "head.feat_channels=16"]
    cornernet = ["backbone.hourglass_depth=2", "backbone.hourglass_channels=[16,16,24]",
                 "backbone.hourglass_blocks=[1,1,1]", "backbone.hourglass_feat_channels=16",
                 "head.feat_channels=16", "head.pool_channels=8"]
    for preset, extra, options in (("centernet_r18_tiny", centernet, ["--flip-test"]),
                                   ("cornernet_hg_tiny", cornernet, ["--nms", "soft_linear", "--max-det", "50"])):
        run = tmp_path / preset
        assert main(["train", preset, "--data", str(small_synth), "--out", str(run), "--no-progress", *small,
                     *extra]) == 0
        assert get_preset(preset).model.head.type in (run / "config.yaml").read_text()
        assert main(["eval", str(run), "--data", str(small_synth), "--workers", "0", *options]) == 0
        assert "AP50" in capsys.readouterr().out
        assert main(["predict", str(run), str(small_synth / "val" / "images"), "--limit", "2", "--out",
                     str(tmp_path / f"{preset}_pred"), "--score-thresh", "0.0", *options]) == 0
        results = json.loads((tmp_path / f"{preset}_pred" / "results.json").read_text())
        assert results and {r["category_id"] for r in results} <= {1, 2, 3, 5, 7}


def test_predict_on_a_folder_skips_unreadable_files(trained_run, small_synth, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = sorted((small_synth / "val" / "images").glob("*.jpg"))[:2]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(good[0].read_bytes()[:200])  # truncated JPEG
    (folder / "notes.png").write_text("not an image")
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), str(folder), "--out", str(out), "--score-thresh", "0.0",
                 "--fast", "off"]) == 0
    captured = capsys.readouterr()
    assert "on 2 images" in captured.out
    assert "skipped 2 unreadable file(s)" in captured.err
    assert "broken.jpg" in captured.err and "notes.png" in captured.err and "Traceback" not in captured.err
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"].rsplit("/", 1)[-1] for r in results} == {p.name for p in good}
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(p.name for p in good)

    for path in good:
        (folder / path.name).unlink()
    assert main(["predict", str(trained_run), str(folder), "--out", str(out)]) == 2
    assert "none of the 2 images could be read" in capsys.readouterr().err


def test_data_check_show_writes_the_dataset_report(small_synth, tmp_path, capsys):
    assert main(["data", "check", str(small_synth), "--show", "3", "--report-dir", str(tmp_path)]) == 0
    assert "dataset report with 3 drawn images" in capsys.readouterr().out
    page = (tmp_path / "dataset_report.html").read_text()
    assert page.count("data:image/") >= 3 and "circle" in page
