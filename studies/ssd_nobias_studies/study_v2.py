"""Study v2 (study v4 re-measures its claims under study v3's protocol): bias-free training
against stock BatchNorm and the naive fix, several seeds.

On the synthetic dataset, with the demo's recipe, model and budget, for each seed:
  (a) norm: nobias (with the bias-free recipe its config resolves to), trained, exported
      (BatchNorm folded, no bias) and evaluated from the deploy graph, and also from the
      training params;
  (b) norm: batchnorm, trained and evaluated as is (folded into convs with biases);
  (c) the naive fix: (b)'s params, shifts dropped (naive_fix), exported bias-free and evaluated;
  (d) stock BatchNorm with the bias-free recipe's weight reparametrizations;
  (e) the bias-free recipe with model.heads_bias false: no additive constant anywhere.
Every arm is evaluated on the last checkpoint (a fixed budget), on val and on a test split
generated apart (another generator seed) and used for nothing but the reported numbers. Each
arm trains at its own learning rate: with --sweep-lrs, one seed per arm and lr is trained
first and the lr with the best val mAP is kept (study.json's "sweep"); an arm whose best lr is
at the edge of the grid gets the next lr out (--sweep-extend), and the sweep seed's run at the
chosen lr is that seed's run in the table (its val figure is the maximum over the sweep; the
test split is the unbiased one). The dead ReLU channels of (a) and (b) are followed from init
through every epoch's checkpoint (studies/scripts/dead_channels.py). Writes
bench/results/study.json and
study.png (val mAP against epochs, mean and min-max over seeds) after every arm, and prints the
table: final mAP mean and spread (val and test), dead channels, training and deploy images/s.

study.json: {"protocol": {...}, "arms": {"<arm>": {"recipe": {...}, "seeds": {"<seed>":
{"map", "dead_fraction", ...}}}}, "summary": {...}}; each seed records the CPU it ran on.

    python studies/scripts/study.py --sweep-lrs 0.0125 0.025 0.05 0.1   # the sweep, then 5 seeds x
    4 arms
    python studies/scripts/study.py --quick    # 240 images x 4 epochs: checks the pipeline, learns
    little
    python studies/scripts/study.py --seeds 5 --resume   # add seed 5 to the seeds already in
    study.json
    python studies/scripts/study.py --arms nobias batchnorm_reparam --lrs nobias=0.025 \
        batchnorm_reparam=0.025 --epochs 36 --seeds 1 2 3   # a longer budget at the swept lrs
    python studies/scripts/study.py ... --variant hard --data-seed 2 --test-seed 3   # the second
    dataset
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_nobias_studies.diagnostics import run_trajectory
from ssd_nobias.atomic import write_json
from ssd_nobias.config import load_config
from ssd_nobias.evaluation.evaluate import evaluate_checkpoint
from ssd_nobias.export.split import export_accelerator
from ssd_nobias.export.deploy import export_deploy
from ssd_nobias.machine import cpu_info
from ssd_nobias.model.ssd import BIAS_FREE_RECIPE, STOCK_RECIPE
from ssd_nobias_studies.naive_fix import export_zero_shift
from ssd_nobias.data.synthetic import VARIANTS
from ssd_nobias.engine.run_dir import continues
from ssd_nobias.engine.metrics import read_metrics


# The checkout: the studies run its scripts and configs.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Checkpoints every epoch: studies/scripts/dead_channels.py follows each run from init through them.
BUDGETS = {"full": {"train": 1000, "epochs": 12, "val_interval": 2, "save_interval": 1},
           "quick": {"train": 240, "epochs": 4, "val_interval": 1, "save_interval": 1}}
# The naive fix keeps everything of the stock model but its shifts: its plain convs and ReLU.
STOCK_WEIGHTS = ["model.conv_weights=plain", "model.depthwise_weights=plain",
                 "model.activation=relu"]
ARMS = {"nobias": "(a) NoBiasBatchNorm, deploy graph",
        "batchnorm": "(b) stock BatchNorm, folded with biases",
        "naive": "(c) stock BatchNorm, shift dropped (naive fix)",
        "batchnorm_reparam": "(d) stock BatchNorm, recipe's weights",
        "nobias_noheadbias": "(e) NoBiasBatchNorm, no head biases"}
# What each trained arm adds to the demo config; (c) is made from (b)'s params.
TRAINED = {"nobias": ["model.norm=nobias"], "batchnorm": ["model.norm=batchnorm"],
           "batchnorm_reparam": ["model.norm=batchnorm", "model.conv_weights=centered",
                                 "model.depthwise_weights=dc_positive"],
           "nobias_noheadbias": ["model.norm=nobias", "model.heads_bias=false"]}
DATA_SEED, VAL_IMAGES = 0, 100
TEST_SEED = 1
RECIPE_KEYS = ("norm", "conv_weights", "depthwise_weights", "activation", "leaky_slope")


def call(command, env=None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def study_data(work: str, budget: dict) -> str:
    """The study's synthetic dataset for `budget` under `work`, generated once."""
    val, variant, seed = budget.get("val", VAL_IMAGES), budget["variant"], budget["data_seed"]
    data = os.path.join(work, f"data-{budget['train']}" + ("" if val == VAL_IMAGES else f"-{val}")
                        + ("" if (variant, seed) == ("shapes", DATA_SEED) else
                           f"-{variant}-seed{seed}"))
    return synthetic(data, budget["train"], val, seed, variant)


