"""The bias-free recipe's ablation: arms of model options against stock BatchNorm, several seeds.

Each arm trains the demo recipe (configs/demo_synthetic.yaml) on the synthetic data with its
overrides, for a budget cheaper than the study's by default; the last checkpoint is scored by
its final val VOC07 mAP (the deploy graph gives the same, see the study) and by the fraction of
its ReLU channels that are dead on 32 val images. Writes bench/results/ablation.json after every
run (an interrupted ablation keeps what it measured) and prints the table.

    python studies/scripts/ablation.py                         # screening: 1000 images x 8 epochs,
    2 seeds
    python studies/scripts/ablation.py --arms batchnorm recipe --train 1000 --epochs 12 --seeds 1 2
    3 4 5
"""
import argparse
import json
import os
import time

import mxnet as mx
import numpy as np

from ssd_nobias_studies.study_v2 import ROOT, synthetic, train_run
from ssd_nobias.machine import cpu_info
from ssd_nobias.config import load_config
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import build_dataset
from ssd_nobias_studies.diagnostics import dead_fraction, unit_activity
from ssd_nobias.export.inputs import parity_images
from ssd_nobias.runtime.predictors import load_trained

PLAIN = ["model.conv_weights=plain", "model.depthwise_weights=plain"]
ARMS = {
    "batchnorm": ["model.norm=batchnorm"],
    "plain": ["model.norm=nobias", "model.activation=relu"] + PLAIN,
    "centered": ["model.norm=nobias", "model.conv_weights=centered",
                 "model.depthwise_weights=plain", "model.activation=relu"],
    "dc_positive": ["model.norm=nobias", "model.conv_weights=plain",
                    "model.depthwise_weights=dc_positive", "model.activation=relu"],
    "centered+dc_positive": ["model.norm=nobias", "model.conv_weights=centered",
                             "model.depthwise_weights=dc_positive", "model.activation=relu"],
    "leaky": ["model.norm=nobias", "model.activation=leaky"] + PLAIN,
    "centered+dc_positive+leaky": ["model.norm=nobias", "model.conv_weights=centered",
                                   "model.depthwise_weights=dc_positive",
                                   "model.activation=leaky"],
    "recipe": ["model.norm=nobias"],  # whatever 'auto' resolves to: the shipped default
}
SCREEN = ["plain", "centered+dc_positive", "batchnorm", "leaky", "centered",
          "centered+dc_positive+leaky"]


def dead_at_end(run_dir: str, images: int = 32) -> float:
    """Dead channel fraction of a run's last checkpoint (running statistics, as deployed)."""
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    net, _ = load_trained(cfg, os.path.join(run_dir, f"{cfg.name}-last.params"), [mx.cpu()])
    x = parity_images(build_dataset(cfg, "val"), Preprocess.from_config(cfg), count=images)
    return dead_fraction(unit_activity(net.features, x))


def summarize(runs: dict) -> dict:
    table = {}
    for arm, seeds in runs.items():
        maps = [r["map"] for r in seeds.values()]
        dead = [r["dead"] for r in seeds.values()]
        table[arm] = {"seeds": len(maps), "map_mean": float(np.mean(maps)),
                      "map_std": float(np.std(maps, ddof=1)) if len(maps) > 1 else 0.0,
                      "map_min": float(min(maps)), "map_max": float(max(maps)),
                      "dead_mean": float(np.mean(dead)), "dead_max": float(max(dead))}
    return table


def format_table(table: dict) -> str:
    rows = [f"{'arm':30s} {'seeds':>5s} {'val mAP mean +- std':>20s} {'min':>6s} {'max':>6s} "
            f"{'dead mean':>9s} {'dead max':>8s}"]
    for arm, t in table.items():
        rows.append(f"{arm:30s} {t['seeds']:5d} {t['map_mean']:11.4f} +- {t['map_std']:.4f} "
                    f"{t['map_min']:6.3f} {t['map_max']:6.3f} {t['dead_mean']:9.3f} "
                    f"{t['dead_max']:8.3f}")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="+", default=SCREEN, choices=sorted(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    p.add_argument("--train", type=int, default=1000, help="training images")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--out", default=os.path.join(ROOT, "studies", "output", "ablation.json"))
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "ablation"))
    args = p.parse_args()
    budget = {"train": args.train, "epochs": args.epochs, "val_interval": args.epochs}
    data = synthetic(os.path.join(args.work, f"data-{args.train}"), args.train, 100, 0, "shapes")
    runs = {arm: {} for arm in args.arms}
    start = time.perf_counter()
    for seed in args.seeds:  # seed-major: an interrupted ablation has every arm's first seeds
        for arm in args.arms:
            out = os.path.join(args.work, f"{args.train}x{args.epochs}", f"{arm}-{seed}")
            run = train_run(out, ARMS[arm], seed, data, budget)
            runs[arm][seed] = {"map": run["curve"][-1][1], "dead": dead_at_end(out),
                               "train_images_per_s": run["train_images_per_s"]}
            print(f"{arm} seed {seed}: mAP {runs[arm][seed]['map']:.4f}, dead "
                  f"{runs[arm][seed]['dead']:.3f}", flush=True)
            done = {a: r for a, r in runs.items() if r}
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump({"budget": budget, "seeds": args.seeds,
                           "arms": {a: ARMS[a] for a in done},
                           "recipe": "configs/demo_synthetic.yaml", "cpu": cpu_info().record(),
                           "minutes": round((time.perf_counter() - start) / 60, 1),
                           "summary": summarize(done), "runs": done}, f, indent=1)
    print(format_table(summarize(runs)))


if __name__ == "__main__":
    main()
