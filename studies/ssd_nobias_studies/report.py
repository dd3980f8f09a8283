"""A tuned study's statistics (v3, v4), as studies/results/study_v3/protocol.md fixes them, from
studies/scripts/study_trees.py's records: the tuning tables, each arm's five seeds at its chosen
settings,
the paired image bootstrap of every comparison the protocol names and its verdict against the
margin, (a)'s INT8 pair. Writes OUT/study.json, OUT/study.png and OUT/matches/ (per-image
matches, which reproduce the comparisons without the boxes: the final runs', and every run of
an arm still tuning) and prints the tables; an arm still being tuned is listed with the runs it
has. Reads OUT/matches/ where a run's detections are not there.

    python studies/scripts/study_trees_report.py [--out bench/results/study_v3] [--samples 2000]
        [--publish studies/results/study_v3]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
from typing import Dict, List, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_nobias.atomic import write_json, write_json_gz
from ssd_nobias.evaluation.ap_stats import matches_from_json, matches_of, matches_to_json
from ssd_nobias_studies import tables as study_tables
from ssd_nobias_studies.intervals import (direction, paired_bootstrap, two_level_bootstrap,
                                          verdict)
from ssd_nobias_studies.runner import (ARMS, CANDIDATES, LONG, METRICS, PROTOCOL, ROOT,
                                       TRAINED, ZERO_SHIFT, Run, kept_splits, load_protocol,
                                       lr_of, plan, read_records, val_of)

STOCK = ("batchnorm", "batchnorm_reparam", "batchnorm_uncentered")
MARGIN = 0.01  # non-inferiority margin: 1 point
INT8_MARGIN = 0.005
MATCHES = "matches"  # OUT/matches/: the kept runs' per-image matches, committed with the study
TITLE = "Study v3, NEON tree crowns (real aerial imagery), ssd_300_mobilenet0.25"
COLORS = {"nobias": "tab:blue", "nobias_noheadbias": "tab:purple", "batchnorm": "tab:orange",
          "batchnorm_reparam": "tab:green", "batchnorm_uncentered": "tab:brown"}


def settled(records: Dict[str, dict], protocol: dict = PROTOCOL) -> Dict[str, dict]:
    """Per trained arm: its chosen (lr, warmup) and final runs once the protocol is done with
    it, else the next run it needs."""
    out = {}
    for arm in TRAINED:
        val = val_of(records, arm, protocol["choice_metric"])
        if not val:
            continue
        step = plan(arm, val, protocol)
        if isinstance(step, Run):
            out[arm] = {"done": False, "next": step.key, "runs": len(val)}
            continue
        k, warmup = step
        finals = [r for r in records.values() if r["arm"] == arm and r["k"] == k and
                  r["warmup"] == warmup and r["seed"] in protocol["final_seeds"]]
        out[arm] = {"done": True, "k": k, "lr": lr_of(k, protocol["lr_base"]), "warmup": warmup,
                    "runs": len(val),
                    "final": sorted(finals, key=lambda r: r["seed"])}
    return out


def tuning_table(records: Dict[str, dict], protocol: dict = PROTOCOL) -> Dict[str, dict]:
    """{arm: {"lr": {lr: [val figure per tuning seed]}, "warmup": {"lr@w": [...]}}}: the
    figure is the protocol's choice metric, "lr" holds the first warmup's runs."""
    table: Dict[str, dict] = {}
    for r in sorted(records.values(), key=lambda r: r["seed"]):
        if r["seed"] not in protocol["tune_seeds"]:
            continue
        entry = table.setdefault(r["arm"], {"lr": {}, "warmup": {}})
        val = r["splits"]["val"][protocol["choice_metric"]]
        if r["warmup"] == protocol["warmups"][0]:
            entry["lr"].setdefault(str(r["lr"]), []).append(val)
        entry["warmup"].setdefault(f"{r['lr']}@{r['warmup']}", []).append(val)
    return table


def variant_rows(arm: str, records: List[dict]) -> Dict[str, List[dict]]:
    """Runs of trained `arm` as {"run", "seed", "splits"} rows per variant they were scored as:
    the arm itself, its shifts dropped where it has an exported arm, (a)'s INT8 pairs."""
    out = {arm: [{"run": r["run"], "seed": r["seed"], "splits": r["splits"]} for r in records]}
    if arm in ZERO_SHIFT:
        name = ZERO_SHIFT[arm]
        out[name] = [{"run": r["run"], "seed": r["seed"], "splits": r[name]["splits"],
                      "max_shift": r[name]["max_shift"]} for r in records]
    if arm == "nobias":
        for pair in ("float32_pair", "int8_pair"):
            out[f"nobias_{pair}"] = [{"run": r["run"], "seed": r["seed"],
                                      "splits": {"test": r["int8"][pair]}} for r in records]
    return out


