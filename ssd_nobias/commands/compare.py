"""Compare training runs: one row per run and their curves side by side.

One row per run: best and last val metric, loss, speed; their curves in one picture.

    python scripts/compare_runs.py runs/a runs/b [runs/c ...] [--out compare.png]

Writes the picture and, beside it, the rows as JSON (<out>.json).
"""
import argparse
import os

from ssd_nobias.atomic import write_json
from ssd_nobias.engine.compare import compare_runs, comparison_json, format_comparison


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (a training's output_dir)")
    p.add_argument("--out", default="compare.png", metavar="FILE.png",
                   help="the picture (default compare.png); the rows go to FILE.json")
    args = p.parse_args(argv)
    summaries = compare_runs(args.runs, args.out)
    print(format_comparison(summaries))
    rows = os.path.splitext(args.out)[0] + ".json"
    write_json(rows, comparison_json(summaries))
    print(f"wrote {args.out}, {rows}")
    return 0
