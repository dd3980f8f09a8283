"""The jobs, one module each, and `ssd-nobias <job> [arguments]`, the console command that runs
them (scripts/ runs the same mains from a checkout)."""
from __future__ import annotations

import difflib
import importlib
import sys
from typing import Optional, Sequence

# job -> (module under ssd_nobias.commands, the script of a checkout, the module's first
# docstring line): the list prints without importing MXNet (tests/commands/test_commands.py holds the
# descriptions to the modules')
JOBS = {
    "train": ("train", "train_ssd.py", "Train a (bias-free) MobileNet-SSD from a YAML config."),
    "eval": ("evaluate", "eval_ssd.py", "Evaluate a trained SSD: VOC07/VOC mAP or COCO AP, "
             "per-class table, eval.json and pictures."),
    "export": ("export", "export_ssd.py", "Fold BatchNorm into the convolutions and write a "
               "deploy graph checked against the trained model."),
    "detect": ("detect", "detect.py", "Detect objects in your own images, folders of images or "
               "videos, with any exported or trained model."),
    "check-dataset": ("check_dataset", "check_dataset.py", "Check a whole dataset before a "
                      "long run: every image decoded, sizes, boxes, classes, ids."),
    "audit": ("audit", "audit_params.py", "Audit a model file for biases: an MXNet params "
              "file or an ONNX model."),
    "anchors": ("anchors", "anchor_coverage.py", "How well anchor sizes cover a dataset's "
                "boxes."),
    "launch": ("launch", "launch_dist.py", "Run a command as one ps-lite job (scheduler, "
               "servers, workers) on this machine or over ssh."),
    "bias-report": ("bias_report", "bias_report.py", "Print which convolutions of a model "
                    "have no bias once BatchNorm is folded into them."),
    "make-synthetic": ("make_synthetic", "make_synthetic_voc.py", "Write the synthetic shapes "
                       "detection dataset (VOC, COCO or YOLO format), deterministic per seed."),
    "make-neon-trees": ("make_neon_trees", "make_neon_trees.py", "Write the NEON tree-crown "
                        "dataset (real aerial images, VOC boxes) from the deepforest wheel."),
    "compare": ("compare", "compare_runs.py", "Compare training runs: one row per run and "
                "their curves side by side."),
}


def usage() -> str:
    lines = ["usage: ssd-nobias <job> [arguments]   (ssd-nobias <job> --help for each; "
             "--version)", "", "jobs:"]
    lines += [f"  {job:16s}{about}" for job, (_, _, about) in JOBS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console entry point: the job's main, errors printed as cli.run prints them."""
    from ssd_nobias import cli
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from ssd_nobias.provenance import version
        print(f"ssd-nobias {version()}")
        return 0
    job, rest = argv[0], argv[1:]
    if job not in JOBS:
        close = difflib.get_close_matches(job, JOBS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"ssd-nobias: unknown job '{job}'{hint}; jobs: {', '.join(JOBS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"ssd_nobias.commands.{JOBS[job][0]}")
    sys.argv[0] = f"ssd-nobias {job}"
    return cli.run(module.main, rest)
