"""The tuned studies' runner. Study v3: the bias-free claim on real pixels (NEON tree crowns),
under the protocol fixed in studies/results/study_v3/protocol.md before any of its runs; study
v4 holds the synthetic claims to the same protocol (studies/results/study_v4/protocol.md,
through --protocol); recipe v2's screen its candidates (studies/results/recipe_v2/).

Trained arms (configs/neon_trees.yaml plus TRAINED[arm]): (a) nobias, (e) nobias_noheadbias,
(b) batchnorm, (d) batchnorm_reparam, (f) batchnorm_uncentered; recipe v2's candidates (run
only when --arms names them): (i) nobias_ema. Exported arms, made from a
stock arm's params by dropping its norms' shifts (beta and running mean) at export:
(c) from (b), (g) from (d), (h) from (f). Per trained arm, in order (`plan`):
  1. lr on the grid 0.025 * sqrt(2)^k: k = -2, 0, 2 on the tuning seeds, the grid extended by
     a factor 2 while the best is at its edge, then the best's sqrt(2) neighbours: the lr with
     the best mean val AP50 over the tuning seeds is chosen, bracketed by sqrt(2) on each side;
  2. warmup: the other warmup length at that lr, the better mean val AP50 chosen;
  3. the remaining seeds at the chosen lr and warmup.
Every run, whatever its phase, is trained, exported and scored the same way (`run_one`): its
last checkpoint's deploy graph on val, test and test_othersite (VOC07 AP50, COCO AP[.5:.95],
per-image detections kept for the paired bootstrap), the exported arms beside it, (a)'s INT8
accelerator pair and its float32 pair on test (detections kept too). Choices read val only;
test is read by studies/scripts/study_trees_report.py.
A record per run is written as soon as it is done (OUT/runs/<run>.json, detections in
OUT/detections/<run>.json.gz): a stopped study picks up where it was.

The protocol (PROTOCOL: config, data, schedule, grid, seeds, splits) is study v3's unless
`--protocol FILE.json` names another with the same keys; its "data" may then be
{"synthetic": {make_synthetic's arguments}} (a test split among them), so the same runner and
report hold the synthetic studies to the same standard. OUT/protocol.json records the one used.

    python studies/scripts/study_trees.py [--arms nobias batchnorm_reparam ...] [--out DIR --work
    DIR]
        [--protocol FILE.json --data DIR]
    python studies/scripts/study_trees.py --plan        # what is done and what runs next, no
    training
    python studies/scripts/study_trees.py --long --arms nobias batchnorm   # the flat-schedule check
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ssd_nobias.evaluation.ap_stats import coco_ap, matches_of, voc07_ap50
from ssd_nobias_studies.diagnostics import run_trajectory
from ssd_nobias.atomic import write_json, write_json_gz, write_text
from ssd_nobias.config import load_config
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import build_dataset
from ssd_nobias.data.neon_trees import CLASS as NEON_CLASS, fetch_wheel, make_neon_trees
from ssd_nobias.data.synthetic import VARIANTS, make_synthetic
from ssd_nobias.engine.run_dir import continues
from ssd_nobias.engine.train import train as engine_train
from ssd_nobias.errors import DataError
from ssd_nobias.export.split import export_accelerator
from ssd_nobias.machine import cpu_info
from ssd_nobias.evaluation.evaluate import predict
from ssd_nobias.export.deploy import export_deploy
from ssd_nobias_studies.naive_fix import export_zero_shift
from ssd_nobias.runtime.predictors import load_predictor
from ssd_nobias.engine.metrics import run_curves

# The checkout: the studies read its configs and data cache.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE_WEIGHTS = ["model.conv_weights=centered", "model.depthwise_weights=dc_positive"]
EMA_DECAY = 0.998  # recipe v2's weight-average candidate: about the last 500 steps
# Run when named, not by default: recipe v2's screen arms and study v5's new arm
CANDIDATES = ("nobias_ema", "nobias_plain")
TRAINED = {"nobias": ["model.norm=nobias"],
           "nobias_ema": ["model.norm=nobias", f"train.ema_decay={EMA_DECAY}"],
           "nobias_noheadbias": ["model.norm=nobias", "model.heads_bias=false"],
           "nobias_plain": ["model.norm=nobias", "model.conv_weights=plain",
                            "model.depthwise_weights=plain"],
           "batchnorm": ["model.norm=batchnorm"],
           "batchnorm_reparam": ["model.norm=batchnorm"] + RECIPE_WEIGHTS,
           "batchnorm_uncentered": ["model.norm=batchnorm_uncentered"] + RECIPE_WEIGHTS}
# The exported arms: a stock arm's params, shifts dropped, as a bias-free deploy graph.
ZERO_SHIFT = {"batchnorm": "naive", "batchnorm_reparam": "reparam_zero_shift",
              "batchnorm_uncentered": "uncentered_zero_shift"}
ARMS = {"nobias": "(a) NoBiasBatchNorm, the recipe",
        "nobias_ema": "(i) the recipe, weights averaged (train.ema_decay 0.998)",
        "nobias_noheadbias": "(e) NoBiasBatchNorm, no head biases",
        "nobias_plain": "(j) NoBiasBatchNorm, plain weights (the norm without the weights)",
        "batchnorm": "(b) stock BatchNorm",
        "batchnorm_reparam": "(d) stock BatchNorm, recipe's weights",
        "batchnorm_uncentered": "(f) BatchNorm without beta, recipe's weights",
        "naive": "(c) (b) exported with its shifts dropped",
        "reparam_zero_shift": "(g) (d) exported with its shifts dropped",
        "uncentered_zero_shift": "(h) (f) exported with its shifts dropped"}
METRICS = {"ap50": "VOC07 AP50", "ap": "COCO AP[.5:.95]"}  # the reported metrics
SPLIT_NAMES = {"test_othersite": "other sites"}  # how the docs name a further test split
PROTOCOL = {"config": "configs/neon_trees.yaml", "data": "scripts/make_neon_trees.py defaults",
            "epochs": 60, "val_interval": 5, "save_interval": 5,
            "lr_base": 0.025, "lr_step": "sqrt(2)", "first_ks": [-2, 0, 2], "k_range": [-8, 6],
            "warmups": [50, 200], "tune_seeds": [1, 2], "final_seeds": [1, 2, 3, 4, 5],
            "choice": "mean val VOC07 AP50 over the tuning seeds, last checkpoint",
            "splits": ["val", "test", "test_othersite"]}
PROTOCOL_KEYS = set(PROTOCOL)
# Keys a protocol may add; without them it is tuned as studies v3 and v4 were. "joint" tunes lr
# and warmup together: "warmups" is then the warmup ladder, the search starts at first_ks[0] and
# start_warmup, and "choice_metric" names the val figure it maximizes.
OPTIONAL = {"tuning": "sequential", "choice_metric": "ap50", "start_warmup": None}
TUNINGS = ("sequential", "joint")
PROTOCOL.update(OPTIONAL)


def kept_splits(splits: Sequence[str]) -> List[str]:
    """The splits whose per-image detections are kept for the bootstrap: all but val."""
    return [s for s in splits if s != "val"]


def load_protocol(path: str) -> dict:
    """A protocol JSON file with every key of PROTOCOL (an 'arms' key, as OUT/protocol.json
    records, is ignored); DataError naming the file and what is missing."""
    try:
        with open(path) as f:
            protocol = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read protocol '{path}': {err}") from None
    missing = PROTOCOL_KEYS - set(protocol)
    if missing:
        raise DataError(f"protocol '{path}' lacks {', '.join(sorted(missing))}")
    if protocol["splits"][:1] != ["val"] or (len(protocol["splits"]) > 1 and
                                             "test" not in protocol["splits"]):
        raise DataError(f"protocol '{path}': splits must start with val and hold test (or be "
                        f"[\"val\"], a screen), not {protocol['splits']}")
    out = {k: protocol.get(k, default) for k, default in OPTIONAL.items()}
    out.update((k, protocol[k]) for k in PROTOCOL_KEYS)
    if out["tuning"] not in TUNINGS:
        raise DataError(f"protocol '{path}': tuning must be one of {', '.join(TUNINGS)}, not "
                        f"{out['tuning']!r}")
    if out["choice_metric"] not in METRICS:
        raise DataError(f"protocol '{path}': choice_metric must be one of "
                        f"{', '.join(METRICS)}, not {out['choice_metric']!r}")
    if out["tuning"] == "joint" and out["start_warmup"] not in out["warmups"]:
        raise DataError(f"protocol '{path}': joint tuning starts at a warmup of the ladder "
                        f"{out['warmups']}; start_warmup is {out['start_warmup']!r}")
    return out


class Run(NamedTuple):
    arm: str
    k: int
    warmup: int
    seed: int
    lr_base: float = PROTOCOL["lr_base"]

    @property
    def key(self) -> str:
        return f"{self.arm}-k{self.k}-w{self.warmup}-s{self.seed}"

    @property
    def lr(self) -> float:
        return lr_of(self.k, self.lr_base)


def lr_of(k: int, lr_base: float = PROTOCOL["lr_base"]) -> float:
    return round(lr_base * 2 ** (k / 2), 8)


def plan(arm: str, val: Dict[tuple, float], protocol: dict = PROTOCOL):
    """The next Run of `arm` the protocol asks for, given the val figures of those done
    (`val`: {(k, warmup, seed): figure}), or the chosen (k, warmup) once every run is done."""
    if protocol.get("tuning", "sequential") == "joint":
        return plan_joint(arm, val, protocol)
    seeds, w0 = protocol["tune_seeds"], protocol["warmups"][0]
    lo, hi = protocol["k_range"]

    def missing(ks, warmups, run_seeds):
        for k in ks:
            for w in warmups:
                for s in run_seeds:
                    if (k, w, s) not in val:
                        return Run(arm, k, w, s, protocol["lr_base"])
        return None

    def best(ks, w):
        means = {k: np.mean([val[(k, w, s)] for s in seeds]) for k in sorted(ks)}
        return max(means, key=lambda k: (means[k], -k))  # a tie goes to the smaller lr

    ks = set(protocol["first_ks"])
    while True:
        todo = missing(sorted(ks), [w0], seeds)
        if todo:
            return todo
        top = best(ks, w0)
        if top == min(ks) and top - 2 >= lo:
            ks.add(top - 2)
        elif top == max(ks) and top + 2 <= hi:
            ks.add(top + 2)
        else:
            break
    ks |= {k for k in (top - 1, top + 1) if lo <= k <= hi}
    todo = missing(sorted(ks), [w0], seeds)
    if todo:
        return todo
    top = best(ks, w0)
    todo = missing([top], protocol["warmups"], seeds)
    if todo:
        return todo
    means = {w: np.mean([val[(top, w, s)] for s in seeds]) for w in protocol["warmups"]}
    warmup = max(protocol["warmups"], key=lambda w: (means[w], -w))
    todo = missing([top], [warmup], protocol["final_seeds"])
    return todo or (top, warmup)


def plan_joint(arm: str, val: Dict[tuple, float], protocol: dict):
    """lr and warmup tuned together: from (first_ks[0], start_warmup), the point and its four
    neighbours (lr by sqrt(2), warmup one rung of the ladder either way) on the tuning seeds;
    the best neighbour by mean val figure becomes the next centre while it beats the centre, so
    the choice is bracketed on both axes wherever the grid goes on. Then the final seeds at the
    choice. A tie keeps the centre; between neighbours it goes to the smaller lr, then the
    shorter warmup."""
    seeds, ladder = protocol["tune_seeds"], protocol["warmups"]
    lo, hi = protocol["k_range"]

    def mean(point):
        return np.mean([val[(point[0], point[1], s)] for s in seeds])

    def rank(point):
        return (mean(point), -point[0], -point[1])

    centre = (protocol["first_ks"][0], protocol["start_warmup"])
    while True:
        k, w = centre
        rung = ladder.index(w)
        points = [centre] + [(k + d, w) for d in (-1, 1) if lo <= k + d <= hi] + [
            (k, ladder[rung + d]) for d in (-1, 1) if 0 <= rung + d < len(ladder)]
        for point in points:
            for seed in seeds:
                if (point[0], point[1], seed) not in val:
                    return Run(arm, point[0], point[1], seed, protocol["lr_base"])
        if len(points) == 1:  # a fixed point (one lr, one warmup): nothing to walk to
            break
        best = max(points[1:], key=rank)
        if mean(best) <= mean(centre):
            break
        centre = best
    for seed in protocol["final_seeds"]:
        if (k, w, seed) not in val:
            return Run(arm, k, w, seed, protocol["lr_base"])
    return centre


def overrides(run: Run, out: str, data: str, protocol: dict = PROTOCOL) -> List[str]:
    return [f"data.root={data}", f"output_dir={out}", f"seed={run.seed}",
            f"train.epochs={protocol['epochs']}", f"train.val_interval={protocol['val_interval']}",
            f"train.save_interval={protocol['save_interval']}", f"train.lr={run.lr}",
            f"train.warmup_iters={run.warmup}"] + TRAINED[run.arm]


def checkout_commit() -> str:
    """The commit the studies run from, with '-dirty' when the checkout has changes: a run
    record names the code that made it."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def train(run: Run, out: str, data: str, protocol: dict = PROTOCOL) -> None:
    """Train `run` into `out` with the package's train(); a part-trained run of the same config
    there continues. Each run trains in a fresh spawned process (a new MXNet: no operator,
    graph or memory state carried from one run to the next), which the runner waits for."""
    args = overrides(run, out, data, protocol)
    config = os.path.join(ROOT, protocol["config"])
    resume = continues(out, config, args)
    child = multiprocessing.get_context("spawn").Process(
        target=_train, args=(config, args + (["train.resume=auto"] if resume else []),
                             not resume))
    child.start()
    child.join()
    if child.exitcode:
        sys.exit(f"training {run.key} failed (exit status {child.exitcode}); its log: "
                 f"{os.path.join(out, 'train.log')}")


