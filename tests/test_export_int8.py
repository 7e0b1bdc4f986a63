"""int8 (onnxruntime QDQ, NNCF) and OpenVINO exports, their certificates and the errors around them.

The models are test_export's small random detectors (a GFL and a CenterNet). Their data is labelled by the
PyTorch model itself: every detection scoring >= 0.3 on an image is a ground-truth box. PyTorch's AP on it
is then high and known, so an export that loses detections or moves boxes shows as a lower AP — the
certificate has something real to measure — and images of exactly the canvas size make a static export's
input the one ``eval`` feeds PyTorch, so an fp32 export's AP must equal ``eval``'s.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anchorfree.cli import main
from anchorfree.errors import ConfigError, DatasetError, ExportError, MissingRuntimeError
from anchorfree.export import export_model
from anchorfree.export.certificate import certificate_path
from anchorfree.export.check import check_images
from anchorfree.export.predictor import ExportedModel
from anchorfree.inference.checkpoint import atomic_save, make_checkpoint
from anchorfree.structures import Batch

from test_export import CLASSES, SIZE, small_config, small_detector  # noqa: E402

pytest.importorskip("openvino", reason="OpenVINO exports need the openvino package (pip install 'anchorfree[openvino]')")

GT_SCORE = 0.3


def square_images(count: int, seed: int) -> list[np.ndarray]:
    """``count`` drawings of exactly ``SIZE x SIZE`` (the export's canvas: no resize, no extra padding)."""
    drawn = check_images(2 * count, int(SIZE * 1.3), seed)  # landscape and portrait drawings, both > SIZE
    return [np.ascontiguousarray(image[:SIZE, :SIZE]) for image in drawn[:2 * count] if min(image.shape[:2]) >= SIZE
            ][:count]


def pseudo_labelled(root: Path, det, seed: int = 0, train: int = 10, val: int = 8) -> Path:
    """A COCO dataset of square images whose boxes are ``det``'s own detections scoring >= :data:`GT_SCORE`."""
    for split, count, offset in (("train", train, 0), ("val", val, 100)):
        images = square_images(count, seed + offset)
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        sizes = torch.tensor([[SIZE, SIZE]] * len(images))
        with torch.no_grad():
            dets = det.predict(Batch(batch, sizes, orig_sizes=sizes.clone()))
        entries, anns = [], []
        for i, (image, d) in enumerate(zip(images, dets)):
            name = f"{i:03d}.png"
            Image.fromarray(image).save(root / split / "images" / name)
            entries.append({"id": i + 1, "file_name": name, "height": SIZE, "width": SIZE})
            for box, score, label in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist()):
                if score >= GT_SCORE:
                    x0, y0, x1, y1 = box
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": label + 1, "iscrowd": 0,
                                 "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
        coco = {"images": entries, "annotations": anns,
                "categories": [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]}
        (root / split / "annotations.json").write_text(json.dumps(coco))
    return root


