"""PyTorch's batch norm followed by ReLU, forward and backward in training, timed on the GPU
on the SSD layer shapes the GPU check times (tools/gpu_check/ssd_shapes.txt): the baseline
for nobias_batch_norm's kernels. Records which kernels ran (cuDNN's or PyTorch's own).

    python tools/gpu_check/torch_bn.py --shapes tools/gpu_check/ssd_shapes.txt --json OUT
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

ITERS, ROUNDS = 10, 7  # as gpu_check.cc's TimeLayer
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def read_shapes(path: str) -> list:
    """(name, shape) per line 'N C H W name' of ssd_shapes.txt."""
    layers = []
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                *dims, name = line.split()
                layers.append((name, tuple(int(d) for d in dims)))
    return layers


class Layer:
    """One batch norm + ReLU with float32 parameters, as mixed-precision training has them."""

    def __init__(self, shape: tuple, dtype: torch.dtype):
        c = shape[1]
        self.x = torch.randn(shape, device="cuda", dtype=dtype).requires_grad_()
        self.dy = torch.randn(shape, device="cuda", dtype=dtype)
        self.weight = torch.rand(c, device="cuda").add_(0.5).requires_grad_()
        self.bias = torch.zeros(c, device="cuda").requires_grad_()
        self.mean = torch.zeros(c, device="cuda")
        self.var = torch.ones(c, device="cuda")

    def forward(self):
        return F.relu(F.batch_norm(self.x, self.mean, self.var, self.weight, self.bias,
                                   training=True, momentum=0.1, eps=1e-5))

    def step(self, backward: bool) -> None:
        if backward:
            y = self.forward()
            torch.autograd.grad(y, (self.x, self.weight, self.bias), self.dy)
        else:
            with torch.no_grad():
                self.forward()


def time_ms(layer: Layer, backward: bool) -> float:
    """Median over rounds of the mean milliseconds per pass, by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for r in range(ROUNDS + 1):  # the first round warms up
        start.record()
        for _ in range(ITERS):
            layer.step(backward)
        end.record()
        end.synchronize()
        if r:
            times.append(start.elapsed_time(end) / ITERS)
    return statistics.median(times)


def kernel_names(layer: Layer) -> list:
    """The GPU kernels one forward and backward launch (the profiler's view; its failure is
    recorded, not fatal: the timings stand without it)."""
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            layer.step(True)
            torch.cuda.synchronize()
        return sorted({event.name for event in prof.events()
                       if event.device_type == torch.autograd.DeviceType.CUDA})
    except Exception as err:  # noqa: BLE001 - any profiler failure
        return [f"not recorded ({type(err).__name__}: {err})"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", required=True)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    torch.backends.cudnn.enabled = True
    results, kernels = [], {}
    for name, shape in read_shapes(args.shapes):
        for dtype_name, dtype in DTYPES.items():
            layer = Layer(shape, dtype)
            forward, both = time_ms(layer, False), time_ms(layer, True)
            if dtype_name not in kernels:
                kernels[dtype_name] = kernel_names(layer)
            results.append({"layer": name, "shape": "x".join(map(str, shape)),
                            "dtype": dtype_name, "forward_ms": forward,
                            "forward_backward_ms": both})
            print(f"{name:32s} {dtype_name:8s} {forward:9.4f} {both:9.4f}", flush=True)
            del layer
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "cuda": torch.version.cuda,
                   "cudnn": torch.backends.cudnn.version(),
                   "device": torch.cuda.get_device_name(0), "kernels": kernels,
                   "timing": results}, f, indent=1)


if __name__ == "__main__":
    main()