def _train(config: str, args: List[str], overwrite: bool) -> None:
    """What train()'s spawned process runs: the config with the run's overrides, trained."""
    # a spawned process makes spawn its default, and MXNet's DataLoader workers would then be
    # spawned too and pass batches in a way that stalls: they fork, as in a script
    multiprocessing.set_start_method("fork", force=True)
    engine_train(load_config(config, args), overwrite=overwrite)


def split_cfg(cfg, split: str):
    out = cfg.clone()
    out.defrost()
    out.data.val_splits = [split]
    out.freeze()
    return out


def image_records(cfg, split: str, **predictor) -> List[dict]:
    """Per-image detections (score >= 0.01, corners in tile pixels) and label rows of `split`,
    from the predictor that load_predictor makes of `predictor`."""
    cfg = split_cfg(cfg, split)
    dataset = build_dataset(cfg, "val")
    model, classes, ctx = load_predictor(cfg, **predictor)
    detections, _ = predict(model, dataset, ctx, Preprocess.from_config(cfg),
                            cfg.eval.batch_size)
    out = []
    for det in detections:
        keep = det.scores >= 0.01
        out.append({"id": os.path.basename(dataset.image_path(det.index)),
                    "boxes": np.round(det.boxes[keep], 1).tolist(),
                    "labels": det.labels[keep].tolist(),
                    "scores": np.round(det.scores[keep], 4).tolist(),
                    "gt": np.round(det.gt, 1).tolist()})
    return out


