"""Dead ReLU channels per unit, from a run's initial weights through its checkpoints, and
whether the depthwise channels that die are those whose filter sum started negative.

The initial weights are rebuilt from the run's config and seed (what its training started
from) and measured with batch statistics; each checkpoint with its running statistics, as
deployed. Save a checkpoint every epoch (train.save_interval=1) to see the whole trajectory.

    python studies/scripts/dead_channels.py runs/study/runs/nobias-1 runs/study/runs/batchnorm-1 \\
        [--images 32] [--json out.json]
"""
import argparse
import json

from ssd_nobias_studies.diagnostics import run_trajectory


def format_trajectory(run: str, t: dict) -> str:
    head = f"{'unit':16s}" + "".join(f"{s:>7s}" for s in t["snapshots"]) + "  neg. sum at start"
    rows = [f"{run}: dead channels per unit (fraction), from init to the last checkpoint", head]
    for name, u in t["units"].items():
        if max(u["dead"]) == 0:
            continue
        rows.append(f"{name:16s}" + "".join(f"{d:7.2f}" for d in u["dead"]) +
                    f"  {u['negative_sum_at_start']}/{u['channels']}")
    rows.append(f"{'all units':16s}" + "".join(f"{d:7.3f}" for d in t["dead"]))
    rows.append(f"depthwise: {t['depthwise_negative_sum_at_start']:.0%} of filters start with a "
                f"negative sum; {t['depthwise_dead_at_end']} of {t['depthwise_channels']} "
                f"channels dead at the end, {t['depthwise_dead_at_end_with_negative_sum_at_start']}"
                f" of them started negative; dead at the end: "
                f"{t['depthwise_dead_rate_negative_start']:.0%} of those that started negative, "
                f"{t['depthwise_dead_rate_non_negative_start']:.0%} of the others")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (config.yaml and checkpoints)")
    p.add_argument("--images", type=int, default=32, help="val images to measure on")
    p.add_argument("--json", help="write every run's trajectory here")
    args = p.parse_args()
    results = {}
    for run in args.runs:
        results[run] = run_trajectory(run, args.images)
        print(format_trajectory(run, results[run]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