@pytest.fixture(scope="module")
def setups(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per head: the run folder (best.pt) of a small random detector and its pseudo-labelled dataset."""
    out = {}
    for head in ("gfl", "centernet"):
        root = tmp_path_factory.mktemp(f"int8_{head}")
        det = small_detector(head)
        atomic_save(make_checkpoint(small_config(head), det.state_dict(), label_to_cat_id={0: 1, 1: 2, 2: 3}),
                    root / "run" / "best.pt")
        out[head] = (root / "run", pseudo_labelled(root / "data", det), det)
    return out


def output_conv_weights(det) -> set[str]:
    """The weights of the convolutions no other convolution follows, by module name."""
    names = {"gfl": ("cls_logits", "bbox_pred"), "centernet": ("heatmap_head.2", "wh_head.2", "offset_head.2")}
    return {f"detector.head.{n}.weight" for n in names[det.cfg.head.type]}


@pytest.fixture(scope="module")
def openvino_fp32(setups, tmp_path_factory: pytest.TempPathFactory):
    """The GFL's fp32 OpenVINO export, checked against PyTorch (fp32 tolerance) when written."""
    run, _, _ = setups["gfl"]
    report = export_model(run, "openvino", tmp_path_factory.mktemp("openvino") / "m.xml")
    assert report.check.passed is True and report.check.matched == report.check.detections > 0
    return report


# a dense and a keypoint head through both quantizers (CenterNet's onnx int8: test_benchmark_command)
@pytest.mark.parametrize("head,fmt,int8", [("gfl", "onnx", True), ("gfl", "openvino", True),
                                           ("centernet", "openvino", True)])
def test_int8_and_openvino_exports_agree_with_pytorch(setups, tmp_path, head, fmt, int8):
    run, data, det = setups[head]
    suffix = ".onnx" if fmt == "onnx" else ".xml"
    # calibration only: a random model's AP against its own boxes is no measure of int8's accuracy (the
    # certificates of trained models are in BENCHMARKS.md; test_benchmark_command certifies one here)
    report = export_model(run, fmt, tmp_path / f"model{suffix}", int8=int8, data=data if int8 else None, calib=8,
                          certify_on_data=False)
    # the check (export's tolerance: fp32 exact, int8 within INT8's) held on PyTorch's detections
    assert report.check.passed is True and report.check.detections > 0
    assert report.check.matched >= 0.8 * report.check.detections
    model = ExportedModel(report.path, device="cpu")
    assert model.info.precision == ("int8" if int8 else "fp32") and model.format == fmt
    if int8:
        assert model.info.quantization["calibration"] == 8
        if fmt == "onnx":  # the convolutions left in float (weights not from a DequantizeLinear): the output ones
            import onnx

            graph = onnx.load(str(report.path)).graph
            producer = {out: node for node in graph.node for out in node.output}
            convs = [node for node in graph.node if node.op_type == "Conv"]
            floats = {node.input[1] for node in convs if getattr(producer.get(node.input[1]), "op_type", "") !=
                      "DequantizeLinear"}
            assert floats == output_conv_weights(det) and len(convs) > len(model.info.quantization["kept_float"]
                                                                              ["layers"]) > 0
    # predict on the validation images: the same detections as the Python predictor, in a JSON file
    out = tmp_path / "pred"
    assert main(["predict", str(report.path), str(data / "val" / "images"), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    first = sorted({r["file_name"] for r in results})[0]
    mine = sorted((r for r in results if r["file_name"] == first), key=lambda r: -r["score"])
    expected = model(first)
    assert len(mine) == len(expected) > 0
    boxes = np.array([r["bbox"] for r in mine])
    np.testing.assert_allclose(boxes[:, :2], expected.boxes[:, :2], atol=0.01)


def test_certificate_ap_equals_eval_and_budget(setups, tmp_path, capsys):
    run, data, det = setups["gfl"]
    assert main(["eval", str(run), "--data", str(data)]) == 0
    evaluated = json.loads((run / "metrics.json").read_text())["metrics"]
    assert evaluated["AP"] > 0.5  # the pseudo labels are PyTorch's own detections
    report = export_model(run, "onnx", tmp_path / "fp32.onnx", data=data)
    cert = json.loads(certificate_path(report.path).read_text())
    torch_row, onnx_row = cert["rows"]
    assert torch_row["format"] == "pytorch" and onnx_row["format"] == "onnx" and cert["passed"] is True
    assert torch_row["AP"] == pytest.approx(evaluated["AP"], abs=1e-9)
    assert onnx_row["AP"] == pytest.approx(evaluated["AP"], abs=1e-4) and abs(onnx_row["delta_ap"]) <= 0.1
    assert onnx_row["images_per_s"] > 0 and onnx_row["file_size"] == report.path.stat().st_size
    # eval of the export itself: the certificate's number
    assert main(["eval", str(report.path), "--data", str(data)]) == 0
    exported = json.loads(report.path.with_name("fp32.onnx.metrics.json").read_text())["metrics"]
    assert exported["AP"] == pytest.approx(onnx_row["AP"], abs=1e-12)
    # a deliberately broken export (a threshold that drops most detections) fails its budget and is deleted: one
    # message, exit status 2, the certificate kept
    code = main(["export", str(run), "--out", str(tmp_path / "broken.onnx"), "--data", str(data), "--score-thresh",
                 "0.6", "--no-check"])
    error = capsys.readouterr().err
    assert code == 2 and "loses more AP than allowed" in error and "NO (drop > 0.1)" in error
    assert not (tmp_path / "broken.onnx").exists()
    assert json.loads(certificate_path(tmp_path / "broken.onnx").read_text())["passed"] is False


def test_benchmark_command_tabulates_formats(setups, tmp_path):
    run, data, _ = setups["centernet"]
    assert main(["benchmark", str(run), "--data", str(data), "--formats", "onnx:int8", "openvino:fp32",
                 "--calib", "6", "--out", str(tmp_path / "bench")]) == 0  # each export checked against PyTorch
    table = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert [(r["format"], r["precision"]) for r in table["rows"]] == [("pytorch", "fp32"), ("onnx", "int8"),
                                                                       ("openvino", "fp32")]
    assert table["rows"][0]["AP"] > 0.5 and table["rows"][1]["AP"] > 0.3 and table["images"] == 8
    assert abs(table["rows"][2]["delta_ap"]) <= 0.1 and table["rows"][2]["passed"] is True
    assert (tmp_path / "bench" / "best.xml").is_file() and (tmp_path / "bench" / "best.bin").is_file()
    assert "| onnx | int8 |" in (tmp_path / "bench" / "benchmark.md").read_text()


def test_bad_inputs_give_messages_and_leave_nothing(setups, tmp_path, monkeypatch):
    run, data, _ = setups["gfl"]
    with pytest.raises(ConfigError, match="int8 export is calibrated on training images"):
        export_model(run, "onnx", tmp_path / "a.onnx", int8=True)
    with pytest.raises(ExportError, match="int8 exports are written as onnx or openvino"):
        export_model(run, "pt2", tmp_path / "a.pt2", int8=True, data=data)
    # a calibration image that cannot be read: named, and nothing written
    broken = tmp_path / "broken_data"
    subprocess.run(["cp", "-r", str(data), str(broken)], check=True)
    first = json.loads((broken / "train" / "annotations.json").read_text())["images"][0]["file_name"]
    (broken / "train" / "images" / first).write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=f"int8 calibration: Image file .*{first}"):
        export_model(run, "onnx", tmp_path / "b.onnx", int8=True, data=broken, calib=20)
    # an export failing half-way (here: in the quantizer) leaves no file and no temporary folder
    import anchorfree.export.quantize as quantize

    def fail(*args, **kwargs):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(quantize, "quantize_static_model", fail, raising=False)
    monkeypatch.setattr("onnxruntime.quantization.quantize_static", fail)
    with pytest.raises(ExportError, match="quantizer crashed"):
        export_model(run, "onnx", tmp_path / "c.onnx", int8=True, data=data, calib=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken_data"]


def test_openvino_files_without_metadata_or_runtime(setups, openvino_fp32, tmp_path, monkeypatch):
    import openvino as ov

    run, data, _ = setups["gfl"]
    report = openvino_fp32
    model = ov.Core().read_model(str(report.path))
    props = json.loads(model.get_rt_info(["anchorfree", "props"]).astype(str))
    for name, change in (("none.xml", None), ("old.xml", dict(props, anchorfree_export="99"))):
        copy = ov.Core().read_model(str(report.path))
        copy.set_rt_info(json.dumps(change) if change else "{}", ["anchorfree", "props"])
        ov.save_model(copy, str(tmp_path / name), compress_to_fp16=False)
    with pytest.raises(ExportError, match="has no anchorfree metadata"):
        ExportedModel(tmp_path / "none.xml")
    with pytest.raises(ExportError, match="metadata version 99"):
        ExportedModel(tmp_path / "old.xml")
    (tmp_path / "old.bin").rename(tmp_path / "moved.bin")
    with pytest.raises(ExportError, match="weights file old.bin is missing"):
        ExportedModel(tmp_path / "old.xml")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(MissingRuntimeError, match=r"pip install 'anchorfree\[openvino\]'"):
        ExportedModel(tmp_path / "old.xml")
    with pytest.raises(MissingRuntimeError, match=r"pip install 'anchorfree\[openvino\]'"):
        export_model(run, "openvino", tmp_path / "n.xml", check=False)
    assert not (tmp_path / "n.xml").exists()


def test_openvino_predictor_runs_without_torch(setups, openvino_fp32):
    run, data, _ = setups["gfl"]
    report = openvino_fp32
    image = data / "val" / "images" / "000.png"
    code = f"""
import json, sys
sys.modules["torch"] = None  # importing torch now fails
from anchorfree import load_model
pred = load_model({str(report.path)!r}, threads=1)({str(image)!r})
assert all(not k.startswith("torch") or sys.modules[k] is None for k in sys.modules), sorted(sys.modules)
print(json.dumps({{"boxes": pred.boxes.tolist(), "labels": pred.labels.tolist()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    here = ExportedModel(report.path)(str(image))
    assert len(here) > 0 and result["labels"] == here.labels.tolist()
    np.testing.assert_allclose(np.array(result["boxes"]).reshape(-1, 4), here.boxes, atol=1e-4)


def test_server_runs_an_openvino_export(setups, openvino_fp32):
    httpx = pytest.importorskip("httpx", reason="the server tests need the serve extra and httpx")
    from anchorfree import load_model
    from anchorfree.serve import create_app

    from test_serve import ServerThread  # noqa: E402

    _, data, _ = setups["gfl"]
    image = data / "val" / "images" / "000.png"
    model = load_model(openvino_fp32.path, device="cpu")
    expected = model(str(image))
    with ServerThread(create_app(model, batch_window_ms=1)) as server, httpx.Client(base_url=server.url,
                                                                                   timeout=60) as client:
        info = client.get("/model").json()
        r = client.post("/predict", content=image.read_bytes(), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert info["format"] == "openvino"
    got = r.json()["detections"]
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose([d["box"] for d in got], expected.boxes, atol=0.01)


def test_sliced_prediction_with_an_export_equals_the_checkpoints(setups, openvino_fp32, tmp_path):
    from anchorfree import Model

    run, data, _ = setups["gfl"]
    tiles = [np.asarray(Image.open(data / "val" / "images" / f"{i:03d}.png")) for i in range(4)]
    big = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    # 96 px tiles without overlap: each tile is one canvas of the export, the input Model gives the network too
    want = Model(run, device="cpu", fast=False)(big, slice_size=SIZE, overlap=0.0)
    got = ExportedModel(openvino_fp32.path)(big, slice_size=SIZE, overlap=0.0)
    assert len(got) == len(want) > 0
    order, mine = np.argsort(-want.scores.numpy(), kind="stable"), np.argsort(-got.scores, kind="stable")
    np.testing.assert_allclose(got.boxes[mine], want.boxes.numpy()[order], atol=1e-3)
    np.testing.assert_array_equal(got.labels[mine], want.labels.numpy()[order])
    # and through the CLI, as predict --slice runs it
    Image.fromarray(big).save(tmp_path / "big.png")
    assert main(["predict", str(openvino_fp32.path), str(tmp_path / "big.png"), "--out", str(tmp_path / "p"),
                 "--slice", str(SIZE), "--overlap", "0"]) == 0
    assert len(json.loads((tmp_path / "p" / "results.json").read_text())) == len(want)
    # eval --slice: the export's AP on overlapping tiles equals the checkpoint's
    sliced = ["--data", str(data), "--slice", "64", "--overlap", "0.25", "--score-thresh", "0.05"]
    assert main(["eval", str(run), *sliced]) == 0
    want_ap = json.loads((run / "metrics.json").read_text())["metrics"]["AP"]
    assert main(["eval", str(openvino_fp32.path), *sliced]) == 0
    got_ap = json.loads(openvino_fp32.path.with_name("m.xml.metrics.json").read_text())["metrics"]["AP"]
    assert want_ap > 0 and got_ap == pytest.approx(want_ap, abs=1e-3)