def scores(records: List[dict]) -> dict:
    matches = matches_of(records)
    coco = coco_ap(matches)
    return {"ap50": voc07_ap50(matches), "ap": coco["AP"], "coco_ap50": coco["AP50"],
            "ap75": coco["AP75"], "images": len(records)}


def scored_variant(cfg, splits: Sequence[str] = PROTOCOL["splits"], **predictor) -> tuple:
    """({split: scores}, {kept split: per-image records}) of one exported model."""
    figures, kept, keep = {}, {}, kept_splits(splits)
    for split in splits:
        records = image_records(cfg, split, **predictor)
        figures[split] = scores(records)
        if split in keep:
            kept[split] = records
    return figures, kept


def run_one(run: Run, work: str, data: str, protocol: dict = PROTOCOL) -> tuple:
    """Train, export and score one run: (its record, {variant: {split: per-image records}})."""
    out = os.path.join(work, run.key)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    start = time.perf_counter()
    train(run, out, data, protocol)
    minutes = (time.perf_counter() - start) / 60
    cfg = load_config(os.path.join(out, "config.yaml"))
    params = os.path.join(out, f"{cfg.name}-last.params")
    export = os.path.join(out, "export")
    report = export_deploy(cfg, params, export)
    record = {"run": run.key, "arm": run.arm, "k": run.k, "lr": run.lr, "warmup": run.warmup,
              "seed": run.seed, "commit": checkout_commit(), "started": started,
              "cpu": cpu_info().record(), "train_minutes": round(minutes, 2),
              "bias_free_layers": report["bias_free_layers"], **run_curves(out)}
    figures, kept = scored_variant(cfg, protocol["splits"], deploy_dir=export)
    record["splits"], detections = figures, {run.arm: kept}
    if run.arm in ZERO_SHIFT:
        name = ZERO_SHIFT[run.arm]
        bias_free = load_config(os.path.join(out, "config.yaml"), ["model.norm=nobias"])
        folder = os.path.join(out, "export_zero_shift")
        forced = export_zero_shift(bias_free, params, folder, evaluate=False)
        figures, kept = scored_variant(bias_free, protocol["splits"], deploy_dir=folder)
        shifts = forced["forced_zero_shift"]["layers"]
        record[name] = {"splits": figures, "max_shift": max(shifts.values()),
                        "median_shift": statistics.median(shifts.values())}
        detections[name] = kept
    if cfg.model.norm == "nobias" and "test" in protocol["splits"]:
        record["int8"], pairs = int8_figures(cfg, params, export)
        detections.update({f"{run.arm}_{name}": {"test": kept} for name, kept in pairs.items()})
    dead = run_trajectory(out, images=32)
    record["dead_fraction"] = dead["dead"]
    record["dead_units"] = {name: u["dead"][-1] for name, u in dead["units"].items()
                            if u["dead"][-1] > 0}
    return record, detections


