"""The input shapes of every NoBiasBatchNorm layer of the SSD-300 model the VOC and COCO configs
train, at their per-GPU batch: the shapes the GPU check (tools/gpu_check) runs and times.

    python tools/gpu_check/ssd_shapes.py > tools/gpu_check/ssd_shapes.txt

ssd_shapes.txt is committed, since the GPU machine has no MXNet; tests/test_gpu_check.py checks
that it matches the model.
"""
import mxnet as mx

from ssd_nobias.model.ssd import get_model
from ssd_nobias.model.norm import NoBiasBatchNorm

MODEL = "ssd_300_mobilenet1.0_voc"
BATCH = 32


def layer_shapes(model: str = MODEL, batch: int = BATCH) -> list:
    """(name, shape) of each NoBiasBatchNorm layer's input, in forward order."""
    net = get_model(model, norm="nobias", norm_impl="ops")
    net.initialize()
    shapes = []
    for name, block in _norm_layers(net):
        block.register_forward_pre_hook(
            lambda b, args, name=name: shapes.append((name, args[0].shape)))
    net(mx.nd.zeros((1, 3, 300, 300)))
    return [(name, (batch,) + shape[1:]) for name, shape in shapes]


def _norm_layers(block, prefix=""):
    for name, child in block._children.items():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, NoBiasBatchNorm):
            yield path, child
        else:
            yield from _norm_layers(child, path)


def main() -> None:
    print(f"# {MODEL} at batch {BATCH}: NoBiasBatchNorm input shapes (N C H W), forward order")
    for name, shape in layer_shapes():
        print(" ".join(map(str, shape)), name)


if __name__ == "__main__":
    main()