def test_data(work: str, budget: dict) -> str:
    """The test split: images of another generator seed (its 'val' list), apart from everything
    a run trains or is chosen on."""
    images, variant, seed = budget["test"], budget["variant"], budget["test_seed"]
    data = os.path.join(work, f"test-{seed}-{images}" + ("" if variant == "shapes" else
                                                         f"-{variant}"))
    return synthetic(data, 1, images, seed, variant)


def synthetic(data: str, train: int, val: int, seed: int, variant: str) -> str:
    """`data`, generated by scripts/make_synthetic_voc.py unless it is already there."""
    if not os.path.isfile(os.path.join(data, "classes.txt")):
        call([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_voc.py"), "--out",
              data, "--train", str(train), "--val", str(val), "--seed", str(seed), "--variant",
              variant])
    return data


def train_run(out: str, overrides: list, seed: int, data: str, budget: dict,
              resume: bool = False) -> dict:
    """Train the demo recipe with `overrides`; its val mAP per validated epoch and images/s.

    With `resume`, a run a stopped study left part-trained in `out` with this very config
    continues from its newest checkpoint (bitwise exact: tests/engine/test_train.py); any other run
    there starts over."""
    config = os.path.join(ROOT, "configs", "demo_synthetic.yaml")
    overrides = [f"data.root={data}", f"output_dir={out}", f"seed={seed}",
                 f"train.epochs={budget['epochs']}", f"train.val_interval={budget['val_interval']}",
                 f"train.save_interval={budget.get('save_interval', budget['epochs'])}"
                 ] + overrides
    start = ["train.resume=auto"] if resume and continues(out, config, overrides) else \
        ["--overwrite"]
    call([sys.executable, os.path.join(ROOT, "scripts", "train_ssd.py"), "--config", config]
         + overrides + start,
         env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS",
                                                             str(os.cpu_count() or 1))))
    return run_figures(out)


def run_figures(out: str) -> dict:
    """A finished run's val mAP per validated epoch and its median training images/s."""
    rows = read_metrics(out)
    curve = [(float(r["epoch"]), float(r["val_map"])) for r in rows if r["val_map"]]
    speeds = [float(r["images_per_s"]) for r in rows if r["images_per_s"]]
    return {"curve": curve, "train_images_per_s": statistics.median(speeds[1:] or speeds)}


def deploy_eval(cfg, params: str, out: str, test: str, force_zero_shift: bool = False) -> dict:
    """Export, then evaluate the deploy graph on val and on the test split (data root `test`):
    its mAP and forward images/s."""
    export = export_zero_shift if force_zero_shift else export_deploy
    report = export(cfg, params, os.path.join(out, "export"))
    result = evaluate_checkpoint(cfg, None, os.path.join(out, "eval"), progress=False,
                                 deploy_dir=os.path.join(out, "export"))
    test_cfg = cfg.clone()
    test_cfg.defrost()
    test_cfg.data.root = test
    tested = evaluate_checkpoint(test_cfg, None, os.path.join(out, "eval_test"), progress=False,
                                 deploy_dir=os.path.join(out, "export"))
    return {"map": result.value, "test_map": tested.value,
            "deploy_images_per_s": result.images_per_s,
            "bias_free_layers": report["bias_free_layers"], "report": report}