def int8_figures(cfg, params: str, export: str) -> tuple:
    """The accelerator pair on test: (float32 and INT8 AP50 and AP, the weakest layer's SQNR;
    {pair: per-image records})."""
    split = export_accelerator(cfg, params, export, int8=True, progress=False)
    folder = split["folder"]
    out = {"min_layer_sqnr_db": min(layer["sqnr_db"] for layer in split["int8"]["layers"]),
           "head_biases_on_host": split["head_biases_on_host"]}
    kept = {}
    for name, int8 in (("float32_pair", False), ("int8_pair", True)):
        kept[name] = image_records(cfg, "test", accelerator_dir=folder, int8=int8)
        out[name] = scores(kept[name])
    return out, kept


LONG = "long"  # OUT/long/: the flat-schedule check's runs at twice the epochs


def long_protocol(protocol: dict) -> dict:
    """The flat-schedule check's schedule: twice the epochs, validated and saved half as often."""
    return dict(protocol, epochs=2 * protocol["epochs"],
                val_interval=2 * protocol["val_interval"],
                save_interval=2 * protocol["save_interval"])


def run_long(arm: str, out: str, work: str, data: str, protocol: dict = PROTOCOL) -> str:
    """An arm once more at its chosen settings and first final seed for twice the epochs,
    recorded in OUT/long/ (not among the protocol's runs): what a longer schedule adds. Says
    what it did: done, already there, or not yet possible (the arm is still being tuned)."""
    step = plan(arm, val_of(read_records(out), arm, protocol["choice_metric"]), protocol)
    if isinstance(step, Run):
        return f"{arm}: not finished ({step.key} next), no long run yet"
    run = Run(arm, step[0], step[1], protocol["final_seeds"][0], protocol["lr_base"])
    longer = long_protocol(protocol)
    if run.key in read_records(os.path.join(out, LONG)):
        return f"{arm}: long run {run.key} ({longer['epochs']} epochs) already done"
    record, detections = run_one(run, os.path.join(work, LONG), data, longer)
    record["epochs"] = longer["epochs"]
    save(os.path.join(out, LONG), record, detections)
    return (f"{arm}: long run {run.key}, {longer['epochs']} epochs: val "
            f"{record['splits']['val']['ap50']:.4f} test {record['splits']['test']['ap50']:.4f}")


