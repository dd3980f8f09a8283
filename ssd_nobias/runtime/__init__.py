"""What inference needs, without the training side: predictors for every model file, the host part,
ONNX Runtime sessions and the accelerator graph's runner, detection on pictures."""
