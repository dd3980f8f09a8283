"""What the heads' biases are worth: the bias-free recipe with model.heads_bias true (12 head
biases, added on the host) against false (no additive constant anywhere), on the study's
protocol (bench/study.py: synthetic shapes, 1000 images x 12 epochs, last checkpoint), each
seed exported with --accelerator --int8.

Per arm and seed: val VOC07 mAP of the deploy graph, of the float32 accelerator pair and of the
INT8 pair (int8 head outputs, the default, and int32 ones), and the CPU. Writes
OUT/heads_bias.json after every run; --resume keeps the runs already there.

    python bench/heads_bias.py [--seeds 1 2 3] [--out docs] [--resume [--reexport]]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from ssd_nobias.atomic import write_json
from ssd_nobias.config import load_config
from ssd_nobias.evaluate import evaluate_checkpoint
from ssd_nobias.export import export_deploy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from study import (BUDGETS, DATA_SEED, ROOT, VAL_IMAGES, cpu, int8_figures,  # noqa: E402
                   study_data, train_run)

ARMS = {"heads_bias": ["model.heads_bias=true"], "no_heads_bias": ["model.heads_bias=false"]}


def one_run(arm: str, seed: int, data: str, work: str, budget: dict) -> dict:
    out = os.path.join(work, f"{arm}-{seed}")
    trained = train_run(out, ["model.norm=nobias"] + ARMS[arm], seed, data, budget)
    return dict(exported(out), curve=trained["curve"])


def exported(out: str) -> dict:
    """Export a finished run's last checkpoint (deploy graph, accelerator pair in float32 and
    INT8 with int8 and int32 head outputs) and evaluate them on val."""
    cfg = load_config(os.path.join(out, "config.yaml"))
    params = os.path.join(out, f"{cfg.name}-last.params")
    export = os.path.join(out, "export")
    export_deploy(cfg, params, export)
    deploy = evaluate_checkpoint(cfg, None, os.path.join(out, "eval"), progress=False,
                                 deploy_dir=export)
    return dict(int8_figures(cfg, params, export), map=deploy.value, cpu=cpu())


def summary(results: dict) -> dict:
    table = {}
    for arm, seeds in results.items():
        for key in ("map", "int8_map", "int8_int32_heads_map"):
            values = [r[key] for r in seeds.values() if key in r]
            if values:
                table.setdefault(arm, {}).update({
                    f"{key}_mean": float(np.mean(values)), f"{key}_min": min(values),
                    f"{key}_max": max(values)})
        if seeds:
            for key in ("int8_map", "int8_int32_heads_map"):
                diffs = [abs(r[key] - r["map"]) for r in seeds.values() if key in r]
                if diffs:
                    table[arm][f"{key}_minus_float_points_max_abs"] = 100 * max(diffs)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--out", default=os.path.join(ROOT, "docs"))
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "heads_bias"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--reexport", action="store_true",
                   help="with --resume: export and evaluate the finished runs again (the "
                        "training is kept), e.g. after a change to the INT8 export")
    args = p.parse_args()
    budget = BUDGETS["full"]
    path = os.path.join(args.out, "heads_bias.json")
    results = {arm: {} for arm in ARMS}
    if args.resume and os.path.isfile(path):
        with open(path) as f:
            results.update(json.load(f)["arms"])
    data = study_data(args.work, budget)
    for seed in args.seeds:
        for arm in ARMS:
            start = time.perf_counter()
            if str(seed) in results[arm]:
                if not args.reexport:
                    continue
                results[arm][str(seed)].update(exported(
                    os.path.join(args.work, "runs", f"{arm}-{seed}")))
            else:
                results[arm][str(seed)] = one_run(arm, seed, data,
                                                  os.path.join(args.work, "runs"), budget)
            r = results[arm][str(seed)]
            print(f"{arm} seed {seed}: deploy {r['map']:.4f}, INT8 pair {r['int8_map']:.4f} "
                  f"(int32 head outputs {r['int8_int32_heads_map']:.4f}) "
                  f"({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
            os.makedirs(args.out, exist_ok=True)
            write_json(path, {
                "protocol": {"command": "python bench/heads_bias.py",
                             "recipe": "configs/demo_synthetic.yaml, model.norm nobias",
                             "data": {"seed": DATA_SEED, "train": budget["train"],
                                      "val": VAL_IMAGES},
                             "epochs": budget["epochs"], "checkpoint": "last",
                             "int8": "MinMax, 64 training images; int8_map: int8 head outputs "
                                     "(equalized per channel), int8_int32_heads_map: int32 "
                                     "ones"},
                "arms": results, "summary": summary(results)})
    print(json.dumps(summary(results), indent=1))


if __name__ == "__main__":
    main()
