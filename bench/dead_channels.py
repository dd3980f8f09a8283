"""Dead ReLU channels of trained runs: channels of each conv+norm+ReLU unit that are zero on
every one of N val images. Explains the spread of bias-free runs in docs/results.md.

    python bench/dead_channels.py runs/study/runs/nobias-1 runs/study/runs/batchnorm-1 [--images 32]
"""
import argparse
import os

import mxnet as mx
from mxnet import autograd

from ssd_nobias.config import base_size, load_config
from ssd_nobias.evaluate import load_trained
from ssd_nobias.export import parity_images


def dead_channels(run_dir: str, images: int):
    """(dead, total, per-unit [(name, dead, channels)]) for a run's last checkpoint."""
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    net, dataset, _ = load_trained(cfg, os.path.join(run_dir, f"{cfg.name}-last.params"),
                                   [mx.cpu()])
    size = base_size(cfg)
    x = parity_images(dataset, size, cfg.data.mean, cfg.data.std, count=images)
    outputs = {}
    for name, pair in net.features.pairs():
        pair.register_forward_hook(
            lambda block, inputs, out, name=name: outputs.__setitem__(name, out.asnumpy()))
    with autograd.predict_mode():
        net.features(x)
    units = [(name, int((~(a > 0).any(axis=(0, 2, 3))).sum()), a.shape[1])
             for name, a in outputs.items()]
    return sum(u[1] for u in units), sum(u[2] for u in units), units


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (config.yaml, <name>-last.params)")
    p.add_argument("--images", type=int, default=32)
    args = p.parse_args()
    for run in args.runs:
        dead, total, units = dead_channels(run, args.images)
        worst = sorted(units, key=lambda u: -u[1] / u[2])[:4]
        print(f"{run}: {dead}/{total} dead channels ({dead / total:.1%}); most: " +
              ", ".join(f"{n} {d}/{c}" for n, d, c in worst))


if __name__ == "__main__":
    main()