def int8_figures(cfg, params: str, export: str) -> dict:
    """The accelerator pair of a run exported beside its deploy graph in `export`, in float32
    and INT8, val mAP of each: int8 head outputs (the default, written last) and int32 ones."""
    int32 = export_accelerator(cfg, params, export, int8=True, int8_heads="int32",
                               progress=False, evaluate=True)
    split = export_accelerator(cfg, params, export, int8=True, progress=False, evaluate=True)
    return {"float32_pair_map": split["int8"]["val"]["float32_pair"],
            "int8_map": split["int8"]["val"]["int8_pair"],
            "int8_int32_heads_map": int32["int8"]["val"]["int8_pair"],
            "min_layer_sqnr_db": min(layer["sqnr_db"] for layer in split["int8"]["layers"]),
            "head_biases_on_host": split["head_biases_on_host"]}


def one_arm(arm: str, seed: int, data: str, test: str, work: str, budget: dict, lr: float,
            trained: Optional[str] = None, resume: bool = False) -> dict:
    """Train arm `arm` (a TRAINED key) of one seed at `lr` (or take the finished run `trained`,
    the sweep's), evaluate it: {arm: result}, and (c) the naive fix with (b). `resume`
    continues a part-trained run of the same config (train_run)."""
    if trained:
        run, figures = trained, run_figures(trained)
    else:
        run = os.path.join(work, f"{arm}-{seed}")
        figures = train_run(run, TRAINED[arm] + [f"train.lr={lr}"], seed, data, budget, resume)
    cfg = load_config(os.path.join(run, "config.yaml"))
    params = os.path.join(run, f"{cfg.name}-last.params")
    common = dict(curve=figures["curve"], cpu=cpu_info().record(), lr=lr,
                  train_images_per_s=figures["train_images_per_s"])
    result = deploy_eval(cfg, params, run, test)
    if cfg.model.norm == "nobias":
        result["trained_map"] = evaluate_checkpoint(cfg, params, os.path.join(
            run, "eval_params"), progress=False).value
        result.update(int8_figures(cfg, params, os.path.join(run, "export")))
    if arm in ("nobias", "batchnorm"):
        dead = run_trajectory(run, images=32)
        result.update(dead_fraction=dead["dead"][-1], dead_channels=dead)
    result.pop("report")
    out = {arm: dict(result, recipe=resolved_recipe(cfg), **common)}
    if arm == "batchnorm":
        naive_cfg = load_config(os.path.join(run, "config.yaml"),
                                ["model.norm=nobias"] + STOCK_WEIGHTS)
        c = deploy_eval(naive_cfg, params, os.path.join(run, "naive"), test,
                        force_zero_shift=True)
        forced = c.pop("report")["forced_zero_shift"]
        c["map_before"], c["max_shift"] = forced["before"], max(forced["layers"].values())
        out["naive"] = dict(c, recipe=dict(resolved_recipe(cfg),
                                             export="naive_fix.export_zero_shift"),
                            **common)
    return out


