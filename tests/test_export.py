"""Exports (ONNX, torch.export, TorchScript) of every detector against PyTorch, the onnxruntime predictor
(also without PyTorch), the NumPy preprocessing and the errors for unsupported or damaged files.

Models are small (2-level FPN heads on a ResNet-10, 96 px input) with random weights; the head convs are
rescaled to outputs that vary across locations and get a perturbed classification bias, so that scores and boxes vary from
location to location and detections exist. Each file is exported once per module (cache).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from anchorfree import Model, load_model
from anchorfree.api import to_uint8_chw
from anchorfree.config import Config
from anchorfree.inference.checkpoint import atomic_save, make_checkpoint
from anchorfree.errors import ConfigError, ExportError
from anchorfree.export import export_model
from anchorfree.export.check import FP16, FP32, CheckResult, check_export, check_images, match_detections
from anchorfree.export.predictor import ExportedModel, hard_nms
from anchorfree.export.preprocess import resize_bilinear, resize_bilinear_numpy, to_rgb_array
from anchorfree.models.detector import Detector
from anchorfree.presets import get_preset
from anchorfree.structures import Batch

SIZE = 96
CLASSES = ["circle", "square", "star"]
PRESETS = {"fcos": "fcos_r10_fpn_tiny", "retinanet": "retinanet_r18_fpn_tiny", "atss": "atss_r18_fpn_tiny",
           "gfl": "gfl_r18_fpn_tiny", "gflv2": "gflv2_r18_fpn_tiny", "centernet": "centernet_r18_tiny",
           "cornernet": "cornernet_hg_tiny"}
# how each head is exported below: together they cover NMS and raw candidates, static and dynamic shapes,
# batch > 1, agnostic NMS, fp16 and the keypoint heads
ONNX_CASES = {"fcos": {}, "retinanet": {"nms": False, "options": {"max_detections": 10}}, "atss": {"batch": 2, "nms": "agnostic"},
              "gfl": {"dynamic": True}, "gflv2": {"half": True}, "centernet": {}, "cornernet": {}}
PREDICTION_CONV = re.compile(r"(cls_logits|bbox_pred|centerness|heatmap_head\.2|wh_head\.2|offset_head\.2|"
                             r"_(heat|off|emb)\.\d+\.1\.conv)$")


def small_config(head: str) -> Config:
    cfg = get_preset(PRESETS[head])
    m = cfg.model
    m.num_classes, m.class_names = len(CLASSES), list(CLASSES)
    m.backbone.weights = None
    m.input.min_size = m.input.max_size = SIZE
    m.input.size_divisor = 32
    if head == "centernet":
        m.backbone.name = "resnet10"
        m.neck.upconv_channels = [32, 16]
        m.head.feat_channels = 16
    elif head == "cornernet":
        b = m.backbone
        b.hourglass_stacks, b.hourglass_depth = 1, 2
        b.hourglass_channels, b.hourglass_blocks, b.hourglass_feat_channels = [16, 24, 32], [1, 1, 1], 16
        m.head.feat_channels, m.head.pool_channels = 16, 8
    else:  # two levels (strides 16, 32), one tower conv of 16 channels
        m.backbone.name, m.backbone.out_levels = "resnet10", [4, 5]
        m.neck.num_extra_levels, m.neck.out_channels = 0, 16
        m.head.strides, m.head.feat_channels, m.head.num_convs = [16, 32], 16, 1
        if hasattr(m.head, "regress_ranges"):
            m.head.regress_ranges = [[-1, 64], [64, 1e8]]
        if m.head.norm == "gn":
            m.head.gn_groups = 4
    m.head.topk = 20
    return cfg


def small_detector(head: str, seed: int = 0) -> Detector:
    """Random weights; every prediction conv rescaled per channel so that on a drawn image its outputs have
    a standard deviation of 1 across locations (CornerNet's embeddings 0.05: most corner pairs group) around
    a mean drawn per channel (class logits around -1)."""
    torch.manual_seed(seed)
    det = Detector(small_config(head).model).eval()
    convs = {name: conv for name, conv in det.head.named_modules()
             if isinstance(conv, torch.nn.Conv2d) and PREDICTION_CONV.search(name)}
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(name: str, conv: torch.nn.Conv2d, out: torch.Tensor) -> None:
        response = out - conv.bias[None, :, None, None]
        stats[name] = response.mean(dim=(0, 2, 3)), response.std(dim=(0, 2, 3)).clamp(min=1e-6)

    hooks = [conv.register_forward_hook(lambda m, i, out, n=name: record(n, m, out)) for name, conv in convs.items()]
    image = torch.from_numpy(check_images(1, SIZE, seed=99)[0]).permute(2, 0, 1)[None]
    with torch.no_grad():
        det(image)
        for hook in hooks:
            hook.remove()
        for name, conv in convs.items():
            mean, std = stats[name]
            scale = (0.05 if "_emb" in name else 1.0) / std
            is_class = "cls" in name or "heat" in name
            target = torch.randn(len(mean)) * (0.3 if is_class else 0.1) + (-1.0 if is_class else 0.0)
            if name.startswith("wh_head"):
                target = torch.full_like(target, 4.0)  # CenterNet sizes: about 16 px boxes
            conv.weight.mul_(scale[:, None, None, None])
            conv.bias.copy_(target - mean * scale)
    return det


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


_CACHE: dict[tuple, object] = {}


def exported(workdir: Path, head: str, fmt: str = "onnx", **kwargs):
    """``(report, detector)`` of an export, made once per module (fcos: from a run folder's checkpoint)."""
    key = (str(workdir), head, fmt, repr(sorted(kwargs.items())))  # workdir: a module fixture can be made again
    if key not in _CACHE:
        det = small_detector(head)
        suffix = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".torchscript"}[fmt]
        if head == "fcos" and fmt == "onnx" and not kwargs:
            run = workdir / "run"
            cfg = small_config(head)
            atomic_save(make_checkpoint(cfg, det.state_dict(), label_to_cat_id={0: 3, 1: 5, 2: 9}), run / "best.pt")
            report = export_model(run, check_images=2)  # default file: run/best.onnx
        else:  # two check images (a dynamic export's check runs three: two batch sizes)
            name = f"{head}_{fmt}_{len(_CACHE)}{suffix}"
            report = export_model(det, fmt, workdir / name, check_images=2, **kwargs)
        _CACHE[key] = (report, det)
    return _CACHE[key]


def reference(det: Detector, model: ExportedModel, images: list[np.ndarray], **options):
    """PyTorch's detections (original pixels) on the batch the exported model runs."""
    batch_images, sizes = model.preprocess(images)
    n = len(images)
    orig = torch.tensor([im.shape[:2] for im in images])
    batch = Batch(torch.from_numpy(batch_images)[:n], torch.from_numpy(sizes)[:n], orig_sizes=orig)
    return det.predict(batch, **options)


def assert_same(pytorch_dets, predictions, box_tol: float = 1e-3, score_tol: float = 1e-4) -> int:
    """Same count and labels; boxes and scores close (both sorted by score). Returns the detections compared."""
    total = 0
    for ref, pred in zip(pytorch_dets, predictions, strict=True):
        order = np.argsort(-ref.scores.numpy(), kind="stable")
        mine = np.argsort(-np.asarray(pred.scores), kind="stable")
        assert len(ref) == len(pred)
        np.testing.assert_array_equal(ref.labels.numpy()[order], np.asarray(pred.labels)[mine])
        np.testing.assert_allclose(np.asarray(pred.boxes)[mine], ref.boxes.numpy()[order], rtol=box_tol, atol=box_tol)
        np.testing.assert_allclose(np.asarray(pred.scores)[mine], ref.scores.numpy()[order], atol=score_tol)
        total += len(ref)
    return total


# ---- ONNX, every head ----------------------------------------------------------------------------
@pytest.mark.parametrize("head", list(ONNX_CASES))
def test_onnx_export_matches_pytorch(workdir, head):
    kwargs = ONNX_CASES[head]
    report, det = exported(workdir, head, **kwargs)
    assert report.check is not None and report.check.passed, report.summary()
    assert report.check.detections > 0 and report.check.matched + report.check.borderline == report.check.detections
    model = ExportedModel(report.path, device="cpu")
    images = check_images(4, SIZE, seed=5)[:2]  # other images than the export's own check
    preds = model(images)
    # the export's suppression; CornerNet's ONNX export uses hard NMS (see the note), raw candidates get PyTorch's
    opts = {"nms": kwargs["nms"] if isinstance(kwargs.get("nms"), str) else
            "classwise" if head == "cornernet" else det.head.cfg.nms, **kwargs.get("options", {})}
    if kwargs.get("half"):
        n = assert_same(reference(det, model, images, **opts), preds, box_tol=5e-2, score_tol=1e-2)
    else:
        n = assert_same(reference(det, model, images, **opts), preds)
    assert n > 0


def test_cornernet_onnx_says_it_uses_hard_nms(workdir):
    report, _ = exported(workdir, "cornernet")
    assert report.suppression == "classwise" and any("Soft-NMS" in note and "hard" in note for note in report.notes)
    assert "Soft-NMS" in report.summary()
    info = ExportedModel(report.path).info
    assert (info.suppression, info.pytorch_nms) == ("classwise", "soft_gaussian") and "Soft-NMS" in info.notes
    with pytest.raises(ExportError, match="no ONNX operator"):
        export_model(small_detector("cornernet"), "onnx", report.path.with_name("soft.onnx"), nms="soft_gaussian")


def test_raw_candidates_and_predictor_nms(workdir):
    report, det = exported(workdir, "retinanet", **ONNX_CASES["retinanet"])
    model = ExportedModel(report.path)
    assert report.raw_candidates and model.info.raw_candidates
    images = check_images(2, SIZE, seed=7)
    batch, sizes = model.preprocess(images[:1])
    boxes, _, labels, num = model.backend.run(batch, sizes, 0.05, 0.5)
    assert boxes.shape[1] == 2 * 20  # every candidate: the top 20 of each of the two levels
    cands = det.predict(Batch(torch.from_numpy(batch), torch.from_numpy(sizes)), rescale=False, nms="none",
                        max_detections=10 ** 6)[0]
    assert int(num[0]) == len(cands) > 10  # more than max_detections: nothing was suppressed or capped
    np.testing.assert_allclose(boxes[0, : len(cands)], cands.boxes.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(labels[0, len(cands):], -1)  # padding rows
    for nms in ("classwise", "agnostic"):  # the predictor suppresses them as asked, as PyTorch would
        preds = model(images, nms=nms)
        assert assert_same(reference(det, model, images, nms=nms, max_detections=10), preds) > 0


def test_dynamic_onnx_runs_two_sizes_and_batches(workdir):
    report, det = exported(workdir, "gfl", dynamic=True)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(report.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    rng = np.random.default_rng(0)
    total = 0
    for n, (h, w) in ((1, (64, 96)), (3, (96, 128))):
        images = rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8)
        sizes = np.array([[h, w]] + [[h - 10, w - 20]] * (n - 1), dtype=np.int64)
        boxes, _, labels, num = session.run(None, {"images": images, "image_sizes": sizes})
        refs = det.predict(Batch(torch.from_numpy(images), torch.from_numpy(sizes)), rescale=False)
        assert boxes.shape[0] == n
        for i, ref in enumerate(refs):
            assert int(num[i]) == len(ref)
            np.testing.assert_array_equal(labels[i, : len(ref)], ref.labels.numpy())
            np.testing.assert_allclose(boxes[i, : len(ref)], ref.boxes.numpy(), rtol=1e-3, atol=1e-3)
            total += len(ref)
    assert total > 0


def test_fp16_onnx(workdir):
    report, _ = exported(workdir, "gflv2", half=True)
    graph = onnx.load(str(report.path)).graph
    weights = {node.input[1] for node in graph.node if node.op_type == "Conv"}
    types = {init.data_type for init in graph.initializer if init.name in weights}
    assert weights and types == {onnx.TensorProto.FLOAT16}
    assert report.check.passed and report.check.tolerance.box_rtol > FP32.box_rtol
    assert ExportedModel(report.path).info.precision == "fp16"


# ---- the file: metadata, thresholds as inputs, errors ----------------------------------------------
def test_metadata_and_default_thresholds(workdir):
    report, det = exported(workdir, "fcos")
    assert report.path == workdir / "run" / "best.onnx"
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert json.loads(props["class_names"]) == CLASSES
    assert json.loads(props["label_to_cat_id"]) == {"0": 3, "1": 5, "2": 9}
    inp = json.loads(props["input"])
    assert inp["canvas"] == [SIZE, SIZE] and inp["batch"] == 1 and inp["mean"] == list(det.cfg.input.mean)
    assert props["suppression"] == "classwise" and props["raw_candidates"] == "false"
    assert json.loads(props["inference"])["score_thresh"] == det.head.cfg.score_thresh
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    model = ExportedModel(report.path)
    images = check_images(1, SIZE, seed=9)
    batch, sizes = model.preprocess(images)
    default = session.run(None, {"images": batch, "image_sizes": sizes})  # thresholds omitted: the export's
    explicit = model.backend.run(batch, sizes, det.head.cfg.score_thresh, det.head.cfg.nms_thresh)
    for a, b in zip(default, explicit):
        np.testing.assert_array_equal(a, b)
    # other thresholds per call, as PyTorch's options
    preds = model(images, score_thresh=0.3, nms_thresh=0.3, max_detections=5)
    assert_same(reference(det, model, images, score_thresh=0.3, nms_thresh=0.3, max_detections=5), preds)


def test_predictor_refuses_what_the_graph_cannot_do(workdir):
    report, _ = exported(workdir, "fcos")
    model = ExportedModel(report.path)
    with pytest.raises(ConfigError, match="topk=20 is fixed"):
        model(np.zeros((8, 8, 3), np.uint8), topk=50)
    with pytest.raises(ConfigError, match="exported with nms=classwise"):
        model(np.zeros((8, 8, 3), np.uint8), nms="agnostic")
    with pytest.raises(ConfigError, match="at most 100 detections"):
        model(np.zeros((8, 8, 3), np.uint8), max_detections=500)
    with pytest.raises(ConfigError, match="no inference option 'flip'"):
        model(np.zeros((8, 8, 3), np.uint8), flip=True)


def test_damaged_or_foreign_files_give_clear_errors(workdir):
    report, _ = exported(workdir, "fcos")
    truncated = workdir / "truncated.onnx"
    truncated.write_bytes(report.path.read_bytes()[:5000])
    with pytest.raises(ExportError, match="corrupt or not an ONNX model"):
        load_model(truncated)
    proto = onnx.load(str(report.path))
    del proto.metadata_props[:]
    onnx.save(proto, str(workdir / "foreign.onnx"))
    with pytest.raises(ExportError, match="no anchorfree metadata"):
        load_model(workdir / "foreign.onnx")
    proto = onnx.load(str(report.path))
    for prop in proto.metadata_props:
        if prop.key == "input":
            prop.value = prop.value.replace(f"[{SIZE}, {SIZE}]", "[128, 128]")
    onnx.save(proto, str(workdir / "mismatched.onnx"))
    with pytest.raises(ExportError, match="metadata says batch 1 on a \\(128, 128\\) canvas"):
        load_model(workdir / "mismatched.onnx")
    with pytest.raises(ExportError, match="does not exist"):
        load_model(workdir / "missing.onnx")
    # the check itself fails for a file that is not this detector's export
    result = check_export(ExportedModel(report.path), small_detector("fcos", seed=1), FP32)
    assert result.passed is False and result.problems and "CHECK FAILED" in result.summary()


def test_unsupported_combinations(workdir):
    det = small_detector("fcos")
    with pytest.raises(ExportError, match="TorchScript traces record one input size"):
        export_model(det, "torchscript", workdir / "x.torchscript", dynamic=True)
    with pytest.raises(ExportError, match="fp16 ONNX or OpenVINO only"):
        export_model(det, "pt2", workdir / "x.pt2", half=True)
    with pytest.raises(ConfigError, match="must be one of onnx, openvino, pt2, torchscript"):
        export_model(det, "tflite", workdir / "x.tflite")
    with pytest.raises(ConfigError, match="opset"):
        export_model(det, "onnx", workdir / "x.onnx", opset=11)
    with pytest.raises(ConfigError, match="multiples of model.input.size_divisor=32"):
        export_model(det, "onnx", workdir / "x.onnx", input_size=100)
    with pytest.raises(ConfigError, match="must be named"):
        export_model(det, "onnx", workdir / "x.pt2")
    with pytest.raises(ConfigError, match="needs out="):
        export_model(det, "onnx")


# ---- torch.export and TorchScript ---------------------------------------------------------------
def test_pt2_keeps_soft_nms(workdir):
    # CornerNet's default Soft-NMS, here on the cheaper CenterNet graph: the same operator in the file
    report, det = exported(workdir, "centernet", "pt2", nms="soft_gaussian")
    assert report.suppression == "soft_gaussian" and report.check.passed, report.summary()
    assert not report.notes  # nothing differs from PyTorch
    model = load_model(report.path, device="cpu")
    images = check_images(2, SIZE, seed=11)
    assert assert_same(reference(det, model, images, nms="soft_gaussian"), model(images)) > 0


def test_torchscript_export(workdir):
    report, det = exported(workdir, "fcos", "torchscript", batch=2)
    assert report.check.passed, report.summary()
    model = load_model(report.path, device="cpu")
    images = check_images(3, SIZE, seed=13)  # batches of 2: the last one is filled with an empty image
    assert assert_same(reference(det, model, images[:2]) + reference(det, model, images[2:]), model(images)) > 0


# ---- the predictor and the Python API ----------------------------------------------------------
def test_load_model_onnx_equals_model(workdir):
    report, _ = exported(workdir, "fcos")
    torch_model = Model(workdir / "run", device="cpu", fast=False)
    onnx_model = load_model(report.path)
    assert isinstance(load_model(workdir / "run", fast=False), Model)
    # 4:3 and 3:4 images: the PyTorch path pads them to the export's 96 x 96 canvas as well
    images = [check_images(1, SIZE, seed=s)[0] for s in (1, 2)] + [check_images(2, SIZE, seed=3)[1]]
    expected, got = torch_model(images), onnx_model(images)
    assert assert_same([_as_dets(p) for p in expected], got) > 0
    assert got[0].names == expected[0].names and onnx_model.class_names == CLASSES
    for e, g in zip(expected, got):
        coco_e, coco_g = e.to_coco(7), g.to_coco(7)
        assert [d["category_id"] for d in coco_e] == [d["category_id"] for d in coco_g]
        assert {d["category_id"] for d in coco_g} <= {3, 5, 9}
    single = onnx_model(torch.from_numpy(images[0]).permute(2, 0, 1))  # a CHW tensor, as Model accepts
    assert len(single) == len(got[0])


def test_predictor_runs_without_torch(workdir):
    report, _ = exported(workdir, "fcos")
    image = check_images(1, SIZE, seed=1)[0]
    np.save(workdir / "image.npy", image)
    code = f"""
import json, sys
sys.modules["torch"] = None  # importing torch now fails
import numpy as np
import anchorfree
from anchorfree import load_model
model = load_model({str(report.path)!r})
pred = model(np.load({str(workdir / 'image.npy')!r}))
assert all(not k.startswith("torch") or sys.modules[k] is None for k in sys.modules), sorted(sys.modules)
print(json.dumps({{"boxes": pred.boxes.tolist(), "labels": pred.labels.tolist(), "names": pred.names}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    here = ExportedModel(report.path)(image)
    np.testing.assert_array_equal(np.array(result["boxes"], dtype=np.float32).reshape(-1, 4), here.boxes)
    assert result["labels"] == here.labels.tolist() and result["names"] == here.names and len(here) > 0


def test_model_needs_torch_message():
    code = """
import sys
sys.modules["torch"] = None
from anchorfree import Model
try:
    Model("runs/x/best.pt")
except Exception as e:
    print(type(e).__name__, e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert "AnchorfreeError" in out.stdout and "needs PyTorch" in out.stdout and "load_model" in out.stdout


def _as_dets(pred):
    from anchorfree.structures import Detections

    return Detections(pred.boxes, pred.scores, pred.labels)


# ---- preprocessing ------------------------------------------------------------------------------
def test_numpy_resize_is_torchvisions():
    """The torch-free resize (and the dispatching one) give torchvision's pixels, bit for bit."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(2, 200, size=2))
        oh, ow = (int(v) for v in rng.integers(1, 260, size=2))
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        expected = TF.resize(torch.from_numpy(image).permute(2, 0, 1).contiguous(), [oh, ow], antialias=False)
        np.testing.assert_array_equal(resize_bilinear_numpy(image, (oh, ow)), expected.permute(1, 2, 0).numpy())
        np.testing.assert_array_equal(resize_bilinear(image, (oh, ow)), expected.permute(1, 2, 0).numpy())


def test_image_inputs_read_as_the_api_reads_them(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    inputs = [rgb, rgb[..., 0], np.concatenate([rgb, rgb[..., :1]], axis=2), rgb.astype(np.float32) / 255,
              Image.fromarray(rgb), str(tmp_path / "a.png"), torch.from_numpy(rgb).permute(2, 0, 1),
              torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    for item in inputs:
        np.testing.assert_array_equal(to_rgb_array(item), to_uint8_chw(item).permute(1, 2, 0).numpy())


def test_hard_nms_keeps_torchvisions_boxes():
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 50, size=(200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, size=(200, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(size=200).astype(np.float32)
    labels = rng.integers(0, 3, size=200)
    expected = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5)
    np.testing.assert_array_equal(hard_nms(boxes, scores, labels, 0.5), expected.numpy())


def test_check_tells_rounding_from_real_differences():
    # two boxes of one class overlapping by 0.5 + 1e-5: whether NMS at 0.5 removes the second is rounding's
    a, b = np.array([0, 0, 100, 100.0]), np.array([0, 0, 100, 200 / (1 + 1e-5)])
    ref = (np.stack([a, b]).astype(np.float32), np.array([0.9, 0.8], np.float32), np.array([1, 1]))
    got = (ref[0][:1], ref[1][:1], ref[2][:1])
    near = CheckResult(passed=True, runtime="test")
    match_detections(ref, got, FP32, 0.05, 100, "image", near, "classwise", 0.5)
    assert (near.matched, near.borderline, near.problems) == (1, 1, [])
    far = CheckResult(passed=True, runtime="test")  # overlap 0.5 against NMS at 0.3: not rounding, a real difference
    match_detections(ref, got, FP32, 0.05, 100, "image", far, "classwise", 0.3)
    assert far.borderline == 0 and len(far.problems) == 1 and "missing" in far.problems[0]
    # two overlapping boxes of near-equal scores: which one NMS keeps is rounding's, both ways
    tie_ref = (ref[0][:1], np.array([0.5], np.float32), ref[2][:1])
    tie_got = (ref[0][1:], np.array([0.50001], np.float32), ref[2][:1])
    tie = CheckResult(passed=True, runtime="test")
    match_detections(tie_ref, tie_got, FP32, 0.05, 100, "image", tie, "classwise", 0.3)
    assert (tie.borderline, tie.problems) == (1, [])
    tie_apart = CheckResult(passed=True, runtime="test")  # the same scores far apart: a real difference
    match_detections(tie_ref, (tie_got[0] + 300, tie_got[1], tie_got[2]), FP32, 0.05, 100, "image", tie_apart,
                     "classwise", 0.3)
    assert len(tie_apart.problems) == 2
    other = CheckResult(passed=True, runtime="test")  # another label: class-wise NMS never compared them
    match_detections(ref, (got[0], got[1], np.array([2])), FP16, 0.05, 100, "image", other, "classwise", 0.5)
    assert other.matched == 0 and len(other.problems) == 3
