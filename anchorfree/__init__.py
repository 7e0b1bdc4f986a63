"""anchorfree: one-stage object detectors (FCOS, RetinaNet, ATSS, GFL, GFLv2, CenterNet, CornerNet)
in pure PyTorch — train, evaluate, predict and export."""
from .api import Model, Prediction
from .config import Config, load_config
from .models.detector import Detector, build_detector
from .presets import PRESETS, get_preset
from .structures import Batch, Detections

__version__ = "0.1.0"
__all__ = ["Batch", "Config", "Detections", "Detector", "Model", "PRESETS", "Prediction", "build_detector",
           "get_preset", "load_config"]
