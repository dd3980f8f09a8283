"""Deployment files: BatchNorm folded into a bias-free deploy graph, its ONNX form, the split
accelerator export (float32 and INT8), the proof read from the saved file, the bias audit."""
