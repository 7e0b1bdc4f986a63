"""Golden files of whole mmdetection 3.3.0 detectors (backbone + neck + head) for the checkpoint converter.

For each of FCOS (caffe-style R50, the "tricks" config), ATSS, GFL and RetinaNet (R50), CenterNet (R18,
no DCN) and CornerNet (Hourglass-104), built from mmdetection's own config with 3 classes:

* the state dict's keys, shapes and dtypes (the weights themselves are derived from the keys by
  ``tests/golden_weights.py:synthetic_state_dict``, so that the file stays small);
* the image sizes (the images are ``synthetic_images(sizes)``) and the ground truth;
* ``loss``: every loss term of ``model.loss`` (BatchNorm with its running statistics), summed over levels;
* ``detections``: ``model.predict(rescale=False)`` per image (boxes, scores, labels).

The batch goes through mmdetection's ``DetDataPreprocessor`` (BGR → RGB where the config says so, mean /
std, padding to the config's divisor). Image 1 is smaller than the batch (padded), image 2 has no objects.

Writes ``tests/fixtures/mmdet_detectors.pt`` (plain tensors / lists / dicts: loads without mmdetection).
Run from the repository root with the mmdetection venv of ``../shared/refs/mmdet-on-cpu.md``::

    ../mmdet-venv/bin/python scripts/mmdet_detector_golden.py
"""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("MMCV_SHIM_DIR", str(REPO.parent / "shared" / "refs")))
sys.path.insert(0, str(REPO / "tests"))

import mmcv_lite_shim  # noqa: E402

mmcv_lite_shim.install()

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import mmdet  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from golden_weights import synthetic_images, synthetic_state_dict  # noqa: E402

register_all_modules()
CONFIGS = Path(mmdet.__file__).parent / ".mim" / "configs"
OUT = REPO / "tests" / "fixtures" / "mmdet_detectors.pt"
NUM_CLASSES = 3

DENSE_SIZES = [(160, 192), (128, 150), (160, 160), (96, 192)]
KEYPOINT_SIZES = [(128, 128), (100, 128), (128, 96), (128, 128)]
DENSE_GT = [
    ([[10.5, 20.25, 80.0, 100.0], [60.0, 30.0, 180.0, 150.0], [5.0, 5.0, 25.0, 18.0], [120.0, 100.0, 140.0, 130.0]],
     [0, 2, 1, 1]),
    ([[30.0, 40.0, 90.0, 120.0], [100.0, 10.0, 148.0, 60.0]], [1, 0]),
    ([], []),
    ([[0.0, 0.0, 64.0, 50.0], [150.0, 40.0, 192.0, 96.0], [70.0, 20.0, 110.0, 70.0]], [2, 2, 0]),
]
KEYPOINT_GT = [
    ([[10.5, 20.25, 60.0, 90.0], [50.0, 30.0, 120.0, 110.0], [5.0, 5.0, 25.0, 18.0]], [0, 2, 1]),
    ([[30.0, 40.0, 90.0, 95.0], [100.0, 10.0, 126.0, 60.0]], [1, 0]),
    ([], []),
    ([[0.0, 0.0, 64.0, 50.0], [60.0, 40.0, 128.0, 128.0], [70.0, 20.0, 90.0, 70.0]], [2, 2, 0]),
]