def sweep(results: dict, arms: list, lrs: list, seed: int, data: str, work: str,
          budget: dict, save, extend: int = 2, resume: bool = False) -> dict:
    """Val mAP (last checkpoint, trained params) per arm and lr on one seed, resumable:
    `results` holds what is done ({arm: {lr: map}}); `save()` is called after every run.
    An arm whose best lr is the smallest or largest it tried gets the next one out (half or
    twice), up to `extend` times, so that its chosen lr is bracketed where possible.
    `resume` continues a part-trained run (train_run). Returns each arm's lr with the best
    val mAP."""
    def one(arm: str, lr: float) -> None:
        if str(lr) in results.setdefault(arm, {}):
            return
        run = sweep_dir(work, arm, lr)
        train_run(run, TRAINED[arm] + [f"train.lr={lr}"], seed, data, budget, resume)
        cfg = load_config(os.path.join(run, "config.yaml"))
        results[arm][str(lr)] = evaluate_checkpoint(
            cfg, os.path.join(run, f"{cfg.name}-last.params"), os.path.join(run, "eval"),
            progress=False).value
        print(f"sweep {arm} lr {lr}: val {results[arm][str(lr)]:.4f}", flush=True)
        save()

    best = {}
    for arm in arms:
        for lr in lrs:
            one(arm, lr)
        while True:  # the grid's lrs and up to `extend` more (a resumed sweep counts them)
            tried = sorted(float(lr) for lr in results[arm])
            top = max(tried, key=lambda lr: results[arm][str(lr)])
            if top not in (tried[0], tried[-1]) or len(tried) - len(lrs) >= extend:
                break
            one(arm, top / 2 if top == tried[0] else top * 2)
        best[arm] = float(max(results[arm], key=lambda lr: results[arm][lr]))
    return best


def sweep_dir(work: str, arm: str, lr: float) -> str:
    return os.path.join(work, f"sweep-{arm}-lr{lr}")


def resolved_recipe(cfg) -> dict:
    """The model.* keys a run trained with, "auto" replaced by what its norm resolves it to."""
    default = BIAS_FREE_RECIPE if cfg.model.norm == "nobias" else STOCK_RECIPE
    return {f"model.{k}": default[k] if getattr(cfg.model, k) == "auto" else getattr(cfg.model, k)
            for k in RECIPE_KEYS}


def _spread(values: list, key: str) -> dict:
    return {f"{key}_mean": float(np.mean(values)), f"{key}_std": float(np.std(values, ddof=1))
            if len(values) > 1 else 0.0, f"{key}_min": min(values), f"{key}_max": max(values)}


def summary(per_seed: dict) -> dict:
    table = {}
    present = [arm for arm in ARMS if all(arm in r for r in per_seed.values())]
    for arm in present:
        results = [r[arm] for r in per_seed.values()]
        table[arm] = dict(_spread([r["map"] for r in results], "map"),
                          train_images_per_s=statistics.median(
                              r["train_images_per_s"] for r in results),
                          deploy_images_per_s=statistics.median(
                              r["deploy_images_per_s"] for r in results))
        if all("test_map" in r for r in results):
            table[arm].update(_spread([r["test_map"] for r in results], "test_map"))
        if all(r.get("dead_fraction") is not None for r in results):
            dead = [r["dead_fraction"] for r in results]
            table[arm].update(dead_mean=float(np.mean(dead)), dead_max=float(max(dead)))
    if "nobias" not in table:
        return table
    int8 = [r["nobias"]["int8_map"] - r["nobias"]["map"] for r in per_seed.values()
            if "int8_map" in r["nobias"]]
    if int8:
        table["nobias"]["int8_minus_deploy_points_max_abs"] = 100 * float(np.abs(int8).max())
    diffs = [r["nobias"]["map"] - r["nobias"]["trained_map"] for r in per_seed.values()]
    table["deploy_minus_trained_max_abs"] = float(np.abs(diffs).max())
    if "batchnorm" in table:
        table["nobias_minus_batchnorm_points"] = \
            100 * (table["nobias"]["map_mean"] - table["batchnorm"]["map_mean"])
    stock = [a for a in ("batchnorm", "batchnorm_reparam") if "test_map_mean" in table.get(a, {})]
    if stock and "test_map_mean" in table["nobias"]:
        best = max(stock, key=lambda a: table[a]["test_map_mean"])
        table["test_best_stock_arm"] = best
        table["test_nobias_minus_best_stock_points"] = \
            100 * (table["nobias"]["test_map_mean"] - table[best]["test_map_mean"])
        table["test_nobias_worst_minus_best_stock_worst_points"] = \
            100 * (table["nobias"]["test_map_min"] - table[best]["test_map_min"])
    return table


