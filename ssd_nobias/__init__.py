"""Bias-free MobileNet-SSD for MXNet/GluonCV: every conv+BatchNorm folds to a weight, no bias.

The names below load on first use, so that the deploy side's host part (runtime/host.py) runs
where only NumPy is installed.
"""
import importlib

_EXPORTS = {"NoBiasBatchNorm": "model.norm", "get_norm_layer": "model.norm",
            "get_model": "model.ssd", "bias_report": "model.ssd",
            "format_bias_report": "model.ssd", "MODEL_NAMES": "model.ssd",
            "Detector": "runtime.detect", "load_config": "config"}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
