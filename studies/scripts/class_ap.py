"""Per-class test AP50 of a study's final runs, from its committed matches: which class a run
that lags fails on, and whether it misses those objects or finds them with low scores.

For every run and every variant of it (trained arm, exported arms, INT8 pairs), per class: VOC07
AP50, recall at any score (true positives among all kept detections over the objects), and the
median score of its true positives.

    python studies/scripts/class_ap.py [studies/results/study_v4/shapes_12ep] [--split test]
    [--variants A ...]
        [--json OUT.json]
"""
import argparse
import glob
import gzip
import json
import os
from typing import Dict, List, Sequence

import numpy as np

from ssd_nobias import cli
from ssd_nobias_studies.runner import protocol_classes
from ssd_nobias_studies.report import kept_matches
from ssd_nobias.atomic import write_json
from ssd_nobias.errors import DataError
from ssd_nobias.evaluation.ap_stats import ImageMatches, Pooled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "studies", "results")


def class_rows(images: Sequence[ImageMatches]) -> Dict[int, dict]:
    """{class id: {"ap50", "recall", "tp_score"}} over the images, for classes with objects."""
    pooled = Pooled(images)
    out = {}
    for c, ap in pooled.voc07_class_ap50().items():
        scores, codes = pooled.voc[c].arrays
        hits = codes == 1
        out[c] = {"ap50": ap, "recall": float(hits.sum() / pooled.voc[c].pos.sum()),
                  "tp_score": float(np.median(scores[hits])) if hits.any() else float("nan")}
    return out


def study_classes(study: str, split: str, variants: List[str]) -> dict:
    """{"classes": names, "runs": {run: {variant: {class name: row}}}} of a study folder."""
    protocol = os.path.join(study, "protocol.json")
    files = sorted(glob.glob(os.path.join(study, "matches", "*.json.gz")))
    if not os.path.isfile(protocol) or not files:
        raise DataError(f"{study}: not a study folder with protocol.json and matches/")
    with open(protocol) as f:
        names = protocol_classes(json.load(f))
    runs: Dict[str, dict] = {}
    for path in files:
        with gzip.open(path, "rt") as f:
            held = json.load(f)
        run = os.path.basename(path)[:-len(".json.gz")]
        for variant, splits in held.items():
            if variants and variant not in variants:
                continue
            if split not in splits:
                raise DataError(f"{path}: no {variant!r} matches on {split!r}")
            rows = class_rows(kept_matches(splits[split]))
            runs.setdefault(run, {})[variant] = {names[c]: row for c, row in rows.items()}
    if not runs:
        raise DataError(f"{study}: no variant among {', '.join(variants)}")
    return {"study": os.path.relpath(os.path.abspath(study), ROOT), "split": split,
            "classes": list(names), "runs": runs}


def table(held: dict) -> str:
    """One line per run and variant: each class's AP50 / recall / median true-positive score."""
    names = held["classes"]
    lines = ["run, variant: " + "  ".join(f"{n}: AP50 / recall / tp score" for n in names)]
    for run, variants in held["runs"].items():
        for variant, rows in variants.items():
            cells = [" -- " if n not in rows else "{ap50:.3f} / {recall:.3f} / {tp_score:.2f}"
                     .format(**rows[n]) for n in names]
            lines.append(f"{run}, {variant}: " + "  ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", nargs="?", default=os.path.join(RESULTS, "study_v4",
                                                             "shapes_12ep"),
                   help="a study folder: protocol.json and matches/ (committed under docs/)")
    p.add_argument("--split", default="test")
    p.add_argument("--variants", nargs="+", default=[], help="only these (default: all)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    held = study_classes(args.study, args.split, args.variants)
    print(table(held))
    if args.json:
        write_json(args.json, held)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
