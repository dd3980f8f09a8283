"""The study: bias-free training against stock BatchNorm and the naive fix, several seeds.

On the synthetic dataset, with the demo's recipe, model and budget, for each seed:
  (a) norm: nobias (with the bias-free recipe its config resolves to), trained, exported
      (BatchNorm folded, no bias) and evaluated from the deploy graph, and also from the
      training params;
  (b) norm: batchnorm, trained and evaluated as is (folded into convs with biases);
  (c) the naive fix: (b)'s params exported bias-free with --force-zero-shift and evaluated.
Every arm is evaluated on the last checkpoint (a fixed budget; no selection on val), and its
dead ReLU channels are followed from init through every epoch's checkpoint
(bench/dead_channels.py). Writes bench/results/study.json and study.png (val mAP against
epochs, mean and min-max over seeds) after every seed, and prints the table: final mAP mean and
spread, dead channels, training images/s, deploy images/s.

study.json: {"protocol": {...}, "arms": {"<arm>": {"recipe": {...}, "seeds": {"<seed>":
{"map", "dead_fraction", ...}}}}, "summary": {...}}; each seed records the CPU it ran on.

    python bench/study.py            # 5 seeds, 1000 images x 12 epochs: about 75 min on 2 cores
    python bench/study.py --quick    # 240 images x 4 epochs: checks the pipeline, learns little
    python bench/study.py --seeds 5 --resume   # add seed 5 to the seeds already in study.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_nobias.atomic import write_json
from ssd_nobias.config import load_config
from ssd_nobias.evaluate import evaluate_checkpoint
from ssd_nobias.deploy.split_export import export_accelerator
from ssd_nobias.export import export_deploy
from ssd_nobias.machine import cpu_info
from ssd_nobias.model import BIAS_FREE_RECIPE, STOCK_RECIPE
from ssd_nobias.naive_fix import export_zero_shift
from ssd_nobias.train import read_metrics

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dead_channels import run_trajectory  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Checkpoints every epoch: bench/dead_channels.py follows each run from init through them.
BUDGETS = {"full": {"train": 1000, "epochs": 12, "val_interval": 2, "save_interval": 1},
           "quick": {"train": 240, "epochs": 4, "val_interval": 1, "save_interval": 1}}
# The naive fix keeps everything of the stock model but its shifts: its plain convs and ReLU.
STOCK_WEIGHTS = ["model.conv_weights=plain", "model.depthwise_weights=plain",
                 "model.activation=relu"]
ARMS = {"nobias": "(a) NoBiasBatchNorm, deploy graph",
        "batchnorm": "(b) stock BatchNorm, folded with biases",
        "naive": "(c) stock BatchNorm, shift dropped (naive fix)"}
DATA_SEED, VAL_IMAGES = 0, 100
RECIPE_KEYS = ("norm", "conv_weights", "depthwise_weights", "activation", "leaky_slope")


def call(command, env=None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def study_data(work: str, budget: dict) -> str:
    """The study's synthetic dataset for `budget` under `work`, generated once."""
    data = os.path.join(work, f"data-{budget['train']}")
    if not os.path.isfile(os.path.join(data, "classes.txt")):
        call([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_voc.py"), "--out",
              data, "--train", str(budget["train"]), "--val", str(VAL_IMAGES), "--seed",
              str(DATA_SEED)])
    return data


def train_run(out: str, overrides: list, seed: int, data: str, budget: dict) -> dict:
    """Train the demo recipe with `overrides`; its val mAP per validated epoch and images/s."""
    # --overwrite: an arm-seed a stopped study left half-trained starts again from scratch
    call([sys.executable, os.path.join(ROOT, "scripts", "train_ssd.py"), "--overwrite",
          "--config", os.path.join(ROOT, "configs", "demo_synthetic.yaml"), f"data.root={data}",
          f"output_dir={out}", f"seed={seed}", f"train.epochs={budget['epochs']}",
          f"train.val_interval={budget['val_interval']}",
          f"train.save_interval={budget.get('save_interval', budget['epochs'])}"] + overrides,
         env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS",
                                                             str(os.cpu_count() or 1))))
    rows = read_metrics(out)
    curve = [(float(r["epoch"]), float(r["val_map"])) for r in rows if r["val_map"]]
    speeds = [float(r["images_per_s"]) for r in rows if r["images_per_s"]]
    return {"curve": curve, "train_images_per_s": statistics.median(speeds[1:] or speeds)}


