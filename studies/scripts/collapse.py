"""Why a run trains but does not detect: its box and class losses, val AP50 and what its
depthwise units pass on (active fraction, spatial share) from init to its last checkpoint, beside
runs that do learn. Writes OUT.json and OUT.png.

    python studies/scripts/collapse.py LABEL=RUN_DIR [LABEL=RUN_DIR ...] --out
    studies/results/study_v3/collapse \\
        [--images 32]
"""
import argparse

from ssd_nobias_studies.collapse import plot_collapse, run_profile
from ssd_nobias.atomic import write_json


def labelled(text: str) -> tuple:
    label, sep, run = text.partition("=")
    if not sep or not label or not run:
        raise argparse.ArgumentTypeError(f"'{text}' is not LABEL=RUN_DIR")
    return label, run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=labelled, help="LABEL=RUN_DIR (a run with "
                   "config.yaml, metrics.csv and checkpoints)")
    p.add_argument("--out", required=True, help="OUT.json and OUT.png are written")
    p.add_argument("--images", type=int, default=32, help="val images to measure on")
    args = p.parse_args()
    profiles = {}
    for label, run in args.runs:
        profiles[label] = {"run": run, **run_profile(run, args.images)}
        prof = profiles[label]
        box = prof["loss_curve"][-1][3] if prof["loss_curve"] else float("nan")
        print(f"{label}: last box loss {box:.3f}, depthwise active "
              + " ".join(f"{e}:{a:.2f}" for e, a in zip(prof["snapshot_epochs"],
                                                         prof["depthwise_active"]))
              + ", spatial share "
              + " ".join(f"{s:.2f}" for s in prof["depthwise_spatial_share"]), flush=True)
    write_json(f"{args.out}.json", {"images": args.images, "runs": profiles})
    plot_collapse(f"{args.out}.png", profiles)


if __name__ == "__main__":
    main()