def arm_runs(state: Dict[str, dict]) -> Dict[str, List[dict]]:
    """Every arm's final runs as rows (`variant_rows`): trained arms and exported ones."""
    out: Dict[str, List[dict]] = {}
    for arm, s in state.items():
        if s["done"]:
            out.update(variant_rows(arm, s["final"]))
    return out


def kept_runs(records: Dict[str, dict], state: Dict[str, dict]) -> Dict[str, List[dict]]:
    """The rows whose matches a report keeps: the final runs of the finished arms and every run
    of an arm still tuning, any of which may yet be final, so that a study published while it
    runs can be resumed, on another machine, from what was published."""
    out = arm_runs(state)
    for arm, s in state.items():
        if not s["done"]:
            out.update(variant_rows(arm, sorted((r for r in records.values() if r["arm"] == arm),
                                                key=lambda r: r["run"])))
    return out


def spread(values: List[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))
            if len(values) > 1 else 0.0, "min": float(min(values)), "max": float(max(values)),
            "n": len(values)}


def arm_table(runs: Dict[str, List[dict]]) -> Dict[str, dict]:
    return {arm: {split: {m: spread([r["splits"][split][m] for r in rows]) for m in METRICS}
                  for split in rows[0]["splits"]} for arm, rows in runs.items()}


def kept_matches(images: List[dict]) -> list:
    """The ImageMatches of the images of an OUT/matches file."""
    return [matches_from_json(i["classes"]) for i in images]


class Detections:
    """Per-image matches of (run, arm, split), each computed once: from OUT/detections (the
    runner's boxes) where a run's file is there, else from OUT/matches (what `keep` wrote, the
    form committed beside a study's records). An exported arm's and the INT8 pairs' detections
    are in their trained run's file, under their name."""

    def __init__(self, out: str):
        self.out = out
        self.cache: Dict[str, Dict[str, Dict[str, tuple]]] = {}  # run -> variant -> split

    def _read(self, folder: str, run: str) -> Optional[dict]:
        path = os.path.join(self.out, folder, f"{run}.json.gz")
        if not os.path.isfile(path):
            return None
        with gzip.open(path, "rt") as f:
            return json.load(f)

    def run(self, run: str) -> Dict[str, Dict[str, tuple]]:
        """{variant: {split: (image ids, ImageMatches)}} of one run."""
        if run not in self.cache:
            held, matches = self._read("detections", run), matches_of
            if held is None:
                held, matches = self._read(MATCHES, run), kept_matches
            if held is None:
                raise FileNotFoundError(f"{run}: neither {self.out}/detections/{run}.json.gz "
                                        f"nor {self.out}/{MATCHES}/{run}.json.gz")
            self.cache[run] = {v: {split: ([i["id"] for i in images], matches(images))
                                   for split, images in splits.items()}
                               for v, splits in held.items()}
        return self.cache[run]

    def __call__(self, run: str, variant: str, split: str) -> tuple:
        return self.run(run)[variant][split]

    def keep(self, runs: Dict[str, List[dict]]) -> None:
        """Write OUT/matches/<run>.json.gz for every run in `runs` ({variant: rows}), and no
        other: the matches of each of its variants on each kept split, what the comparisons
        need without the boxes."""
        held: Dict[str, dict] = {}
        for variant, rows in runs.items():
            for row in rows:
                held.setdefault(row["run"], {})[variant] = {
                    split: [{"id": i, "classes": matches_to_json(m)} for i, m in zip(*pair)]
                    for split, pair in self.run(row["run"])[variant].items()}
        folder = os.path.join(self.out, MATCHES)
        os.makedirs(folder, exist_ok=True)
        for name in set(os.listdir(folder)) - {f"{run}.json.gz" for run in held}:
            os.remove(os.path.join(folder, name))
        for run, variants in held.items():
            write_json_gz(os.path.join(folder, f"{run}.json.gz"), variants)


