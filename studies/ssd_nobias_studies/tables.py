"""Markdown tables of a study report (study.json, studies v3 and v4): the tuning grid, each
arm's test figures, the comparisons with their verdicts, and the README's summary. The docs
paste them as printed, and studies/tests/test_docs_results.py holds the docs to the committed
study.json
through them."""
from __future__ import annotations

from typing import Dict, List

from ssd_nobias_studies.runner import ARMS, METRICS, SPLIT_NAMES, ZERO_SHIFT, kept_splits


PAIRS = {"nobias_int8_pair": "(a) INT8 pair", "nobias_float32_pair": "(a) float32 pair"}


def label(arm: str) -> str:
    """An arm's letter, "(a)", or which of (a)'s accelerator pairs it is."""
    return PAIRS.get(arm) or ARMS[arm][:3]


def row(cells: List[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(lines: List[str]) -> str:
    """The table's lines, or nothing when it has no rows below its header."""
    return "\n".join(lines) if len(lines) > 2 else ""


def tuning(report: dict) -> str:
    """Val AP50 of every tuning run, one column per lr, seeds separated by " / "; a warmup
    other than the protocol's first is named in the cell."""
    warmups = report["protocol"]["warmups"]
    lrs = sorted({float(key.split("@")[0]) for t in report["tuning"].values()
                  for key in t["warmup"]})
    if not lrs:
        return ""
    lines = [row(["arm"] + [f"lr {lrs[0]:.3g}"] + [f"{lr:.3g}" for lr in lrs[1:]]),
             row(["---"] * (len(lrs) + 1))]
    for arm, name in ARMS.items():
        t = report["tuning"].get(arm)
        if not t:
            continue
        cells = []
        for lr in lrs:
            parts = []
            for i, w in enumerate(warmups):
                values = t["warmup"].get(f"{lr!r}@{w}")
                if values:
                    seeds = " / ".join(f"{v:.3f}" for v in values)
                    parts.append(seeds if i == 0 else f"warmup {w}: {seeds}")
            cells.append("; ".join(parts) or "-")
        lines.append(row([name] + cells))
    return table(lines)


def spread(s: dict, worst: bool = True) -> str:
    """mean +- std in points, and the worst seed in brackets."""
    text = f"{100 * s['mean']:.1f} +- {100 * s['std']:.1f}"
    return f"{text} ({100 * s['min']:.1f})" if worst else text


def settings_of(report: dict, arm: str) -> dict:
    """The chosen settings an arm was trained with: an exported arm's are its parent's."""
    parent = next((p for p, z in ZERO_SHIFT.items() if z == arm), arm)
    return report["settings"][parent]


def figures(report: dict, first: str, chosen: bool, worst: bool) -> str:
    """A row per finished arm: its test AP50 and AP[.5:.95] and the other test splits' AP50
    over the final seeds, after its chosen lr and warmup if `chosen`."""
    other = kept_splits(report["protocol"]["splits"])[1:]
    head = [first] + (["lr", "warmup"] if chosen else []) + ["test AP50", "test AP[.5:.95]"]
    lines = [row(head + [f"{SPLIT_NAMES.get(split, split)} AP50" for split in other]),
             row(["---"] * (len(head) + len(other)))]
    for arm, name in ARMS.items():
        t = report["arms"].get(arm)
        if not t:
            continue
        cells = [name]
        if chosen:
            s = settings_of(report, arm)
            cells += [f"{s['lr']:.3g}", str(s["warmup"])]
        cells += [spread(t["test"]["ap50"], worst), spread(t["test"]["ap"], worst)]
        lines.append(row(cells + [spread(t[split]["ap50"], worst) for split in other]))
    return table(lines)


def arms(report: dict) -> str:
    """Each finished arm's chosen lr and warmup and its test figures, the worst seed too."""
    return figures(report, "arm", chosen=True, worst=True)


def summary(report: dict) -> str:
    """The README's table: mean +- std of each finished arm."""
    seeds = len(report["protocol"]["final_seeds"])
    return figures(report, f"arm ({seeds} seeds, mean +- std)", chosen=False, worst=False)


def reading(e: dict) -> str:
    """The verdict, with "behind" where the interval lies below 0 and the verdict does not say
    so (non-inferior or undecided)."""
    behind = e.get("direction") == "behind" and e["verdict"] in ("non-inferior", "undecided")
    return e["verdict"] + (", behind" if behind else "")


def interval_cell(e: dict) -> str:
    """A difference in points, its 95 % interval and verdict, "behind" or "ahead" where the
    verdict does not say it, and the image-only interval where the report has one."""
    def points(x):
        return f"{100 * x:+.2f}"
    text = f"{points(e['difference'])} [{points(e['low'])}, {points(e['high'])}] {reading(e)}"
    if "image_only" in e:
        text += (f"; images only [{points(e['image_only']['low'])}, "
                 f"{points(e['image_only']['high'])}]")
    return text


def comparisons(report: dict) -> str:
    """The protocol's comparisons on test, one row per pair of arms and a column per metric:
    the difference in points, its 95 % interval (seeds and images resampled, where the report
    has that) and the verdict, and the image-only interval."""
    c = report["comparisons"]
    best = "best stock arm" if not c.get("stock_pending") else "best finished stock arm"
    rows: Dict[tuple, Dict[str, dict]] = {}
    for entry in c.get("test", []) + ([c["int8"]] if "int8" in c else []):
        rows.setdefault((entry["arm"], entry["other"]), {})[entry["metric"]] = entry
    lines = [row(["comparison"] + list(METRICS.values())), row(["---"] * (1 + len(METRICS)))]
    for (arm, other), by_metric in rows.items():
        if arm == "nobias" and other in c["best_stock"].values():
            name = f"{label(arm)} - {best}, {label(other)}"
        else:
            name = f"{label(arm)} - {label(other)}"
        cells = [interval_cell(e) if e else "" for e in map(by_metric.get, METRICS)]
        lines.append(row([name] + cells))
    text = table(lines)
    if text and c.get("stock_pending") and c["best_stock"]:
        text += (f"\n\nBest stock arm among the finished ones; not finished: "
                 f"{', '.join(c['stock_pending'])}, so a verdict against it is provisional.")
    return text


def markdown(report: dict) -> str:
    """Every table, as studies/results/README.md and the README show them."""
    return "\n\n".join(filter(None, [tuning(report), arms(report), comparisons(report),
                                      summary(report)]))


# The settings the README's first table reads, in its order: study folder -> what it is.
SETTINGS = {"study_v3": "tree crowns (real), 60 epochs",
            "study_v4/shapes_12ep": "shapes, 12 epochs",
            "study_v4/shapes_36ep": "shapes, 36 epochs",
            "study_v4/hard_12ep": "hard shapes, 12 epochs"}


def headline(reports: Dict[str, dict]) -> str:
    """The README's first table: per setting and metric, the recipe's mean test figure, the
    best stock arm's (it keeps its biases), the difference with its two-level interval, and
    the verdict. `reports`: {setting name: study.json}."""
    lines = [row(["setting", "metric", "bias-free (a)", "best stock, with biases",
                  "(a) - stock [95 % interval, seeds and images]", "verdict"]),
             row(["---"] * 6)]
    for setting, report in reports.items():
        c = report["comparisons"]
        for metric, name in METRICS.items():
            best = c["best_stock"][metric]
            e = next(e for e in c["test"] if (e["arm"], e["other"], e["metric"]) ==
                     ("nobias", best, metric))
            means = [100 * report["arms"][arm]["test"][metric]["mean"] for arm in ("nobias", best)]
            lines.append(row([setting, name, f"{means[0]:.1f}", f"{means[1]:.1f} {label(best)}",
                              f"{100 * e['difference']:+.2f} [{100 * e['low']:+.2f}, "
                              f"{100 * e['high']:+.2f}]", reading(e)]))
    return table(lines)


def committed_headline(results: str) -> str:
    """headline() of the studies committed under `results` (studies/results)."""
    import json
    import os
    reports = {}
    for folder, name in SETTINGS.items():
        with open(os.path.join(results, folder, "study.json")) as f:
            reports[name] = json.load(f)
    return headline(reports)


if __name__ == "__main__":
    import os
    print(committed_headline(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "results")))
