"""Deployment to engines without a bias add: the accelerator graph (weight-only convolutions and
ReLU, float32 or INT8 with every zero point 0), the host part (head biases, softmax, box
decoding, NMS) and the proof that the saved files are what they claim."""