def deploy_eval(cfg, params: str, out: str, force_zero_shift: bool = False) -> dict:
    """Export, then evaluate the deploy graph: its mAP and forward images/s."""
    export = export_zero_shift if force_zero_shift else export_deploy
    report = export(cfg, params, os.path.join(out, "export"))
    result = evaluate_checkpoint(cfg, None, os.path.join(out, "eval"), progress=False,
                                 deploy_dir=os.path.join(out, "export"))
    return {"map": result.value, "deploy_images_per_s": result.images_per_s,
            "bias_free_layers": report["bias_free_layers"], "report": report}


def int8_figures(cfg, params: str, export: str) -> dict:
    """The accelerator pair of a run exported beside its deploy graph in `export`, in float32
    and INT8, val mAP of each: int8 head outputs (the default, written last) and int32 ones."""
    int32 = export_accelerator(cfg, params, export, int8=True, int8_heads="int32",
                               progress=False)
    split = export_accelerator(cfg, params, export, int8=True, progress=False)
    return {"float32_pair_map": split["int8"]["val"]["float32_pair"],
            "int8_map": split["int8"]["val"]["int8_pair"],
            "int8_int32_heads_map": int32["int8"]["val"]["int8_pair"],
            "min_layer_sqnr_db": min(layer["sqnr_db"] for layer in split["int8"]["layers"]),
            "head_biases_on_host": split["head_biases_on_host"]}


def one_seed(seed: int, data: str, work: str, budget: dict) -> dict:
    runs = {}
    for norm in ("nobias", "batchnorm"):
        out = os.path.join(work, f"{norm}-{seed}")
        runs[norm] = train_run(out, [f"model.norm={norm}"], seed, data, budget)
        runs[norm]["dir"] = out
    a_cfg = load_config(os.path.join(runs["nobias"]["dir"], "config.yaml"))
    b_cfg = load_config(os.path.join(runs["batchnorm"]["dir"], "config.yaml"))
    a_params = os.path.join(runs["nobias"]["dir"], f"{a_cfg.name}-last.params")
    b_params = os.path.join(runs["batchnorm"]["dir"], f"{b_cfg.name}-last.params")
    a = deploy_eval(a_cfg, a_params, runs["nobias"]["dir"])
    a["trained_map"] = evaluate_checkpoint(a_cfg, a_params, os.path.join(
        runs["nobias"]["dir"], "eval_params"), progress=False).value
    a.update(int8_figures(a_cfg, a_params, os.path.join(runs["nobias"]["dir"], "export")))
    b = deploy_eval(b_cfg, b_params, runs["batchnorm"]["dir"])
    naive_cfg = load_config(os.path.join(runs["batchnorm"]["dir"], "config.yaml"),
                            ["model.norm=nobias"] + STOCK_WEIGHTS)
    c = deploy_eval(naive_cfg, b_params, os.path.join(runs["batchnorm"]["dir"], "naive"),
                    force_zero_shift=True)
    forced = c["report"]["forced_zero_shift"]
    c["map_before"], c["max_shift"] = forced["before"], max(forced["layers"].values())
    for norm in ("nobias", "batchnorm"):
        runs[norm]["dead_channels"] = run_trajectory(runs[norm]["dir"], images=32)
    out = {}
    for arm, result, cfg in (("nobias", a, a_cfg), ("batchnorm", b, b_cfg), ("naive", c, b_cfg)):
        result.pop("report")
        source = runs["nobias" if arm == "nobias" else "batchnorm"]
        out[arm] = dict(result, curve=source["curve"], cpu=cpu(),
                        train_images_per_s=source["train_images_per_s"],
                        recipe=resolved_recipe(cfg))
        if arm != "naive":
            out[arm]["dead_fraction"] = source["dead_channels"]["dead"][-1]
            out[arm]["dead_channels"] = source["dead_channels"]
        else:
            out[arm]["recipe"]["export"] = "--force-zero-shift"
    return out


