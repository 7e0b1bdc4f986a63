"""Errors that carry a message a user can act on.

Every failure caused by input (a file, a field, a checkpoint, a config value) is raised as
an :class:`AnchorfreeError` subclass; the CLI prints its message without a traceback.
"""


class AnchorfreeError(Exception):
    """Base class: the message names what was wrong and what to do about it."""


class DatasetError(AnchorfreeError):
    """A dataset file, image or annotation field is missing or malformed."""


class ConfigError(AnchorfreeError):
    """A config file, preset name or ``key=value`` override is invalid."""


class CheckpointError(AnchorfreeError):
    """A checkpoint is missing, corrupt or belongs to another model."""


class TrainingError(AnchorfreeError):
    """Training cannot continue (for example the loss became NaN or infinite)."""


class ExportError(AnchorfreeError):
    """An export cannot be written, does not match PyTorch's detections, or an exported file is corrupt or
    lacks what the runtime needs."""


class MissingRuntimeError(ExportError):
    """The package a format needs (onnxruntime, openvino) is not installed; the message names the extra."""
