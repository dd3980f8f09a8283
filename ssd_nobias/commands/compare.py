"""Compare training runs: one row per run and their curves side by side.

One row per run: best and last val metric, loss, speed; their curves in one picture.

    python scripts/compare_runs.py runs/a runs/b [runs/c ...] [--out DIR]

Writes compare.png and the rows as compare.json into --out, a folder as every command's
(default: compare in the current folder; compare2, compare3, ... when taken).
"""
import argparse
import os

from ssd_nobias.atomic import make_folder, numbered_folder, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (a training's output_dir)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder for compare.png and compare.json (default: compare; "
                        "compare2, compare3, ... when taken)")
    args = p.parse_args(argv)
    if args.out and args.out.endswith(".png"):
        p.error(f"--out is a folder, as in every command (it gets compare.png and "
                f"compare.json): --out {os.path.dirname(args.out) or '.'}")
    from ssd_nobias.engine.compare import compare_runs, comparison_json, format_comparison

    out = args.out or numbered_folder("compare")
    make_folder(out)
    picture, rows = os.path.join(out, "compare.png"), os.path.join(out, "compare.json")
    summaries = compare_runs(args.runs, picture)
    print(format_comparison(summaries))
    write_json(rows, comparison_json(summaries))
    print(f"wrote {picture}, {rows}")
    return 0