def plot(path: str, per_seed: dict, title: str) -> None:
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for arm, color, label in (
            ("nobias", "tab:blue", "(a) bias-free recipe"),
            ("batchnorm", "tab:orange", "(b) stock BatchNorm"),
            ("batchnorm_reparam", "tab:green", "(d) stock BatchNorm, recipe's weights"),
            ("nobias_noheadbias", "tab:purple", "(e) bias-free recipe, no head biases")):
        if not all(arm in r for r in per_seed.values()):
            continue
        curves = [r[arm]["curve"] for r in per_seed.values()]
        epochs = [e for e, _ in curves[0]]
        values = np.array([[m for _, m in c] for c in curves])
        ax.plot(epochs, values.mean(0), color=color, marker="o", label=label)
        ax.fill_between(epochs, values.min(0), values.max(0), color=color, alpha=0.2)
    last = max(e for e, _ in next(iter(next(iter(per_seed.values())).values()))["curve"])
    for arm, color, marker, label in (
            ("nobias", "tab:blue", "D", "(a) its deploy graph (BatchNorm folded, no bias)"),
            ("naive", "tab:red", "X", "(c) naive fix: (b) exported with its shifts dropped")):
        if not all(arm in r for r in per_seed.values()):
            continue
        maps = [r[arm]["map"] for r in per_seed.values()]
        ax.errorbar([last + 0.3], [np.mean(maps)], yerr=[[np.mean(maps) - min(maps)],
                                                          [max(maps) - np.mean(maps)]],
                    color=color, marker=marker, markersize=9, capsize=4, linestyle="none",
                    label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val VOC07 mAP")
    ax.set_ylim(-0.02, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def format_table(table: dict) -> str:
    rows = [f"{'arm':40s} {'val mAP (mean +- std, min..max)':>34s} "
            f"{'test mAP (mean, min..max)':>28s} {'dead mean/max':>14s} {'train img/s':>12s} "
            f"{'deploy img/s':>13s}"]
    for arm, name in ARMS.items():
        if arm not in table:
            continue
        t = table[arm]
        dead = f"{t['dead_mean']:.3f}/{t['dead_max']:.3f}" if "dead_mean" in t else "-"
        test = f"{t['test_map_mean']:.4f} ({t['test_map_min']:.3f}..{t['test_map_max']:.3f})" \
            if "test_map_mean" in t else "-"
        rows.append(f"{name:40s} {t['map_mean']:.4f} +- {t['map_std']:.4f} "
                    f"({t['map_min']:.3f}..{t['map_max']:.3f}) {test:>28s} {dead:>14s} "
                    f"{t['train_images_per_s']:11.1f} {t['deploy_images_per_s']:13.1f}")
    if "test_best_stock_arm" in table:
        rows.append(f"test: bias-free minus the best stock arm ({table['test_best_stock_arm']}): "
                    f"{table['test_nobias_minus_best_stock_points']:+.2f} mAP points on the "
                    f"mean, {table['test_nobias_worst_minus_best_stock_worst_points']:+.2f} "
                    f"worst seed against worst seed")
    if "deploy_minus_trained_max_abs" in table:
        rows.append(f"deploy graph vs trained params, max |val mAP difference|: "
                    f"{table['deploy_minus_trained_max_abs']:.2g}")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the 10-minute version")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--arms", nargs="+", choices=list(TRAINED), default=list(TRAINED),
                   help="trained arms ((c), the naive fix, comes with batchnorm)")
    p.add_argument("--sweep-lrs", type=float, nargs="+", metavar="LR",
                   help="choose each arm's lr among these by val mAP on --sweep-seed first "
                        "(default: every arm at the config's lr)")
    p.add_argument("--lrs", nargs="+", metavar="ARM=LR",
                   help="each arm's lr, given (e.g. chosen by the 12-epoch sweep) instead of "
                        "swept")
    p.add_argument("--sweep-seed", type=int, default=1)
    p.add_argument("--sweep-extend", type=int, default=2, metavar="N",
                   help="an arm whose best lr is at the edge of those tried gets the next "
                        "(half or twice) up to N times")
    p.add_argument("--out", default=os.path.join(ROOT, "studies", "output"))
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "study"),
                   help="data and run directories")
    p.add_argument("--train", type=int, help="training images (default: the budget's)")
    p.add_argument("--epochs", type=int, help="epochs (default: the budget's)")
    p.add_argument("--variant", choices=list(VARIANTS), default="shapes",
                   help="the synthetic dataset (scripts/make_synthetic_voc.py --variant)")
    p.add_argument("--data-seed", type=int, default=DATA_SEED,
                   help="generator seed of train and val")
    p.add_argument("--test-seed", type=int, default=TEST_SEED,
                   help="generator seed of the test split")
    p.add_argument("--val-images", type=int, default=VAL_IMAGES, help="the val split's size")
    p.add_argument("--test-images", type=int, default=300, help="the test split's size")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in OUT/study.json (same protocol), run the rest "
                        "(an arm stopped mid-training continues from its newest checkpoint)")
    args = p.parse_args()
    if args.lrs and args.sweep_lrs:
        p.error("--lrs and --sweep-lrs: give the lrs or sweep for them, not both")
    given = {}
    for item in args.lrs or []:
        arm, _, lr = item.partition("=")
        try:
            given[arm] = float(lr)
        except ValueError:
            p.error(f"--lrs {item}: expected ARM=LR")
    if args.lrs and set(given) != set(args.arms):
        p.error(f"--lrs needs ARM=LR for each of the arms {', '.join(args.arms)}")
    budget = dict(BUDGETS["quick" if args.quick else "full"])
    budget.update({k: v for k, v in (("train", args.train), ("epochs", args.epochs)) if v})
    budget["val_interval"] = min(budget["val_interval"], budget["epochs"])
    budget["val"], budget["test"] = args.val_images, args.test_images
    budget.update(variant=args.variant, data_seed=args.data_seed, test_seed=args.test_seed)
    start = time.perf_counter()
    per_seed, minutes, swept = read_results(args.out, budget) if args.resume else ({}, 0.0, {})
    data, test = study_data(args.work, budget), test_data(args.work, budget)
    work = os.path.join(args.work, "runs")
    state = {"sweep": None, "lrs": None}

    def save() -> None:
        elapsed = minutes + (time.perf_counter() - start) / 60
        write_results(args.out, budget, per_seed, elapsed, state["sweep"], state["lrs"])

    if args.sweep_lrs:
        state["sweep"] = {"seed": args.sweep_seed, "lrs": sorted(args.sweep_lrs),
                          "extend": args.sweep_extend,
                          "val_map": swept.get("val_map", {})}
        lrs = sweep(state["sweep"]["val_map"], args.arms, sorted(args.sweep_lrs),
                    args.sweep_seed, data, work, budget, save, args.sweep_extend, args.resume)
    elif given:
        lrs = given
    else:
        lr = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml")).train.lr
        lrs = {arm: lr for arm in args.arms}
    state["lrs"] = lrs
    for seed in list(per_seed):  # a seed trained at another lr than the one chosen now
        if any(per_seed[seed].get(arm, {}).get("lr", lrs[arm]) != lrs[arm] for arm in lrs):
            print(f"seed {seed}: trained at other learning rates than {lrs}; run again")
            del per_seed[seed]
    for seed in sorted(set(args.seeds) | set(per_seed)):  # and a part-done seed resumed
        done = per_seed.setdefault(seed, {})
        for arm in args.arms:
            if arm in done and (arm != "batchnorm" or "naive" in done):
                continue
            # the sweep trained its seed at every lr: the run at the chosen lr is that seed's
            sweep_run = sweep_dir(work, arm, lrs[arm])
            trained = sweep_run if (args.sweep_lrs and seed == args.sweep_seed and
                                    os.path.isfile(os.path.join(sweep_run, "metrics.csv"))) \
                else None
            done.update(one_arm(arm, seed, data, test, work, budget, lrs[arm], trained,
                                args.resume))
            save()  # after every arm: a stopped study resumes from the next
        print(f"seed {seed}: " + ", ".join(f"{arm} {r['map']:.4f} (test {r['test_map']:.4f})"
                                           for arm, r in done.items()), flush=True)
    save()
    print(format_table(summary(complete_seeds(per_seed))))
    print(f"{(time.perf_counter() - start) / 60:.1f} minutes; wrote {args.out}/study.json and "
          f"study.png")