MODELS_TO_RUN = {
    "fcos": dict(config="fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py",
                 preset="fcos_r50_fpn_mmdet", bias_means={r"conv_cls": -2.0}, dense=True),
    "atss": dict(config="atss/atss_r50_fpn_1x_coco.py", preset="atss_r50_fpn_mmdet",
                 bias_means={r"atss_cls": -2.0}, dense=True),
    "gfl": dict(config="gfl/gfl_r50_fpn_1x_coco.py", preset="gfl_r50_fpn_mmdet",
                bias_means={r"gfl_cls": -2.0, r"gfl_reg": [-0.5 * i for i in range(17)]}, dense=True),
    "retinanet": dict(config="retinanet/retinanet_r50_fpn_1x_coco.py", preset="retinanet_r50_fpn_mmdet",
                      bias_means={r"retina_cls": -2.0}, dense=True),
    "centernet": dict(config="centernet/centernet_r18_8xb16-crop512-140e_coco.py", preset="centernet_r18_mmdet",
                      bias_means={r"heatmap_head\.2": -2.5}, dense=False),
    "cornernet": dict(config="cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py",
                      preset="cornernet_hg104_mmdet", bias_means={r"_heat\.\d+\.1\.conv": -2.5}, dense=False,
                      weight_gain=0.85),  # N(0, 1 / fan_in) weights blow up through two stacks
}


def build(config: str):
    cfg = Config.fromfile(str(CONFIGS / config))
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.num_classes = NUM_CLASSES
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def samples(sizes, gts, keypoint: bool):
    out = []
    for (h, w), (boxes, labels) in zip(sizes, gts):
        meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0))
        if keypoint:
            meta["border"] = (0, 0, 0, 0)  # top, bottom, left, right of RandomCenterCropPad: no shift
        s = DetDataSample(metainfo=meta)
        s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                      labels=torch.tensor(labels, dtype=torch.long))
        out.append(s)
    return out


def summed(value):
    if isinstance(value, (list, tuple)):
        return float(sum(v.sum() for v in value))
    return float(value.sum())


@torch.no_grad()
def run(name: str, spec: dict) -> dict:
    model = build(spec["config"])
    keys = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    weights = synthetic_state_dict(keys, bias_means=spec["bias_means"], weight_gain=spec.get("weight_gain", 1.0))
    learned = {k for k, _ in model.named_parameters()}
    for key, value in model.state_dict().items():  # fixed buffers (GFL's integral bins) keep their values
        if key not in learned and not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            weights[key] = value
    model.load_state_dict(weights, strict=True)
    sizes, gts = (DENSE_SIZES, DENSE_GT) if spec["dense"] else (KEYPOINT_SIZES, KEYPOINT_GT)
    images = [img.flip(0) for img in synthetic_images(sizes)]  # mmdetection reads images as BGR
    data = model.data_preprocessor({"inputs": images, "data_samples": samples(sizes, gts, not spec["dense"])},
                                   training=False)
    # losses as in training: FCOS's head scales its regression by the stride only outside training. The dense
    # detectors' BatchNorms stay in eval mode in train() (norm_eval=True); CenterNet's and CornerNet's would use
    # batch statistics, so their losses are taken in eval mode (their heads do not depend on the mode)
    model.train(spec["dense"])
    losses = {k: summed(v) for k, v in model.loss(data["inputs"], data["data_samples"]).items()}
    model.eval()
    preds = model.predict(data["inputs"], data["data_samples"], rescale=False)
    detections = [{"boxes": p.pred_instances.bboxes.clone(), "scores": p.pred_instances.scores.clone(),
                   "labels": p.pred_instances.labels.clone()} for p in preds]
    print(f"{name}: input {tuple(data['inputs'].shape)}, losses {losses}, "
          f"detections {[len(d['scores']) for d in detections]}, "
          f"max score {max([float(d['scores'].max()) for d in detections if len(d['scores'])] + [0.0]):.3f}")
    return {"config": spec["config"], "preset": spec["preset"], "keys": keys, "bias_means": spec["bias_means"],
            "weight_gain": spec.get("weight_gain", 1.0),
            "sizes": sizes, "gt": gts, "num_classes": NUM_CLASSES, "losses": losses, "detections": detections}


def main() -> None:
    only = sys.argv[1:] or list(MODELS_TO_RUN)
    golden = torch.load(OUT, weights_only=True) if OUT.is_file() and sys.argv[1:] else {}
    for name in only:
        golden[name] = run(name, MODELS_TO_RUN[name])
    golden["mmdet_version"] = mmdet.__version__
    torch.save(golden, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
