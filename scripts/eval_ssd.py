"""Evaluate a trained SSD: VOC07/VOC mAP or COCO AP, per-class table, eval.json and pictures

`ssd-nobias eval` once installed; ssd_nobias/commands/evaluate.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