def protocol(budget: dict, seeds: list) -> dict:
    """What a reader needs to rerun the study: command, data, model, budget, seeds."""
    return {"command": "python studies/scripts/study.py", "recipe": "configs/demo_synthetic.yaml",
            "model": "ssd_300_mobilenet0.25_custom",
            "data": {"generator": "scripts/make_synthetic_voc.py", "variant": budget["variant"],
                     "seed": budget["data_seed"],
                     "train_images": budget["train"],
                     "val_images": budget.get("val", VAL_IMAGES)},
            "test": {"generator": "scripts/make_synthetic_voc.py", "variant": budget["variant"],
                     "seed": budget["test_seed"],
                     "images": budget.get("test"), "use": "the reported numbers only"},
            "epochs": budget["epochs"], "val_interval": budget["val_interval"],
            "save_interval": budget["save_interval"], "checkpoint": "last",
            "metric": "VOC07 mAP of the deploy graph (BatchNorm folded), val and test",
            "seeds": sorted(seeds)}


def write_results(out: str, budget: dict, per_seed: dict, minutes: float,
                  sweep_state: Optional[dict] = None, lrs: Optional[dict] = None) -> None:
    """study.json (protocol, the lr sweep and the lrs chosen, arms -> recipe and seeds, summary)
    and study.png."""
    os.makedirs(out, exist_ok=True)
    arms = {arm: {"description": name, "recipe": None, "seeds": {}} for arm, name in ARMS.items()
            if any(arm in r for r in per_seed.values())}
    for seed in sorted(per_seed):
        for arm, result in per_seed[seed].items():
            result = dict(result)
            arms[arm]["recipe"] = result.pop("recipe")
            arms[arm]["seeds"][str(seed)] = dict(result, dead_fraction=result.get(
                "dead_fraction"))
    full = complete_seeds(per_seed)
    result = {"protocol": dict(protocol(budget, list(full)), lrs=lrs), "sweep": sweep_state,
              "arms": arms, "summary": summary(full) if full else None,
              "minutes": round(minutes, 1)}
    write_json(os.path.join(out, "study.json"), result)
    if full:
        plot(os.path.join(out, "study.png"), dict(sorted(full.items())), plot_title(budget, full))


