"""Recipe v2's screen, reported (studies/results/recipe_v2/screening.md): every tried point's
mean val figures over the tuning seeds, where the joint search stands, and the rule's verdict
for the candidate against the baseline once the search is done. Val only: a screen reads no
test split.

    python studies/scripts/screen_report.py --out ../recipe_v2/bench/results/recipe_v2/warmup_36ep \
        --publish studies/results/recipe_v2/warmup_36ep
"""
from __future__ import annotations

import argparse
import os
import shutil
from typing import Dict, List

import numpy as np

from ssd_nobias.atomic import write_json
from ssd_nobias_studies.runner import Run, load_protocol, lr_of, plan, read_records, val_of

GAIN = 0.005      # the rule: mean val AP[.5:.95] at least 0.5 points above the baseline's,
AP50_LOSS = 0.005  # and mean val AP50 not more than 0.5 points below it
BASELINE = (0, 200)  # (a) as study v4 chose it at 36 epochs: k = 0 (lr 0.025), warmup 200


def points(records: Dict[str, dict], arm: str, seeds: List[int]) -> Dict[tuple, dict]:
    """{(k, warmup): {"lr", "seeds", "ap", "ap50"}}: each tried point's mean val figures over
    the tuning seeds it has."""
    out: Dict[tuple, dict] = {}
    for r in records.values():
        if r["arm"] != arm or r["seed"] not in seeds:
            continue
        p = out.setdefault((r["k"], r["warmup"]), {"lr": r["lr"], "runs": {}})
        p["runs"][r["seed"]] = {m: r["splits"]["val"][m] for m in ("ap", "ap50")}
    for p in out.values():
        p["seeds"] = sorted(p.pop("runs").items())
        for m in ("ap", "ap50"):
            p[m] = float(np.mean([v[m] for _, v in p["seeds"]]))
    return out


def rule(candidate: dict, baseline: dict) -> dict:
    """The screen's verdict on a candidate's mean val figures against the baseline's."""
    gain, ap50 = candidate["ap"] - baseline["ap"], candidate["ap50"] - baseline["ap50"]
    return {"ap_gain": gain, "ap50_change": ap50,
            "passes": bool(gain >= GAIN and ap50 >= -AP50_LOSS)}


def report(out: str, arm: str = "nobias") -> dict:
    """Where `arm`'s search stands in OUT's records (under its recorded protocol), and once it
    is done the rule applied to its choice against the baseline, (a) at BASELINE."""
    protocol = load_protocol(os.path.join(out, "protocol.json"))
    records = read_records(out)
    tried = points(records, arm, protocol["tune_seeds"])
    baseline = points(records, "nobias", protocol["tune_seeds"]).get(BASELINE)
    step = plan(arm, val_of(records, arm, protocol["choice_metric"]), protocol)
    result = {"protocol": protocol, "runs": len(records),
              "points": [dict(k=k, warmup=w, **p) for (k, w), p in sorted(tried.items())]}
    if isinstance(step, Run):
        result.update(done=False, next=step.key)
        return result
    k, warmup = step
    ladder = protocol["warmups"]
    result.update(done=True, choice={"k": k, "lr": lr_of(k, protocol["lr_base"]),
                                     "warmup": warmup},
                  bracketed={"lr": protocol["k_range"][0] < k < protocol["k_range"][1],
                             "warmup": 0 < ladder.index(warmup) < len(ladder) - 1})
    if baseline is not None and (k, warmup) in tried:
        result["rule"] = rule(tried[(k, warmup)], baseline)
    return result


def markdown(result: dict) -> str:
    """The tried points as a table, then where the search stands."""
    lines = ["| lr | warmup | val AP[.5:.95] | val AP50 | seeds |", "| --- | --- | --- | --- | --- |"]
    for p in result["points"]:
        lines.append(f"| {p['lr']:.3g} | {p['warmup']} | {100 * p['ap']:.2f} | "
                     f"{100 * p['ap50']:.2f} | {len(p['seeds'])} |")
    if not result["done"]:
        return "\n".join(lines) + f"\n\nsearching: next run {result['next']}"
    c = result["choice"]
    text = "\n".join(lines) + (f"\n\nchoice: lr {c['lr']:.3g}, warmup {c['warmup']} (bracketed: "
                               f"lr {result['bracketed']['lr']}, warmup "
                               f"{result['bracketed']['warmup']})")
    if "rule" in result:
        r = result["rule"]
        text += (f"; against the baseline: AP[.5:.95] {100 * r['ap_gain']:+.2f} points, AP50 "
                 f"{100 * r['ap50_change']:+.2f}: {'passes' if r['passes'] else 'does not pass'}")
    return text


def publish(out: str, folder: str, result: dict) -> None:
    """screen.json and the run records it was computed from, into `folder`."""
    os.makedirs(os.path.join(folder, "runs"), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(out, "runs"))):
        shutil.copyfile(os.path.join(out, "runs", name), os.path.join(folder, "runs", name))
    shutil.copyfile(os.path.join(out, "protocol.json"), os.path.join(folder, "protocol.json"))
    write_json(os.path.join(folder, "screen.json"), result)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the screen runner's --out folder")
    p.add_argument("--publish", metavar="DIR",
                   help="also copy screen.json, the protocol and the run records to DIR")
    args = p.parse_args(argv)
    arms = sorted({r["arm"] for r in read_records(args.out).values()})
    result = {arm: report(args.out, arm) for arm in arms}  # {arm: its search and verdict}
    write_json(os.path.join(args.out, "screen.json"), result)
    if args.publish:
        publish(args.out, args.publish, result)
    print("\n\n".join(f"{arm}:\n{markdown(r)}" for arm, r in result.items()))
    return 0
