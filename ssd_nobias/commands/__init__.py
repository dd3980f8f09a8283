"""The jobs, one module each, and `ssd-nobias <job> [arguments]`, the console command that runs
them (scripts/ runs the same mains from a checkout)."""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

# job -> (module under ssd_nobias.commands, the script of a checkout)
JOBS = {"train": ("train", "train_ssd.py"), "eval": ("evaluate", "eval_ssd.py"),
        "export": ("export", "export_ssd.py"), "detect": ("detect", "detect.py"),
        "check-dataset": ("check_dataset", "check_dataset.py"),
        "audit": ("audit", "audit_params.py"), "anchors": ("anchors", "anchor_coverage.py"),
        "launch": ("launch", "launch_dist.py"), "bias-report": ("bias_report", "bias_report.py"),
        "make-synthetic": ("make_synthetic", "make_synthetic_voc.py"),
        "make-neon-trees": ("make_neon_trees", "make_neon_trees.py"),
        "compare": ("compare", "compare_runs.py")}


def usage() -> str:
    lines = ["usage: ssd-nobias <job> [arguments]   (ssd-nobias <job> --help for each)", "",
             "jobs:"]
    for job, (module, _) in JOBS.items():
        doc = importlib.import_module(f"ssd_nobias.commands.{module}").__doc__ or ""
        lines.append(f"  {job:16s}{doc.strip().splitlines()[0]}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console entry point: the job's main, errors printed as cli.run prints them."""
    from ssd_nobias import cli
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    job, rest = argv[0], argv[1:]
    if job not in JOBS:
        print(f"ssd-nobias: unknown job '{job}'; jobs: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"ssd_nobias.commands.{JOBS[job][0]}")
    sys.argv[0] = f"ssd-nobias {job}"
    return cli.run(module.main, rest)