def plot_title(budget: dict, seeds) -> str:
    """The dataset, budget and seeds a study.png is over."""
    data = "synthetic shapes" if budget["variant"] == "shapes" else \
        f"synthetic {budget['variant']} variant, data seed {budget['data_seed']}"
    return (f"{data}, {budget['train']} images x {budget['epochs']} epochs, "
            f"seeds {', '.join(map(str, sorted(seeds)))}")


def complete_seeds(per_seed: dict) -> dict:
    """The seeds with every arm that any seed has: the ones the table and the plot are over
    (a stopped study leaves its last seed part-done in study.json, to resume)."""
    arms = set().union(*per_seed.values()) if per_seed else set()
    return {seed: r for seed, r in per_seed.items() if r and set(r) == arms}


def read_results(out: str, budget: dict) -> tuple:
    """The per-seed results, minutes and sweep already in OUT/study.json, if its protocol is
    `budget`'s."""
    path = os.path.join(out, "study.json")
    if not os.path.isfile(path):
        return {}, 0.0, {}
    with open(path) as f:
        study = json.load(f)
    ignore = ("seeds", "lrs")
    for split in ("data", "test"):  # a study.json from before the variants: the shapes
        study["protocol"][split].setdefault("variant", "shapes")
    if {k: v for k, v in study["protocol"].items() if k not in ignore} != \
            {k: v for k, v in protocol(budget, []).items() if k not in ignore}:
        sys.exit(f"{path} was measured on another protocol; --resume needs the same budget")
    per_seed = {}
    for arm, entry in study["arms"].items():
        for seed, result in entry["seeds"].items():
            per_seed.setdefault(int(seed), {})[arm] = dict(result, recipe=entry["recipe"])
    return per_seed, study["minutes"], study.get("sweep") or {}


if __name__ == "__main__":
    main()
