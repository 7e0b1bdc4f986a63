"""Write the config texts that mmdetection 3.x checkpoints carry in ``meta['cfg']`` (mmengine's ``pretty_text`` of
the resolved config) for the configs the converter tests read (``tests/fixtures/mmdet_configs``).

Needs mmdetection's configs and mmengine, both pure Python (no mmcv): ``pip install --no-deps --target /tmp/mm
mmdet==3.3.0 mmengine==0.10.4 addict yapf termcolor platformdirs rich markdown-it-py mdurl pygments``, then
``PYTHONPATH=/tmp/mm python scripts/mmdet_config_texts.py``.
"""
from __future__ import annotations

from pathlib import Path

import mmdet
from mmengine.config import Config

CONFIGS = ["fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
           "fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py",
           "centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py", "atss/atss_r50_fpn_1x_coco.py",
           "retinanet/retinanet_r50_fpn_1x_coco.py"]
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmdet_configs"

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    root = Path(mmdet.__file__).parent / ".mim" / "configs"
    for name in CONFIGS:
        text = Config.fromfile(str(root / name)).pretty_text
        (OUT / (Path(name).name + ".txt")).write_text(text)
        print(f"{name}: {len(text)} characters (mmdetection {mmdet.__version__})")
