"""The detector: norm layers (NoBiasBatchNorm and its compiled operator), weight
reparametrizations, anchors, the SSD builders and checkpoint files."""
