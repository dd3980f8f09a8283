"""What recomputing the norm statistics before folding is worth (export_ssd.py --recalibrate):
val mAP of checkpoints before and after PreciseBN over N training batches, in one run.

Mid-training checkpoints are where the momentum average lags the weights most (the lr is
highest); the last checkpoint of a cosine schedule is where it lags least.

    python studies/scripts/precise_bn.py --run runs/demo [--checkpoints 0004 0008 last] [--batches
    10 50]
        [--out studies/results/precise_bn.json]
"""
import argparse
import os
import sys
import tempfile

from ssd_nobias.atomic import write_json
from ssd_nobias.config import eval_metric, load_config
from ssd_nobias.machine import cpu_info
from ssd_nobias.engine.precise_bn import recalibrate_params


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs="+", required=True, help="training output folders")
    p.add_argument("--checkpoints", nargs="+", default=["0004", "0008", "last"])
    p.add_argument("--batches", type=int, nargs="+", default=[10, 50])
    p.add_argument("--out", help="write the figures to this JSON file")
    args = p.parse_args()
    print(f"CPU: {cpu_info().describe()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.run:
            cfg = load_config(os.path.join(run, "config.yaml"))
            for tag in args.checkpoints:
                params = os.path.join(run, f"{cfg.name}-{tag}.params")
                row = results.setdefault(f"{run}:{tag}", {"norm": cfg.model.norm, "after": {}})
                for n in args.batches:
                    r = recalibrate_params(cfg, params, os.path.join(tmp, "recalibrated"), n)
                    row["before"] = r["val_before"]
                    row["after"][str(n)] = {"val": r["val_after"], "images": r["images"],
                                            "running_var_change_max": r["running_var_change_max"]}
                after = ", ".join(f"N={n}: {v['val']:.4f}" for n, v in row["after"].items())
                print(f"{run} {tag} ({cfg.model.norm}): val {eval_metric(cfg)} "
                      f"{row['before']:.4f} -> {after}", flush=True)
    if args.out:
        write_json(args.out, {"protocol": {"command": "python studies/scripts/precise_bn.py " +
                                           " ".join(sys.argv[1:]), "cpu": cpu_info().describe(),
                                           "batches": "training batches of train.batch_size "
                                                      "over the contexts, training augmentation"},
                              "checkpoints": results})


if __name__ == "__main__":
    main()
