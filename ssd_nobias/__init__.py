"""Bias-free MobileNet-SSD for MXNet/GluonCV: every conv+BatchNorm folds to a weight, no bias."""
from .nn import NoBiasBatchNorm, get_norm_layer
from .model import MODEL_NAMES, bias_report, format_bias_report, get_model

__all__ = ["NoBiasBatchNorm", "get_norm_layer", "get_model", "bias_report", "format_bias_report",
           "MODEL_NAMES"]
__version__ = "0.1.0"
