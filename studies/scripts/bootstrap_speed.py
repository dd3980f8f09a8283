"""Cost of one bootstrap resample of one run, per metric, on a committed study's matches.

The study report scores every final run 2000 times per comparison; this prints what one of
those costs: a resample gathered from the run's pooled matches (what paired_bootstrap does),
beside the same resample's images pooled anew (what scoring a list of images does), timed
alternately so that load on a shared machine hits both alike, and checks they agree.

    python studies/scripts/bootstrap_speed.py [--matches
    studies/results/study_v4/shapes_12ep/matches/RUN.json.gz]
        [--variant nobias] [--split test] [--resamples 50]
"""
import argparse
import glob
import gzip
import json
import os
import statistics
import time

import numpy as np

from ssd_nobias import cli
from ssd_nobias_studies.report import kept_matches
from ssd_nobias.errors import DataError
from ssd_nobias.evaluation.ap_stats import Pooled
from ssd_nobias_studies.intervals import METRICS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--matches", help="a study's OUT/matches/<run>.json.gz (default: study v4's "
                   "first committed run of (a) on the shapes at 12 epochs)")
    p.add_argument("--variant", default="nobias")
    p.add_argument("--split", default="test")
    p.add_argument("--resamples", type=int, default=50)
    args = p.parse_args(argv)
    args.matches = args.matches or min(glob.glob(os.path.join(
        ROOT, "studies", "results", "study_v4", "shapes_12ep", "matches", "nobias-*.json.gz")),
        default=None)
    if not args.matches or not os.path.isfile(args.matches):
        raise DataError(f"--matches: no matches file {args.matches or 'committed'}")
    with gzip.open(args.matches, "rt") as f:
        held = json.load(f)
    if args.split not in held.get(args.variant, {}):
        raise DataError(f"{args.matches}: no {args.variant!r} matches on {args.split!r}")
    images = kept_matches(held[args.variant][args.split])
    pooled = Pooled(images)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(images), len(images)) for _ in range(args.resamples)]
    detections = sum(len(m.voc[c][0]) for m in images for c in m.voc)
    print(f"{os.path.relpath(args.matches, ROOT)} {args.variant}/{args.split}: "
          f"{len(images)} images, {detections} detections, {args.resamples} resamples")
    for name, score in METRICS.items():
        gathered, anew = [], []
        for idx in draws:
            t = time.perf_counter()
            fast = score(pooled, idx)
            gathered.append(time.perf_counter() - t)
            t = time.perf_counter()
            slow = score(Pooled([images[i] for i in idx]), None)
            anew.append(time.perf_counter() - t)
            if fast != slow:
                raise SystemExit(f"{name}: gathered {fast!r} != pooled anew {slow!r}")
        g, a = statistics.median(gathered) * 1e3, statistics.median(anew) * 1e3
        print(f"{name}: {g:.1f} ms a resample gathered, {a:.1f} ms pooled anew ({a / g:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