def resolved_recipe(cfg) -> dict:
    """The model.* keys a run trained with, "auto" replaced by what its norm resolves it to."""
    default = BIAS_FREE_RECIPE if cfg.model.norm == "nobias" else STOCK_RECIPE
    return {f"model.{k}": default[k] if getattr(cfg.model, k) == "auto" else getattr(cfg.model, k)
            for k in RECIPE_KEYS}


def summary(per_seed: dict) -> dict:
    table = {}
    for arm in ARMS:
        maps = [r[arm]["map"] for r in per_seed.values()]
        table[arm] = {"map_mean": float(np.mean(maps)), "map_std": float(np.std(maps, ddof=1))
                      if len(maps) > 1 else 0.0, "map_min": min(maps), "map_max": max(maps),
                      "train_images_per_s": statistics.median(
                          r[arm]["train_images_per_s"] for r in per_seed.values()),
                      "deploy_images_per_s": statistics.median(
                          r[arm]["deploy_images_per_s"] for r in per_seed.values())}
        if arm != "naive":
            dead = [r[arm]["dead_fraction"] for r in per_seed.values()]
            table[arm].update(dead_mean=float(np.mean(dead)), dead_max=float(max(dead)))
    int8 = [r["nobias"]["int8_map"] - r["nobias"]["map"] for r in per_seed.values()
            if "int8_map" in r["nobias"]]
    if int8:
        table["nobias"]["int8_minus_deploy_points_max_abs"] = 100 * float(np.abs(int8).max())
    diffs = [r["nobias"]["map"] - r["nobias"]["trained_map"] for r in per_seed.values()]
    table["deploy_minus_trained_max_abs"] = float(np.abs(diffs).max())
    table["nobias_minus_batchnorm_points"] = \
        100 * (table["nobias"]["map_mean"] - table["batchnorm"]["map_mean"])
    return table


def plot(path: str, per_seed: dict, title: str) -> None:
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for arm, color in (("nobias", "tab:blue"), ("batchnorm", "tab:orange")):
        curves = [r[arm]["curve"] for r in per_seed.values()]
        epochs = [e for e, _ in curves[0]]
        values = np.array([[m for _, m in c] for c in curves])
        ax.plot(epochs, values.mean(0), color=color, marker="o", label=ARMS[arm].split(",")[0])
        ax.fill_between(epochs, values.min(0), values.max(0), color=color, alpha=0.2)
    last = max(e for e, _ in next(iter(per_seed.values()))["nobias"]["curve"])
    for arm, color, marker in (("nobias", "tab:blue", "D"), ("naive", "tab:red", "X")):
        maps = [r[arm]["map"] for r in per_seed.values()]
        ax.errorbar([last + 0.3], [np.mean(maps)], yerr=[[np.mean(maps) - min(maps)],
                                                          [max(maps) - np.mean(maps)]],
                    color=color, marker=marker, markersize=9, capsize=4, linestyle="none",
                    label=ARMS[arm])
    ax.set_xlabel("epoch")
    ax.set_ylabel("val VOC07 mAP")
    ax.set_ylim(-0.02, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def format_table(table: dict) -> str:
    rows = [f"{'arm':48s} {'val mAP (mean +- std, min..max)':>34s} {'dead mean/max':>14s} "
            f"{'train img/s':>12s} {'deploy img/s':>13s}"]
    for arm, name in ARMS.items():
        t = table[arm]
        dead = f"{t['dead_mean']:.3f}/{t['dead_max']:.3f}" if "dead_mean" in t else "-"
        rows.append(f"{name:48s} {t['map_mean']:.4f} +- {t['map_std']:.4f} "
                    f"({t['map_min']:.3f}..{t['map_max']:.3f}) {dead:>14s} "
                    f"{t['train_images_per_s']:11.1f} {t['deploy_images_per_s']:13.1f}")
    rows.append(f"bias-free minus stock BatchNorm: {table['nobias_minus_batchnorm_points']:+.2f} "
                f"mAP points; deploy graph vs trained params, max |mAP difference|: "
                f"{table['deploy_minus_trained_max_abs']:.2g}")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the 10-minute version")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "study"),
                   help="data and run directories")
    p.add_argument("--train", type=int, help="training images (default: the budget's)")
    p.add_argument("--epochs", type=int, help="epochs (default: the budget's)")
    p.add_argument("--resume", action="store_true",
                   help="keep the seeds already in OUT/study.json (same protocol), run the rest")
    args = p.parse_args()
    budget = dict(BUDGETS["quick" if args.quick else "full"])
    budget.update({k: v for k, v in (("train", args.train), ("epochs", args.epochs)) if v})
    budget["val_interval"] = min(budget["val_interval"], budget["epochs"])
    start = time.perf_counter()
    per_seed, minutes = read_results(args.out, budget) if args.resume else ({}, 0.0)
    data = study_data(args.work, budget)
    for seed in args.seeds:
        per_seed[seed] = one_seed(seed, data, os.path.join(args.work, "runs"), budget)
        print(f"seed {seed}: " + ", ".join(f"{arm} {r['map']:.4f}"
                                           for arm, r in per_seed[seed].items()), flush=True)
        elapsed = minutes + (time.perf_counter() - start) / 60
        write_results(args.out, budget, per_seed, elapsed)  # so far
    print(format_table(summary(per_seed)))
    print(f"{(time.perf_counter() - start) / 60:.1f} minutes; wrote {args.out}/study.json and "
          f"study.png")


