"""End to end: the small FCOS preset learns the synthetic shapes on a CPU within a few minutes.

The mAP@0.5 threshold is far above what an untrained (or broken) model reaches; the test checks
that too, on the same data.
"""
from __future__ import annotations

from anchorfree.config import apply_overrides
from anchorfree.data import generate_synthetic_dataset, load_data_spec
from anchorfree.engine.evaluate import evaluate_dataset
from anchorfree.engine.trainer import Trainer
from anchorfree.models.detector import Detector
from anchorfree.presets import get_preset

AP50_THRESHOLD = 0.08  # reached: ~0.13; untrained: ~0.00


def test_tiny_fcos_reaches_map_threshold(tmp_path):
    data = generate_synthetic_dataset(tmp_path / "data", num_train=400, num_val=50, image_size=(128, 160), seed=1)
    cfg = get_preset("fcos_r10_fpn_tiny")
    apply_overrides(cfg, ["epochs=10", "model.input.min_size=160", "model.input.max_size=160", "train.lr=0.004"])
    trainer = Trainer(cfg, load_data_spec(data), tmp_path / "run", progress=False)
    untrained = evaluate_dataset(Detector(cfg.model).eval(), trainer.val_set, workers=0, progress=False)
    assert untrained["metrics"]["AP50"] < 0.02

    result = trainer.fit()
    ap50 = result["metrics"]["AP50"]
    assert ap50 >= AP50_THRESHOLD, f"AP50 {ap50:.3f} after training (untrained: {untrained['metrics']['AP50']:.3f})"
    per_class = [c["AP50"] for c in result["per_class"]]
    assert min(per_class) > 0.02, f"a class was not learned: {per_class}"
