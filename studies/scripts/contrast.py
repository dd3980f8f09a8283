"""Contrast robustness: val mAP of trained runs with every val image's contrast around the
normalization mean scaled by a, and at a random a per image, in one run.

A bias-free ReLU network is positively homogeneous in its input up to the heads' biases:
contrast a scales every feature by a. Neither norm makes the detector invariant by itself;
`data.normalize: per_image` (the normalized image divided by its own RMS) does by construction.

The image is changed as pixels: mean + a * (pixel - mean), in float and not clipped to [0, 255]
(the same as multiplying the dataset-normalized input by a; a sensor with headroom), then
preprocessed as the run's config says. The random a is log-uniform in [min, max] per image,
seeded by the image's index. Each run is evaluated on its last checkpoint.

    python studies/scripts/contrast.py --run runs/demo runs/demo_bn runs/demo_per_image
        [--factors 0.25 0.5 1 2 4] [--random 0.25 4] [--out studies/results/contrast.json]
"""
import argparse
import os
import sys

import mxnet as mx
import numpy as np
from mxnet import gluon

from ssd_nobias.atomic import write_json
from ssd_nobias.config import eval_metric, load_config
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import val_set
from ssd_nobias.evaluation.evaluate import EvalSettings, evaluate
from ssd_nobias.machine import cpu_info
from ssd_nobias.runtime.predictors import load_trained, net_predictor


class Contrast(gluon.data.Dataset):
    """`dataset` with image i's contrast around `mean` (RGB in [0, 1]) scaled by factors[i]."""

    def __init__(self, dataset, factors: np.ndarray, mean):
        self.dataset, self.factors = dataset, factors
        self.mean = mx.nd.array(np.asarray(mean, np.float32) * 255).reshape((1, 1, 3))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, label = self.dataset[i]
        image = image.astype(np.float32)
        return self.mean + float(self.factors[i]) * (image - self.mean), label


def run_figures(run: str, factors, low: float, high: float) -> dict:
    cfg = load_config(os.path.join(run, "config.yaml"))
    params = os.path.join(run, f"{cfg.name}-last.params")
    dataset, classes = val_set(cfg)
    net, _ = load_trained(cfg, params, [mx.cpu()], classes=classes)
    predictor = net_predictor(net)

    def val(per_image_factors) -> float:
        return evaluate(predictor, Contrast(dataset, per_image_factors, cfg.data.mean), classes,
                        [mx.cpu()], Preprocess.from_config(cfg),
                        EvalSettings(cfg.eval.batch_size, 0, eval_metric(cfg))).value

    n = len(dataset)
    by_factor = {str(a): val(np.full(n, a)) for a in factors}
    rng = np.random.RandomState(0)
    random = val(np.exp(rng.uniform(np.log(low), np.log(high), n)))
    base = by_factor.get("1.0", by_factor.get("1"))
    spread = max(abs(v - base) for v in list(by_factor.values()) + [random]) if base else None
    return {"params": params, "norm": cfg.model.norm, "normalize": cfg.data.normalize,
            "lr": cfg.train.lr, "heads_bias": cfg.model.heads_bias, "metric": eval_metric(cfg),
            "by_factor": by_factor, "random": random,
            "max_points_from_a1": None if spread is None else 100 * spread}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs="+", required=True, help="training output folders")
    p.add_argument("--factors", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    p.add_argument("--random", type=float, nargs=2, default=[0.25, 4.0], metavar=("MIN", "MAX"))
    p.add_argument("--out", help="write the figures to this JSON file")
    args = p.parse_args()
    results = {}
    print(f"CPU: {cpu_info().describe()}; val mAP at contrast a (pixels around the mean); "
          f"random: log-uniform a in [{args.random[0]:g}, {args.random[1]:g}] per image")
    head = "".join(f"{'a=' + format(a, 'g'):>9s}" for a in args.factors)
    print(f"{'run':32s}{head}{'random':>9s}{'max |d|':>9s}")
    for run in args.run:
        r = results[run] = run_figures(run, args.factors, *args.random)
        cells = "".join(f"{v:9.4f}" for v in r["by_factor"].values())
        spread = "" if r["max_points_from_a1"] is None else f"{r['max_points_from_a1']:9.1f}"
        print(f"{run:32s}{cells}{r['random']:9.4f}{spread}", flush=True)
    if args.out:
        write_json(args.out, {"protocol": {"command": "python studies/scripts/contrast.py " +
                                           " ".join(sys.argv[1:]),
                                           "factors": args.factors, "random": args.random,
                                           "checkpoint": "last", "cpu": cpu_info().describe()},
                              "runs": results})


if __name__ == "__main__":
    main()