def compare(detections: Detections, runs: Dict[str, List[dict]], arm: str, other: str,
            split: str, metric: str, samples: int, margin: float,
            same_runs: bool = False) -> Optional[dict]:
    """arm minus other on `split`: the two-level interval (seeds, then images) and the verdict
    and direction it gives, with the image-only interval beside it ("image_only"); None if
    either arm is not finished. `same_runs`: the two are variants of the same trained runs
    (the INT8 pair and the float32 pair), so their seeds are drawn together."""
    if arm not in runs or other not in runs:
        return None
    sides = []
    for name in (arm, other):
        ids, matches = zip(*(detections(r["run"], name, split) for r in runs[name]))
        if any(i != ids[0] for i in ids):
            raise ValueError(f"{name}: runs scored on different {split} images")
        sides.append((ids[0], list(matches)))
    if sides[0][0] != sides[1][0]:
        raise ValueError(f"{arm} and {other} were scored on different {split} images")
    out = two_level_bootstrap(sides[0][1], sides[1][1], metric, samples,
                              same_runs=same_runs)
    images = paired_bootstrap(sides[0][1], sides[1][1], metric, samples)
    out.update(arm=arm, other=other, split=split, metric=metric, margin=margin,
               verdict=verdict(out["low"], out["high"], margin),
               direction=direction(out["low"], out["high"]),
               image_only={k: images[k] for k in ("low", "high", "levels")})
    return out


def comparisons(detections, runs, table, samples: int, protocol: dict = PROTOCOL,
                stock: Sequence[str] = STOCK) -> dict:
    """Every comparison the protocol names, on test (verdicts) and its other kept splits. The
    best stock arm is the best of the study's `stock` arms that are finished; `stock_pending`
    lists the others, and while it is not empty a verdict against the best stock arm is
    provisional."""
    splits = kept_splits(protocol["splits"])
    done = [a for a in stock if a in table]
    out: Dict[str, list] = {**{split: [] for split in splits}, "best_stock": {},
                            "stock_pending": [a for a in stock if a not in done]}
    for metric in (METRICS if done else ()):  # no stock arm finished: none to compare with
        best = max(done, key=lambda a: table[a]["test"][metric]["mean"])
        out["best_stock"][metric] = best
        for split in splits:
            for arm, other in (("nobias", best), ("reparam_zero_shift", "nobias"),
                               ("uncentered_zero_shift", "nobias"), ("naive", "nobias"),
                               ("nobias_noheadbias", "nobias")):
                c = compare(detections, runs, arm, other, split, metric, samples, MARGIN)
                if c:
                    out[split].append(c)
    c = compare(detections, runs, "nobias_int8_pair", "nobias_float32_pair", "test", "ap50",
                samples, INT8_MARGIN, same_runs=True)
    if c:
        out["int8"] = c
    return out


def flat_schedule(state: Dict[str, dict], protocol: dict = PROTOCOL) -> Dict[str, dict]:
    """Per finished arm, whether its schedule had flattened: the mean over its final seeds of
    val AP50 at two thirds of the epochs (the last val point there or before; study v3: 40)
    and at the end, and the change between them; an arm without a val point that early has
    none."""
    mark = protocol["epochs"] * 2 // 3

    def at(curve, epoch):
        points = [v for e, v in curve if e <= epoch + 1e-9]
        return points[-1] if points else None

    out = {}
    for arm, s in state.items():
        if not s["done"]:
            continue
        marked = [at(r["val_curve"], mark) for r in s["final"]]
        if None in marked:  # no val point that early: nothing to compare
            continue
        before = float(np.mean(marked))
        end = float(np.mean([r["val_curve"][-1][1] for r in s["final"]]))
        out[arm] = {"from_epoch": mark, "to_epoch": protocol["epochs"], "val_ap50_from": before,
                    "val_ap50_to": end, "change_points": 100 * (end - before)}
    return out