def read_records(out: str) -> Dict[str, dict]:
    folder = os.path.join(out, "runs")
    if not os.path.isdir(folder):
        return {}
    records = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            record = json.load(f)
        records[record["run"]] = record
    return records


def val_of(records: Dict[str, dict], arm: str, metric: str = "ap50") -> Dict[tuple, float]:
    return {(r["k"], r["warmup"], r["seed"]): r["splits"]["val"][metric]
            for r in records.values() if r["arm"] == arm}


def save(out: str, record: dict, detections: dict) -> None:
    """Write a run's detections, then its record: a record is there only once all is."""
    for sub in ("runs", "detections"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    write_json_gz(os.path.join(out, "detections", f"{record['run']}.json.gz"), detections)
    write_json(os.path.join(out, "runs", f"{record['run']}.json"), record)


def synthetic_args(protocol: dict) -> Optional[dict]:
    """make_synthetic's arguments where the protocol's data is {"synthetic": {...}}, else None
    (the tree-crown tiles of study v3)."""
    spec = protocol["data"]
    return spec["synthetic"] if isinstance(spec, dict) and "synthetic" in spec else None


def neon_trees_args(protocol: dict) -> dict:
    """make_neon_trees' keyword arguments: {} for study v3's fixed bands, {"folds": K,
    "fold": k} where the protocol's data is {"neon_trees": {...}} (study v5's folds)."""
    spec = protocol["data"]
    return dict(spec["neon_trees"]) if isinstance(spec, dict) and "neon_trees" in spec else {}


def prepare_data(protocol: dict, data: str) -> None:
    """Write the protocol's dataset at `data` unless it is there: the tree-crown tiles (study
    v3's bands, or a fold of them for {"neon_trees": {"folds": K, "fold": k}}) or, for
    {"synthetic": {...}}, make_synthetic's with those arguments."""
    synthetic = synthetic_args(protocol)
    if synthetic is not None:
        if not os.path.isfile(os.path.join(data, "classes.txt")):  # make_synthetic's last file
            make_synthetic(data, **synthetic)
    elif not os.path.isfile(os.path.join(data, "summary.json")):
        make_neon_trees(data, fetch_wheel(os.path.join(ROOT, "data", "cache")),
                        **neon_trees_args(protocol))


def protocol_classes(protocol: dict) -> Tuple[str, ...]:
    """The class names of the protocol's dataset, in label order."""
    synthetic = synthetic_args(protocol)
    if synthetic is None:
        return (NEON_CLASS,)
    return VARIANTS[synthetic.get("variant", "shapes")].classes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="+", choices=list(TRAINED),
                   default=[a for a in TRAINED if a not in CANDIDATES],
                   help="trained arms, in the order they are run")
    p.add_argument("--out", default=os.path.join(ROOT, "studies", "output", "study_v3"))
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "study_v3"))
    p.add_argument("--data", default=os.path.join(ROOT, "data", "neon_trees"))
    p.add_argument("--protocol", metavar="FILE.json",
                   help="another protocol with PROTOCOL's keys (default: study v3's)")
    p.add_argument("--plan", action="store_true", help="print each arm's next run and stop")
    p.add_argument("--long", action="store_true",
                   help="instead, each finished arm once at twice the epochs (the protocol's "
                        "flat-schedule check), into OUT/long/")
    args = p.parse_args(argv)
    protocol = load_protocol(args.protocol) if args.protocol else PROTOCOL
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "protocol.json"), dict(protocol, arms=ARMS))
    prepare_data(protocol, args.data)
    if args.long:
        for arm in args.arms:
            print(run_long(arm, args.out, args.work, args.data, protocol), flush=True)
        return 0
    for arm in args.arms:
        while True:
            records = read_records(args.out)
            step = plan(arm, val_of(records, arm, protocol["choice_metric"]),
                        protocol)
            if not isinstance(step, Run):
                print(f"{arm}: done, lr {lr_of(step[0], protocol['lr_base'])} warmup "
                      f"{step[1]}", flush=True)
                break
            print(f"{arm}: next {step.key} (lr {step.lr})", flush=True)
            if args.plan:
                break
            record, detections = run_one(step, os.path.join(args.work, "runs"), args.data,
                                         protocol)
            save(args.out, record, detections)
            write_text(os.path.join(args.out, "last.txt"), f"{step.key}\n")
            figures = " ".join(f"{split} AP50 {record['splits'][split]['ap50']:.4f} AP "
                               f"{record['splits'][split]['ap']:.4f}"
                               for split in protocol["splits"])
            print(f"{step.key}: {figures} ({record['train_minutes']:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    main()