def protocol(budget: dict, seeds: list) -> dict:
    """What a reader needs to rerun the study: command, data, model, budget, seeds."""
    return {"command": "python bench/study.py", "recipe": "configs/demo_synthetic.yaml",
            "model": "ssd_300_mobilenet0.25_custom",
            "data": {"generator": "scripts/make_synthetic_voc.py", "seed": DATA_SEED,
                     "train_images": budget["train"], "val_images": VAL_IMAGES},
            "epochs": budget["epochs"], "val_interval": budget["val_interval"],
            "save_interval": budget["save_interval"], "checkpoint": "last",
            "metric": "val VOC07 mAP of the deploy graph (BatchNorm folded)",
            "seeds": sorted(seeds)}


def write_results(out: str, budget: dict, per_seed: dict, minutes: float) -> None:
    """study.json (protocol, arms -> recipe and seeds, summary) and study.png."""
    os.makedirs(out, exist_ok=True)
    arms = {arm: {"description": name, "recipe": None, "seeds": {}} for arm, name in ARMS.items()}
    for seed in sorted(per_seed):
        for arm, result in per_seed[seed].items():
            result = dict(result)
            arms[arm]["recipe"] = result.pop("recipe")
            arms[arm]["seeds"][str(seed)] = dict(result, dead_fraction=result.get(
                "dead_fraction"))
    result = {"protocol": protocol(budget, list(per_seed)), "arms": arms,
              "summary": summary(per_seed), "minutes": round(minutes, 1)}
    write_json(os.path.join(out, "study.json"), result)
    plot(os.path.join(out, "study.png"), dict(sorted(per_seed.items())),
         f"synthetic shapes, {budget['train']} images x {budget['epochs']} epochs, "
         f"seeds {', '.join(map(str, sorted(per_seed)))}")


def read_results(out: str, budget: dict) -> tuple:
    """The per-seed results and minutes already in OUT/study.json, if its protocol is `budget`'s."""
    path = os.path.join(out, "study.json")
    if not os.path.isfile(path):
        return {}, 0.0
    with open(path) as f:
        study = json.load(f)
    if {k: v for k, v in study["protocol"].items() if k != "seeds"} != \
            {k: v for k, v in protocol(budget, []).items() if k != "seeds"}:
        sys.exit(f"{path} was measured on another protocol; --resume needs the same budget")
    per_seed = {}
    for arm, entry in study["arms"].items():
        for seed, result in entry["seeds"].items():
            per_seed.setdefault(int(seed), {})[arm] = dict(result, recipe=entry["recipe"])
    return per_seed, study["minutes"]


def cpu() -> dict:
    """The CPU a seed ran on: AVX-512 makes MKLDNN use nChw16c, another rounding order."""
    info = cpu_info()
    return {"model": info.model, "cores": info.cores, "avx512": info.avx512, "vnni": info.vnni}


if __name__ == "__main__":
    main()
