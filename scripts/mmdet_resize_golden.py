"""Golden detections of mmdetection 3.3.0 whole detectors on images that its test pipeline resizes.

``mmdet_detector_golden.py`` feeds batches that need no resize; here each model runs mmdetection's own
``inference_detector`` (its test pipeline: keep-ratio ``Resize`` — sizes rounded, OpenCV's bilinear — then
normalisation and padding; the scale set to (333, 200) to keep the tests short) on a 150×200 and a 120×250 image, with the weights of the golden
file's keys (``tests/golden_weights.py``), and stores the detections in the original pixels. FCOS runs in both
of its configurations (the "tricks" one and the plain ``fcos_r50-caffe_fpn_gn-head_1x_coco``).

Writes ``tests/fixtures/mmdet_resized.pt``. Run from the repository root with the mmdetection venv of
``../shared/refs/mmdet-on-cpu.md``::

    ../mmdet-venv/bin/python scripts/mmdet_resize_golden.py
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

import mmdet  # noqa: E402
from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

from golden_weights import synthetic_images, synthetic_state_dict  # noqa: E402

register_all_modules()
CONFIGS = Path(mmdet.__file__).parent / ".mim" / "configs"
GOLDEN = torch.load(REPO / "tests" / "fixtures" / "mmdet_detectors.pt", weights_only=True)
OUT = REPO / "tests" / "fixtures" / "mmdet_resized.pt"
SIZES = [(150, 200), (120, 250)]
SCALE = (333, 200)  # the test pipeline's Resize scale, a quarter of (1333, 800): the same rule on small inputs
# GFL is left out: with the golden weights its boxes have no area at these sizes and mmdetection keeps none
RUNS = {  # name → (golden weights, config, score threshold: the config's, or 0 where nothing passes it)
    "fcos": ("fcos", "fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py", None),
    "fcos_plain": ("fcos", "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py", None),
    "atss": ("atss", "atss/atss_r50_fpn_1x_coco.py", None),
    "retinanet": ("retinanet", "retinanet/retinanet_r50_fpn_1x_coco.py", None),
}


def run(weights: str, config: str, score_thr: float | None) -> dict:
    g = GOLDEN[weights]
    state = synthetic_state_dict(g["keys"], bias_means=g["bias_means"], weight_gain=g["weight_gain"])
    options = {"model.bbox_head.num_classes": 3}
    if score_thr is not None:
        options["model.test_cfg.score_thr"] = score_thr
    model = init_detector(str(CONFIGS / config), device="cpu", cfg_options=options)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # the plain FCOS has no tower conv biases (GN, "auto")
    model.load_state_dict(state, strict=True)
    model.eval()
    for step in model.cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = SCALE
    keys = [k for k in g["keys"] if k[0] in own]  # the checkpoint of this model: the tests build it from these
    out = {"config": config, "weights": weights, "keys": keys, "score_thr": score_thr, "images": []}
    for image in synthetic_images(SIZES, seed=7):
        bgr = image.permute(1, 2, 0).flip(-1).contiguous().numpy()  # synthetic_images are RGB
        result = inference_detector(model, bgr)
        pred = result.pred_instances
        out["images"].append({"size": tuple(image.shape[-2:]), "img_shape": tuple(result.metainfo["img_shape"]),
                              "boxes": pred.bboxes.float().clone(),
                              "scores": pred.scores.float().clone(), "labels": pred.labels.long().clone()})
        print(config, tuple(image.shape[-2:]), "→", result.metainfo["img_shape"], len(pred.scores), "detections")
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    golden = {name: run(*spec) for name, spec in RUNS.items()}
    golden["sizes"], golden["scale"] = SIZES, SCALE
    golden["mmdet_version"] = mmdet.__version__
    torch.save(golden, OUT)
    print(f"wrote {OUT}")