def long_schedule(records: Dict[str, dict], long_records: Dict[str, dict],
                  protocol: dict = PROTOCOL) -> Dict[str, dict]:
    """Per arm with a long run (OUT/long/): its val and test AP50 at twice the epochs beside
    the same run's (arm, settings, seed) at the protocol's epochs."""
    out = {}
    for key, r in long_records.items():
        short = records.get(key)
        if short is None:
            continue
        entry = {"run": key, "epochs": r["epochs"], "protocol_epochs": protocol["epochs"]}
        for split in ("val", "test"):
            entry[f"{split}_ap50"] = r["splits"][split]["ap50"]
            entry[f"{split}_ap50_protocol_epochs"] = short["splits"][split]["ap50"]
        out[r["arm"]] = entry
    return out


def plot(path: str, records: Dict[str, dict], state: Dict[str, dict],
         protocol: dict = PROTOCOL, title: str = TITLE) -> None:
    fig = Figure(figsize=(11, 4.3))
    FigureCanvasAgg(fig)
    sweep, curves = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    w0 = protocol["warmups"][0]
    for arm in TRAINED:
        rows = [r for r in records.values() if r["arm"] == arm and r["warmup"] == w0 and
                r["seed"] in protocol["tune_seeds"]]
        if not rows:
            continue
        color = COLORS[arm]
        lrs = sorted({r["lr"] for r in rows})
        means = [np.mean([r["splits"]["val"]["ap50"] for r in rows if r["lr"] == lr])
                 for lr in lrs]
        sweep.plot(lrs, means, marker="o", color=color, label=ARMS[arm])
        sweep.scatter([r["lr"] for r in rows], [r["splits"]["val"]["ap50"] for r in rows],
                      color=color, s=10, alpha=0.5)
        s = state.get(arm, {})
        if s.get("done"):
            finals = s["final"]
            epochs = [e for e, _ in finals[0]["val_curve"]]
            values = np.array([[m for _, m in r["val_curve"]] for r in finals])
            curves.plot(epochs, values.mean(0), color=color, marker=".",
                        label=f"{ARMS[arm]}: lr {s['lr']:.4g}, warmup {s['warmup']}")
            curves.fill_between(epochs, values.min(0), values.max(0), color=color, alpha=0.15)
    sweep.set_xscale("log", base=2)
    tried = sorted({r["lr"] for r in records.values()})
    sweep.set_xticks(tried, [f"{lr:.3g}" for lr in tried], fontsize=7)
    sweep.minorticks_off()
    sweep.set_xlabel("learning rate (batch 16)")
    sweep.set_ylabel(f"val VOC07 AP50, last checkpoint (warmup {w0})")
    sweep.set_title("lr sweep: mean of the tuning seeds (dots: each seed)", fontsize=9)
    curves.set_xlabel("epoch")
    curves.set_ylabel("val VOC07 AP50")
    curves.set_title("chosen settings: mean and min-max over the final seeds", fontsize=9)
    if not curves.lines:
        curves.text(0.5, 0.5, "no arm has finished tuning yet", ha="center", va="center",
                    transform=curves.transAxes, fontsize=9, color="0.4")
    for ax in (sweep, curves):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}, {protocol['epochs']} epochs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def publish(folder: str, out: str, records: Dict[str, dict],
            long_records: Dict[str, dict]) -> None:
    """Copy the report in OUT to `folder` with the records it was computed from (not those a
    run finished since has added), the protocol the runner recorded and the matches `keep`
    wrote (`kept_runs`)."""
    os.makedirs(folder, exist_ok=True)
    for sub, held in (("runs", records), (os.path.join(LONG, "runs"), long_records)):
        if held:
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        for run, record in held.items():
            write_json(os.path.join(folder, sub, f"{run}.json"), record)
    for name in ("study.json", "study.png", "protocol.json"):
        if os.path.isfile(os.path.join(out, name)):
            shutil.copyfile(os.path.join(out, name), os.path.join(folder, name))
    shutil.rmtree(os.path.join(folder, MATCHES), ignore_errors=True)
    shutil.copytree(os.path.join(out, MATCHES), os.path.join(folder, MATCHES))


def recompare(out: str, detections: Detections, runs: Dict[str, List[dict]], table: dict,
              samples: int, protocol: dict, stock: Sequence[str]) -> int:
    """OUT/study.json with its comparisons computed again (the best stock arm among `stock`,
    as the report first chose it: give the same --arms)."""
    path = os.path.join(out, "study.json")
    with open(path) as f:
        report = json.load(f)
    report["comparisons"] = comparisons(detections, runs, table, samples, protocol, stock)
    write_json(path, report)
    print(study_tables.comparisons(report))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "studies", "output", "study_v3"))
    p.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--title", default=TITLE, help="the figure's title")
    p.add_argument("--arms", nargs="+", choices=list(TRAINED),
                   default=[a for a in TRAINED if a not in CANDIDATES],
                   help="the study's trained arms (default: all; study v4 runs some protocols "
                        "with fewer): the best stock arm is chosen among these")
    p.add_argument("--publish", metavar="DIR",
                   help="also write the records the report read, its study.json, study.png, "
                        "the recorded protocol and the kept runs' matches (the final runs', "
                        "and every run of an arm still tuning) to DIR (a docs folder): one "
                        "consistent set while the study runs on, from which it resumes")
    p.add_argument("--recompare", action="store_true",
                   help="recompute only the comparisons of OUT/study.json from the records and "
                        "matches beside it (a change of statistics, no new run); the rest of "
                        "it, the picture and the matches stay as they are")
    args = p.parse_args(argv)
    recorded = os.path.join(args.out, "protocol.json")  # the runner writes the one it used
    protocol = load_protocol(recorded) if os.path.isfile(recorded) else PROTOCOL
    records = read_records(args.out)
    long_records = read_records(os.path.join(args.out, LONG))
    state = settled(records, protocol)
    runs = arm_runs(state)
    table = arm_table(runs)
    detections = Detections(args.out)
    if args.recompare:
        return recompare(args.out, detections, runs, table, args.samples, protocol,
                         [a for a in STOCK if a in args.arms])
    report = {"protocol": protocol,
              "settings": {a: {k: v for k, v in s.items() if k != "final"}
                           for a, s in state.items()},
              "tuning": tuning_table(records, protocol), "arms": table,
              "comparisons": comparisons(detections, runs, table, args.samples,
                                         protocol, [a for a in STOCK if a in args.arms]),
              "collapse": {a: {"dead_fraction_end": float(np.mean([r["dead_fraction"][-1]
                                                                  for r in s["final"]])),
                               "final_loss": np.mean([r["loss_curve"][-1][1:]
                                                      for r in s["final"]], 0).round(4).tolist()}
                           for a, s in state.items() if s["done"]},
              "flat_schedule": flat_schedule(state, protocol),
              "long_schedule": long_schedule(records, long_records, protocol),
              "cpus": sorted({json.dumps(r["cpu"], sort_keys=True) for r in records.values()})}
    write_json(os.path.join(args.out, "study.json"), report)
    detections.keep(kept_runs(records, state))
    plot(os.path.join(args.out, "study.png"), records, state, protocol, args.title)
    if args.publish:
        publish(args.publish, args.out, records, long_records)
    for arm, s in state.items():
        print(f"{arm}: " + (f"lr {s['lr']:.4g} warmup {s['warmup']}, {len(s['final'])} seeds"
                            if s["done"] else f"tuning, {s['runs']} runs, next {s['next']}"))
    for arm, f in report["flat_schedule"].items():
        print(f"{arm}: mean val AP50 {f['val_ap50_from']:.4f} at epoch {f['from_epoch']}, "
              f"{f['val_ap50_to']:.4f} at {f['to_epoch']} ({f['change_points']:+.2f} points)")
    for arm, g in report["long_schedule"].items():
        print(f"{arm}: {g['run']} at {g['epochs']} epochs: val AP50 {g['val_ap50']:.4f}, test "
              f"{g['test_ap50']:.4f}; at {g['protocol_epochs']}: "
              f"{g['val_ap50_protocol_epochs']:.4f}, {g['test_ap50_protocol_epochs']:.4f}")
    print(study_tables.markdown(report))
    return 0


if __name__ == "__main__":
    main()
